import { randomUUID } from 'node:crypto';
import { ClassicLevel } from 'classic-level';
import type { ApiObject } from '../../src/api/meta.js';
import { KINDS } from '../../src/api/kinds.js';
import { canonicalJson } from '../../src/util/canonical-json.js';
import { AlreadyExistsError, BadRequestError, ConflictError, GoneError, NotFoundError, StoreError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { envelopeKeyId, isEnvelope } from '../../src/util/aead.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, tightenFilesIn } from '../../src/util/private-fs.js';
import type { ListResult, ObjectOf, SealReport, Store, Stored, ValueCipher, Watch, WatchEvent, WatchEventType } from './types.js';

/*
 * Key layout (all keys are strings, values JSON):
 *   /registry/{kind}/{namespace}/{name}  → the object (cluster-scoped kinds use namespace '')
 *   /log/{revision, 16 digits}           → { type, revision, object }: the change log watches replay
 *   /meta/revision                       → the last committed revision
 *   /meta/compacted                      → log entries up to and including this revision are gone
 *   /meta/secrets-sealed                 → id of the key every stored Secret is encrypted with (absent:
 *                                          some may be plaintext or under an older key)
 *
 * Secrets at rest (with a ValueCipher, server/secrets/keyring.ts): a Secret is stored as one string,
 * `k8s:enc:aesgcm:v1:<keyid>:<base64>`, the whole serialized object encrypted with AAD = the LevelDB
 * key it is stored under; its change-log entries as { type, revision, key: <object key>, object:
 * <same form, AAD = the log key> }. Every read path opens them, so nothing above the store sees the
 * difference. Plain Secrets (from before encryption) still read, and are encrypted by sealSecrets(),
 * which open() runs when the marker above does not name the primary key.
 */
const REGISTRY = '/registry/';
const LOG = '/log/';
const META_REVISION = '/meta/revision';
const META_COMPACTED = '/meta/compacted';
const META_SEALED = '/meta/secrets-sealed';
const ENCRYPTED_KIND = 'Secret';
/** Re-encryption writes in batches of this many keys. */
const SEAL_CHUNK = 500;

const DEFAULT_COMPACT_KEEP = 10_000;
const COMPACT_CHUNK = 5_000;

type Db = ClassicLevel<string, unknown>;
type BatchOp = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

function objectKey(kind: string, namespace: string, name: string): string {
  return `${REGISTRY}${kind}/${namespace}/${name}`;
}

function logKey(revision: number): string {
  return `${LOG}${String(revision).padStart(16, '0')}`;
}

/** The exclusive upper bound of every key starting with `prefix` (all prefixes here end in '/'). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** The (kind, namespace, name) of an object key. */
function parseObjectKey(key: string): { kind: string; namespace: string; name: string } | undefined {
  const m = /^\/registry\/([^/]+)\/([^/]*)\/(.+)$/.exec(key);
  return m ? { kind: m[1]!, namespace: m[2]!, name: m[3]! } : undefined;
}

/** A change-log entry as stored: an encrypted one keeps only its object's key in the clear. */
type StoredLogEntry = WatchEvent | { type: WatchEventType; revision: number; key: string; object: string };

/** `pods "default/web"` / `nodes "edge-1"`, matching how the API names objects in errors. */
function what(kind: string, namespace: string, name: string): string {
  const plural = KINDS.find((k) => k.kind === kind)?.plural ?? kind.toLowerCase();
  return `${plural} "${namespace ? `${namespace}/` : ''}${name}"`;
}

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

function isLockError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if ((e as { code?: unknown }).code === 'LEVEL_LOCKED') return true;
  }
  return false;
}

/** One watch: buffers live events while its replay runs, and drops anything at or below what it already delivered. */
class Watcher implements Watch {
  closed = false;
  private replaying = true;
  private buffer: WatchEvent[] = [];
  private last: number;

  constructor(
    from: number,
    private readonly kinds: Set<string> | undefined,
    private readonly onEvent: (e: WatchEvent) => void,
    private readonly logger: Logger,
    private readonly onClose: (w: Watcher) => void,
  ) {
    this.last = from;
  }

