import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ObjectCache, withCachedLists } from '../../server/cache/object-cache.js';
import { LevelStore } from '../../server/store/level.js';
import type { ApiObject } from '../../src/api/meta.js';
import { createLogger } from '../../src/util/logger.js';

const logger = createLogger({ name: 'test', level: 'silent' });

async function withStore(t: { after(fn: () => Promise<void>): void }): Promise<LevelStore> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-cache-'));
  const store = await LevelStore.open({ path: join(dir, 'db') });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

const pod = (name: string, namespace = 'default'): ApiObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { containers: [{ name: 'c', image: 'nginx' }] } });

const names = (items: ApiObject[]) => items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`);

test('object cache: lists what the store lists, and every acknowledged write at once (read your writes)', async (t) => {
  const store = await withStore(t);
  await store.create(pod('b'));
  await store.create(pod('a', 'other'));
  const cache = await ObjectCache.start(store, ['Pod'], logger);
  t.after(() => cache.close());
  const cached = withCachedLists(store, cache);
  assert.deepEqual(names((await cached.list('Pod')).items), names((await store.list('Pod')).items));

  // Written through the store, listed from the cache right after the write resolved: no wait, no poll.
  const created = await store.create(pod('c'));
  const afterCreate = await cached.list('Pod', 'default');
  assert.deepEqual(names(afterCreate.items), ['default/b', 'default/c']);
  assert.equal(afterCreate.revision, store.revision());
  assert.equal(afterCreate.items[1]!.metadata.resourceVersion, created.metadata.resourceVersion);

  await store.patch('Pod', 'default', 'c', (p) => ({ ...p, metadata: { ...p.metadata, labels: { x: '1' } } }));
  assert.deepEqual((await cached.list('Pod', 'default')).items[1]!.metadata.labels, { x: '1' });
  await store.delete('Pod', 'default', 'b');
  assert.deepEqual(names((await cached.list('Pod')).items), ['default/c', 'other/a']);
  // Kinds it does not hold go to the store.
  await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm', namespace: 'default' }, data: {} } as ApiObject);
  assert.deepEqual(names((await cached.list('ConfigMap')).items), ['default/cm']);
});

test('object cache: cached objects are frozen, so a reader that changes one fails loudly instead of changing every reader\'s copy', async (t) => {
  const store = await withStore(t);
  await store.create(pod('a'));
  const cache = await ObjectCache.start(store, ['Pod'], logger);
  t.after(() => cache.close());
  const [p] = cache.list('Pod').items;
  assert.throws(() => {
    (p!.metadata as { labels?: Record<string, string> }).labels = { changed: 'yes' };
  }, TypeError);
  assert.throws(() => {
    (p as unknown as { spec: { containers: Array<{ image: string }> } }).spec.containers[0]!.image = 'evil';
  }, TypeError);
  assert.equal((await store.get('Pod', 'default', 'a'))!.metadata.labels, undefined);
  assert.equal(cache.list('Pod').items[0]!.metadata.labels, undefined);
});

test('object cache: writes that land while it starts are neither lost nor applied twice', async (t) => {
  const store = await withStore(t);
  for (let i = 0; i < 200; i++) await store.create(pod(`p${String(i).padStart(3, '0')}`));
  // Writes in flight while the cache lists: creates, then deletes of some of them.
  const writes = (async () => {
    for (let i = 200; i < 260; i++) await store.create(pod(`p${i}`));
    for (let i = 0; i < 30; i++) await store.delete('Pod', 'default', `p${String(i).padStart(3, '0')}`);
  })();
  const cache = await ObjectCache.start(store, ['Pod', 'Node'], logger);
  t.after(() => cache.close());
  await writes;
  assert.deepEqual(names(cache.list('Pod').items), names((await store.list('Pod')).items));
  assert.equal(cache.list('Pod').items.length, 230);
});

test('object cache: after any mix of creates, updates and deletes in several namespaces, every list is the store\'s, in its order', async (t) => {
  const store = await withStore(t);
  const cache = await ObjectCache.start(store, ['Pod'], logger);
  t.after(() => cache.close());
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const live = new Set<string>();
  for (let round = 0; round < 30; round++) {
    for (let i = 0; i < 20; i++) {
      const ns = ['a', 'default', 'zz'][rand(3)]!;
      const name = `p${rand(40)}`;
      const key = `${ns}/${name}`;
      if (!live.has(key)) {
        await store.create(pod(name, ns));
        live.add(key);
      } else if (rand(2) === 0) {
        await store.delete('Pod', ns, name);
        live.delete(key);
      } else {
        await store.patch('Pod', ns, name, (p) => ({ ...p, metadata: { ...p.metadata, labels: { round: String(round) } } }));
      }
    }
    // Listing between rounds makes the per-namespace lists that later changes must keep right.
    assert.deepEqual(names(cache.list('Pod').items), names((await store.list('Pod')).items), `all namespaces, round ${round}`);
    for (const ns of ['a', 'default', 'zz', 'none']) {
      assert.deepEqual(names(cache.list('Pod', ns).items), names((await store.list('Pod', ns)).items), `namespace ${ns}, round ${round}`);
    }
  }
  const labels = cache.list('Pod').items.map((p) => p.metadata.labels?.round);
  const stored = (await store.list('Pod')).items.map((p) => p.metadata.labels?.round);
  assert.deepEqual(labels, stored, 'each listed object is its latest version');
});
