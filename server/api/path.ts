import { BadRequestError } from '../../src/util/errors.js';

/** Longest name of any object (a DNS-1123 subdomain). */
export const MAX_NAME_LENGTH = 253;

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** A DNS-1123 subdomain: what every namespace and object name is. */
export function isPathName(s: string): boolean {
  return s.length <= MAX_NAME_LENGTH && DNS1123_SUBDOMAIN.test(s);
}

/**
 * The namespace and name of a Kubernetes-style route, checked once the caller is known to be allowed to ask
 * (authorization first, as Kubernetes): `UPPER`, `a_b`, `<script>`, a control byte or 10,000 characters
 * name no object, so they are a 400 before any store lookup. What is quoted is cut short, and a segment
 * that does not look like a name is described, not quoted (a token pasted into a path must not be echoed).
 */
export function assertObjectNames(r: { namespace?: string; name?: string }): void {
  for (const [what, value] of [['namespace', r.namespace], ['name', r.name]] as const) {
    if (value === undefined || isPathName(value)) continue;
    throw new BadRequestError(
      `the ${what} in the path (${value.length} characters) is not a valid name: at most ${MAX_NAME_LENGTH} lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (DNS-1123)`,
    );
  }
}

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