  /** A live event, published right after its write committed. */
  offer(e: WatchEvent): void {
    if (this.closed) return;
    if (this.replaying) this.buffer.push(e);
    else this.deliver(e);
  }

  deliver(e: WatchEvent): void {
    // The revision guard makes replay/live overlap harmless: each revision reaches the callback at most once.
    if (this.closed || e.revision <= this.last) return;
    this.last = e.revision;
    if (this.kinds && !this.kinds.has(e.object.kind)) return;
    try {
      this.onEvent(e);
    } catch (err) {
      // A broken consumer must not break the store or the other watchers.
      this.logger.error({ err: errorMessage(err), revision: e.revision, kind: e.object.kind }, 'watch callback threw');
    }
  }

  endReplay(): void {
    this.replaying = false;
    const buffered = this.buffer;
    this.buffer = [];
    for (const e of buffered) this.deliver(e);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.buffer = [];
    this.onClose(this);
  }
}

/**
 * The desired-state store on LevelDB. A single writer (a promise chain) assigns revisions, so the
 * resourceVersion check and the write are atomic and revisions strictly increase; each write is one
 * synced batch (object + change-log entry + revision counter), so an acknowledged write survives
 * kill -9 and power loss.
 */
export class LevelStore implements Store {
  private rev: number;
  private compacted: number;
  private tail: Promise<unknown> = Promise.resolve();
  private closing = false;
  private compactQueued = false;
  private readonly watchers = new Set<Watcher>();

