/**
 * The store's contract (server/store/types.ts), run against both backends: LevelStore in a temp dir and
 * EtcdStore on a real etcd (Debian's etcd 3.4, one member started for the suite, a fresh key prefix per
 * test). Revisions are checked relative to the store's revision when the test opened it: etcd's revision
 * is global and does not start at 0. Tests of one backend's internals stay beside it
 * (test/unit/store*.test.ts for LevelStore, test/integration/store-etcd.test.ts for etcd).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EtcdStore } from '../../server/store/etcd.js';
import { LevelStore } from '../../server/store/level.js';
import type { BackendStore, WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { AlreadyExistsError, BadRequestError, ConflictError, GoneError, NotFoundError, StoreError, isAlreadyExists, isConflict, isNotFound } from '../../src/util/errors.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { assertConsecutive, collect } from '../helpers/store-watch.js';

type After = { after(fn: () => Promise<void> | void): void };

interface Opened {
  store: BackendStore;
  /** The store's revision right after it opened: the test's revisions count from it. */
  base: number;
  /** Opens the same data again (same dir / same etcd prefix), closed after the test. */
  reopen(opts?: { compactKeep?: number }): Promise<BackendStore>;
}

interface Backend {
  name: string;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  open(t: After, opts?: { compactKeep?: number }): Promise<Opened>;
}

const level: Backend = {
  name: 'LevelStore',
  setup: async () => {},
  teardown: async () => {},
  async open(t, opts = {}) {
    const dir = await mkdtemp(join(tmpdir(), 'drover-contract-'));
    const path = join(dir, 'db');
    const opened: BackendStore[] = [];
    t.after(async () => {
      for (const s of opened) await s.close();
      await rm(dir, { recursive: true, force: true });
    });
    const store = await LevelStore.open({ path, ...opts });
    opened.push(store);
    return {
      store,
      base: store.revision(),
      reopen: async (o = {}) => {
        const s = await LevelStore.open({ path, ...opts, ...o });
        opened.push(s);
        return s;
      },
    };
  },
};

let cluster: EtcdCluster | undefined;
const etcd: Backend = {
  name: 'EtcdStore',
  setup: async () => {
    cluster = await startEtcd();
  },
  teardown: async () => {
    await cluster?.stop();
  },
  async open(t, opts = {}) {
    const prefix = `/contract-${randomBytes(4).toString('hex')}/`;
    const opened: BackendStore[] = [];
    t.after(async () => {
      for (const s of opened) await s.close();
    });
    const store = await EtcdStore.open({ endpoints: cluster!.endpoints, prefix, ...opts });
    opened.push(store);
    return {
      store,
      base: store.revision(),
      reopen: async (o = {}) => {
        const s = await EtcdStore.open({ endpoints: cluster!.endpoints, prefix, ...opts, ...o });
        opened.push(s);
        return s;
      },
    };
  },
};

function pod(name: string, namespace = 'default', spec: unknown = { containers: [{ name: 'c', image: 'nginx' }] }): ApiObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec };
}

function node(name: string): ApiObject {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: {} };
}

