/**
 * `drover image push|ls|rm` (issue 15): images the server keeps and serves to its devices over the
 * link's TLS (server/images). push saves images from this machine's podman store (`podman save`) or
 * takes a saved archive, and uploads it in pieces read from disk (never held in memory), each its own short
 * request: the API cuts any request after 60 s, and a dropped link costs the piece in flight, not the
 * push (src/contract/images.ts, resumable pushes). ls shows what the server holds and which nodes have
 * loaded it. `drover get images` prints the same table.
 * `registerImage` returns the `image` group so other device-side verbs (`image load`) join it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { IMAGE_UPLOADS_PATH, IMAGES_PATH, imagePath, UPLOAD_PIECE_BYTES, UPLOAD_PIECE_MAX_BYTES, uploadId, uploadPath, type ImageInfo, type ImageManifest, type UploadState } from '../contract/images.js';
import { backoffDelay, sleep } from '../util/backoff.js';
import { errorMessage } from '../util/errors.js';
import { CliError, DEFAULT_TIMEOUT_MS, errorFromResponse, type ApiClient } from './client.js';
import { resolveConfig } from './config.js';
import { addConnectionOptions, eachObject, parseDuration, type CommandContext } from './context.js';
import { age, renderTable, toJson, toYaml } from './output.js';

const FULL_DIGEST = /^sha256:[0-9a-f]{64}$/;
/** A digest as `image ls` shows it (12 hex digits), or longer, with or without `sha256:`. */
const DIGEST_PREFIX = /^(?:sha256:)?([0-9a-f]{12,64})$/;

