/**
 * HTTP routes of the server's image store (issue 15; paths in src/contract/images.ts):
 * - POST   /drover/v1/images?name=REF…     admin: the archive as the body, streamed to disk
 * - GET    /drover/v1/images               view: every image, with the nodes that report it loaded
 * - GET    /drover/v1/images/DIGEST        view token, or a node (client certificate) allowed that image
 * - GET    /drover/v1/images/DIGEST/blob   the same callers; one `Range: bytes=A-B` → 206
 * - DELETE /drover/v1/images/DIGEST        admin; DELETE /drover/v1/images?name=REF removes that name's image
 * - /drover/v1/images/uploads[/ID[/commit]]  admin: chunked, resumable pushes (uploads.ts), each piece a
 *   short request, so a push never meets the server-wide request timeout however slow the uplink
 * A node may fetch only what `mayFetch` allows (the images its desired state lists): its certificate
 * proves who it is, not that every image is its business. Blob answers count against the server-wide
 * transfer cap (transfers.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { IMAGE_UPLOADS_PATH, IMAGES_PATH, imageDigest, UPLOAD_PIECE_MAX_BYTES, type ImageInfo } from '../../src/contract/images.js';
import { BadRequestError, DroverError, ForbiddenError, NotFoundError, UnauthorizedError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { ExtraRoute, ExtraRouteContext } from '../api/server.js';
import { PayloadTooLargeError, sendJson } from '../api/respond.js';
import { hasRole } from '../auth/roles.js';
import { peerCertificatePem } from '../identity/routes.js';
import type { NodeIdentity } from '../identity/service.js';
import type { Store } from '../store/types.js';
import type { ImageStore } from './store.js';
import { TransfersBusyError, type TransferLimit } from './transfers.js';
import { checkUploadId, UploadOffsetError } from './uploads.js';

/** Largest archive a push may send (--image-max-upload is not a flag yet: 8 GiB covers any edge image). */
export const DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 ** 3;
/** Segments of IMAGES_PATH: drover, v1, images. */
const PREFIX_SEGMENTS = 3;

export interface ImageRouteDeps {
  store: ImageStore;
  transfers: TransferLimit;
  /** Where Nodes are read (their status.imageDigests says which images each has loaded). */
  nodeStore: Pick<Store, 'list'>;
  identity: Pick<NodeIdentity, 'nodeOfCertificate'>;
  /** Whether `node` may fetch `digest`: the images its desired state lists. */
  mayFetch: (node: string, digest: string) => boolean;
  logger: Logger;
  maxUploadBytes?: number;
  /** UPLOAD_PIECE_MAX_BYTES unless given. */
  maxPieceBytes?: number;
}

/** 411: a piece must say its size, so the bound is checked before a byte is read. */
class LengthRequiredError extends DroverError {
  constructor(message: string) {
    super(message, { code: 411, reason: 'LengthRequired' });
  }
}

/** Segments of IMAGE_UPLOADS_PATH: drover, v1, images, uploads. */
const UPLOAD_SEGMENTS = 4;

/** 416, with the size the client should have asked within. */
class RangeNotSatisfiableError extends DroverError {
  constructor(message: string) {
    super(message, { code: 416, reason: 'RequestedRangeNotSatisfiable' });
  }
}

/** The digest segment, checked before it is used anywhere (it becomes a file name). */
function digestSegment(segments: string[], method: string, allowBlob: boolean): { digest: string; blob: boolean } {
  const rest = segments.slice(PREFIX_SEGMENTS);
  const usage = `expected ${method} ${IMAGES_PATH}/DIGEST${allowBlob ? ' or ' + IMAGES_PATH + '/DIGEST/blob' : ''}`;
  if (rest.length === 0 || rest.length > 2 || (rest.length === 2 && (!allowBlob || rest[1] !== 'blob'))) throw new BadRequestError(usage);
  const digest = rest[0]!;
  if (!imageDigest.safeParse(digest).success) {
    // Described, not echoed whole: a path may carry anything.
    throw new BadRequestError(`invalid image digest in the path (${JSON.stringify(digest.slice(0, 80))}${digest.length > 80 ? '…' : ''}): must be sha256:<64 lowercase hex digits>`);
  }
  return { digest, blob: rest.length === 2 };
}

