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

/** Deep equality of JSON-like values, ignoring key order and undefined members. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
