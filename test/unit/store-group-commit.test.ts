/**
 * Group commit in the LevelDB store: concurrent writes share synced batches, yet each one is decided
 * in order against the writes before it (also those not yet on disk), acknowledged only once durable,
 * and seen by watchers exactly once, in revision order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelStore } from '../../server/store/level.js';
import type { WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { AlreadyExistsError, ConflictError } from '../../src/util/errors.js';

async function withStore(t: { after(fn: () => Promise<void>): void }): Promise<{ store: LevelStore; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-group-'));
  const path = join(dir, 'db');
  const store = await LevelStore.open({ path });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, path };
}

const pod = (name: string, labels?: Record<string, string>): ApiObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', ...(labels ? { labels } : {}) },
  spec: { containers: [{ name: 'c', image: 'nginx' }] },
});

test('50 concurrent creates: all acknowledged with distinct increasing revisions in call order; a watch sees each once, in order', async (t) => {
  const { store } = await withStore(t);
  const seen: WatchEvent[] = [];
  const w = store.watch(0, (e) => seen.push(e));
  t.after(() => w.close());
  const acked: number[] = [];
  const creates = Array.from({ length: 50 }, (_, i) =>
    store.create(pod(`p${i}`)).then((o) => {
      // Acknowledged means durable and published: the revision counter and the watch are already there.
      assert.ok(store.revision() >= Number(o.metadata.resourceVersion), `revision() ${store.revision()} behind an acknowledged write ${o.metadata.resourceVersion}`);
      assert.ok(seen.some((e) => e.revision === Number(o.metadata.resourceVersion)), `write ${o.metadata.resourceVersion} acknowledged before its watch event`);
      acked.push(Number(o.metadata.resourceVersion));
      return o;
    }),
  );
  const results = await Promise.all(creates);
  assert.deepEqual(results.map((o) => o.metadata.resourceVersion), Array.from({ length: 50 }, (_, i) => String(i + 1)), 'revisions follow the order the writes were made');
  assert.deepEqual([...acked].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.deepEqual(seen.map((e) => e.revision), Array.from({ length: 50 }, (_, i) => i + 1), 'each revision once, in order');
  assert.deepEqual(seen.map((e) => e.object.metadata.name), Array.from({ length: 50 }, (_, i) => `p${i}`));
  const { items, revision } = await store.list('Pod');
  assert.equal(revision, 50);
  assert.equal(items.length, 50);
});

test('writes in flight together are decided against each other: a stale resourceVersion fails only that write', async (t) => {
  const { store } = await withStore(t);
  const v1 = await store.create(pod('web'));
  const results = await Promise.allSettled([
    store.update({ ...v1, metadata: { ...v1.metadata, labels: { first: 'yes' } } }),
    // Same resourceVersion as the update above, which is decided (not yet durable) when this one is.
    store.update({ ...v1, metadata: { ...v1.metadata, labels: { stale: 'yes' } } }),
    store.patch('Pod', 'default', 'web', (o) => ({ ...o, metadata: { ...o.metadata, annotations: { patched: 'yes' } } })),
    store.create(pod('web')),
    store.create(pod('other')),
    store.delete('Pod', 'default', 'other'),
    store.create(pod('other', { again: 'yes' })),
  ]);
  const [first, stale, patched, dup, other, deleted, recreated] = results;
  assert.equal(first.status, 'fulfilled');
  assert.ok(stale.status === 'rejected' && stale.reason instanceof ConflictError, 'the stale update conflicts');
  assert.match((stale as PromiseRejectedResult).reason.message, /resourceVersion 1 is stale, current is 2/);
  assert.ok(dup.status === 'rejected' && dup.reason instanceof AlreadyExistsError);
  const revs = [first, patched, other, deleted, recreated].map((r) => {
    assert.equal(r.status, 'fulfilled', r.status === 'rejected' ? String(r.reason) : '');
    return Number((r as PromiseFulfilledResult<ApiObject>).value.metadata.resourceVersion);
  });
  assert.deepEqual(revs, [2, 3, 4, 5, 6], 'refused writes take no revision; the others follow call order');
  const web = (await store.get('Pod', 'default', 'web'))!;
  assert.deepEqual(web.metadata.labels, { first: 'yes' }, 'the stale write did not land');
  assert.deepEqual(web.metadata.annotations, { patched: 'yes' }, 'the patch saw the update decided before it');
  assert.equal(web.metadata.resourceVersion, '3');
  assert.deepEqual((await store.get('Pod', 'default', 'other'))!.metadata.labels, { again: 'yes' }, 'create after a delete in flight');
  assert.equal(store.revision(), 6);
});

test('a read right after an acknowledged write sees it, while other writes are still in flight', async (t) => {
  const { store } = await withStore(t);
  await store.create({ ...pod('counter'), metadata: { name: 'counter', namespace: 'default', annotations: { n: '0' } } });
  const bump = (o: ApiObject): ApiObject => ({ ...o, metadata: { ...o.metadata, annotations: { n: String(Number(o.metadata.annotations!.n) + 1) } } });
  const checks = Array.from({ length: 30 }, async (_, i) => {
    const written = i % 2 ? await store.patch('Pod', 'default', 'counter', bump) : await store.create(pod(`x${i}`));
    const mine = Number(written!.metadata.resourceVersion);
    const read = await store.get('Pod', 'default', written!.metadata.name);
    assert.ok(read && Number(read.metadata.resourceVersion) >= mine, `get after the ack of revision ${mine} returned ${read?.metadata.resourceVersion}`);
    const listed = await store.list('Pod');
    assert.ok(listed.revision >= mine, `list revision ${listed.revision} behind acknowledged ${mine}`);
  });
  await Promise.all(checks);
  assert.equal((await store.get('Pod', 'default', 'counter'))!.metadata.annotations!.n, '15');
});

test('concurrent writes survive close and reopen exactly as acknowledged', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-group-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  const first = await LevelStore.open({ path });
  const acked = await Promise.all(Array.from({ length: 200 }, (_, i) => first.create(pod(`p${i}`, { i: String(i) }))));
  await Promise.all(acked.slice(0, 50).map((o) => first.delete('Pod', 'default', o.metadata.name)));
  await first.close();
  const second = await LevelStore.open({ path });
  t.after(() => second.close());
  assert.equal(second.revision(), 250);
  const { items } = await second.list('Pod');
  assert.deepEqual(items.map((o) => o.metadata.labels!.i).sort((a, b) => Number(a) - Number(b)), Array.from({ length: 150 }, (_, i) => String(i + 50)));
  const next = await second.create(pod('after'));
  assert.equal(next.metadata.resourceVersion, '251');
});

test('list of a namespace emptied by concurrent deletes is empty at the current revision, also after reopen', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-group-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  const first = await LevelStore.open({ path });
  const inGone = (name: string): ApiObject => ({ ...pod(name), metadata: { name, namespace: 'gone' } });
  await Promise.all([...['a', 'b', 'c'].map((n) => first.create(inGone(n))), first.create(pod('stays'))]);
  assert.deepEqual((await first.list('Pod', 'gone')).items.map((o) => o.metadata.name), ['a', 'b', 'c']);
  await Promise.all(['a', 'b', 'c'].map((n) => first.delete('Pod', 'gone', n)));
  assert.deepEqual(await first.list('Pod', 'gone'), { items: [], revision: 7 });
  assert.deepEqual((await first.list('Pod')).items.map((o) => o.metadata.name), ['stays']);
  await first.close();
  const second = await LevelStore.open({ path });
  t.after(() => second.close());
  assert.deepEqual(await second.list('Pod', 'gone'), { items: [], revision: 7 });
  await Promise.all([second.create(inGone('d')), second.delete('Pod', 'default', 'stays')]);
  assert.deepEqual((await second.list('Pod', 'gone')).items.map((o) => o.metadata.name), ['d']);
  assert.deepEqual(await second.list('Pod', 'default'), { items: [], revision: 9 });
});
