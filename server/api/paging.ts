/**
 * List pages as Kubernetes hands them out (`?limit=N&continue=TOKEN`): items in namespace/name order,
 * a page ends with an opaque token that names the last item given, and the next page starts after it.
 * Unlike Kubernetes (which serves every page from the snapshot of the first), a page is cut from the
 * list as it is now: an object created or deleted meanwhile shows up or not depending on where its
 * name sorts, and no object is given twice or skipped when nothing changes.
 */
import type { ApiObject } from '../../src/api/meta.js';
import { BadRequestError } from '../../src/util/errors.js';

/** What a continue token carries: the store revision of the first page, and the key of the last item given. */
interface ContinueToken {
  rv: number;
  after: [string, string];
}

export interface Page<T> {
  items: T[];
  /** Present when more items follow: pass it back as `continue`. */
  continue?: string;
  /** How many items follow this page. */
  remainingItemCount?: number;
}

/** Largest page a client may ask for (Kubernetes has none; this keeps one answer bounded). */
export const MAX_LIMIT = 10_000;

function key(o: ApiObject): [string, string] {
  return [o.metadata.namespace ?? '', o.metadata.name];
}

function compare(a: [string, string], b: [string, string]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

export function encodeContinue(t: ContinueToken): string {
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
}

/** The token back, or a BadRequestError naming `continue` (never an exception from inside JSON.parse). */
export function decodeContinue(token: string): ContinueToken {
  const bad = (why: string, cause?: unknown) => new BadRequestError(`continue: not a continue token this server gave out (${why}); start again without continue`, cause);
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(token)) throw bad('not base64url');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch (err) {
    throw bad('not JSON', err);
  }
  const t = v as Partial<ContinueToken> | null;
  if (!t || typeof t !== 'object' || !Number.isInteger(t.rv) || !Array.isArray(t.after) || t.after.length !== 2 || !t.after.every((s) => typeof s === 'string')) {
    throw bad('wrong shape');
  }
  return { rv: t.rv!, after: [t.after[0], t.after[1]] as [string, string] };
}

/** `limit` as given: absent or empty is no limit; otherwise a whole number from 1 to MAX_LIMIT (400 naming `limit`). */
export function parseLimit(raw: string | null | undefined): number | undefined {
  if (raw === undefined || raw === null || raw === '') return undefined;
  const n = Number(raw);
  // Kubernetes treats limit=0 as no limit.
  if (raw.trim() === '0') return undefined;
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < 1 || n > MAX_LIMIT) throw new BadRequestError(`limit: must be a whole number from 1 to ${MAX_LIMIT}, got "${raw}"`);
  return n;
}

/**
 * One page of `items` (filtered already; sorted here by namespace/name). Without a limit every item
 * after the continue point is returned and no token is given.
 */
export function paginate<T extends ApiObject>(items: T[], q: { limit?: string | null; continue?: string | null }, revision: number): Page<T> {
  const limit = parseLimit(q.limit);
  const token = q.continue ? decodeContinue(q.continue) : undefined;
  // The store lists in this order already: checking costs one pass, sorting 10,000 again more.
  const inOrder = items.every((o, i) => i === 0 || compare(key(items[i - 1]!), key(o)) < 0);
  const sorted = inOrder ? items : [...items].sort((a, b) => compare(key(a), key(b)));
  let start = 0;
  if (token) {
    // First item after the last one given (binary search: the list is sorted).
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compare(key(sorted[mid]!), token.after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  if (limit === undefined || start + limit >= sorted.length) return { items: sorted.slice(start) };
  const page = sorted.slice(start, start + limit);
  const last = page[page.length - 1]!;
  return {
    items: page,
    continue: encodeContinue({ rv: token?.rv ?? revision, after: key(last) }),
    remainingItemCount: sorted.length - start - limit,
  };
}