/** 2137088 → "2.0MiB". */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n}B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)}${units[i]}`;
}

export function shortDigest(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

/** The `image ls` / `get images` table. */
export function imageTable(items: ImageInfo[], now: number, noHeaders = false): string {
  const rows = items.map((i) => [i.names.join(','), shortDigest(i.digest), humanBytes(i.size), i.nodes.length ? i.nodes.join(',') : '<none>', age(i.createdAt, now)]);
  const table = renderTable(['NAMES', 'DIGEST', 'SIZE', 'NODES', 'AGE'], rows);
  return noHeaders ? table.slice(table.indexOf('\n') + 1) : table;
}

function printImages(ctx: CommandContext, items: ImageInfo[], output: string | undefined, noHeaders = false): void {
  if (output === 'json') return ctx.io.stdout(toJson({ items }));
  if (output === 'yaml') return ctx.io.stdout(toYaml({ items }));
  if (output !== undefined && output !== '' && output !== 'wide') throw new CliError(`unable to match a printer suitable for the output format "${output}" for images, allowed formats are: json,yaml,wide`);
  if (!items.length) return ctx.io.stderr('No images found\n');
  ctx.io.stdout(imageTable(items, Date.now(), noHeaders));
}

/** Whether `arg` names this image: one of its names as written or in the short forms pods use, or its digest (prefix). */
function matches(i: ImageInfo, arg: string): boolean {
  const hex = DIGEST_PREFIX.exec(arg)?.[1];
  if (hex && i.digest.slice('sha256:'.length).startsWith(hex)) return true;
  const tagged = arg.split('/').at(-1)!.includes(':') ? arg : `${arg}:latest`;
  return i.names.some((n) => n === arg || n === tagged || n.endsWith(`/${tagged}`));
}

/** `drover get images [NAME|DIGEST…]` (src/cli/get.ts hands `images` here: it is no Kubernetes kind). */
export async function getImages(ctx: CommandContext, client: ApiClient, args: string[], opts: { output?: string; headers?: boolean }): Promise<void> {
  const { items } = await client.get<{ items: ImageInfo[] }>(IMAGES_PATH);
  const shown = args.length ? items.filter((i) => args.some((a) => matches(i, a))) : items;
  const missing = args.filter((a) => !items.some((i) => matches(i, a)));
  if (shown.length || !args.length) printImages(ctx, shown, opts.output, opts.headers === false);
  if (missing.length) throw new CliError(`image${missing.length > 1 ? 's' : ''} ${missing.map((m) => JSON.stringify(m)).join(', ')} not found`, { code: 404, reason: 'NotFound' });
}

/** Where and how the upload goes: the same server, token and CA as every other verb's client. */
function connection(cmd: Command, env: NodeJS.ProcessEnv): { server: string; token?: string; ca?: string; idleMs: number } {
  type Flags = { server?: string; token?: string; requestTimeout?: string; config?: string };
  const own = Object.fromEntries(Object.entries(cmd.opts<Flags>()).filter(([, v]) => v !== undefined)) as Flags;
  const opts: Flags = { ...cmd.optsWithGlobals<Flags>(), ...own };
  const cfg = resolveConfig({ server: opts.server, token: opts.token }, opts.config ? { ...env, DROVER_CONFIG: opts.config } : env);
  return { server: cfg.server.replace(/\/+$/, ''), token: cfg.token, ca: cfg.ca, idleMs: opts.requestTimeout ? parseDuration(opts.requestTimeout) : DEFAULT_TIMEOUT_MS };
}

/**
 * The push's progress on stderr: a line a second while it goes, and the last one (`force`); a small
 * archive prints one line. `sent` reads the bytes sent so far; `lastShown` is when the first second starts (0: the first call prints).
 */
function pushProgress(ctx: CommandContext, size: number, sent: () => number, lastShown: number): (force?: boolean) => void {
  let shownBytes = -1;
  return (force = false) => {
    const now = Date.now();
    const bytes = sent();
    if ((!force && now - lastShown < 1000) || shownBytes === bytes) return;
    lastShown = now;
    shownBytes = bytes;
    ctx.io.stderr(`pushing ${humanBytes(bytes)} / ${humanBytes(size)} (${size ? Math.floor((bytes * 100) / size) : 100}%)\n`);
  };
}

/**
 * POSTs `file` to the image store, read from disk as it is sent. Progress goes to stderr; the deadline
 * is on silence (no byte moving for --request-timeout), not on the whole push, which may take long on a slow uplink.
 */
async function upload(ctx: CommandContext, cmd: Command, file: string, names: string[], format: string | undefined): Promise<{ status: number; manifest: ImageManifest }> {
  const c = connection(cmd, ctx.io.env);
  const size = (await stat(file)).size;
  const qs = new URLSearchParams();
  for (const n of names) qs.append('name', n);
  if (format) qs.set('format', format);
  const url = new URL(`${c.server}${IMAGES_PATH}${qs.size ? `?${qs}` : ''}`);
  const headers: Record<string, string | number> = { 'content-type': 'application/x-tar', 'content-length': size, accept: 'application/json' };
  if (c.token) headers.authorization = `Bearer ${c.token}`;
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') throw new CliError(`invalid server URL "${c.server}": only http and https are supported`);
  let sent = 0;
  const progress = pushProgress(ctx, size, () => sent, Date.now());
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('error', (err) => reject(new CliError(`the push to ${c.server} broke: ${errorMessage(err)}`, { cause: err })));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) return reject(errorFromResponse(status, text));
        try {
          resolve({ status, manifest: JSON.parse(text) as ImageManifest });
        } catch {
          reject(new CliError(`the server sent invalid JSON for POST ${IMAGES_PATH}: ${text.slice(0, 100)}`));
        }
      });
    };
    const req = secure ? httpsRequest(url, { method: 'POST', headers, ca: c.ca, rejectUnauthorized: true }, onResponse) : httpRequest(url, { method: 'POST', headers }, onResponse);
    req.setTimeout(c.idleMs, () => req.destroy(new CliError(`the push to ${c.server} made no progress for ${c.idleMs / 1000}s`, { reason: 'Timeout' })));
    req.on('error', (err) => {
      if (err instanceof CliError) return reject(err);
      reject(new CliError(`cannot push to the drover server at ${c.server}: ${errorMessage(err)}`, { reason: 'Unreachable', cause: err }));
    });
    const body = createReadStream(file);
    body.on('data', (b) => {
      sent += b.length;
      progress();
    });
    body.on('end', () => progress(true));
    body.on('error', (err) => req.destroy(err));
    body.pipe(req);
  });
}

/** `8MiB`, `512KiB`, `1048576`: a piece size in bytes (KiB, MiB: powers of 1024; KB, MB: of 1000). */
export function parsePieceSize(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|KiB|MiB)?\s*$/i.exec(value);
  const unit = (m?.[2] ?? 'B').toLowerCase();
  const mult: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, kib: 1024, mib: 1024 ** 2 };
  const n = m ? Math.floor(Number(m[1]) * mult[unit]!) : NaN;
  if (!Number.isSafeInteger(n) || n < 64 * 1024 || n > UPLOAD_PIECE_MAX_BYTES) {
    throw new CliError(`invalid --piece-size "${value}": a size from 64KiB to ${humanBytes(UPLOAD_PIECE_MAX_BYTES)} (the server's bound per piece), e.g. 8MiB or 512KiB`);
  }
  return n;
}

