import type { IncomingMessage } from 'node:http';
import { MAX_BODY_BYTES, PayloadTooLargeError } from './respond.js';

/**
 * A request body as text, whatever its Content-Type (PATCH bodies are merge-patch+json, json-patch+json,
 * apply-patch+yaml), at most MAX_BODY_BYTES: refused from Content-Length before reading when it says so,
 * otherwise once the limit is passed; the rest is read and dropped so the client still gets its 413.
 */
export async function readBodyText(req: IncomingMessage): Promise<string> {
  return (await readBody(req)).toString('utf8');
}

/** The body as bytes (protobuf DeleteOptions), with the same limit. */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY_BYTES) {
    req.on('error', () => undefined);
    req.resume();
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
