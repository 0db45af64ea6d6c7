/**
 * LevelStore's own behaviour: background compaction of its change log, and its data dir lock. What
 * every store does (create/update/patch/delete, watch, compaction through compact(), reopen) is the
 * contract suite's, run against LevelStore and EtcdStore alike: test/integration/store-contract.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring } from '../../server/secrets/keyring.js';
import { storePath } from '../../server/secrets/rotate.js';
import { objectKey } from '../../server/store/keys.js';
import { LevelStore } from '../../server/store/level.js';
import type { WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { GoneError, StoreError } from '../../src/util/errors.js';
import { assertConsecutive, collect } from '../helpers/store-watch.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'drover-store-'));
}

/** Opens a store in a fresh temp dir and removes it after the test. */
async function withStore(t: { after(fn: () => Promise<void>): void }, opts: { compactKeep?: number } = {}): Promise<{ store: LevelStore; dir: string }> {
  const dir = await tempDir();
  const store = await LevelStore.open({ path: join(dir, 'db'), ...opts });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, dir };
}

function pod(name: string, namespace = 'default', spec: unknown = { containers: [{ name: 'c', image: 'nginx' }] }): ApiObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec };
}

test('compaction keeps the last compactKeep log entries; watching from a compacted revision is GoneError', async (t) => {
  const { store } = await withStore(t, { compactKeep: 10 });
  for (let i = 0; i < 30; i++) await store.create(pod(`p${i}`));
  // Background compaction runs once the log is keep 10 + slack 16 long (at revision 26) and trims it
  // to 10; it is queued on the writer, so the next write finds it done.
  await store.create(pod('trigger'));
  assert.equal(store.compactedRevision(), 16);

  await store.compact();
  assert.equal(store.compactedRevision(), 21);
  assert.throws(() => store.watch(0, () => {}), (err: unknown) => err instanceof GoneError && err.code === 410);
  assert.throws(() => store.watch(20, () => {}), GoneError);

  const events = await collect(store, 21, (es) => es.length === 10);
  assertConsecutive(events, 22, 31);

  // Objects are untouched by compaction.
  assert.equal((await store.list('Pod')).items.length, 31);
});

test('opening a data dir that is already open fails with a clear message', async (t) => {
  const { dir } = await withStore(t);
  await assert.rejects(LevelStore.open({ path: join(dir, 'db') }), (err: unknown) => err instanceof StoreError && /data dir .* is in use/.test(err.message));
});

test('a watch event, its change-log entry replayed and a read give the same object; the watch gets it frozen', async (t) => {
  const { store } = await withStore(t);
  const live: WatchEvent[] = [];
  const w = store.watch(store.revision(), (e) => live.push(e));
  t.after(() => w.close());
  // A property set to undefined is not stored (JSON): no reader may see it, the watch included.
  const obj = pod('p');
  obj.metadata.labels = undefined;
  await store.create(obj);
  await store.patch('Pod', 'default', 'p', (cur) => ({ ...cur, metadata: { ...cur.metadata, labels: { v: '2' } } }));
  const read = await store.get('Pod', 'default', 'p');
  await store.delete('Pod', 'default', 'p');
  while (live.length < 3) await new Promise((r) => setTimeout(r, 5));

  assert.ok(!('labels' in live[0]!.object.metadata), 'the ADDED event has no labels key');
  assert.deepStrictEqual(live[1]!.object, read);
  assert.ok(Object.isFrozen(live[1]!.object) && Object.isFrozen(live[1]!.object.metadata.labels));
  const replayed = await collect(store, 0, (es) => es.length === 3);
  assert.deepStrictEqual(
    replayed.map((e) => ({ type: e.type, revision: e.revision, object: e.object })),
    live.map((e) => ({ type: e.type, revision: e.revision, object: e.object })),
  );
});

test('an update decides on the durable object: after a restore, a patch reads the restored one, not the last one written', async (t) => {
  const { store } = await withStore(t);
  // A watch of Pods, as the server always has: the store keeps the copy it hands the watch for the writer.
  const w = store.watch(store.revision(), () => {});
  t.after(() => w.close());
  const created = await store.create({ ...pod('p'), metadata: { name: 'p', namespace: 'default', labels: { v: '1' } } });
  await store.patch('Pod', 'default', 'p', (cur) => {
    cur.metadata.labels = { v: '2' };
    return cur;
  });
  const seen: string[] = [];
  const bump = (cur: ApiObject) => {
    seen.push(cur.metadata.labels?.v ?? '');
    cur.metadata.labels = { v: String(Number(cur.metadata.labels?.v) + 10) };
    return cur;
  };
  await store.patch('Pod', 'default', 'p', bump);

  const restored = { ...created, metadata: { ...created.metadata, labels: { v: '0' }, resourceVersion: '7' } };
  await store.replaceObjects([{ key: objectKey('Pod', 'default', 'p'), value: restored }], 7);
  await store.patch('Pod', 'default', 'p', bump);
  assert.deepEqual(seen, ['2', '0']);
  assert.equal((await store.get('Pod', 'default', 'p'))?.metadata.labels?.v, '10');

  // A delete forgets the kept copy: a create of the same name is not refused.
  await store.delete('Pod', 'default', 'p');
  await store.create(pod('p'));
  await assert.rejects(store.create(pod('p')), /already exists/);
});