/** One request's answer, or why none came (`failure`: the link, a timeout: worth trying again). */
type Answer = { status: number; text: string; json: any };
type Reply = Answer | { failure: CliError };

/** Failures a later try may not meet: no answer, a timeout (408 included), an overloaded or failing server. */
function transient(r: Reply): boolean {
  return 'failure' in r || r.status === 408 || r.status === 429 || (r.status >= 500 && r.status !== 507 && r.status !== 501);
}

function replyError(r: Reply): CliError {
  return 'failure' in r ? r.failure : errorFromResponse(r.status, r.text);
}

/** Pieces are not halved below this after cuts: each request costs headers and an fsync on the server. */
const MIN_PIECE_BYTES = 256 * 1024;
/** Consecutive failures with no byte gained before a push gives up (about 5 minutes of backoff). */
const MAX_TRIES = 12;
const BACKOFF = { baseMs: 500, maxMs: 30_000 };

/**
 * Pushes `file` in pieces (POST uploads, PUT each piece at the server's offset, POST commit with the sha256
 * computed here). A piece that fails for want of a link, a timeout or a 5xx is tried again after backoff
 * (src/util/backoff.ts) from the offset the server reports (GET), so bytes already there are not sent again;
 * a 409 carries that offset itself. `resumeId` continues an upload a previous run left (`--upload-id`).
 * Returns undefined when the server has no upload routes (an older server): the caller sends one POST.
 */