for (const backend of [level, etcd]) {
  describe(`store contract: ${backend.name}`, () => {
    before(() => backend.setup());
    after(() => backend.teardown());

    test('create assigns metadata; get and list return it', async (t) => {
      const { store, base } = await backend.open(t);
      const created = await store.create(pod('web'));
      assert.equal(created.metadata.resourceVersion, String(base + 1));
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
      assert.equal(all.revision, base + 5);
      // Sorted by namespace then name ('a' before 'a-b' although '-' sorts before '/' in keys).
      assert.deepEqual(all.items.map((o) => `${o.metadata.namespace}/${o.metadata.name}`), ['a/api', 'a/db', 'a-b/web', 'default/web']);
      assert.deepEqual((await store.list('Pod', 'a')).items.map((o) => o.metadata.name), ['api', 'db']);
      assert.deepEqual((await store.list('Pod', 'missing')).items, []);
      assert.deepEqual((await store.list('Node')).items.map((o) => o.metadata.name), ['edge-1']);
      assert.deepEqual((await store.list('Node', '')).items.map((o) => o.metadata.name), ['edge-1']);
      assert.deepEqual((await store.list('No')).items, [], 'a kind that is a prefix of another kind matches nothing');
      for (const o of all.items) assert.ok(Number(o.metadata.resourceVersion) <= all.revision, 'every item is at or below the list revision');
    });

    test('returned objects are copies: mutating them does not change the store', async (t) => {
      const { store } = await backend.open(t);
      const input = pod('web');
      const created = await store.create(input);
      assert.equal(input.metadata.uid, undefined, 'create does not mutate its argument');
      created.metadata.labels = { hacked: 'yes' };
      assert.equal((await store.get('Pod', 'default', 'web'))!.metadata.labels, undefined);
      const read = (await store.get('Pod', 'default', 'web'))!;
      read.metadata.labels = { hacked: 'again' };
      assert.equal((await store.list('Pod')).items[0]!.metadata.labels, undefined);

      // With a watch open (the server always has one) the writer too decides on what it stored, whatever
      // the caller does to what a create, an update or a patch returned.
      const w = store.watch(store.revision(), () => {});
      t.after(() => w.close());
      const labelled: ApiObject = { ...read, metadata: { ...read.metadata, labels: { v: '1' } } };
      const updated = await store.update(labelled);
      updated.metadata.labels = { hacked: 'update' };
      const seen: Array<string | undefined> = [];
      const patched = await store.patch('Pod', 'default', 'web', (cur) => {
        seen.push(cur.metadata.labels?.v ?? cur.metadata.labels?.hacked);
        cur.metadata.labels = { v: '2' };
        return cur;
      });
      patched!.metadata.labels = { hacked: 'patch' };
      await store.patch('Pod', 'default', 'web', (cur) => {
        seen.push(cur.metadata.labels?.v ?? cur.metadata.labels?.hacked);
        return undefined;
      });
      assert.deepEqual(seen, ['1', '2']);
      assert.deepEqual((await store.get('Pod', 'default', 'web'))!.metadata.labels, { v: '2' });
    });

    test('revision strictly increases across writes, including concurrent ones', async (t) => {
      const { store, base } = await backend.open(t);
      assert.equal(store.revision(), base);
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => store.create(pod(`p${i}`))));
      const revs = results.map((o) => Number(o.metadata.resourceVersion)).sort((a, b) => a - b);
      assert.deepEqual(revs, Array.from({ length: 30 }, (_, i) => base + i + 1));
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
      const { store, base } = await backend.open(t);
      const v1 = await store.create(pod('web'));
      const v2 = await store.update({ ...v1, metadata: { ...v1.metadata, labels: { a: 'b' } } });

      await assert.rejects(store.update({ ...v1, metadata: { ...v1.metadata, labels: { c: 'd' } } }), (err: unknown) => {
        assert.ok(err instanceof ConflictError);
        assert.equal(err.code, 409);
        assert.ok(isConflict(err) && !isAlreadyExists(err), 'a stale write is a conflict, not a name clash');
        assert.match(err.message, new RegExp(`pods "default/web".*resourceVersion ${base + 1} is stale, current is ${base + 2}`));
        return true;
      });
      await assert.rejects(store.delete('Pod', 'default', 'web', { resourceVersion: v1.metadata.resourceVersion }), ConflictError);
      assert.ok(await store.get('Pod', 'default', 'web'), 'a refused delete leaves the object');

      // Without a resourceVersion the update is unconditional.
      const { resourceVersion: _rv, ...meta } = v2.metadata;
      const v3: ApiObject = await store.update({ ...v2, metadata: { ...meta, labels: { e: 'f' } } });
      assert.equal(v3.metadata.resourceVersion, String(base + 3));

      const deleted = await store.delete('Pod', 'default', 'web', { resourceVersion: String(base + 3) });
      assert.equal(deleted.metadata.name, 'web');
      assert.deepEqual(deleted.metadata.labels, { e: 'f' });
      assert.equal(deleted.metadata.resourceVersion, String(base + 4), 'the deleted object carries the deletion revision');
      assert.equal(await store.get('Pod', 'default', 'web'), undefined);
    });

    test('create of an existing object is AlreadyExistsError', async (t) => {
      const { store, base } = await backend.open(t);
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
      assert.equal(store.revision(), base + 3, 'refused writes do not consume revisions');
      // A deleted name may be created again: a new object (new uid), ADDED again.
      const old = (await store.get('Pod', 'default', 'web'))!;
      await store.delete('Pod', 'default', 'web');
      const again = await store.create(pod('web'));
      assert.notEqual(again.metadata.uid, old.metadata.uid);
      const events = await collect(store, base, (es) => es.length === 5);
      assert.deepEqual(events.map((e) => `${e.type} ${e.object.kind}/${e.object.metadata.name}`), ['ADDED Pod/web', 'ADDED Node/edge-1', 'ADDED Pod/web', 'DELETED Pod/web', 'ADDED Pod/web']);
    });

    test('update, delete and patch of a missing object are NotFoundError', async (t) => {
      const { store, base } = await backend.open(t);
      await assert.rejects(store.update(pod('ghost')), (err: unknown) => err instanceof NotFoundError && err.code === 404 && err.message === 'pods "default/ghost" not found');
      await assert.rejects(store.delete('Pod', 'default', 'ghost'), (err: unknown) => err instanceof NotFoundError && isNotFound(err));
      await assert.rejects(store.patch('Node', '', 'ghost', (o) => o), { message: 'nodes "ghost" not found' });
      assert.equal(store.revision(), base);
    });

    test('generation bumps only when spec changes', async (t) => {
      const { store } = await backend.open(t);
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
      assert.deepEqual(await store.get('Pod', 'default', 'web'), forged, 'what a write returns is what a read gets');
    });

    test('watch from the opening revision replays all history in order, then live events', async (t) => {
      const { store, base } = await backend.open(t);
      const a = await store.create(pod('a'));
      await store.create(pod('b'));
      await store.update({ ...a, status: { phase: 'Running' } });
      await store.delete('Pod', 'default', 'b');

      const done = collect(store, base, (es) => es.length === 6);
      await store.create(pod('c'));
      await store.create(node('n'));
      const events = await done;
      assertConsecutive(events, base + 1, base + 6);
      assert.deepEqual(
        events.map((e) => `${e.type} ${e.object.metadata.name}`),
        ['ADDED a', 'ADDED b', 'MODIFIED a', 'DELETED b', 'ADDED c', 'ADDED n'],
      );
      for (const e of events) assert.equal(e.object.metadata.resourceVersion, String(e.revision));
      assert.equal(events[3]!.object.metadata.uid, (events[1]!.object.metadata.uid), 'a DELETED event carries the deleted object');
    });

    test('watch resume from a middle revision gets exactly the later events, even with writes racing the replay', async (t) => {
      const { store, base } = await backend.open(t);
      for (let i = 0; i < 50; i++) await store.create(pod(`p${i}`));

      // Writes are queued before the watch starts and keep committing while its replay runs.
      const racing = Promise.all(Array.from({ length: 50 }, (_, i) => store.create(pod(`q${i}`))));
      const events = await collect(store, base + 25, (es) => es.at(-1)!.revision >= base + 100);
      await racing;
      assertConsecutive(events, base + 26, base + 100);

      const burst = Array.from({ length: 40 }, (_, i) => store.create(pod(`r${i}`)));
      const events2 = collect(store, base + 60, (es) => es.at(-1)!.revision >= base + 140);
      await Promise.all(burst);
      assertConsecutive(await events2, base + 61, base + 140);
    });

    test('watch from the current revision sees only new events; from a future revision skips up to it', async (t) => {
      const { store, base } = await backend.open(t);
      await store.create(pod('a'));
      const now = collect(store, store.revision(), (es) => es.length === 1);
      const future = collect(store, base + 3, (es) => es.length === 1);
      await store.create(pod('b'));
      await store.create(pod('c'));
      await store.create(pod('d'));
      assert.deepEqual((await now).map((e) => e.revision), [base + 2]);
      assert.deepEqual((await future).map((e) => e.revision), [base + 4]);
    });

    test('kinds filter delivers only the named kinds', async (t) => {
      const { store, base } = await backend.open(t);
      await store.create(pod('a'));
      await store.create(node('n1'));
      const done = collect(store, base, (es) => es.length === 3, { kinds: ['Node', 'Namespace'] });
      const one = collect(store, base, (es) => es.length === 2, { kinds: ['Node'] });
      await store.create(pod('b'));
      await store.create(node('n2'));
      await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prod' } });
      const events = await done;
      assert.deepEqual(events.map((e) => `${e.object.kind}/${e.object.metadata.name}@${e.revision - base}`), ['Node/n1@2', 'Node/n2@4', 'Namespace/prod@5']);
      assert.deepEqual((await one).map((e) => `${e.object.kind}/${e.object.metadata.name}@${e.revision - base}`), ['Node/n1@2', 'Node/n2@4']);
    });

    test('a throwing watch callback breaks neither the store nor other watchers', async (t) => {
      const { store, base } = await backend.open(t);
      let thrown = 0;
      const bad = store.watch(base, () => {
        thrown++;
        throw new Error('consumer bug');
      });
      t.after(() => bad.close());
      const good = collect(store, base, (es) => es.length === 3);
      const bad2 = collect(store, base, (es) => es.length === 3);
      await store.create(pod('a'));
      await store.create(pod('b'));
      await store.create(pod('c'));
      assert.equal((await good).length, 3);
      await bad2;
      assert.ok(thrown >= 1, 'the throwing callback was called');
      // It goes on getting events after throwing.
      const after = collect(store, base + 3, (es) => es.length === 1);
      await store.create(pod('d'));
      await after;
    });

    test('a closed watch gets no more events', async (t) => {
      const { store, base } = await backend.open(t);
      const seen: number[] = [];
      let first!: () => void;
      const gotFirst = new Promise<void>((r) => (first = r));
      const w = store.watch(base, (e) => {
        seen.push(e.revision);
        first();
      });
      const all = collect(store, base, (es) => es.length === 3);
      await store.create(pod('a'));
      await gotFirst;
      w.close();
      await store.create(pod('b'));
      await store.create(pod('c'));
      await all;
      assert.deepEqual(seen, [base + 1]);
    });

    test('compaction keeps the last compactKeep revisions; watching from below it is GoneError; objects stay', async (t) => {
      const { store, base } = await backend.open(t, { compactKeep: 10 });
      for (let i = 0; i < 20; i++) await store.create(pod(`p${i}`));
      await store.compact();
      const floor = store.compactedRevision();
      assert.equal(floor, store.revision() - 10);
      assert.ok(floor >= base + 10);
      assert.throws(() => store.watch(base, () => {}), (err: unknown) => err instanceof GoneError && err.code === 410 && /list again/.test(err.message));
      assert.throws(() => store.watch(floor - 1, () => {}), GoneError);
      const events = await collect(store, floor, (es) => es.length === 10);
      assertConsecutive(events, floor + 1, floor + 10);
      assert.equal((await store.list('Pod')).items.length, 20);
    });

    test('close and reopen: objects, revision and compaction floor persist; revisions continue', async (t) => {
      const { store: first, base, reopen } = await backend.open(t, { compactKeep: 5 });
      for (let i = 0; i < 25; i++) await first.create(pod(`p${i}`));
      await first.delete('Pod', 'default', 'p0');
      await first.compact();
      const compacted = first.compactedRevision();
      assert.ok(compacted > base);
      await first.close();

      const second = await reopen();
      assert.equal(second.revision(), base + 26);
      assert.equal(second.compactedRevision(), compacted);
      assert.throws(() => second.watch(base, () => {}), GoneError);
      const { items, revision } = await second.list('Pod');
      assert.equal(revision, base + 26);
      assert.equal(items.length, 24);
      const next = await second.create(pod('after'));
      assert.equal(next.metadata.resourceVersion, String(base + 27));
      const replay = await collect(second, compacted, (es) => es.at(-1)!.revision === base + 27);
      assertConsecutive(replay, compacted + 1, base + 27);
    });

    test('close waits for writes under way; writes after close are refused', async (t) => {
      const { store, base, reopen } = await backend.open(t);
      const writes = Array.from({ length: 20 }, (_, i) => store.create(pod(`p${i}`)));
      await store.close();
      await Promise.all(writes);
      await assert.rejects(store.create(pod('late')), (err: unknown) => err instanceof StoreError && /closed/.test(err.message));
      assert.throws(() => store.watch(base, () => {}), StoreError);
      const again = await reopen();
      assert.equal(again.revision(), base + 20);
      assert.equal((await again.list('Pod')).items.length, 20);
    });

    test('20 concurrent patches incrementing a counter all apply', async (t) => {
      const { store } = await backend.open(t);
      await store.create({ ...pod('web'), metadata: { name: 'web', namespace: 'default', annotations: { count: '0' } } });
      const bump = (o: ApiObject): ApiObject => ({
        ...o,
        metadata: { ...o.metadata, annotations: { ...o.metadata.annotations, count: String(Number(o.metadata.annotations!.count) + 1) } },
      });
      // A plain update from a stale read conflicts while patches do not (it is the 21st write: it
      // races the patches and must not win over one).
      const stale = (await store.get('Pod', 'default', 'web'))!;
      const results = await Promise.allSettled([
        ...Array.from({ length: 20 }, () => store.patch('Pod', 'default', 'web', bump)),
        store.patch('Pod', 'default', 'web', bump).then(() => store.update({ ...stale, metadata: { ...stale.metadata, labels: { x: 'y' } } })),
      ]);
      const patches = results.slice(0, 20);
      assert.ok(patches.every((r) => r.status === 'fulfilled'), JSON.stringify(patches.filter((r) => r.status === 'rejected')));
      const plain = results[20];
      assert.ok(plain.status === 'rejected' && plain.reason instanceof ConflictError, 'the stale plain update conflicts');
      const final = (await store.get('Pod', 'default', 'web'))!;
      assert.equal(final.metadata.annotations!.count, '21');
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

    test('a read right after an acknowledged write sees it, from this store and from a second one on the same data', async (t) => {
      const { store } = await backend.open(t);
      const created = await Promise.all(Array.from({ length: 10 }, (_, i) => store.create(pod(`p${i}`))));
      for (const c of created) assert.deepEqual(await store.get('Pod', 'default', c.metadata.name), c);
      const { items, revision } = await store.list('Pod');
      assert.equal(items.length, 10);
      assert.ok(revision >= Math.max(...created.map((c) => Number(c.metadata.resourceVersion))));
    });

    test('a write is acknowledged only once every watch of the store has its event (what a watch-fed cache relies on)', async (t) => {
      const { store, base } = await backend.open(t);
      const all: WatchEvent[] = [];
      const nodes: WatchEvent[] = [];
      const some: WatchEvent[] = [];
      const watches = [store.watch(base, (e) => all.push(e)), store.watch(base, (e) => nodes.push(e), { kinds: ['Node'] }), store.watch(base, (e) => some.push(e), { kinds: ['Pod', 'Node'] })];
      t.after(() => watches.forEach((w) => w.close()));
      const has = (events: WatchEvent[], rv: string | undefined) => events.some((e) => String(e.revision) === rv);
      const writes = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
        const p = await store.create(pod(`p${i}`));
        assert.ok(has(all, p.metadata.resourceVersion) && has(some, p.metadata.resourceVersion), `create ${p.metadata.resourceVersion} acknowledged before its event`);
        const n = await store.create(node(`n${i}`));
        assert.ok(has(all, n.metadata.resourceVersion) && has(nodes, n.metadata.resourceVersion), `create ${n.metadata.resourceVersion} acknowledged before its event`);
        const patched = await store.patch('Pod', 'default', `p${i}`, (o) => ({ ...o, metadata: { ...o.metadata, labels: { i: String(i) } } }));
        assert.ok(has(all, patched!.metadata.resourceVersion), 'patch acknowledged before its event');
        const deleted = await store.delete('Node', '', `n${i}`);
        assert.ok(has(nodes, deleted.metadata.resourceVersion), 'delete acknowledged before its event');
        return 4;
      }));
      assert.equal(all.length, writes.reduce((a, b) => a + b, 0));
    });

    test('list of a namespace emptied by concurrent deletes is empty at the current revision', async (t) => {
      const { store } = await backend.open(t);
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.create(pod(`p${i}`, 'gone'))));
      await store.create(pod('stays', 'kept'));
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.delete('Pod', 'gone', `p${i}`)));
      const { items, revision } = await store.list('Pod', 'gone');
      assert.deepEqual(items, []);
      assert.equal(revision, store.revision());
      assert.deepEqual((await store.list('Pod')).items.map((p) => p.metadata.name), ['stays']);
    });
  });
}