  private constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly compactKeep: number,
    rev: number,
    compacted: number,
    private readonly cipher: ValueCipher | undefined,
  ) {
    this.rev = rev;
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
    const store = new LevelStore(db, logger, compactKeep, rev, compacted, opts.secrets);
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
    const prefix = namespace === undefined ? `${REGISTRY}${kind}/` : `${REGISTRY}${kind}/${namespace}/`;
    // One explicit snapshot for the items and the revision, so the pair is exact even while writes land.
    const snapshot = this.db.snapshot();
    try {
      const [revision, entries] = await io(`listing ${prefix}`, async () => [
        ((await this.db.get(META_REVISION, { snapshot })) as number | undefined) ?? 0,
        await this.db.iterator({ gte: prefix, lt: prefixEnd(prefix), snapshot }).all(),
      ] as const);
      const items = entries.map(([key, raw]) => this.decodeObject(key, raw) as ObjectOf<K>);
      // Key order is not (namespace, name) order: '-' sorts before the '/' separator.
      const ns = (o: ApiObject) => o.metadata.namespace ?? '';
      items.sort((a, b) => (ns(a) !== ns(b) ? (ns(a) < ns(b) ? -1 : 1) : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
      return { items, revision };
    } finally {
      await snapshot.close();
    }
  }

  create<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    return this.serialize(async () => {
      const namespace = obj.metadata.namespace ?? '';
      const key = objectKey(obj.kind, namespace, obj.metadata.name);
      if ((await this.read(key)) !== undefined) throw new AlreadyExistsError(what(obj.kind, namespace, obj.metadata.name));
      const revision = this.rev + 1;
      const created = structuredClone(obj) as Stored<T>;
      created.metadata = {
        ...created.metadata,
        uid: randomUUID(),
        creationTimestamp: new Date().toISOString(),
        generation: 1,
        resourceVersion: String(revision),
      };
      await this.commit(revision, 'ADDED', { type: 'put', key, value: created }, created);
      return structuredClone(created);
    });
  }

  update<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    return this.serialize(() => this.doUpdate(obj));
  }

  /**
   * Runs the read, `mutate` and the write as one step on the writer chain, so no other write can land
   * in between: a patch never conflicts and never needs to retry (20 concurrent patches that each
   * increment a counter end at exactly +20). `mutate` gets a private copy; the read resourceVersion
   * always wins over whatever `mutate` puts there.
   */
  patch<K extends string>(kind: K, namespace: string, name: string, mutate: (cur: ObjectOf<K>) => ApiObject | undefined): Promise<ObjectOf<K> | undefined> {
    return this.serialize(async () => {
      const cur = (await this.read(objectKey(kind, namespace, name))) as ObjectOf<K> | undefined;
      if (!cur) throw new NotFoundError(what(kind, namespace, name));
      const next = mutate(structuredClone(cur));
      if (next === undefined) return undefined;
      if (next.kind !== kind || (next.metadata.namespace ?? '') !== namespace || next.metadata.name !== name) {
        throw new BadRequestError(`patch of ${what(kind, namespace, name)} must not change its kind, namespace or name`);
      }
      // Same kind as the read (checked above), so the stored result is an ObjectOf<K> again.
      return (await this.doUpdate({ ...next, metadata: { ...next.metadata, resourceVersion: cur.metadata.resourceVersion } })) as ObjectOf<K>;
    });
  }

  /**
   * The DELETED event and the returned object carry the deletion's revision as resourceVersion, so a
   * watcher's last-seen revision stays monotonic.
   */
  delete<K extends string>(kind: K, namespace: string, name: string, opts: { resourceVersion?: string } = {}): Promise<ObjectOf<K>> {
    return this.serialize(async () => {
      const key = objectKey(kind, namespace, name);
      const cur = (await this.read(key)) as ObjectOf<K> | undefined;
      if (!cur) throw new NotFoundError(what(kind, namespace, name));
      const stored = cur.metadata.resourceVersion ?? '';
      if (opts.resourceVersion !== undefined && opts.resourceVersion !== stored) {
        throw new ConflictError(what(kind, namespace, name), opts.resourceVersion, stored);
      }
      const revision = this.rev + 1;
      const deleted: ObjectOf<K> = { ...cur, metadata: { ...cur.metadata, resourceVersion: String(revision) } };
      await this.commit(revision, 'DELETED', { type: 'del', key }, deleted);
      return structuredClone(deleted);
    });
  }

  watch(fromRevision: number, onEvent: (e: WatchEvent) => void, opts: { kinds?: string[] } = {}): Watch {
    if (this.closing) throw new StoreError('store is closed');
    if (fromRevision < this.compacted) {
      throw new GoneError(`revision ${fromRevision} has been compacted (oldest watchable revision is ${this.compacted}); list again and watch from its revision`);
    }
    const kinds = opts.kinds ? new Set(opts.kinds) : undefined;
    const w = new Watcher(fromRevision, kinds, onEvent, this.logger, (x) => this.watchers.delete(x));
    // Register before taking the snapshot: every revision <= this.rev is committed and in the snapshot,
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

  /** Trims the change log to the last `compactKeep` entries now (it also happens in the background). */
  compact(): Promise<void> {
    return this.serialize(() => this.doCompact());
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Writes already queued (and a queued compaction) finish before the database goes away.
    await this.tail;
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

  private async read(key: string): Promise<unknown> {
    const raw = await io(`reading ${key}`, () => this.db.get(key));
    return raw === undefined ? undefined : this.decodeObject(key, raw);
  }

  /** The value to store for `obj` under `key`: a Secret encrypted when there is a cipher. */
  private encodeObject(key: string, obj: ApiObject): unknown {
    if (obj.kind !== ENCRYPTED_KIND || !this.cipher) return obj;
    return this.cipher.seal(Buffer.from(JSON.stringify(obj), 'utf8'), key);
  }

  private encodeLogEntry(key: string, e: WatchEvent): StoredLogEntry {
    if (e.object.kind !== ENCRYPTED_KIND || !this.cipher) return e;
    const objKey = objectKey(e.object.kind, e.object.metadata.namespace ?? '', e.object.metadata.name);
    return { type: e.type, revision: e.revision, key: objKey, object: this.cipher.seal(Buffer.from(JSON.stringify(e.object), 'utf8'), key) };
  }

  /** `name` says which object, for errors: the Secret's own name, never garbage or a bare crypto error. */
  private open(envelope: string, aad: string, name: string): ApiObject {
    if (!this.cipher) throw new StoreError(`store: ${name} is encrypted but the store was opened without the secrets keyring`);
    try {
      return JSON.parse(this.cipher.unseal(envelope, aad).toString('utf8')) as ApiObject;
    } catch (err) {
      throw new StoreError(`store: cannot decrypt ${name}: ${errorMessage(err)}`, err);
    }
  }

  private decodeObject(key: string, raw: unknown): unknown {
    if (!isEnvelope(raw)) return raw;
    const ref = parseObjectKey(key);
    return this.open(raw, key, ref ? what(ref.kind, ref.namespace, ref.name) : key);
  }

  private decodeLogEntry(key: string, raw: unknown): WatchEvent {
    const entry = raw as StoredLogEntry;
    if (typeof entry.object !== 'string') return entry as WatchEvent;
    const ref = 'key' in entry ? parseObjectKey(entry.key) : undefined;
    const name = `${ref ? what(ref.kind, ref.namespace, ref.name) : 'an object'} (change-log revision ${entry.revision})`;
    return { type: entry.type, revision: entry.revision, object: this.open(entry.object, key, name) };
  }

  /** Must run on the writer chain. */
  private async doSealSecrets(): Promise<SealReport> {
    const cipher = this.cipher;
    if (!cipher) throw new StoreError('store: cannot encrypt Secrets: the store was opened without the secrets keyring');
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

  /** Must run on the writer chain. */
  private async doUpdate<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    const namespace = obj.metadata.namespace ?? '';
    const key = objectKey(obj.kind, namespace, obj.metadata.name);
    const cur = (await this.read(key)) as ApiObject | undefined;
    if (!cur) throw new NotFoundError(what(obj.kind, namespace, obj.metadata.name));
    const stored = cur.metadata.resourceVersion ?? '';
    const expected = obj.metadata.resourceVersion;
    if (expected !== undefined && expected !== stored) throw new ConflictError(what(obj.kind, namespace, obj.metadata.name), expected, stored);
    const revision = this.rev + 1;
    const generation = cur.metadata.generation ?? 1;
    // The metadata assigned below completes what Stored<T> promises (uid and creation time come from
    // the stored object, which the create gave them).
    const updated = structuredClone(obj) as Stored<T>;
    updated.metadata = {
      ...updated.metadata,
      uid: cur.metadata.uid!,
      creationTimestamp: cur.metadata.creationTimestamp!,
      generation: canonicalJson(obj.spec) === canonicalJson(cur.spec) ? generation : generation + 1,
      resourceVersion: String(revision),
    };
    await this.commit(revision, 'MODIFIED', { type: 'put', key, value: updated }, updated);
    return structuredClone(updated);
  }

  /** One synced batch: the object change, its log entry and the revision counter land together or not at all. */
  private async commit(revision: number, type: WatchEventType, op: BatchOp, object: ApiObject): Promise<void> {
    const entry: WatchEvent = { type, revision, object };
    const stored: BatchOp = op.type === 'put' ? { type: 'put', key: op.key, value: this.encodeObject(op.key, op.value as ApiObject) } : op;
    const ops: BatchOp[] = [stored, { type: 'put', key: logKey(revision), value: this.encodeLogEntry(logKey(revision), entry) }, { type: 'put', key: META_REVISION, value: revision }];
    // A Secret written in the clear (no cipher) makes the next start with a keyring look for it.
    if (object.kind === ENCRYPTED_KIND && !this.cipher) ops.push({ type: 'del', key: META_SEALED });
    await io(`writing revision ${revision} (${op.key})`, () => this.db.batch(ops, { sync: true }));
    // Advance the revision and publish in the same tick: watch() relies on "<= rev is committed, > rev
    // is still to be published".
    this.rev = revision;
    for (const w of this.watchers) w.offer({ type, revision, object: structuredClone(object) });
    this.maybeCompact();
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
    if (target <= this.compacted) return;
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