async function pushInPieces(ctx: CommandContext, cmd: Command, file: string, names: string[], format: string | undefined, pieceBytes: number, resumeId: string | undefined): Promise<{ status: number; manifest: ImageManifest } | undefined> {
  const c = connection(cmd, ctx.io.env);
  const size = (await stat(file)).size;
  if (size === 0) throw new CliError(`${file} is empty: not an image archive`);
  const base = new URL(c.server);
  const secure = base.protocol === 'https:';
  if (!secure && base.protocol !== 'http:') throw new CliError(`invalid server URL "${c.server}": only http and https are supported`);
  // One kept-alive connection for the pieces: no TLS handshake per piece. A broken one is dropped by the agent.
  const agent = secure ? new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: c.ca, rejectUnauthorized: true }) : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  let sent = 0;
  const send = (method: string, path: string, opts: { query?: URLSearchParams; piece?: { start: number; length: number }; timeoutMs?: number } = {}): Promise<Reply> =>
    new Promise((resolve) => {
      const url = new URL(`${c.server}${path}${opts.query?.size ? `?${opts.query}` : ''}`);
      const headers: Record<string, string | number> = { accept: 'application/json' };
      if (c.token) headers.authorization = `Bearer ${c.token}`;
      if (opts.piece) {
        headers['content-type'] = 'application/octet-stream';
        headers['content-length'] = opts.piece.length;
      }
      let settled = false;
      const settle = (r: Reply) => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const onResponse = (res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('error', (err) => settle({ failure: new CliError(`the answer to ${method} ${path} broke off: ${errorMessage(err)}`, { reason: 'Unreachable', cause: err }) }));
        res.on('end', () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          settle({ status: res.statusCode ?? 0, text, json });
        });
      };
      const reqOpts = { method, headers, agent };
      const req = secure ? httpsRequest(url, reqOpts, onResponse) : httpRequest(url, reqOpts, onResponse);
      const idle = opts.timeoutMs ?? c.idleMs;
      req.setTimeout(idle, () => req.destroy(new CliError(`${method} ${path} made no progress for ${idle / 1000}s`, { reason: 'Timeout' })));
      req.on('error', (err) => settle({ failure: err instanceof CliError ? err : new CliError(`cannot reach the drover server at ${c.server}: ${errorMessage(err)}`, { reason: 'Unreachable', cause: err }) }));
      if (!opts.piece) return void req.end();
      const body = createReadStream(file, { start: opts.piece.start, end: opts.piece.start + opts.piece.length - 1 });
      body.on('data', () => {
        sent = opts.piece!.start + body.bytesRead;
        progress();
      });
      body.on('error', (err) => req.destroy(err));
      body.pipe(req);
    });

  const progress = pushProgress(ctx, size, () => sent, 0);

  try {
    ctx.io.stderr(`computing the sha256 of ${humanBytes(size)}\n`);
    const hash = createHash('sha256');
    for await (const b of createReadStream(file)) hash.update(b as Buffer);
    const digest = `sha256:${hash.digest('hex')}`;

    /** `fn` until it answers other than transiently; MAX_TRIES transient failures in a row give up. */
    let tries = 0;
    const retrying = async (what: string, fn: () => Promise<Reply>): Promise<Answer> => {
      for (;;) {
        const r = await fn();
        if (!transient(r)) {
          tries = 0;
          return r as Answer;
        }
        tries++;
        if (tries >= MAX_TRIES) throw new CliError(`${what} failed ${tries} times in a row, last: ${replyError(r).message}${id ? `; resume with --upload-id ${id}` : ''}`, { reason: 'Unreachable', cause: replyError(r) });
        const wait = backoffDelay(tries - 1, BACKOFF);
        ctx.io.stderr(`${what}: ${replyError(r).message}; trying again in ${(wait / 1000).toFixed(1)}s\n`);
        await sleep(wait);
      }
    };

    let id = resumeId;
    let offset = 0;
    if (id) {
      const r = await retrying('reading the upload', () => send('GET', uploadPath(id!)));
      if (r.status !== 200) throw replyError(r);
      offset = (r.json as UploadState).offset;
      if (offset > size) throw new CliError(`upload ${id} holds ${offset} bytes, more than ${file} (${size}): not this archive's upload`);
      ctx.io.stderr(`resuming upload ${id} at ${humanBytes(offset)}\n`);
    } else {
      const q = new URLSearchParams();
      for (const n of names) q.append('name', n);
      if (format) q.set('format', format);
      const r = await retrying('starting the upload', () => send('POST', IMAGE_UPLOADS_PATH, { query: q }));
      // An older server: no upload routes (its API answers an unknown path 404 with no JSON Status of its own).
      if (r.status === 404 || r.status === 405) return undefined;
      if (r.status !== 201) throw replyError(r);
      id = (r.json as UploadState).id;
      ctx.io.stderr(`upload ${id} started (if this run stops, resume with --upload-id ${id})\n`);
    }
    sent = offset;

    while (offset < size) {
      const length = Math.min(pieceBytes, size - offset);
      const q = new URLSearchParams({ offset: String(offset) });
      const r = await send('PUT', uploadPath(id), { query: q, piece: { start: offset, length } });
      if (!('failure' in r) && r.status === 200) {
        offset = (r.json as UploadState).offset;
        sent = offset;
        tries = 0;
        progress();
        continue;
      }
      if (!('failure' in r) && r.status === 409 && typeof r.json?.offset === 'number') {
        // The server holds other bytes than this run thought (an answer lost on the way): go on from there.
        offset = r.json.offset as number;
        sent = offset;
        continue;
      }
      if (!transient(r)) throw replyError(r);
      tries++;
      if (tries >= MAX_TRIES) throw new CliError(`the push failed ${tries} times in a row, last: ${replyError(r).message}; resume with --upload-id ${id}`, { reason: 'Unreachable', cause: replyError(r) });
      const wait = backoffDelay(tries - 1, BACKOFF);
      ctx.io.stderr(`piece at ${humanBytes(offset)}: ${replyError(r).message}; resuming in ${(wait / 1000).toFixed(1)}s\n`);
      await sleep(wait);
      const before = offset;
      const st = await retrying('reading the upload', () => send('GET', uploadPath(id!)));
      if (st.status !== 200) throw replyError(st);
      offset = (st.json as UploadState).offset;
      sent = offset;
      // Bytes that arrived before the cut are kept: progress, so the count of failures starts again.
      if (offset > before) tries = 0;
      // A piece cut after part of it arrived (a link too slow for the server's request timeout, or a flaky
      // one): smaller pieces from now on, so the next ones finish inside it.
      if (offset > before && offset < before + length && pieceBytes > MIN_PIECE_BYTES) pieceBytes = Math.max(MIN_PIECE_BYTES, Math.floor(pieceBytes / 2));
      ctx.io.stderr(`the server holds ${humanBytes(offset)}: resuming there${pieceBytes < length ? ` in pieces of ${humanBytes(pieceBytes)}` : ''}\n`);
    }
    progress(true);

    // The server hashes and checks the whole archive before it answers: no byte moves meanwhile.
    const commitTimeout = Math.max(c.idleMs, 10 * 60_000);
    let calls = 0;
    for (;;) {
      const r = await retrying('storing the upload', () => (calls++, send('POST', uploadPath(id!, true), { query: new URLSearchParams({ digest }), timeoutMs: commitTimeout })));
      if (r.status === 200 || r.status === 201) return { status: r.status, manifest: r.json as ImageManifest };
      if (r.status === 404 && calls > 1) {
        // An earlier try went through but its answer was lost: the upload is gone because the image is there.
        const m = await send('GET', imagePath(digest));
        if (!('failure' in m) && m.status === 200) return { status: 201, manifest: m.json as ImageManifest };
      }
      if (r.status === 409 && calls < 3) {
        // A piece of this upload still open on the server (its link died unnoticed): the commit waits its turn.
        await sleep(backoffDelay(calls, BACKOFF));
        continue;
      }
      throw replyError(r);
    }
  } finally {
    agent.destroy();
  }
}

