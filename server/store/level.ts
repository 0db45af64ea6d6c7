import { statfs } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import type { ApiObject } from '../../src/api/meta.js';
import { deepFreeze } from '../../src/util/deep-freeze.js';
import { AlreadyExistsError, GoneError, NotFoundError, StoreError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { envelopeKeyId, isEnvelope } from '../../src/util/aead.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, tightenFilesIn } from '../../src/util/private-fs.js';
import { REGISTRY, listPrefix, objectKey, parseObjectKey, prefixEnd, what } from './keys.js';
import { assertResourceVersion, createdObject, deletedObject, patchedObject, sortByNamespaceName, updatedObject } from './object-rules.js';
import { ENCRYPTED_KIND, SecretCodec } from './secret-codec.js';
import type { BackendStore, ListResult, ObjectOf, SealReport, Store, Stored, ValueCipher, Watch, WatchEvent, WatchEventType, WatchOptions, WriteFence } from './types.js';
import { storeView } from './view.js';
import { Watcher } from './watcher.js';
import { deepCopy } from '../../src/util/deep-copy.js';

/*
 * Key layout (all keys are strings, values JSON):
 *   /registry/{kind}/{namespace}/{name}  → the object (cluster-scoped kinds use namespace '')
 *   /log/{revision, 16 digits}           → { type, revision, object }: the change log watches replay
 *   /meta/revision                       → the last committed revision
 *   /meta/compacted                      → log entries up to and including this revision are gone
 *   /meta/secrets-sealed                 → id of the key every stored Secret is encrypted with (absent:
 *                                          some may be plaintext or under an older key)
 *
 * Secrets at rest (server/store/secret-codec.ts): a Secret is stored as one string,
 * `k8s:enc:aesgcm:v1:<keyid>:<base64>`, the whole serialized object encrypted with AAD = the LevelDB
 * key it is stored under; its change-log entries as { type, revision, key: <object key>, object:
 * <same form, AAD = the log key> }. Every read path opens them, so nothing above the store sees the
 * difference. Plain Secrets (from before encryption) still read, and are encrypted by sealSecrets(),
 * which open() runs when the marker above does not name the primary key.
 */
const LOG = '/log/';
const META_REVISION = '/meta/revision';
const META_COMPACTED = '/meta/compacted';
const META_SEALED = '/meta/secrets-sealed';
/** Re-encryption writes in batches of this many keys. */
const SEAL_CHUNK = 500;

const DEFAULT_COMPACT_KEEP = 10_000;
const COMPACT_CHUNK = 5_000;

/*
 * Group commit: writes decided while a synced batch is on its way to disk wait in the next group and
 * share its one fsync, so durable throughput grows with the writes in flight. A group is cut at these
 * sizes so one batch (and the memory it holds) stays bounded under any burst.
 */
const GROUP_MAX_WRITES = 1000;
const GROUP_MAX_BYTES = 4 * 1024 * 1024;
/**
 * Objects the writer keeps from its last writes (see `recent`): an update or a patch usually follows its
 * object's last write closely (a pod's create, then its binding, then its status). At most this many, and at
 * most this much of their JSON: what a watch of Pods and Nodes hands the object cache costs nothing more here,
 * but objects of other kinds are held by nothing else. Sized for a Deployment of thousands of replicas: the
 * ReplicaSet creates them faster than the scheduler binds them, and with room for 2,048, reading back from
 * LevelDB the pods being bound was 4 % of a 5,000-pod placement's CPU.
 */
const RECENT_MAX = 8192;
const RECENT_MAX_BYTES = 8 * 1024 * 1024;
/** Nothing larger is kept. */
const RECENT_MAX_OBJECT_BYTES = 256 * 1024;
/**
 * Events are written once and seldom again (a series or a fold is the exception), and are the most numerous
 * writes: kept, they would push out the objects that are written again.
 */
const NOT_KEPT_KINDS: ReadonlySet<string> = new Set(['Event']);
/** After a failed write the store reopens LevelDB before writing again, once this much is free. */
const REOPEN_MIN_FREE_BYTES = 1024 * 1024;

type Db = ClassicLevel<string, unknown>;
/** Values of group-commit puts are JSON already (their size caps the group), stored byte for byte as the json encoding would. */
type BatchOp = { type: 'put'; key: string; value: unknown; valueEncoding?: 'utf8' } | { type: 'del'; key: string };

/** A put whose value is serialized here, so its size is known; reads decode it with the json encoding as usual. */
function jsonPut(key: string, value: unknown): BatchOp & { type: 'put'; value: string } {
  return utf8Put(key, JSON.stringify(value));
}

/** A put of a value that is JSON already. */
function utf8Put(key: string, json: string): BatchOp & { type: 'put'; value: string } {
  return { type: 'put', key, value: json, valueEncoding: 'utf8' };
}

/** A write decided on the writer chain, waiting for its group's synced batch. */
interface PendingWrite {
  revision: number;
  type: WatchEventType;
  key: string;
  object: ApiObject;
  /** The object as stored, JSON; undefined for a sealed Secret (stored encrypted). */
  json: string | undefined;
  /**
   * A sealed Secret's copy for its watches, made when the write is decided: `object` may be, or share parts with,
   * what an earlier write handed its caller by the time the batch is written.
   */
  sealedCopy: ApiObject | undefined;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Writes that share one synced batch, in revision order. */
interface Group {
  ops: BatchOp[];
  bytes: number;
  writes: PendingWrite[];
  /** A Secret was written in the clear (no cipher): the batch drops the sealed marker. */
  plaintextSecret: boolean;
  settled: Promise<void>;
  settle: () => void;
}

function newGroup(): Group {
  let settle!: () => void;
  const settled = new Promise<void>((resolve) => (settle = resolve));
  return { ops: [], bytes: 0, writes: [], plaintextSecret: false, settled, settle };
}

/** What a writer step decided: its result, and (when it wrote) the promise of that write being durable. */
interface Decided<T> {
  result: T;
  durable?: Promise<void>;
}

function logKey(revision: number): string {
  return `${LOG}${String(revision).padStart(16, '0')}`;
}

/** A change-log entry as stored: an encrypted one keeps only its object's key in the clear. */
type StoredLogEntry = WatchEvent | { type: WatchEventType; revision: number; key: string; object: string };

/**
 * A writer step's failure is its caller's: it rejects the promise serialize() returned. The chain
 * the next step waits on only needs to know the step ended, so it drops the error it also sees.
 */
function failureOwnedByCaller(): void {}

/** A LevelDB failure (I/O error, corruption) as a StoreError naming what was being done. */
async function io<T>(doing: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw new StoreError(`store: ${doing} failed: ${errorMessage(err)}`, err);
  }
}

/** io() for a synchronous LevelDB call. */
function ioSync<T>(doing: string, op: () => T): T {
  try {
    return op();
  } catch (err) {
    throw new StoreError(`store: ${doing} failed: ${errorMessage(err)}`, err);
  }
}

/** LevelDB refused to open because another process holds the directory's lock (a running server). */
export function isLockError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === 'LEVEL_LOCKED') return true;
  }
  return false;
}

