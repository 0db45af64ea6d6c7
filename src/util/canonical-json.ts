/**
 * The one canonical JSON: object keys sorted at every level, undefined members dropped, so that key
 * order never changes a hash or an equality check. safe-stable-stringify (already in the tree through
 * pino) rather than a hand-written one; its output equals JSON.stringify of a key-sorted copy, so the
 * hashes written by earlier versions (container spec-hash labels, ReplicaSet names) stay the same.
 */
import { configure } from 'safe-stable-stringify';

const stringify = configure({ deterministic: true, circularValue: TypeError, bigint: false });

export function canonicalJson(value: unknown): string {
  return stringify(value) ?? 'null';
}

/**
 * Deep equality of JSON-like values, ignoring key order and undefined members: canonicalJson(a) ===
 * canonicalJson(b), without building either string. The store asks it of every update (has the spec changed?)
 * and the controllers of every status they write; the two strings were a twentieth of what a placement allocated.
 * Anything JSON would write in a way of its own (a toJSON, a number that is not finite) is compared as JSON.
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (plainScalar(a) && plainScalar(b)) return false;
  if (!isContainer(a) || !isContainer(b)) return canonicalJson(a) === canonicalJson(b);
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    // JSON writes a member it drops from an object as null in an array.
    for (let i = 0; i < a.length; i++) if (!jsonEqual(dropped(a[i]) ? null : a[i], dropped(b[i]) ? null : b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let members = 0;
  for (const k in x) {
    if (!isMember(x, k) || dropped(x[k])) continue;
    members++;
    if (!isMember(y, k) || !jsonEqual(x[k], y[k])) return false;
  }
  for (const k in y) if (isMember(y, k) && !dropped(y[k])) members--;
  return members === 0;
}

/** A value JSON writes as itself, so two of them that are not === differ. */
function plainScalar(v: unknown): boolean {
  return typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/** An object or an array JSON writes member by member (no toJSON of its own). */
function isContainer(v: unknown): v is object {
  return typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
}

/** A member JSON leaves out of an object (a bigint too: canonicalJson is configured to). */
function dropped(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint';
}

/** A member JSON writes: own and enumerable. */
function isMember(o: object, k: string): boolean {
  return Object.prototype.propertyIsEnumerable.call(o, k);
}