/**
 * The names podman knows IMAGE by that `IMAGE` means (podman resolves a short name to localhost/ first),
 * so the server stores the full name even when the archive would carry another (a multi-image save).
 */
async function resolvePodmanName(podman: (args: string[]) => Promise<string>, image: string): Promise<string | undefined> {
  let tags: string[];
  try {
    tags = JSON.parse((await podman(['image', 'inspect', '--format', '{{json .RepoTags}}', image])).trim() || '[]') as string[];
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') throw new CliError('podman is not installed on this machine: push a saved archive with --from-archive FILE', { cause: err });
    throw new CliError(`podman has no image "${image}": ${errorMessage(err).split('\n').filter(Boolean).at(-1)}`, { cause: err });
  }
  const tagged = image.split('/').at(-1)!.includes(':') ? image : `${image}:latest`;
  return tags.find((t) => t === image || t === tagged) ?? tags.find((t) => t === `localhost/${tagged}`) ?? tags.find((t) => t.endsWith(`/${tagged}`));
}

interface PushOptions {
  fromArchive?: string;
  name?: string[];
  format?: string;
  podmanRoot?: string;
  podmanRunroot?: string;
  pieceSize?: string;
  uploadId?: string;
}

function collect(value: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), value];
}

export function registerImage(program: Command, ctx: CommandContext): Command {
  const image = program.command('image').description("Images the server keeps and serves to its nodes (pushed from podman or a saved archive): push, ls, rm; on a device, load");

  addConnectionOptions(
    image
      .command('push')
      .description("Store images in the server's image store: saved from this machine's podman (podman save), or an archive given with --from-archive; pods then use them by name and nodes fetch them from the server")
      .argument('[images...]', 'podman images to push (one archive holds them all)')
      .option('--from-archive <file>', 'push this archive (podman save / docker save / nerdctl save output) instead of saving from podman')
      .option('--name <ref>', 'another name for the image (repeatable); an archive keeps the names it carries too', collect)
      .option('--format <format>', 'docker-archive (default) or oci-archive: how podman saves the images')
      .option('--podman-root <dir>', 'podman --root of the store the images are in')
      .option('--podman-runroot <dir>', 'podman --runroot of that store')
      .option('--piece-size <size>', `bytes per upload request (default ${humanBytes(UPLOAD_PIECE_BYTES)}, at most ${humanBytes(UPLOAD_PIECE_MAX_BYTES)}); a piece cut by a dropped link is resumed, not the push`)
      .option('--upload-id <id>', 'resume the upload a stopped push printed (with the same archive: --from-archive FILE)'),
  ).action(async (images: string[], opts: PushOptions, cmd: Command) => {
    if (opts.format !== undefined && opts.format !== 'docker-archive' && opts.format !== 'oci-archive') throw new CliError(`invalid --format "${opts.format}": docker-archive or oci-archive`);
    const pieceBytes = opts.pieceSize === undefined ? UPLOAD_PIECE_BYTES : parsePieceSize(opts.pieceSize);
    if (opts.uploadId !== undefined && !uploadId.safeParse(opts.uploadId).success) throw new CliError(`invalid --upload-id "${opts.uploadId.slice(0, 80)}": 32 lowercase hex digits, as the push printed`);
    if (opts.uploadId !== undefined && !opts.fromArchive) throw new CliError('--upload-id resumes the push of an archive: give it the same --from-archive FILE (podman save may not write the same bytes again)');
    if (opts.uploadId !== undefined && (opts.name?.length || opts.format)) throw new CliError('--upload-id resumes an upload with the names and format it was started with: drop --name and --format');
    if (opts.fromArchive && images.length) throw new CliError('give images to save from podman, or --from-archive FILE, not both');
    if (!opts.fromArchive && !images.length) throw new CliError('name the podman images to push, or give --from-archive FILE');
    const names = [...(opts.name ?? [])];
    let file = opts.fromArchive;
    let dir: string | undefined;
    try {
      if (!file) {
        const podmanArgs = [...(opts.podmanRoot ? ['--root', opts.podmanRoot] : []), ...(opts.podmanRunroot ? ['--runroot', opts.podmanRunroot] : [])];
        // Loaded here, not at the top: every verb that lists images (and the server's command door, which
        // runs them) would otherwise carry execa's ~2.6 MiB of heap for a push that may never come.
        const { execa } = await import('execa');
        const podman = async (args: string[]) => (await execa('podman', [...podmanArgs, ...args], { env: ctx.io.env, extendEnv: false, stdin: 'ignore' })).stdout;
        const resolved: string[] = [];
        for (const i of images) resolved.push((await resolvePodmanName(podman, i)) ?? i);
        names.push(...resolved.filter((r) => !/^[0-9a-f]{12,64}$/.test(r)));
        dir = await mkdtemp(join(ctx.io.env.TMPDIR || tmpdir(), 'drover-image-push-'));
        file = join(dir, 'images.tar');
        ctx.io.stderr(`saving ${resolved.join(' ')} from podman\n`);
        try {
          await podman(['save', '--format', opts.format ?? 'docker-archive', ...(resolved.length > 1 && (opts.format ?? 'docker-archive') === 'docker-archive' ? ['--multi-image-archive'] : []), '-o', file, ...resolved]);
        } catch (err) {
          throw new CliError(`podman save failed: ${errorMessage(err).split('\n').filter(Boolean).at(-1)}`, { cause: err });
        }
      }
      // Every push goes in pieces: one path to keep right, and any push survives a dropped link. An older
      // server without the upload routes gets the archive in one request, as before.
      const { status, manifest } = (await pushInPieces(ctx, cmd, file, names, opts.format, pieceBytes, opts.uploadId)) ?? (await upload(ctx, cmd, file, names, opts.format));
      ctx.io.stdout(`${manifest.digest} ${humanBytes(manifest.size)} ${manifest.names.join(',')} ${status === 201 ? 'pushed' : 'already stored'}\n`);
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  addConnectionOptions(
    image
      .command('ls')
      .alias('list')
      .description('List the images the server keeps: names, digest, size, the nodes that have loaded each')
      .option('-o, --output <format>', 'json | yaml')
      .option('--no-headers', 'print no header row'),
  ).action(async (opts: { output?: string; headers?: boolean }, cmd: Command) => {
    await getImages(ctx, ctx.client(cmd), [], opts);
  });

  addConnectionOptions(
    image
      .command('rm')
      .alias('remove')
      .description("Remove images from the server's image store (by name, digest, or the digest prefix `image ls` shows); nodes keep what they loaded")
      .argument('<images...>', 'image names or digests'),
  ).action(async (args: string[], _opts: unknown, cmd: Command) => {
    const client = ctx.client(cmd);
    let listed: ImageInfo[] | undefined;
    await eachObject(args, async (arg) => {
      let removed: ImageManifest;
      if (FULL_DIGEST.test(arg)) removed = (await client.json<ImageManifest>('DELETE', imagePath(arg))).body;
      else {
        const hex = DIGEST_PREFIX.exec(arg)?.[1];
        listed ??= hex ? (await client.get<{ items: ImageInfo[] }>(IMAGES_PATH)).items : undefined;
        const byDigest = hex ? (listed ?? []).filter((i) => i.digest.slice('sha256:'.length).startsWith(hex)) : [];
        if (byDigest.length > 1) throw new CliError(`digest prefix ${arg} names ${byDigest.length} images: give more digits`);
        removed = byDigest.length === 1 ? (await client.json<ImageManifest>('DELETE', imagePath(byDigest[0]!.digest))).body : (await client.json<ImageManifest>('DELETE', IMAGES_PATH, { query: { name: arg } })).body;
      }
      ctx.io.stdout(`image ${removed.digest} (${removed.names.join(',')}) removed\n`);
    });
  });

  return image;
}
