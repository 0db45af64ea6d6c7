import type { IncomingMessage, ServerResponse } from 'node:http';
import { BadRequestError, DroverError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { assertJsonDepth } from './path.js';

/** Largest request body accepted; a manifest is a few KiB. */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;

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
export function sendError(res: ServerResponse, err: unknown): void {
  const e = err instanceof DroverError ? err : new DroverError(err instanceof Error ? err.message : String(err), { cause: err });
  sendJson(res, e.code, {
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    message: e.message,
    reason: e.reason,
    code: e.code,
    ...(err instanceof ValidationError ? { details: { causes: err.causes } } : {}),
  });
}

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BadRequestError(`request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`request body is not valid JSON: ${errorMessage(err)}`, err);
  }
  assertJsonDepth(body);
  return body;
}