/**
 * One `bytes=` range → inclusive start and end within `size`; undefined without a Range header. An end
 * past the last byte is cut to it (RFC 9110); a start past it, several ranges or another unit: 416.
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) throw new RangeNotSatisfiableError(`Range ${JSON.stringify(header.slice(0, 100))} is not one "bytes=A-B", "bytes=A-" or "bytes=-N" range`);
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) throw new RangeNotSatisfiableError('Range bytes=-0 asks for no bytes');
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) throw new RangeNotSatisfiableError(`Range ${header.trim()} ends before it starts`);
  }
  if (!Number.isSafeInteger(start) || start >= size) throw new RangeNotSatisfiableError(`Range ${header.trim().slice(0, 100)} starts past the end of the archive (${size} bytes)`);
  return { start, end };
}

export function imageRoutes(deps: ImageRouteDeps): ExtraRoute[] {
  const { store, transfers, logger } = deps;
  const maxUpload = deps.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;

  /** A view token, or a node's certificate; the node's name when it is a node (for mayFetch and the audit). */
  const caller = (req: IncomingMessage, ctx: ExtraRouteContext, action: string): { node?: string } => {
    if (ctx.identity) {
      const d = hasRole(ctx.identity, 'view', action);
      if (!d.allowed) throw new ForbiddenError(`forbidden: ${d.reason}`);
      return {};
    }
    const pem = peerCertificatePem(req);
    if (!pem) {
      throw new UnauthorizedError(req.headers.authorization ? 'the bearer token was refused (unknown, expired or revoked), and no node client certificate came with the request' : 'a bearer token or the node\'s client certificate is required');
    }
    const node = deps.identity.nodeOfCertificate(pem);
    ctx.identify({ node });
    return { node };
  };

  const allowed = (who: { node?: string }, digest: string): void => {
    if (who.node !== undefined && !deps.mayFetch(who.node, digest)) {
      throw new ForbiddenError(`node ${who.node} may not fetch image ${digest}: its desired state does not list it`);
    }
  };

  const sendBlob = async (req: IncomingMessage, res: ServerResponse, digest: string, who: { node?: string }): Promise<void> => {
    const m = store.get(digest);
    if (!m) throw new NotFoundError(`image ${digest}`);
    let range: { start: number; end: number } | undefined;
    try {
      range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, m.size);
    } catch (err) {
      res.setHeader('content-range', `bytes */${m.size}`);
      throw err;
    }
    try {
      transfers.acquire(res);
    } catch (err) {
      if (err instanceof TransfersBusyError) res.setHeader('retry-after', String(err.retryAfterSeconds));
      throw err;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? m.size - 1;
    const stream = await store.openRange(digest, start, end);
    res.writeHead(range ? 206 : 200, {
      'content-type': 'application/x-tar',
      'content-length': end - start + 1,
      etag: `"${digest}"`,
      'accept-ranges': 'bytes',
      ...(range ? { 'content-range': `bytes ${start}-${end}/${m.size}` } : {}),
    });
    const counted = async function* (src: AsyncIterable<Buffer>) {
      for await (const b of src) {
        transfers.sent(b.length);
        yield b;
      }
    };
    try {
      await pipeline(stream, counted, res);
    } catch (err) {
      // A device that drops mid-chunk (the flaky link this exists for) resumes later; not the server's failure.
      logger.debug({ digest, node: who.node, start, end, err: errorMessage(err) }, 'image transfer ended early');
    }
  };

  const maxPiece = deps.maxPieceBytes ?? UPLOAD_PIECE_MAX_BYTES;

  /** /uploads/ID (or /uploads/ID/commit when `commit`): the id checked before it names a file. */
  const uploadSegment = (segments: string[], method: string, commit: boolean): string => {
    const rest = segments.slice(UPLOAD_SEGMENTS);
    if (rest.length !== (commit ? 2 : 1) || (commit && rest[1] !== 'commit')) throw new BadRequestError(`expected ${method} ${IMAGE_UPLOADS_PATH}/ID${commit ? '/commit' : ''}`);
    return checkUploadId(rest[0]!);
  };

  /** A refusal whose body also says where the upload stands, so a client that lost an answer resumes exactly. */
  const sendOffsetConflict = (res: ServerResponse, err: UploadOffsetError): void => {
    sendJson(res, 409, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: err.message, reason: err.reason, code: 409, offset: err.offset, details: { offset: err.offset } });
  };

  /** The rest of a refused body is not read: the connection closes after the answer. */
  const closeUnlessRead = (req: IncomingMessage, res: ServerResponse): void => {
    if (!req.complete) res.setHeader('connection', 'close');
  };

  const uploadRoutes: ExtraRoute[] = [
    {
      method: 'POST',
      path: IMAGE_UPLOADS_PATH,
      access: 'admin',
      verb: 'image.upload.create',
      handle: async (_req, res, ctx) => {
        const format = ctx.url.searchParams.get('format') ?? undefined;
        if (format !== undefined && format !== 'docker-archive' && format !== 'oci-archive') throw new BadRequestError(`format must be docker-archive or oci-archive, got ${JSON.stringify(format.slice(0, 40))}`);
        sendJson(res, 201, await store.uploads.create(ctx.url.searchParams.getAll('name'), format));
      },
    },
    {
      method: 'PUT',
      path: `${IMAGE_UPLOADS_PATH}/`,
      access: 'admin',
      verb: 'image.upload.append',
      handle: async (req, res, ctx) => {
        try {
          const id = uploadSegment(ctx.segments, 'PUT', false);
          const rawOffset = ctx.url.searchParams.get('offset');
          if (rawOffset === null || !/^\d{1,16}$/.test(rawOffset)) throw new BadRequestError(`offset must be the upload's size so far (a whole number of bytes), got ${rawOffset === null ? 'none' : JSON.stringify(rawOffset.slice(0, 40))}`);
          const raw = req.headers['content-length'];
          if (raw === undefined) throw new LengthRequiredError(`a piece needs a Content-Length (at most ${maxPiece} bytes)`);
          const length = Number(raw);
          if (length > maxPiece) throw new PayloadTooLargeError(`a piece of ${length} bytes is larger than the server's bound of ${maxPiece} bytes per piece`);
          // destroyOnReturn false: a refused piece must still get its answer, not a reset connection.
          const state = await store.uploads.append(id, Number(rawOffset), length, req.iterator({ destroyOnReturn: false }), () => req.destroy(), maxUpload);
          sendJson(res, 200, state);
        } catch (err) {
          closeUnlessRead(req, res);
          if (err instanceof UploadOffsetError) return sendOffsetConflict(res, err);
          throw err;
        }
      },
    },
    {
      method: 'GET',
      path: `${IMAGE_UPLOADS_PATH}/`,
      access: 'admin',
      handle: async (_req, res, ctx) => {
        sendJson(res, 200, store.uploads.state(uploadSegment(ctx.segments, 'GET', false)));
      },
    },
    {
      method: 'POST',
      path: `${IMAGE_UPLOADS_PATH}/`,
      access: 'admin',
      verb: 'image.upload.commit',
      handle: async (req, res, ctx) => {
        try {
          const id = uploadSegment(ctx.segments, 'POST', true);
          const digest = ctx.url.searchParams.get('digest');
          if (digest === null || !imageDigest.safeParse(digest).success) throw new BadRequestError(`digest must be the sha256 of the whole archive as sha256:<64 lowercase hex digits>, got ${digest === null ? 'none' : JSON.stringify(digest.slice(0, 80))}`);
          const { manifest, created } = await store.uploads.commit(id, digest);
          sendJson(res, created ? 201 : 200, manifest);
        } catch (err) {
          closeUnlessRead(req, res);
          if (err instanceof UploadOffsetError) return sendOffsetConflict(res, err);
          throw err;
        }
      },
    },
    {
      method: 'DELETE',
      path: `${IMAGE_UPLOADS_PATH}/`,
      access: 'admin',
      verb: 'image.upload.delete',
      handle: async (_req, res, ctx) => {
        try {
          sendJson(res, 200, await store.uploads.remove(uploadSegment(ctx.segments, 'DELETE', false)));
        } catch (err) {
          if (err instanceof UploadOffsetError) return sendOffsetConflict(res, err);
          throw err;
        }
      },
    },
  ];

  return [
    // First: the digest routes below match /drover/v1/images/ as a prefix.
    ...uploadRoutes,
    {
      method: 'POST',
      path: IMAGES_PATH,
      access: 'admin',
      verb: 'image.push',
      handle: async (req, res, ctx) => {
        const names = ctx.url.searchParams.getAll('name');
        const format = ctx.url.searchParams.get('format') ?? undefined;
        if (format !== undefined && format !== 'docker-archive' && format !== 'oci-archive') throw new BadRequestError(`format must be docker-archive or oci-archive, got ${JSON.stringify(format.slice(0, 40))}`);
        const raw = req.headers['content-length'];
        const declared = raw === undefined ? undefined : Number(raw);
        try {
          if (declared !== undefined && declared > maxUpload) throw new PayloadTooLargeError(`image archive of ${declared} bytes is larger than the server's upload limit of ${maxUpload} bytes`);
          // destroyOnReturn false: a refused upload must still get its answer, not a reset connection.
          const { manifest, created } = await store.put(req.iterator({ destroyOnReturn: false }), names, { maxBytes: maxUpload, expectedBytes: declared, format });
          sendJson(res, created ? 201 : 200, manifest);
        } catch (err) {
          // The rest of a refused body is not read: the connection closes after the answer.
          if (!req.complete) res.setHeader('connection', 'close');
          throw err;
        }
      },
    },
    {
      method: 'GET',
      path: IMAGES_PATH,
      access: 'view',
      handle: async (_req, res) => {
        const where = new Map<string, string[]>();
        for (const n of (await deps.nodeStore.list('Node')).items) {
          for (const d of (n.status as { imageDigests?: string[] } | undefined)?.imageDigests ?? []) where.set(d, [...(where.get(d) ?? []), n.metadata.name]);
        }
        const items: ImageInfo[] = store.list().map(({ chunks: _chunks, ...m }) => ({ ...m, nodes: (where.get(m.digest) ?? []).sort() }));
        sendJson(res, 200, { items });
      },
    },
    {
      method: 'GET',
      path: `${IMAGES_PATH}/`,
      access: 'public',
      handle: async (req, res, ctx) => {
        const who = caller(req, ctx, `GET ${IMAGES_PATH}/DIGEST`);
        const { digest, blob } = digestSegment(ctx.segments, 'GET', true);
        allowed(who, digest);
        if (blob) return sendBlob(req, res, digest, who);
        const m = store.get(digest);
        if (!m) throw new NotFoundError(`image ${digest}`);
        sendJson(res, 200, m, { etag: `"${digest}"` });
      },
    },
    {
      method: 'DELETE',
      path: `${IMAGES_PATH}/`,
      access: 'admin',
      verb: 'image.delete',
      handle: async (_req, res, ctx) => {
        const { digest } = digestSegment(ctx.segments, 'DELETE', false);
        sendJson(res, 200, await store.remove(digest));
      },
    },
    {
      method: 'DELETE',
      path: IMAGES_PATH,
      access: 'admin',
      verb: 'image.delete',
      handle: async (_req, res, ctx) => {
        const name = ctx.url.searchParams.get('name');
        if (!name) throw new BadRequestError(`expected DELETE ${IMAGES_PATH}/DIGEST or ${IMAGES_PATH}?name=REF`);
        const m = store.byName(name);
        if (!m) throw new NotFoundError(`image named ${JSON.stringify(name.slice(0, 200))}`);
        sendJson(res, 200, await store.remove(m.digest));
      },
    },
  ];
}
