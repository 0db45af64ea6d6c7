/*
 * Every object of a store as the store holds it, read out and written back without going through the
 * Store interface: a write through it assigns a new uid, and a Secret would be decrypted. For backup,
 * restore and migration (server/store/transfer.ts). A record is the same whichever backend it comes
 * from or goes to: the object key (server/store/keys.ts), the object without resourceVersion, or a
 * Secret's sealed string (its AAD is that key in both backends, so it moves unopened).
 */
import type { IRequestOp } from 'etcd3';
import type { ApiObject } from '../../src/api/meta.js';
import { isEnvelope } from '../../src/util/aead.js';
import { StoreError, errorMessage } from '../../src/util/errors.js';
import { REGISTRY, parseObjectKey, what } from './keys.js';
import type { EtcdStore } from './etcd.js';
import type { LevelStore } from './level.js';

export interface RawObject {
  /** `/registry/{kind}/{namespace}/{name}`. */
  key: string;
  /**
   * The revision of the object's last write, when it is known outside the object: an object's
   * resourceVersion, etcd's mod revision. Absent for a Secret sealed in LevelDB (its resourceVersion is
   * inside the sealed object).
   */
  revision?: number;
  /** The object without metadata.resourceVersion; or, for a sealed Secret, its sealed string. */
  value: ApiObject | string;
}

/** What a backend holds: its objects, and the revision they are consistent with. */
export interface RawDump {
  revision: number;
  objects: RawObject[];
}

/** The etcd key the leading server holds (server/leader/election.ts DEFAULT_LEADER_KEY; run.ts names it). */
export const LEADER_KEY = '/drover/leader';
/**
 * One etcd transaction writes at most this many objects and bytes: etcd 3.4 refuses more than 128
 * operations (--max-txn-ops) or a 1.5 MiB request (--max-request-bytes) by default.
 */
const ETCD_TXN_OBJECTS = 100;
const ETCD_TXN_BYTES = 1024 * 1024;
/** A dump reads etcd in ranges of this many keys, all at the revision of the first. */
const ETCD_READ_CHUNK = 2_000;

function withoutResourceVersion(obj: ApiObject): ApiObject {
  const { resourceVersion: _dropped, ...metadata } = obj.metadata;
  return { ...obj, metadata };
}

/** A stored value as a record: an envelope stays a string; an object loses its resourceVersion to `revision`. */
function record(key: string, value: unknown, revision: number | undefined, where: string): RawObject {
  if (isEnvelope(value)) return { key, ...(revision !== undefined ? { revision } : {}), value };
  const obj = value as ApiObject;
  if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object' || obj.metadata === null) {
    throw new StoreError(`${where}: the value under ${key} is not an object`);
  }
  const rev = revision ?? Number(obj.metadata.resourceVersion);
  if (!Number.isSafeInteger(rev) || rev < 1) throw new StoreError(`${where}: ${key} has no resourceVersion`);
  return { key, revision: rev, value: withoutResourceVersion(obj) };
}

/** A LevelDB store with no server on it (the caller holds its lock): nothing writes while it is read. */
export async function dumpLevel(store: LevelStore, where: string): Promise<RawDump> {
  const objects: RawObject[] = [];
  for await (const { key, value } of store.storedObjects()) objects.push(record(key, value, undefined, where));
  return { revision: store.revision(), objects };
}

/** Objects read at one revision, one at a time (the store is read as they are taken). */
export interface RawRead {
  revision: number;
  objects: AsyncIterable<RawObject>;
}

/**
 * Every object of a LevelDB store its server is writing to, at one revision: from one LevelDB snapshot
 * (LevelStore.readAtOneRevision), so the writes that land meanwhile are neither seen nor held up. `read`
 * gets the objects while the snapshot is open; it is released when `read` settles.
 */
export function readLevelAtOneRevision<T>(store: LevelStore, where: string, read: (r: RawRead) => Promise<T>): Promise<T> {
  return store.readAtOneRevision((revision, stored) =>
    read({
      revision,
      objects: (async function* () {
        for await (const { key, value } of stored) yield record(key, value, undefined, where);
      })(),
    }),
  );
}

/**
 * Writes `objects` into LevelDB as they are, replacing what it held; `value` there carries its
 * resourceVersion (a sealed Secret: inside), see transfer.ts.
 */
export async function loadLevel(store: LevelStore, objects: Array<{ key: string; value: unknown }>, revision: number): Promise<void> {
  await store.replaceObjects(objects, revision);
}

/**
 * One consistent read of every object in etcd, servers running or not: each chunk at the revision of the
 * first, each its own call (a large store takes longer than one call's deadline to read whole). `read`
 * gets the revision (the first chunk's) and the objects, read chunk by chunk as they are taken.
 */
