/**
 * jsonEqual is canonicalJson(a) === canonicalJson(b) without the strings: checked against that definition on
 * random JSON-like values and their reorderings, edits, and the members JSON writes in ways of its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, jsonEqual } from '../../src/util/canonical-json.js';

/** A small deterministic PRNG, so a failure names a seed that reproduces it. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const ODD: unknown[] = [undefined, null, NaN, Infinity, -0, 0, '', 'a', true, false, () => 1, Symbol('s'), new Date(0), 1.5];

function value(r: () => number, depth: number): unknown {
  const pick = r();
  if (depth <= 0 || pick < 0.35) return ODD[Math.floor(r() * ODD.length)];
  if (pick < 0.6) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 5); i > 0; i--) o[`k${Math.floor(r() * 6)}`] = value(r, depth - 1);
  return o;
}

/** The same value with every object's keys in another order. */
function reordered(v: unknown, r: () => number): unknown {
  if (Array.isArray(v)) return v.map((x) => reordered(x, r));
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    const keys = Object.keys(v).sort(() => r() - 0.5);
    return Object.fromEntries(keys.map((k) => [k, reordered((v as Record<string, unknown>)[k], r)]));
  }
  return v;
}

/** One change somewhere in the value (or the same value when there is nothing to change). */
function edited(v: unknown, r: () => number): unknown {
  if (Array.isArray(v)) {
    if (v.length === 0 || r() < 0.2) return [...v, value(r, 1)];
    const i = Math.floor(r() * v.length);
    return v.map((x, j) => (j === i ? edited(x, r) : x));
  }
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    const keys = Object.keys(v);
    if (keys.length === 0 || r() < 0.3) return { ...v, [`k${Math.floor(r() * 8)}`]: value(r, 1) };
    const k = keys[Math.floor(r() * keys.length)]!;
    return { ...v, [k]: edited((v as Record<string, unknown>)[k], r) };
  }
  return value(r, 1);
}

test('jsonEqual agrees with comparing canonicalJson on random values, reordered and edited', () => {
  let equal = 0;
  let differ = 0;
  for (let seed = 1; seed <= 3000; seed++) {
    const r = rng(seed);
    const a = value(r, 4);
    for (const b of [reordered(a, r), edited(a, r), edited(reordered(a, r), r), value(r, 4)]) {
      const want = canonicalJson(a) === canonicalJson(b);
      assert.equal(jsonEqual(a, b), want, `seed ${seed}: ${canonicalJson(a)} vs ${canonicalJson(b)}`);
      assert.equal(jsonEqual(b, a), want, `seed ${seed} (swapped)`);
      if (want) equal++;
      else differ++;
    }
  }
  // Both answers were asked for many times (the generator is not degenerate).
  assert.ok(equal > 3000 && differ > 3000, `${equal} equal, ${differ} differ`);
});

test('jsonEqual: what JSON leaves out or writes as null', () => {
  assert.equal(jsonEqual({ a: 1, b: undefined }, { a: 1 }), true, 'an undefined member is absent');
  assert.equal(jsonEqual({ a: undefined }, { a: null }), false, 'absent is not null');
  assert.equal(jsonEqual([undefined], [null]), true, 'in an array, undefined is written null');
  assert.equal(jsonEqual({ x: { b: 2, a: 1 } }, { x: { a: 1, b: 2 } }), true, 'key order');
  assert.equal(jsonEqual([1, 2], [2, 1]), false, 'array order');
  assert.equal(jsonEqual({ 0: 'a' }, ['a']), false, 'an object is not an array');
  assert.equal(jsonEqual(NaN, null), true, 'NaN is written null');
  assert.equal(jsonEqual(new Date(0), '1970-01-01T00:00:00.000Z'), true, 'a Date is written by its toJSON');
  assert.equal(jsonEqual(undefined, null), true, 'canonicalJson(undefined) is "null"');
  const hidden = { b: 2 };
  Object.defineProperty(hidden, 'a', { value: 1, enumerable: false });
  assert.equal(jsonEqual({ a: 1, b: 2 }, hidden), false, 'a member JSON does not write (not enumerable) is absent');
  assert.equal(jsonEqual({ a: 1n, b: 1 }, { b: 1 }), true, 'canonicalJson leaves bigints out');
});