/**
 * The desired-state store on LevelDB. A single writer (a promise chain) decides every write in turn
 * (reads, resourceVersion check, revision), so the check and the write are atomic and revisions
 * strictly increase. Decided writes join a group; one group at a time is written as one synced batch
 * (objects + change-log entries + revision counter) while the next one fills, and a write is
 * acknowledged only after its group's fsync, so an acknowledged write survives kill -9 and power loss.
 * The writer reads through `overlay` (decided, not yet durable), so it decides on what the disk will
 * hold; get/list/watch see only durable state.
 */
export class LevelStore implements BackendStore {
  /** The last durable revision: everything <= it is on disk and published to watchers. */
  private rev: number;
  /** The last revision the writer handed out (>= rev; the gap is in `groups` / `flushing`). */
  private decided: number;
  private compacted: number;
  private tail: Promise<unknown> = Promise.resolve();
  private closing = false;
  private compactQueued = false;
  private readonly watchers = new Set<Watcher>();
  /** Object keys written by decided, not yet durable writes: the latest value (undefined = deleted). */
  private readonly overlay = new Map<string, { revision: number; object: ApiObject | undefined }>();
  /**
   * The durable value of recently written keys, as the frozen copy their watch events carried (the object
   * cache keeps that same copy, so this holds little of its own), oldest first. The writer reads here before
   * LevelDB: reading and parsing every updated object again was a twentieth of a placement's CPU.
   */
  private readonly recent = new Map<string, { object: ApiObject; bytes: number }>();
  private recentBytes = 0;
  /** Groups waiting for the flusher, oldest first; the last one fills. */
  private groups: Group[] = [];
  private flushing: Group | undefined;
  /**
   * Set by a failed batch: LevelDB's log may end in a torn record, after which appended records are
   * lost at the next open (measured on a full tmpfs: writes acknowledged after the disk had room again
   * were gone after a restart). Reopening replays the log up to the tear and starts a new one.
   */
  private reopenBeforeWrite: string | undefined;
  /**
   * Durable objects per list prefix ('{kind}/' and '{kind}/{namespace}/'), so a list of an empty one
   * (admission lists the namespace's ResourceQuotas at every create; there are usually none) answers
   * from memory instead of a snapshot and an iterator. Counted at open, kept in step by flush().
   */
  private readonly counts = new Map<string, number>();
  /** Told each group commit's size and synced batch time (/metrics); set by the entry point. */
  private commitObserver: ((writes: number, seconds: number, ok: boolean) => void) | undefined;
  private readonly codec: SecretCodec;

  private constructor(
    private readonly db: Db,
    private readonly path: string,
    private readonly logger: Logger,
    private readonly compactKeep: number,
    rev: number,
    compacted: number,
    cipher: ValueCipher | undefined,
  ) {
    this.codec = new SecretCodec(cipher);
    this.rev = rev;
    this.decided = rev;
    this.compacted = compacted;
  }

