import { BadRequestError } from '../../src/util/errors.js';

/**
 * The segments of a request path, each decoded on its own after splitting. WHATWG URL parsing would
 * resolve `%2e%2e` to `..` and climb a level (`DELETE .../configmaps/%2e%2e` became a DELETE of the
 * namespace), and decoding before splitting would let `%2F` invent a segment: both are refused here,
 * as is a malformed escape, with a 400 that names the segment.
 */
export function pathSegments(rawUrl: string): string[] {
  const raw = rawUrl.split(/[?#]/, 1)[0] ?? '/';
  return raw
    .split('/')
    .filter(Boolean)
    .map((seg) => {
      let decoded: string;
      try {
        decoded = decodeURIComponent(seg);
      } catch (err) {
        throw new BadRequestError(`malformed escape in path segment "${seg.slice(0, 64)}"`, err);
      }
      if (decoded === '.' || decoded === '..' || decoded.includes('/')) {
        throw new BadRequestError(`path segment "${seg.slice(0, 64)}" is not allowed: it names no object`);
      }
      return decoded;
    });
}

/** Deepest nesting a request body may have: far beyond any manifest, far below the stack's limit. */
export const MAX_JSON_DEPTH = 64;

/** Refuses a parsed body nested deeper than MAX_JSON_DEPTH (iterative: a hostile body cannot overflow the stack here). */
export function assertJsonDepth(value: unknown, max = MAX_JSON_DEPTH): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max) throw new BadRequestError(`request body is nested more than ${max} levels deep`);
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
}
