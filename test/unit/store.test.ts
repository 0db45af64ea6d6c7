import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelStore } from '../../server/store/level.js';
import type { WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { AlreadyExistsError, BadRequestError, ConflictError, GoneError, NotFoundError, StoreError, isAlreadyExists, isConflict, isNotFound } from '../../src/util/errors.js';

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

function node(name: string): ApiObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: {} };
}

/** Collects watch events until `done` says so (or times out, failing with what arrived). */
function collect(
  store: LevelStore,
  from: number,
  done: (events: WatchEvent[]) => boolean,
  opts?: { kinds?: string[] },
): Promise<WatchEvent[]> {
  return new Promise((resolve, reject) => {
    const events: WatchEvent[] = [];
    const timer = setTimeout(() => {
      w.close();
      reject(new Error(`watch timed out with ${events.length} events: ${events.map((e) => e.revision).join(',')}`));
    }, 5000);
    const w = store.watch(
      from,
      (e) => {
        events.push(e);
        if (done(events)) {
          clearTimeout(timer);
          w.close();
          resolve(events);
        }
      },
      opts,
    );
  });
}

function assertConsecutive(events: WatchEvent[], first: number, last: number): void {
  assert.deepEqual(
    events.map((e) => e.revision),
    Array.from({ length: last - first + 1 }, (_, i) => first + i),
  );
}