  /**
   * `secrets`: encrypts Secrets at rest (see the key layout above). Without it Secrets are stored in
   * the clear and an encrypted one cannot be read (StoreError naming it); only tests omit it.
   */
  static async open(opts: { path: string; logger?: Logger; compactKeep?: number; secrets?: ValueCipher }): Promise<LevelStore> {
    const logger = opts.logger ?? silentLogger;
    const compactKeep = opts.compactKeep ?? DEFAULT_COMPACT_KEEP;
    if (!Number.isInteger(compactKeep) || compactKeep < 1) {
      throw new ValidationError([{ field: 'compactKeep', message: `must be a positive integer, got ${compactKeep}` }], 'invalid store options');
    }
    // LevelDB makes its directory and files world-readable (0755/0644): the directory is what keeps
    // others out, so it is made (or tightened to) 0700 before LevelDB opens it.
    await io(`preparing ${opts.path}`, () => ensurePrivateDir(opts.path, logger));
    const db: Db = new ClassicLevel<string, unknown>(opts.path, { valueEncoding: 'json' });
    try {
      await db.open();
    } catch (err) {
      if (isLockError(err)) {
        throw new StoreError(`data dir ${opts.path} is in use: another drover server (or process) holds its lock`, err);
      }
      throw new StoreError(`cannot open store at ${opts.path}: ${errorMessage(err)}`, err);
    }
    const [rev, compacted] = await io(`reading the revision counters in ${opts.path}`, async () => [
      ((await db.get(META_REVISION)) as number | undefined) ?? 0,
      ((await db.get(META_COMPACTED)) as number | undefined) ?? 0,
    ]);
    await io(`tightening the file modes in ${opts.path}`, () => tightenFilesIn(opts.path, logger, true));
    const store = new LevelStore(db, opts.path, logger, compactKeep, rev, compacted, opts.secrets);
    await io(`counting the objects in ${opts.path}`, async () => {
      for await (const key of db.keys({ gte: REGISTRY, lt: prefixEnd(REGISTRY) })) store.count(key, 1);
    });
    logger.info({ path: opts.path, revision: rev, compacted, secretsEncrypted: opts.secrets !== undefined }, 'store opened');
    if (opts.secrets) {
      const sealedWith = await io('reading the secrets marker', () => db.get(META_SEALED));
      if (sealedWith !== opts.secrets.primaryKeyId) {
        // Not fatal: a Secret that cannot be opened fails its own reads, naming it; the rest serve.
        const report = await store.sealSecrets();
        if (report.failed.length > 0) logger.error({ failed: report.failed }, 'some Secrets cannot be decrypted with the secrets keyring; reads of them fail until the right key is restored');
      } else {
        // One Secret tells whether this is the keyring the store was written with (a restored backup
        // with another key file): said at start, not only at the first read that fails.
        const prefix = `${REGISTRY}${ENCRYPTED_KIND}/`;
        const first = await io('reading a Secret', () => db.iterator({ gte: prefix, lt: prefixEnd(prefix), limit: 1 }).all());
        for (const [key, raw] of first) {
          try {
            store.decodeObject(key, raw);
          } catch (err) {
            logger.error({ err: errorMessage(err) }, 'the secrets keyring does not decrypt the stored Secrets; reads of them fail until the right key file is restored');
          }
        }
      }
    }
    store.maybeCompact();
    return store;
  }

  revision(): number {
    return this.rev;
  }

  /** Highest revision whose change-log entry was dropped; watching from below it throws GoneError. */
  compactedRevision(): number {
    return this.compacted;
  }

  /*
   * The casts from stored JSON to the kind's type below are the one place that claim is made: every
   * object was validated against its kind's schema before it was written (see Store).
   */
  async get<K extends string>(kind: K, namespace: string, name: string): Promise<ObjectOf<K> | undefined> {
    return (await this.read(objectKey(kind, namespace, name))) as ObjectOf<K> | undefined;
  }

  async list<K extends string>(kind: K, namespace?: string): Promise<ListResult<ObjectOf<K>>> {
    const prefix = listPrefix(kind, namespace);
    // Consistent: counts and rev change together in flush().
    if (!this.counts.get(prefix.slice(REGISTRY.length))) return { items: [], revision: this.rev };
    // One explicit snapshot for the items and the revision, so the pair is exact even while writes land.
    const snapshot = this.db.snapshot();
    try {
      const [revision, entries] = await io(`listing ${prefix}`, async () => [
        (this.db.getSync(META_REVISION, { snapshot }) as number | undefined) ?? 0,
        await this.db.iterator({ gte: prefix, lt: prefixEnd(prefix), snapshot }).all(),
      ] as const);
      const items = sortByNamespaceName(entries.map(([key, raw]) => this.decodeObject(key, raw) as ObjectOf<K>));
      return { items, revision };
    } finally {
      await snapshot.close();
    }
  }

