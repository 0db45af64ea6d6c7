/**
 * deepCopy stands in for structuredClone on the objects the server copies: the same value comes out, nothing of it
 * is shared with the input, and a frozen input (the store's and the object cache's are) gives a copy one may change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deepCopy } from '../../src/util/deep-copy.js';
import { deepFreeze } from '../../src/util/deep-freeze.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const LEAVES: unknown[] = [undefined, null, 0, -1.5, 'x', '', true, false, new Date(86_400_000)];

function value(r: () => number, depth: number): unknown {
  const pick = r();
  if (depth <= 0 || pick < 0.3) return LEAVES[Math.floor(r() * LEAVES.length)];
  if (pick < 0.55) return Array.from({ length: Math.floor(r() * 4) }, () => value(r, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 5); i > 0; i--) o[`k${Math.floor(r() * 6)}`] = value(r, depth - 1);
  return o;
}

/** Every object and array in `a` that is also somewhere in `b` (by identity). */
function shared(a: unknown, b: unknown): unknown[] {
  const inA = new Set<unknown>();
  const walk = (v: unknown, into: (x: unknown) => void) => {
    if (v && typeof v === 'object') {
      into(v);
      for (const x of Object.values(v)) walk(x, into);
    }
  };
  walk(a, (x) => inA.add(x));
  const both: unknown[] = [];
  walk(b, (x) => inA.has(x) && both.push(x));
  return both;
}

test('deepCopy gives what structuredClone gives, shares nothing with its input, and copies frozen input unfrozen', () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const v = value(rng(seed), 5);
    const copy = deepCopy(v);
    assert.deepStrictEqual(copy, structuredClone(v), `seed ${seed}`);
    assert.deepEqual(shared(v, copy), [], `seed ${seed}: the copy shares an object with its input`);
  }
  const pod = deepFreeze({ metadata: { name: 'p', labels: { a: '1' }, annotations: undefined }, spec: { containers: [{ name: 'c', image: 'i' }] } });
  const copy = deepCopy(pod);
  copy.metadata.labels.a = '2';
  copy.spec.containers.push({ name: 'd', image: 'j' });
  assert.equal(pod.metadata.labels.a, '1');
  assert.equal(pod.spec.containers.length, 1);
  assert.ok('annotations' in copy.metadata, 'a member set to undefined is kept, as structuredClone keeps it');
});

test('deepCopy keeps a member named "__proto__" a member (as structuredClone does), never the copy\'s prototype', () => {
  const body = JSON.parse('{"spec":{"__proto__":{"hostNetwork":true},"containers":[]}}') as { spec: Record<string, unknown> };
  const copy = deepCopy(body);
  assert.equal(Object.getPrototypeOf(copy.spec), Object.prototype);
  assert.equal(copy.spec.hostNetwork, undefined, 'nothing is inherited from the member');
  assert.ok(Object.hasOwn(copy.spec, '__proto__'));
  assert.deepStrictEqual(copy, structuredClone(body));
});