export async function readEtcdAtOneRevision<T>(store: EtcdStore, read: (r: RawRead) => Promise<T>): Promise<T> {
  const where = `etcd at ${store.endpoints.join(',')}`;
  const { key: start, range_end: end } = store.rangeOf(REGISTRY);
  let taken = 0;
  const chunk = async (from: Buffer, at: string | undefined) =>
    store
      .call(`reading the objects (${taken} so far)`, (o) => store.etcd.kv.range({ key: from, range_end: end, limit: ETCD_READ_CHUNK, ...(at ? { revision: at } : {}) }, o))
      .catch((err: unknown) => {
        if (at && /required revision has been compacted/.test(errorMessage(err))) {
          throw new StoreError(`${where}: its history was compacted past revision ${at} while the objects were read (the servers wrote more than the history keeps meanwhile): run it again`, err);
        }
        throw err;
      });
  const first = await chunk(start, undefined);
  const revision = first.header.revision;
  async function* objects(): AsyncGenerator<RawObject> {
    for (let r = first; ; ) {
      for (const kv of r.kvs) {
        const key = store.relKey(kv.key);
        const text = kv.value.toString('utf8');
        let value: unknown;
        try {
          value = isEnvelope(text) ? text : JSON.parse(text);
        } catch (err) {
          throw new StoreError(`${where}: the value under ${key} is not JSON: ${errorMessage(err)}`, err);
        }
        taken += 1;
        yield record(key, value, Number(kv.mod_revision), where);
      }
      if (!r.more || r.kvs.length === 0) return;
      r = await chunk(Buffer.concat([r.kvs.at(-1)!.key, Buffer.from([0])]), revision);
    }
  }
  return read({ revision: Number(revision), objects: objects() });
}

/** readEtcdAtOneRevision, every object held in memory (the offline tools check a whole set before writing). */
export function dumpEtcd(store: EtcdStore): Promise<RawDump> {
  return readEtcdAtOneRevision(store, async (r) => {
    const objects: RawObject[] = [];
    for await (const o of r.objects) objects.push(o);
    return { revision: r.revision, objects };
  });
}

/** How many objects etcd holds under the store's prefix. */
export function countEtcd(store: EtcdStore): Promise<number> {
  return store.call('counting the objects', async (o) => Number((await store.etcd.kv.range({ ...store.rangeOf(REGISTRY), count_only: true }, o)).count));
}

/** The identity of the server holding the leader key, if one does: a server runs on this etcd. */
export function etcdLeader(store: EtcdStore): Promise<string | undefined> {
  return store.call('reading the leader key', async (o) => (await store.etcd.kv.range({ key: Buffer.from(LEADER_KEY) }, o)).kvs[0]?.value.toString('utf8'));
}

/**
 * Writes `objects` into etcd in their order, each transaction only if none of its keys exists (a key
 * written meanwhile stops the load, naming it); `replace` first deletes every object. etcd numbers the
 * writes itself: the objects of one transaction share its revision. Returns the first and last revision
 * written. The sealed marker is deleted, so the next server start checks the Secrets.
 */
export async function loadEtcd(store: EtcdStore, objects: RawObject[], opts: { replace: boolean }): Promise<{ firstRevision: number; lastRevision: number }> {
  const where = `etcd at ${store.endpoints.join(',')}`;
  const clear: IRequestOp[] = [{ request_delete_range: { key: store.metaKey('secrets-sealed') } }];
  if (opts.replace) clear.push({ request_delete_range: store.rangeOf(REGISTRY) });
  const cleared = Number(await store.call('clearing the store', async (o) => (await store.etcd.kv.txn({ compare: [], success: clear, failure: [] }, o)).header.revision));
  let firstRevision: number | undefined;
  let lastRevision = cleared;
  let batch: Array<{ key: Buffer; value: Buffer; rel: string }> = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const items = batch;
    batch = [];
    bytes = 0;
    const r = await store.call(`writing ${items[0]!.rel} and ${items.length - 1} more`, (o) =>
      store.etcd.kv.txn(
        {
          compare: items.map((i) => ({ key: i.key, target: 'Create' as const, result: 'Equal' as const, create_revision: 0 })),
          success: items.map((i) => ({ request_put: { key: i.key, value: i.value } })),
          failure: items.map((i) => ({ request_range: { key: i.key, count_only: true } })),
        },
        o,
      ),
    );
    if (!r.succeeded) {
      const taken = items.filter((_, n) => Number(r.responses[n]?.response_range?.count ?? 0) > 0).map((i) => {
        const ref = parseObjectKey(i.rel);
        return ref ? what(ref.kind, ref.namespace, ref.name) : i.rel;
      });
      throw new StoreError(`${where}: ${taken.join(', ')} appeared while loading (is a drover server running on this etcd?)`);
    }
    lastRevision = Number(r.header.revision);
    firstRevision ??= lastRevision;
  };
  for (const obj of objects) {
    const value = Buffer.from(typeof obj.value === 'string' ? obj.value : JSON.stringify(obj.value), 'utf8');
    if (batch.length >= ETCD_TXN_OBJECTS || (batch.length > 0 && bytes + value.length > ETCD_TXN_BYTES)) await flush();
    batch.push({ key: store.fullKey(obj.key), value, rel: obj.key });
    bytes += value.length;
  }
  await flush();
  return { firstRevision: firstRevision ?? cleared, lastRevision };
}

/**
 * Drops etcd's history up to its current revision, so values overwritten before now (a Secret's old
 * ciphertext) are gone from it; `physical`: returns once etcd has applied it. The members' database
 * files keep the freed space (and its bytes) until `etcdctl defrag`.
 */
export function compactEtcdHistory(store: EtcdStore): Promise<number> {
  return store.call('compacting the history', async (o) => {
    const revision = Number((await store.etcd.kv.range({ key: store.metaKey('secrets-sealed') }, o)).header.revision);
    try {
      await store.etcd.kv.compact({ revision, physical: true }, o);
    } catch (err) {
      // Compacted there already (etcd's own auto-compaction, or a run before this one).
      if (!/required revision has been compacted/.test(errorMessage(err))) throw err;
    }
    store.noteCompacted(revision);
    return revision;
  });
}