  create<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    return this.write(async () => {
      const namespace = obj.metadata.namespace ?? '';
      const key = objectKey(obj.kind, namespace, obj.metadata.name);
      if (this.readForWrite(key) !== undefined) throw new AlreadyExistsError(what(obj.kind, namespace, obj.metadata.name));
      const revision = this.decided + 1;
      const created = createdObject(obj, String(revision));
      // `created` is the caller's: createdObject copied `obj`, and once the write is durable (when the caller
      // gets it) the store holds no reference to it (staged as JSON; the overlay entry goes at the flush).
      return { result: created, durable: this.stage(revision, 'ADDED', key, created) };
    });
  }

  update<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    return this.write(async () => this.decideUpdate(obj, this.readForWrite(objectKey(obj.kind, obj.metadata.namespace ?? '', obj.metadata.name)) as ApiObject | undefined));
  }

  /**
   * Runs the read, `mutate` and the write as one step on the writer chain, so no other write can land
   * in between: a patch never conflicts and never needs to retry (20 concurrent patches that each
   * increment a counter end at exactly +20). `mutate` gets a private copy; the read resourceVersion
   * always wins over whatever `mutate` puts there.
   */
  patch<K extends string>(kind: K, namespace: string, name: string, mutate: (cur: ObjectOf<K>) => ApiObject | undefined): Promise<ObjectOf<K> | undefined> {
    return this.write<ObjectOf<K> | undefined>(async () => {
      const cur = this.readForWrite(objectKey(kind, namespace, name)) as ObjectOf<K> | undefined;
      if (!cur) throw new NotFoundError(what(kind, namespace, name));
      const next = mutate(deepCopy(cur));
      if (next === undefined) return { result: undefined };
      // Same kind as the read (patchedObject checks), so the stored result is an ObjectOf<K> again.
      return this.decideUpdate(patchedObject(kind, namespace, name, next, cur), cur) as Decided<ObjectOf<K>>;
    });
  }

  /**
   * The DELETED event and the returned object carry the deletion's revision as resourceVersion, so a
   * watcher's last-seen revision stays monotonic.
   */
  delete<K extends string>(kind: K, namespace: string, name: string, opts: { resourceVersion?: string } = {}): Promise<ObjectOf<K>> {
    return this.write(async () => {
      const key = objectKey(kind, namespace, name);
      const cur = this.readForWrite(key) as ObjectOf<K> | undefined;
      if (!cur) throw new NotFoundError(what(kind, namespace, name));
      assertResourceVersion(kind, namespace, name, opts.resourceVersion, cur);
      const revision = this.decided + 1;
      const deleted = deletedObject(cur, String(revision));
      return { result: deepCopy(deleted), durable: this.stage(revision, 'DELETED', key, deleted) };
    });
  }

  watch(fromRevision: number, onEvent: (e: WatchEvent) => void, opts: WatchOptions = {}): Watch {
    if (this.closing) throw new StoreError('store is closed');
    if (fromRevision < this.compacted) {
      throw new GoneError(`revision ${fromRevision} has been compacted (oldest watchable revision is ${this.compacted}); list again and watch from its revision`);
    }
    const kinds = opts.kinds ? new Set(opts.kinds) : undefined;
    const w = new Watcher(fromRevision, kinds, onEvent, this.logger, (x) => this.watchers.delete(x));
    // Register before taking the snapshot: every revision <= this.rev is durable and in the snapshot,
    // every later one is published to this watcher after registration, so replay + live has no gap.
    // The iterator (and its implicit snapshot) is created synchronously, before any compaction can
    // delete entries we are about to replay.
    this.watchers.add(w);
    const upTo = this.rev;
    if (upTo <= fromRevision) {
      w.endReplay();
      return w;
    }
    const it = this.db.iterator({ gt: logKey(fromRevision), lte: logKey(upTo) });
    void (async () => {
      try {
        for await (const [key, entry] of it) {
          if (w.closed) break;
          let event: WatchEvent;
          try {
            event = this.decodeLogEntry(key, entry);
          } catch (err) {
            // Garbage must not reach a watcher; the one undecryptable Secret is named, the rest replay.
            this.logger.error({ err: errorMessage(err), revision: key.slice(LOG.length) }, 'watch replay skipped a change-log entry that cannot be decrypted');
            continue;
          }
          w.deliver(event);
        }
      } catch (err) {
        if (!w.closed && !this.closing) this.logger.error({ err: errorMessage(err), fromRevision }, 'watch replay failed; events may be missing');
      } finally {
        await it.close().catch((err: unknown) => this.logger.warn({ err: errorMessage(err), fromRevision }, 'closing the watch replay iterator failed'));
        w.endReplay();
      }
    })();
    return w;
  }

  /**
   * Every stored object as LevelDB holds it (a sealed Secret as its sealed string), in key order, for
   * backup and migration (server/store/transfer.ts). Their callers hold the store's lock and write
   * nothing meanwhile, so the objects are the ones at revision().
   */
  async *storedObjects(): AsyncGenerator<{ key: string; value: unknown }> {
    for await (const [key, value] of this.db.iterator({ gte: REGISTRY, lt: prefixEnd(REGISTRY) })) yield { key, value };
  }

  /**
   * Every stored object as LevelDB holds it (a sealed Secret as its sealed string), in key order, and the
   * revision they are at, read from one LevelDB snapshot while the store serves: writes that land
   * meanwhile are not seen and wait for nothing (an online backup: server/store/snapshot-route.ts). The
   * snapshot is released when `read` settles.
   */
  async readAtOneRevision<T>(read: (revision: number, objects: AsyncIterable<{ key: string; value: unknown }>) => Promise<T>): Promise<T> {
    const snapshot = this.db.snapshot();
    try {
      // The counter and the objects change in one batch (flush()), so in one snapshot they agree.
      const revision = ioSync('reading the revision', () => (this.db.getSync(META_REVISION, { snapshot }) as number | undefined) ?? 0);
      const db = this.db;
      async function* objects(): AsyncGenerator<{ key: string; value: unknown }> {
        for await (const [key, value] of db.iterator({ gte: REGISTRY, lt: prefixEnd(REGISTRY), snapshot })) yield { key, value };
      }
      return await read(revision, objects());
    } finally {
      await snapshot.close();
    }
  }

  /**
   * Replaces every object with `objects`, stored byte for byte as given (uid, resourceVersion, a sealed
   * Secret's string: nothing is re-encrypted), and the change log with none: the store is at `revision`,
   * compacted up to it, so a watch from an older revision is told to relist. For a restore
   * (server/store/transfer.ts); the sealed marker is dropped so the next server start checks the Secrets.
   */
  replaceObjects(objects: Iterable<{ key: string; value: unknown }>, revision: number): Promise<void> {
    return this.serialize(async () => {
      await this.drain();
      if (this.reopenBeforeWrite) await io('reopening after a failed write', () => this.reopen());
      let ops: BatchOp[] = [];
      const flush = async (sync: boolean) => {
        const batch = ops;
        ops = [];
        await io('restoring objects', () => this.db.batch(batch, { sync }));
      };
      for (const prefix of [REGISTRY, LOG]) {
        for await (const key of this.db.keys({ gte: prefix, lt: prefixEnd(prefix) })) {
          ops.push({ type: 'del', key });
          if (ops.length >= COMPACT_CHUNK) await flush(false);
        }
      }
      for (const o of objects) {
        ops.push({ type: 'put', key: o.key, value: o.value });
        if (ops.length >= COMPACT_CHUNK) await flush(false);
      }
      // Last, in the synced batch: a restore cut short leaves the old counters, and the tool refuses the
      // then non-empty store without --force.
      ops.push({ type: 'put', key: META_REVISION, value: revision }, { type: 'put', key: META_COMPACTED, value: revision }, { type: 'del', key: META_SEALED });
      await flush(true);
      this.rev = this.decided = this.compacted = revision;
      this.counts.clear();
      this.forgetAll();
      for await (const key of this.db.keys({ gte: REGISTRY, lt: prefixEnd(REGISTRY) })) this.count(key, 1);
    });
  }

  /** One server owns a LevelDB store (its lock says so): there is no other leader to fence against. */
  fenced(_fence: () => WriteFence | undefined): Store {
    return storeView(this, this);
  }

  /** Trims the change log to the last `compactKeep` entries now (it also happens in the background). */
  compact(): Promise<void> {
    return this.serialize(() => this.doCompact());
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Writes already queued (and a queued compaction) finish before the database goes away.
    await this.tail;
    await this.drain();
    for (const w of [...this.watchers]) w.close();
    await this.db.close();
  }

  /**
   * Encrypts every stored Secret (objects and change-log entries) that is plaintext or under a key
   * other than the primary one, then compacts LevelDB so the old copies leave its files too. One that
   * cannot be opened is left as it is and named in `failed`. Runs on the writer chain.
   */
  sealSecrets(): Promise<SealReport> {
    return this.serialize(() => this.doSealSecrets());
  }

  /** The key ids the stored Secrets are encrypted with ('plaintext' for unencrypted ones), counted. */
  async secretKeyUsage(): Promise<Record<string, number>> {
    const usage: Record<string, number> = {};
    const count = (v: unknown) => {
      const id = envelopeKeyId(v) ?? 'plaintext';
      usage[id] = (usage[id] ?? 0) + 1;
    };
    const prefix = `${REGISTRY}${ENCRYPTED_KIND}/`;
    for await (const v of this.db.values({ gte: prefix, lt: prefixEnd(prefix) })) count(v);
    for await (const e of this.db.values({ gte: LOG, lt: prefixEnd(LOG) })) {
      const entry = e as StoredLogEntry;
      if (typeof entry.object === 'string' || entry.object.kind === ENCRYPTED_KIND) count(entry.object);
    }
    return usage;
  }

  /** For the writer's decisions: the value the disk will hold once the decided writes are durable. */
  private readForWrite(key: string): unknown {
    const pending = this.overlay.get(key);
    if (pending) return pending.object;
    return this.recent.get(key)?.object ?? this.readSync(key);
  }

  /** Keeps `object` (frozen, durable; `bytes` of JSON) as `key`'s value for the writer, or forgets the key (undefined). */
  private remember(key: string, object: ApiObject | undefined, bytes: number): void {
    this.forget(key);
    if (object === undefined || NOT_KEPT_KINDS.has(object.kind) || bytes > RECENT_MAX_OBJECT_BYTES) return;
    this.recent.set(key, { object, bytes });
    this.recentBytes += bytes;
    while (this.recent.size > RECENT_MAX || this.recentBytes > RECENT_MAX_BYTES) this.forget(this.recent.keys().next().value!);
  }

  private forget(key: string): void {
    const kept = this.recent.get(key);
    if (!kept) return;
    this.recent.delete(key);
    this.recentBytes -= kept.bytes;
  }

  /** Forgets every kept object: after a failed write, LevelDB (reopened) may hold more than they say. */
  private forgetAll(): void {
    this.recent.clear();
    this.recentBytes = 0;
  }

  private async read(key: string): Promise<unknown> {
    return this.readSync(key);
  }

  /**
   * Synchronous on purpose: a point read is served from LevelDB's memtable or block cache (or the page
   * cache) in microseconds, while the async get() costs a thread-pool round trip (measured ~120 µs
   * each under load, ~3 µs in sync) and was the API's largest CPU item at 16 creates in flight.
   */
  private readSync(key: string): unknown {
    const raw = ioSync(`reading ${key}`, () => this.db.getSync(key));
    return raw === undefined ? undefined : this.decodeObject(key, raw);
  }

  /** The value to store for `obj` under `key`: a Secret encrypted when there is a cipher. */
  private encodeObject(key: string, obj: ApiObject): unknown {
    return this.codec.encode(key, obj);
  }

  private encodeLogEntry(key: string, e: WatchEvent): StoredLogEntry {
    if (!this.codec.seals(e.object)) return e;
    const objKey = objectKey(e.object.kind, e.object.metadata.namespace ?? '', e.object.metadata.name);
    return { type: e.type, revision: e.revision, key: objKey, object: this.codec.encode(key, e.object) as string };
  }

  private decodeObject(key: string, raw: unknown): unknown {
    return this.codec.decodeObject(key, raw);
  }

  private decodeLogEntry(key: string, raw: unknown): WatchEvent {
    const entry = raw as StoredLogEntry;
    if (typeof entry.object !== 'string') return entry as WatchEvent;
    const ref = 'key' in entry ? parseObjectKey(entry.key) : undefined;
    const name = `${ref ? what(ref.kind, ref.namespace, ref.name) : 'an object'} (change-log revision ${entry.revision})`;
    return { type: entry.type, revision: entry.revision, object: this.codec.open(entry.object, key, name) };
  }

  /** Must run on the writer chain. */
  private async doSealSecrets(): Promise<SealReport> {
    const cipher = this.codec.cipher;
    if (!cipher) throw new StoreError('store: cannot encrypt Secrets: the store was opened without the secrets keyring');
    // Decided writes land first: a Secret read below must not be overwritten with an older value after
    // its newer one is flushed. No write is decided meanwhile (this runs on the writer chain).
    await this.drain();
    if (this.reopenBeforeWrite) await io('reopening after a failed write', () => this.reopen());
    const report: SealReport = { objects: 0, logEntries: 0, plaintext: 0, current: 0, failed: [] };
    let ops: BatchOp[] = [];
    const flush = async () => {
      if (ops.length === 0) return;
      const batch = ops;
      ops = [];
      await io('re-encrypting Secrets', () => this.db.batch(batch, { sync: true }));
    };
    const upToDate = (v: unknown) => envelopeKeyId(v) === cipher.primaryKeyId;
    const prefix = `${REGISTRY}${ENCRYPTED_KIND}/`;
    // Iterators read a snapshot, so rewriting keys behind them is safe.
    for await (const [key, raw] of this.db.iterator({ gte: prefix, lt: prefixEnd(prefix) })) {
      if (upToDate(raw)) {
        report.current += 1;
        continue;
      }
      let obj: ApiObject;
      try {
        obj = this.decodeObject(key, raw) as ApiObject;
      } catch (err) {
        report.failed.push(errorMessage(err));
        continue;
      }
      if (!isEnvelope(raw)) report.plaintext += 1;
      ops.push({ type: 'put', key, value: this.encodeObject(key, obj) });
      report.objects += 1;
      if (ops.length >= SEAL_CHUNK) await flush();
    }
    for await (const [key, raw] of this.db.iterator({ gte: LOG, lt: prefixEnd(LOG) })) {
      const entry = raw as StoredLogEntry;
      if (typeof entry.object !== 'string' && entry.object.kind !== ENCRYPTED_KIND) continue;
      if (upToDate(entry.object)) {
        report.current += 1;
        continue;
      }
      let event: WatchEvent;
      try {
        event = this.decodeLogEntry(key, raw);
      } catch (err) {
        report.failed.push(errorMessage(err));
        continue;
      }
      if (typeof entry.object !== 'string') report.plaintext += 1;
      ops.push({ type: 'put', key, value: this.encodeLogEntry(key, event) });
      report.logEntries += 1;
      if (ops.length >= SEAL_CHUNK) await flush();
    }
    if (report.failed.length === 0) ops.push({ type: 'put', key: META_SEALED, value: cipher.primaryKeyId });
    await flush();
    if (report.objects + report.logEntries > 0) {
      // Overwritten values linger in LevelDB's log and table files until compaction merges them away.
      await io('compacting after re-encryption', () => this.db.compactRange('/', prefixEnd('/')));
      this.logger.info({ keyId: cipher.primaryKeyId, objects: report.objects, logEntries: report.logEntries, plaintext: report.plaintext }, 'Secrets re-encrypted');
    }
    return report;
  }

  /** Queues `fn` on the single writer; a failed step does not stop the ones behind it. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new StoreError('store is closed'));
    const run = this.tail.then(fn);
    this.tail = run.catch(failureOwnedByCaller);
    return run;
  }

  /** Must run on the writer chain; `cur` is what readForWrite returned for the object's key. */
  private decideUpdate<T extends ApiObject>(obj: T, cur: ApiObject | undefined): Decided<Stored<T>> {
    const key = objectKey(obj.kind, obj.metadata.namespace ?? '', obj.metadata.name);
    const revision = this.decided + 1;
    const updated = updatedObject(obj, cur, String(revision));
    // The caller's, as in create(): updatedObject made it afresh.
    return { result: updated, durable: this.stage(revision, 'MODIFIED', key, updated) };
  }

  /**
   * Decides on the writer chain, then waits (off the chain, so the next write is decided meanwhile)
   * until the write is durable.
   */
  private async write<T>(decide: () => Promise<Decided<T>>): Promise<T> {
    const { result, durable } = await this.serialize(decide);
    if (durable) await durable;
    return result;
  }

  /**
   * Adds a decided write (object change + change-log entry) to the filling group and starts a flush
   * if none is running, so a lone write goes to disk at once. Synchronous: nothing can interleave
   * between the writer's last read and the revision and overlay it takes here.
   */
  private stage(revision: number, type: WatchEventType, key: string, object: ApiObject): Promise<void> {
    const lk = logKey(revision);
    // The object is serialized once: its change-log entry embeds the same JSON (a sealed Secret is encrypted
    // under each key, so it is serialized per key).
    const json = this.codec.seals(object) ? undefined : JSON.stringify(object);
    const sealedCopy = json === undefined ? deepFreeze(deepCopy(object)) : undefined;
    const ops: BatchOp[] = [
      type === 'DELETED' ? { type: 'del', key } : json === undefined ? jsonPut(key, this.encodeObject(key, object)) : utf8Put(key, json),
      json === undefined ? jsonPut(lk, this.encodeLogEntry(lk, { type, revision, object })) : utf8Put(lk, `{"type":"${type}","revision":${revision},"object":${json}}`),
    ];
    const bytes = ops.reduce((n, op) => n + op.key.length + (op.type === 'put' ? (op.value as string).length : 0), 0);
    let group = this.groups.at(-1);
    if (!group || group.writes.length >= GROUP_MAX_WRITES || group.bytes + bytes > GROUP_MAX_BYTES) {
      group = newGroup();
      this.groups.push(group);
    }
    group.ops.push(...ops);
    group.bytes += bytes;
    // A Secret written in the clear (no cipher) makes the next start with a keyring look for it.
    if (object.kind === ENCRYPTED_KIND && !this.codec.cipher) group.plaintextSecret = true;
    this.decided = revision;
    this.overlay.set(key, { revision, object: type === 'DELETED' ? undefined : object });
    const g = group;
    const durable = new Promise<void>((resolve, reject) => g.writes.push({ revision, type, key, object, json, sealedCopy, resolve, reject }));
    this.flushNext();
    return durable;
  }

  /** Observes every group commit from now on: how many writes shared it, and how long its synced batch took. */
  onCommit(observer: (writes: number, seconds: number, ok: boolean) => void): void {
    this.commitObserver = observer;
  }

  /** Starts writing the oldest waiting group unless a flush is running (its end starts the next). */
  private flushNext(): void {
    if (this.flushing || this.groups.length === 0) return;
    const group = this.groups.shift()!;
    this.flushing = group;
    void this.flush(group);
  }

  /** One synced batch for the whole group; then the revision, the events and the acks, in that order. */
  private async flush(group: Group): Promise<void> {
    const last = group.writes.at(-1)!.revision;
    const ops = [...group.ops, { type: 'put', key: META_REVISION, value: last } satisfies BatchOp];
    if (group.plaintextSecret) ops.push({ type: 'del', key: META_SEALED });
    const began = performance.now();
    try {
      if (this.reopenBeforeWrite) await this.reopen();
      await this.db.batch(ops, { sync: true });
    } catch (err) {
      this.flushing = undefined;
      this.commitObserver?.(group.writes.length, (performance.now() - began) / 1000, false);
      this.failDecided(group, err);
      return;
    }
    this.flushing = undefined;
    this.commitObserver?.(group.writes.length, (performance.now() - began) / 1000, true);
    // Advance the revision and publish in the same tick: watch() relies on "<= rev is durable, > rev
    // is still to be published".
    this.rev = last;
    for (const w of group.writes) {
      if (this.overlay.get(w.key)?.revision === w.revision) this.overlay.delete(w.key);
      // ADDED only for a key that did not exist, DELETED only for one that did (decided in order).
      if (w.type !== 'MODIFIED') this.count(w.key, w.type === 'ADDED' ? 1 : -1);
      // One frozen copy for every watch that wants it (the written object shares parts with the caller's):
      // a copy per watch was the largest item of a write's own CPU with five watches (scheduler,
      // controllers, object cache, publishers). A watch of other kinds gets the event uncopied: it only
      // moves its resume point (offer), its callback never sees it.
      // The copy is parsed from the JSON written, so a watch sees exactly what a read from disk gives.
      let shared: ApiObject | undefined;
      for (const watcher of this.watchers) {
        if (watcher.wants(w.object.kind)) shared ??= w.sealedCopy ?? deepFreeze(JSON.parse(w.json!) as ApiObject);
        watcher.offer({ type: w.type, revision: w.revision, object: shared ?? w.object });
      }
      // Sealed Secrets are not kept in the clear beyond the watches that asked for them.
      this.remember(w.key, w.type === 'DELETED' || w.json === undefined ? undefined : shared, w.json?.length ?? 0);
    }
    this.maybeCompact();
    for (const w of group.writes) w.resolve();
    group.settle();
    this.flushNext();
  }

  /**
   * A failed batch fails its writes, and every write decided after them (they were decided on state
   * that will not exist), each with the cause; the writer starts again from the durable state, so the
   * next write gets the next durable revision. Nothing durable is touched.
   */
  private failDecided(failed: Group, err: unknown): void {
    const later = this.groups;
    this.groups = [];
    this.overlay.clear();
    this.forgetAll();
    this.decided = this.rev;
    const cause = errorMessage(err);
    this.reopenBeforeWrite = cause;
    const first = failed.writes[0]!.revision;
    const last = failed.writes.at(-1)!.revision;
    this.logger.error({ err: cause, revisions: `${first}-${last}`, writes: failed.writes.length, after: later.reduce((n, g) => n + g.writes.length, 0) }, 'store write failed; its writes and the ones decided after them are refused');
    for (const w of failed.writes) w.reject(new StoreError(`store: writing revision ${w.revision} (${w.key}) failed: ${cause}`, err));
    failed.settle();
    for (const g of later) {
      for (const w of g.writes) w.reject(new StoreError(`store: writing revision ${w.revision} (${w.key}) failed: it followed revisions ${first}-${last}, whose write failed: ${cause}`, err));
      g.settle();
    }
  }

  private count(objKey: string, delta: number): void {
    const ref = parseObjectKey(objKey);
    if (!ref) return;
    for (const p of [`${ref.kind}/`, `${ref.kind}/${ref.namespace}/`]) this.counts.set(p, (this.counts.get(p) ?? 0) + delta);
  }

  /** Resolves once every decided write is durable or failed. */
  private async drain(): Promise<void> {
    for (let g = this.groups.at(-1) ?? this.flushing; g; g = this.groups.at(-1) ?? this.flushing) await g.settled;
  }

  /** Closes and opens LevelDB (see reopenBeforeWrite); refuses while the disk has no room to recover into. */
  private async reopen(): Promise<void> {
    const fs = await statfs(this.path);
    const free = fs.bavail * fs.bsize;
    if (free < REOPEN_MIN_FREE_BYTES) {
      throw new StoreError(`${this.path} has ${free} bytes free after a failed write (${this.reopenBeforeWrite}); writes resume once ${REOPEN_MIN_FREE_BYTES} bytes are free`);
    }
    await this.db.close();
    await this.db.open();
    this.reopenBeforeWrite = undefined;
    this.logger.warn({ path: this.path, free }, 'store reopened after a failed write');
  }

  /** Compaction waits until the log is `slack` entries over its limit, so it is one batch per many writes. */
  private maybeCompact(): void {
    const slack = Math.min(1000, Math.max(16, Math.ceil(this.compactKeep / 10)));
    if (this.compactQueued || this.closing || this.rev - this.compacted < this.compactKeep + slack) return;
    this.compactQueued = true;
    this.serialize(() => this.doCompact())
      .catch((err) => this.logger.warn({ err: errorMessage(err) }, 'change-log compaction failed; will retry after later writes'))
      .finally(() => {
        this.compactQueued = false;
      });
  }

  /** Must run on the writer chain. */
  private async doCompact(): Promise<void> {
    const target = this.rev - this.compactKeep;
    // After a failed write only the flusher touches the database until it has reopened it; the next
    // write's maybeCompact() comes back here.
    if (target <= this.compacted || this.reopenBeforeWrite) return;
    const from = this.compacted;
    // Raise the floor before deleting: from here on watch() refuses the revisions about to disappear,
    // and watches already replaying read from snapshots taken before the delete.
    this.compacted = target;
    // Chunked so a big backlog (e.g. compactKeep lowered on restart) does not build one giant batch.
    // Not synced: if a chunk is lost in a crash, the next compaction deletes the same entries again.
    for (let start = from + 1; start <= target; start += COMPACT_CHUNK) {
      const end = Math.min(target, start + COMPACT_CHUNK - 1);
      const ops: BatchOp[] = [];
      for (let r = start; r <= end; r++) ops.push({ type: 'del', key: logKey(r) });
      ops.push({ type: 'put', key: META_COMPACTED, value: end });
      await io(`compacting the change log up to ${end}`, () => this.db.batch(ops));
    }
    this.logger.debug({ compacted: target, dropped: target - from }, 'change log compacted');
  }
}
