import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { paginate } from '../../server/api/paging.js';

const obj = (namespace: string, name: string): ApiObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace, name } });

test('pages walk the whole list once, in namespace/name order, whatever order the items came in', () => {
  const items = [obj('b', 'x'), obj('a', 'z'), obj('a', 'b'), obj('b', 'a'), obj('a', 'm')];
  const seen: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const p = paginate(items, { limit: '2', continue: token }, 42);
    seen.push(...p.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`));
    if (p.continue) assert.equal(p.remainingItemCount, items.length - seen.length);
    token = p.continue;
    pages++;
  } while (token);
  assert.deepEqual(seen, ['a/b', 'a/m', 'a/z', 'b/a', 'b/x']);
  assert.equal(pages, 3);
});

test('an object deleted between pages does not make the next page skip or repeat one', () => {
  const items = ['n1', 'n2', 'n3', 'n4'].map((n) => obj('', n));
  const first = paginate(items, { limit: '2' }, 1);
  const rest = paginate(items.filter((o) => o.metadata.name !== 'n2'), { limit: '2', continue: first.continue }, 2);
  assert.deepEqual(rest.items.map((o) => o.metadata.name), ['n3', 'n4']);
  assert.equal(rest.continue, undefined);
});

test('no limit: everything, no token; limit 0 means no limit as in Kubernetes', () => {
  const items = [obj('', 'b'), obj('', 'a')];
  assert.deepEqual(paginate(items, {}, 1), { items: [items[1], items[0]] });
  assert.equal(paginate(items, { limit: '0' }, 1).continue, undefined);
});

test('a forged, truncated or non-JSON continue token is a 400 naming continue; a bad limit names limit', () => {
  const items = [obj('', 'a')];
  for (const bad of ['%%%', Buffer.from('not json').toString('base64url'), Buffer.from('{"rv":1}').toString('base64url'), Buffer.from('{"rv":1,"after":[1,2]}').toString('base64url')]) {
    assert.throws(() => paginate(items, { limit: '1', continue: bad }, 1), (e: Error & { code?: number }) => e.code === 400 && /^continue: /.test(e.message));
  }
  for (const bad of ['-1', 'abc', '1.5', '99999999']) {
    assert.throws(() => paginate(items, { limit: bad }, 1), (e: Error & { code?: number }) => e.code === 400 && /^limit: /.test(e.message));
  }
});