test('an encrypted Secret deleted while its update is being written: the DELETED event holds what was stored, whatever the update\'s caller does to its result', async (t) => {
  const dir = await tempDir();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await LevelStore.open({ path: storePath(dir), secrets: await Keyring.loadOrCreate(dir) });
  t.after(() => store.close());
  const live: WatchEvent[] = [];
  const w = store.watch(store.revision(), (e) => live.push(e));
  t.after(() => w.close());
  const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'default' }, type: 'Opaque', data: { password: 'b2xk' } } as ApiObject;
  const cur = await store.create(secret);
  // The delete is decided on the update's result before that is durable (and handed to its caller).
  const update = store.update({ ...cur, data: { password: 'bmV3' } } as ApiObject).then((r) => {
    (r as unknown as { data: Record<string, string> }).data.password = 'changed-by-the-caller';
  });
  await Promise.all([update, store.delete('Secret', 'default', 's')]);
  const deleted = live.find((e) => e.type === 'DELETED')!;
  const replayed = await collect(store, 0, (es) => es.length === 3);
  assert.deepEqual((deleted.object as unknown as { data: unknown }).data, { password: 'bmV3' });
  assert.deepStrictEqual(deleted.object, replayed[2]!.object);
});

test('after a write reported failed (the batch reached LevelDB, its fsync failed), the writer decides on what LevelDB holds, as readers see it', async (t) => {
  const { store } = await withStore(t);
  const w = store.watch(store.revision(), () => {});
  t.after(() => w.close());
  const created = await store.create({ ...pod('p'), metadata: { name: 'p', namespace: 'default', labels: { v: '1' } } });
  // An fsync that fails after LevelDB took the batch: LevelDB's own log replays it when the store reopens.
  const db = (store as unknown as { db: { batch: (ops: unknown, o: unknown) => Promise<void> } }).db;
  const batch = db.batch.bind(db);
  let fail = true;
  db.batch = async (ops, o) => {
    await batch(ops, o);
    if (fail) {
      fail = false;
      throw new Error('EIO: fsync failed');
    }
  };
  await assert.rejects(store.update({ ...created, metadata: { ...created.metadata, labels: { v: '2' } } }), /EIO/);
  const read = await store.get('Pod', 'default', 'p');
  let decidedOn: string | undefined;
  await store.patch('Pod', 'default', 'p', (cur) => {
    decidedOn = cur.metadata.labels?.v;
    return undefined;
  });
  assert.equal(decidedOn, read?.metadata.labels?.v);
});

test('the objects the writer keeps are bounded by their size, whatever the kind, and Events are not kept', async (t) => {
  const { store } = await withStore(t);
  const w = store.watch(store.revision(), () => {});
  t.after(() => w.close());
  const big = 'x'.repeat(100 * 1024);
  for (let i = 0; i < 120; i++) await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `c${i}`, namespace: 'default' }, data: { big } } as ApiObject);
  for (let i = 0; i < 50; i++) await store.create({ apiVersion: 'v1', kind: 'Event', metadata: { name: `e${i}`, namespace: 'default' }, reason: 'Test', message: 'm' } as ApiObject);
  const kept = (store as unknown as { recent: Map<string, { object: ApiObject; bytes: number }> }).recent;
  const bytes = [...kept.values()].reduce((n, k) => n + k.bytes, 0);
  // 120 objects of 100 KiB were written: only the last ~8 MiB of them are held.
  assert.ok(bytes <= 8 * 1024 * 1024 && kept.size < 90, `${kept.size} kept, ${bytes} bytes`);
  assert.ok(kept.has(objectKey('ConfigMap', 'default', 'c119')), 'the last written is kept');
  assert.ok(!kept.has(objectKey('ConfigMap', 'default', 'c0')), 'the first written is not');
  assert.ok(![...kept.values()].some((k) => k.object.kind === 'Event'));
});
