import { randomUUID } from 'node:crypto';
import { ClassicLevel } from 'classic-level';
import type { ApiObject } from '../../src/api/meta.js';
import { KINDS } from '../../src/api/kinds.js';
import { canonicalJson } from '../../src/util/canonical-json.js';
import { AlreadyExistsError, BadRequestError, ConflictError, GoneError, NotFoundError, StoreError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { ListResult, ObjectOf, Store, Stored, Watch, WatchEvent, WatchEventType } from './types.js';

/*
 * Key layout (all keys are strings, values JSON):
 *   /registry/{kind}/{namespace}/{name}  → the object (cluster-scoped kinds use namespace '')
 *   /log/{revision, 16 digits}           → { type, revision, object }: the change log watches replay
 *   /meta/revision                       → the last committed revision
 *   /meta/compacted                      → log entries up to and including this revision are gone
 */
const REGISTRY = '/registry/';
const LOG = '/log/';
const META_REVISION = '/meta/revision';
const META_COMPACTED = '/meta/compacted';

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
  ) {
    this.rev = rev;
    this.compacted = compacted;
  }

  static async open(opts: { path: string; logger?: Logger; compactKeep?: number }): Promise<LevelStore> {
    const logger = opts.logger ?? silentLogger;
    const compactKeep = opts.compactKeep ?? DEFAULT_COMPACT_KEEP;
    if (!Number.isInteger(compactKeep) || compactKeep < 1) {
      throw new ValidationError([{ field: 'compactKeep', message: `must be a positive integer, got ${compactKeep}` }], 'invalid store options');
    }
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
    const store = new LevelStore(db, logger, compactKeep, rev, compacted);
    logger.info({ path: opts.path, revision: rev, compacted }, 'store opened');
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
      const [revision, items] = await io(`listing ${prefix}`, async () => [
        ((await this.db.get(META_REVISION, { snapshot })) as number | undefined) ?? 0,
        (await this.db.values({ gte: prefix, lt: prefixEnd(prefix), snapshot }).all()) as ObjectOf<K>[],
      ] as const);
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
    const it = this.db.values({ gt: logKey(fromRevision), lte: logKey(upTo) });
    void (async () => {
      try {
        for await (const entry of it) {
          if (w.closed) break;
          w.deliver(entry as WatchEvent);
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

  private read(key: string): Promise<unknown> {
    return io(`reading ${key}`, () => this.db.get(key));
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
    await io(`writing revision ${revision} (${op.key})`, () =>
      this.db.batch([op, { type: 'put', key: logKey(revision), value: entry }, { type: 'put', key: META_REVISION, value: revision }], { sync: true }),
    );
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
