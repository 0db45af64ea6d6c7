import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadRequestError, DroverError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { assertJsonDepth } from './path.js';

/** Largest request body accepted (Kubernetes' limit too); a manifest is a few KiB. */
export const MAX_BODY_BYTES = 3 * 1024 * 1024;

/** 413: the body is over MAX_BODY_BYTES. */
export class PayloadTooLargeError extends DroverError {
  constructor(message: string) {
    super(message, { code: 413, reason: 'RequestEntityTooLarge' });
  }
}

/** 415: the body is not JSON by its Content-Type. */
export class UnsupportedMediaTypeError extends DroverError {
  constructor(message: string) {
    super(message, { code: 415, reason: 'UnsupportedMediaType' });
  }
}

export function sendJson(res: ServerResponse, code: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendText(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Errors as Kubernetes `Status` objects, so k8s-minded clients read them as usual. */
/**
 * A Kubernetes Status for a failed call. `about` names the object when the caller knows it: kubectl then
 * words a 422 as Kubernetes does (`The Pod "nginx" is invalid: ...`) instead of "The request is invalid".
 * Causes come from a ValidationError or any error carrying them (server-side apply conflicts).
 */
export function sendError(res: ServerResponse, err: unknown, about?: { kind: string; group?: string; name?: string }): void {
  const e = err instanceof DroverError ? err : new DroverError(err instanceof Error ? err.message : String(err), { cause: err });
  const carried = (err as { causes?: unknown } | null)?.causes;
  const causes = err instanceof ValidationError ? err.causes : Array.isArray(carried) ? carried : undefined;
  const details = {
    ...(about?.name ? { name: about.name } : {}),
    ...(about?.group ? { group: about.group } : {}),
    ...(about ? { kind: about.kind } : {}),
    ...(causes ? { causes } : {}),
  };
  sendJson(res, e.code, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: e.message,
    reason: e.reason,
    code: e.code,
    ...(Object.keys(details).length ? { details } : {}),
  });
}

/**
 * The request body as JSON: the Content-Type must be JSON (or absent), the size at most MAX_BODY_BYTES
 * (413, refused from Content-Length before reading when it says so), the nesting at most MAX_JSON_DEPTH,
 * and no object may name a key twice (JSON.parse would keep the last silently; the YAML parser refuses it).
 */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  try {
    assertJsonContentType(req.headers['content-type']);
  } catch (err) {
    discard(req);
    throw err;
  }
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY_BYTES) {
    discard(req);
    throw new PayloadTooLargeError(`request body of ${declared} bytes is larger than ${MAX_BODY_BYTES} bytes`);
  }
  const text = await readBodyText(req);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`request body is not valid JSON: ${errorMessage(err)}`, err);
  }
  assertJsonDepth(body);
  const dup = duplicateKey(text);
  if (dup) {
    const field = `${dup.path.replace(/^\$\.?/, '')}${dup.path === '$' ? '' : '.'}${dup.key}`.slice(0, 256);
    throw new BadRequestError(`request body is not valid: duplicate key ${JSON.stringify(field)} (each key may appear once in an object)`);
  }
  return body;
}

/**
 * A request body as bytes, whatever its Content-Type (PATCH bodies, protobuf DeleteOptions), at most
 * MAX_BODY_BYTES: refused from Content-Length before reading when it says so, otherwise once the limit is
 * passed. Past that, the rest is read and dropped, not kept (destroying the request would reset the
 * connection before the client sees its 413).
 */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY_BYTES) {
    discard(req);
    return Promise.reject(new PayloadTooLargeError(`request body of ${declared} bytes is larger than ${MAX_BODY_BYTES} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        over = true;
        chunks.length = 0;
        reject(new PayloadTooLargeError(`request body larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** readBody as UTF-8 text. */
export async function readBodyText(req: IncomingMessage): Promise<string> {
  return (await readBody(req)).toString('utf8');
}

/** Reads and drops what is left of a refused body. */
function discard(req: IncomingMessage): void {
  req.on('error', () => undefined);
  req.resume();
}

const JSON_MEDIA = /^application\/(?:[a-z0-9.+-]+\+)?json$/;

/** JSON (application/json, application/merge-patch+json, ...), or no Content-Type at all (curl -d sends one, kubectl JSON). */
function assertJsonContentType(header: string | undefined): void {
  if (header === undefined || header.trim() === '') return;
  const media = header.split(';', 1)[0]!.trim().toLowerCase();
  if (!JSON_MEDIA.test(media)) throw new UnsupportedMediaTypeError(`Content-Type ${media.slice(0, 100)} is not supported: send the object as application/json`);
}

/**
 * The first key an object of the (already valid) JSON text names twice, with where: a single pass over the
 * text, iterative, so a hostile body cannot exhaust the stack. Keys are compared decoded ("\u0061" is "a").
 */
export function duplicateKey(text: string): { key: string; path: string } | undefined {
  // One frame per open object or array: the keys seen (objects), and where it is, for the message.
  const frames: Array<{ keys?: Set<string>; path: string; index: number; lastKey?: string }> = [];
  let i = 0;
  const here = () => {
    const f = frames[frames.length - 1];
    if (!f) return '$';
    return f.keys ? `${f.path}.${f.lastKey ?? ''}` : `${f.path}[${f.index}]`;
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = frames[frames.length - 1];
      // A string is a key when it is followed by ':' (in valid JSON only keys are).
      let k = j + 1;
      while (k < text.length && (text[k] === ' ' || text[k] === '\t' || text[k] === '\n' || text[k] === '\r')) k++;
      if (top?.keys && text[k] === ':') {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return { key, path: `${top.path}` };
        top.keys.add(key);
        top.lastKey = key;
      }
      i = j + 1;
      continue;
    }
    if (c === '{') frames.push({ keys: new Set(), path: here(), index: 0 });
    else if (c === '[') frames.push({ path: here(), index: 0 });
    else if (c === '}' || c === ']') frames.pop();
    else if (c === ',') {
      const top = frames[frames.length - 1];
      if (top && !top.keys) top.index++;
    }
    i++;
  }
  return undefined;
}