test('create assigns metadata; get and list return it', async (t) => {
  const { store } = await withStore(t);
  const created = await store.create(pod('web'));
  assert.equal(created.metadata.resourceVersion, '1');
  assert.equal(created.metadata.generation, 1);
  assert.match(created.metadata.uid!, /^[0-9a-f-]{36}$/);
  assert.ok(!Number.isNaN(Date.parse(created.metadata.creationTimestamp!)));

  assert.deepEqual(await store.get('Pod', 'default', 'web'), created);
  assert.equal(await store.get('Pod', 'default', 'nope'), undefined);
  assert.equal(await store.get('Pod', 'other', 'web'), undefined);

  await store.create(pod('web', 'a-b'));
  await store.create(pod('api', 'a'));
  await store.create(pod('db', 'a'));
  await store.create(node('edge-1'));

  const all = await store.list('Pod');
  assert.equal(all.revision, 5);
  // Sorted by namespace then name ('a' before 'a-b' although '-' sorts before '/' in keys).
  assert.deepEqual(all.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`), ['a/api', 'a/db', 'a-b/web', 'default/web']);
  assert.deepEqual((await store.list('Pod', 'a')).items.map((o) => o.metadata.name), ['api', 'db']);
  assert.deepEqual((await store.list('Pod', 'missing')).items, []);
  assert.deepEqual((await store.list('Node')).items.map((o) => o.metadata.name), ['edge-1']);
  assert.deepEqual((await store.list('Node', '')).items.map((o) => o.metadata.name), ['edge-1']);
  assert.deepEqual((await store.list('No')).items, [], 'a kind that is a prefix of another kind matches nothing');
});

test('returned objects are copies: mutating them does not change the store', async (t) => {
  const { store } = await withStore(t);
  const input = pod('web');
  const created = await store.create(input);
  assert.equal(input.metadata.uid, undefined, 'create does not mutate its argument');
  created.metadata.labels = { hacked: 'yes' };
  assert.equal((await store.get('Pod', 'default', 'web'))!.metadata.labels, undefined);
});

test('revision strictly increases across writes, including concurrent ones', async (t) => {
  const { store } = await withStore(t);
  assert.equal(store.revision(), 0);
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => store.create(pod(`p${i}`))));
  const revs = results.map((o) => Number(o.metadata.resourceVersion)).sort((a, b) => a - b);
  assert.deepEqual(revs, Array.from({ length: 30 }, (_, i) => i + 1));
  let last = store.revision();
  for (let i = 0; i < 5; i++) {
    const cur = (await store.get('Pod', 'default', 'p0'))!;
    const next = await store.update({ ...cur, metadata: { ...cur.metadata, labels: { i: String(i) } } });
    assert.ok(Number(next.metadata.resourceVersion) > last);
    last = Number(next.metadata.resourceVersion);
    assert.equal(store.revision(), last);
  }
});

test('stale resourceVersion on update and delete is a 409 ConflictError', async (t) => {
  const { store } = await withStore(t);
  const v1 = await store.create(pod('web'));
  const v2 = await store.update({ ...v1, metadata: { ...v1.metadata, labels: { a: 'b' } } });

  await assert.rejects(store.update({ ...v1, metadata: { ...v1.metadata, labels: { c: 'd' } } }), (err: unknown) => {
    assert.ok(err instanceof ConflictError);
    assert.equal(err.code, 409);
    assert.ok(isConflict(err) && !isAlreadyExists(err), 'a stale write is a conflict, not a name clash');
    assert.match(err.message, /pods "default\/web".*resourceVersion 1 is stale, current is 2/);
    return true;
  });
  await assert.rejects(store.delete('Pod', 'default', 'web', { resourceVersion: v1.metadata.resourceVersion }), ConflictError);
  assert.ok(await store.get('Pod', 'default', 'web'), 'a refused delete leaves the object');

  // Without a resourceVersion the update is unconditional.
  const { resourceVersion: _rv, ...meta } = v2.metadata;
  const v3: ApiObject = await store.update({ ...v2, metadata: { ...meta, labels: { e: 'f' } } });
  assert.equal(v3.metadata.resourceVersion, '3');

  const deleted = await store.delete('Pod', 'default', 'web', { resourceVersion: '3' });
  assert.equal(deleted.metadata.name, 'web');
  assert.deepEqual(deleted.metadata.labels, { e: 'f' });
  assert.equal(deleted.metadata.resourceVersion, '4', 'the deleted object carries the deletion revision');
  assert.equal(await store.get('Pod', 'default', 'web'), undefined);
});

test('create of an existing object is AlreadyExistsError', async (t) => {
  const { store } = await withStore(t);
  await store.create(pod('web'));
  await store.create(node('edge-1'));
  await assert.rejects(store.create(pod('web')), (err: unknown) => {
    assert.ok(err instanceof AlreadyExistsError);
    assert.ok(isAlreadyExists(err) && !isConflict(err), 'a name clash is not a stale-write conflict');
    assert.equal(err.message, 'pods "default/web" already exists');
    return true;
  });
  await assert.rejects(store.create(node('edge-1')), { message: 'nodes "edge-1" already exists' });
  await store.create(pod('web', 'other'));
  assert.equal(store.revision(), 3, 'refused writes do not consume revisions');
});

test('update, delete and patch of a missing object are NotFoundError', async (t) => {
  const { store } = await withStore(t);
  await assert.rejects(store.update(pod('ghost')), (err: unknown) => err instanceof NotFoundError && err.code === 404 && err.message === 'pods "default/ghost" not found');
  await assert.rejects(store.delete('Pod', 'default', 'ghost'), (err: unknown) => err instanceof NotFoundError && isNotFound(err));
  await assert.rejects(store.patch('Node', '', 'ghost', (o) => o), { message: 'nodes "ghost" not found' });
  assert.equal(store.revision(), 0);
});

test('generation bumps only when spec changes', async (t) => {
  const { store } = await withStore(t);
  const v1 = await store.create(pod('web', 'default', { a: 1, b: { c: 2 } }));
  const labelled = await store.update({ ...v1, metadata: { ...v1.metadata, labels: { x: 'y' } }, status: { phase: 'Running' } });
  assert.equal(labelled.metadata.generation, 1);
  const reordered = await store.update({ ...labelled, spec: { b: { c: 2 }, a: 1 } });
  assert.equal(reordered.metadata.generation, 1, 'key order alone is not a spec change');
  const changed = await store.update({ ...reordered, spec: { a: 2, b: { c: 2 } } });
  assert.equal(changed.metadata.generation, 2);
  const patched = await store.patch('Pod', 'default', 'web', (o) => ({ ...o, spec: { a: 3 } }));
  assert.equal(patched!.metadata.generation, 3);
  assert.equal(patched!.metadata.uid, v1.metadata.uid, 'uid survives updates');
  assert.equal(patched!.metadata.creationTimestamp, v1.metadata.creationTimestamp);
  // A caller cannot overwrite uid/creationTimestamp/generation.
  const forged = await store.update({ ...patched!, metadata: { ...patched!.metadata, uid: 'x', generation: 99, creationTimestamp: 'then' } });
  assert.equal(forged.metadata.uid, v1.metadata.uid);
  assert.equal(forged.metadata.generation, 3);
  assert.equal(forged.metadata.creationTimestamp, v1.metadata.creationTimestamp);
});

test('watch from 0 replays all history in order, then live events', async (t) => {
  const { store } = await withStore(t);
  const a = await store.create(pod('a'));
  await store.create(pod('b'));
  await store.update({ ...a, status: { phase: 'Running' } });
  await store.delete('Pod', 'default', 'b');

  const done = collect(store, 0, (es) => es.length === 6);
  await store.create(pod('c'));
  await store.create(node('n'));
  const events = await done;
  assertConsecutive(events, 1, 6);
  assert.deepEqual(
    events.map((e) => `${e.type} ${e.object.metadata.name}`),
    ['ADDED a', 'ADDED b', 'MODIFIED a', 'DELETED b', 'ADDED c', 'ADDED n'],
  );
  for (const e of events) assert.equal(e.object.metadata.resourceVersion, String(e.revision));
});

test('watch resume from a middle revision gets exactly the later events, even with writes racing the replay', async (t) => {
  const { store } = await withStore(t);
  for (let i = 0; i < 50; i++) await store.create(pod(`p${i}`));

  // Writes are queued before the watch starts and keep committing while its replay iterates the log.
  const racing = Promise.all(Array.from({ length: 50 }, (_, i) => store.create(pod(`q${i}`))));
  const events = await collect(store, 25, (es) => es.at(-1)!.revision >= 100);
  await racing;
  assertConsecutive(events, 26, 100);

  // And a watch started while another burst is decided and written (in groups) behind its replay.
  const burst = Array.from({ length: 40 }, (_, i) => store.create(pod(`r${i}`)));
  const from = store.revision();
  const events2 = collect(store, 60, (es) => es.at(-1)!.revision >= 140);
  await Promise.all(burst);
  assert.equal(from, 100, 'none of the burst was durable when the watch started');
  assertConsecutive(await events2, 61, 140);
});

test('watch from the current revision sees only new events; from a future revision skips up to it', async (t) => {
  const { store } = await withStore(t);
  await store.create(pod('a'));
  const now = collect(store, store.revision(), (es) => es.length === 1);
  const future = collect(store, 3, (es) => es.length === 1);
  await store.create(pod('b'));
  await store.create(pod('c'));
  await store.create(pod('d'));
  assert.deepEqual((await now).map((e) => e.revision), [2]);
  assert.deepEqual((await future).map((e) => e.revision), [4]);
});

test('kinds filter delivers only the named kinds', async (t) => {
  const { store } = await withStore(t);
  await store.create(pod('a'));
  await store.create(node('n1'));
  const done = collect(store, 0, (es) => es.length === 3, { kinds: ['Node', 'Namespace'] });
  await store.create(pod('b'));
  await store.create(node('n2'));
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prod' } });
  const events = await done;
  assert.deepEqual(events.map((e) => `${e.object.kind}/${e.object.metadata.name}@${e.revision}`), ['Node/n1@2', 'Node/n2@4', 'Namespace/prod@5']);
});

test('a throwing watch callback breaks neither the store nor other watchers', async (t) => {
  const { store } = await withStore(t);
  let thrown = 0;
  const bad = store.watch(0, () => {
    thrown++;
    throw new Error('consumer bug');
  });
  t.after(() => bad.close());
  const good = collect(store, 0, (es) => es.length === 3);
  await store.create(pod('a'));
  await store.create(pod('b'));
  await store.create(pod('c'));
  assert.equal((await good).length, 3);
  assert.equal(thrown, 3);
});

test('a closed watch gets no more events', async (t) => {
  const { store } = await withStore(t);
  const seen: number[] = [];
  const w = store.watch(0, (e) => seen.push(e.revision));
  await store.create(pod('a'));
  w.close();
  await store.create(pod('b'));
  assert.deepEqual(seen, [1]);
});

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

test('close and reopen: objects, revision and compaction floor persist; revisions continue', async (t) => {
  const dir = await tempDir();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  const first = await LevelStore.open({ path, compactKeep: 5 });
  for (let i = 0; i < 25; i++) await first.create(pod(`p${i}`));
  await first.delete('Pod', 'default', 'p0');
  await first.compact();
  const compacted = first.compactedRevision();
  await first.close();

  const second = await LevelStore.open({ path, compactKeep: 5 });
  t.after(() => second.close());
  assert.equal(second.revision(), 26);
  assert.equal(second.compactedRevision(), compacted);
  assert.throws(() => second.watch(0, () => {}), GoneError);
  const { items, revision } = await second.list('Pod');
  assert.equal(revision, 26);
  assert.equal(items.length, 24);
  const next = await second.create(pod('after'));
  assert.equal(next.metadata.resourceVersion, '27');
  const replay = await collect(second, compacted, (es) => es.at(-1)!.revision === 27);
  assertConsecutive(replay, compacted + 1, 27);
});

test('close waits for queued writes; writes after close are refused', async (t) => {
  const dir = await tempDir();
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'db');
  const store = await LevelStore.open({ path });
  const writes = Array.from({ length: 20 }, (_, i) => store.create(pod(`p${i}`)));
  await store.close();
  await Promise.all(writes);
  await assert.rejects(store.create(pod('late')), (err: unknown) => err instanceof StoreError && /closed/.test(err.message));
  const again = await LevelStore.open({ path });
  assert.equal(again.revision(), 20);
  await again.close();
});

test('opening a data dir that is already open fails with a clear message', async (t) => {
  const { dir } = await withStore(t);
  await assert.rejects(LevelStore.open({ path: join(dir, 'db') }), (err: unknown) => err instanceof StoreError && /data dir .* is in use/.test(err.message));
});

test('20 concurrent patches incrementing a counter all apply', async (t) => {
  const { store } = await withStore(t);
  await store.create({ ...pod('web'), metadata: { name: 'web', namespace: 'default', annotations: { count: '0' } } });
  const bump = (o: ApiObject): ApiObject => ({
    ...o,
    metadata: { ...o.metadata, annotations: { ...o.metadata.annotations, count: String(Number(o.metadata.annotations!.count) + 1) } },
  });
  // Interleave plain updates from a stale read to show they conflict while patches do not.
  const stale = (await store.get('Pod', 'default', 'web'))!;
  const results = await Promise.allSettled([
    ...Array.from({ length: 20 }, () => store.patch('Pod', 'default', 'web', bump)),
    store.update({ ...stale, metadata: { ...stale.metadata, labels: { x: 'y' } } }),
  ]);
  const patches = results.slice(0, 20);
  assert.ok(patches.every((r) => r.status === 'fulfilled'));
  const plain = results[20];
  assert.ok(plain.status === 'rejected' && plain.reason instanceof ConflictError, 'the stale plain update conflicts');
  const final = (await store.get('Pod', 'default', 'web'))!;
  assert.equal(final.metadata.annotations!.count, '20');
  assert.equal(final.metadata.generation, 1, 'annotation changes do not bump generation');

  // mutate returning undefined skips the write.
  const before = store.revision();
  assert.equal(await store.patch('Pod', 'default', 'web', () => undefined), undefined);
  assert.equal(store.revision(), before);
  // mutate may not rename the object.
  await assert.rejects(
    store.patch('Pod', 'default', 'web', (o) => ({ ...o, metadata: { ...o.metadata, name: 'other' } })),
    (err: unknown) => err instanceof BadRequestError && /must not change/.test(err.message),
  );
});
