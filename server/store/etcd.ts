import { Etcd3, type IKeyValue, type IRequestOp, type ITxnResponse } from 'etcd3';
import type { ApiObject } from '../../src/api/meta.js';
import { envelopeKeyId, isEnvelope } from '../../src/util/aead.js';
import { backoffDelay, sleep, withTimeout } from '../../src/util/backoff.js';
import { AlreadyExistsError, DroverError, GoneError, NotFoundError, NotLeaderError, StoreError, StoreUnavailableError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { REGISTRY, listPrefix, objectKey, parseObjectKey, prefixEnd, what } from './keys.js';
import { faultPolicies, isUnreachable, outcomeUnknown } from './etcd-faults.js';
import { EtcdWatch } from './etcd-watch.js';
import { storeView } from './view.js';
import { assertResourceVersion, createdObject, deletedObject, patchedObject, sortByNamespaceName, updatedObject } from './object-rules.js';
import { ENCRYPTED_KIND, SecretCodec } from './secret-codec.js';
import type { BackendStore, ListResult, ObjectOf, SealReport, Store, Stored, ValueCipher, Watch, WatchEvent, WatchOptions, WriteFence } from './types.js';
import { deepCopy } from '../../src/util/deep-copy.js';

/*
 * Key layout in etcd, under a prefix (default `/drover/`; several clusters may share one etcd with
 * distinct prefixes):
 *   {prefix}registry/{kind}/{namespace}/{name}  → the object as JSON, without metadata.resourceVersion
 *                                                 (that is the key's mod revision, set on every read);
 *                                                 cluster-scoped kinds use namespace ''
 *   {prefix}meta/secrets-sealed                 → id of the key every stored Secret is encrypted with
 *                                                 (absent: some may be plaintext or under an older key)
 *
 * There is no change log of our own: etcd's MVCC history is it. resourceVersion = the etcd revision of
 * the write (one global revision for the whole etcd), watches are etcd watches from fromRevision + 1,
 * and compaction is etcd's: compact(C) drops history before C, after which watching from below C is
 * GoneError ("too old, relist"). A write is acknowledged once etcd committed it (a quorum of members
 * has it in its log) and this store's watches have delivered it (published()). Optimistic concurrency is a transaction comparing the key's mod revision with
 * the one the write was decided on; create compares its create revision with 0.
 *
 * Secrets (server/store/secret-codec.ts): stored as `k8s:enc:aesgcm:v1:<keyid>:<base64>` (not JSON),
 * AAD = the key without the prefix (`/registry/Secret/{namespace}/{name}`, what LevelStore uses), so
 * a sealed value means the same in both stores and a prefix may be renamed.
 *
 * etcd unreachable (down, partitioned, no quorum): every call fails with StoreUnavailableError naming
 * the endpoints within CALL_TIMEOUT_MS. Within that time a request that did not reach a member
 * (connection refused) goes to the next one, one a member refused without acting (no leader yet) is
 * sent again after a pause, and one that got no answer in ATTEMPT_TIMEOUT_MS (a member killed with the
 * request in flight, a leader lost) is sent again: every write is a compare-and-swap, which etcd
 * applies at most once however many copies reach it, and a write that finds its own value in place
 * after such a retry knows its earlier copy won. So a kill -9 of one member of three costs the writes
 * in flight a pause of about an election, not an error. Watches reconnect by themselves and resume
 * after the last revision they delivered.
 */

/** Per-call options of the etcd3 client (grpc's: here only the deadline). */
type CallOptions = NonNullable<Parameters<Etcd3['kv']['range']>[1]>;

/** The longest a store call waits for etcd before failing with StoreUnavailableError. */
export const CALL_TIMEOUT_MS = 5_000;
/**
 * One request's share of a call: a request that got no answer in this time (its member died, or lost
 * its leader and holds the proposal until its own 5 s timeout) is sent again while the call has time.
 */
const ATTEMPT_TIMEOUT_MS = 1_500;
const ATTEMPT_BACKOFF = { baseMs: 50, maxMs: 300 };
/** A list reads this many objects per range request, all at the revision of the first. */
const LIST_CHUNK = 2_000;
const DEFAULT_COMPACT_KEEP = 10_000;
const DEFAULT_PREFIX = '/drover/';
const SEAL_CHANGED_RETRIES = 5;
/**
 * A write is acknowledged once this store's watches have delivered it (see published()); a watch whose
 * stream is down does not hold an acknowledged write back longer than this.
 */
const PUBLISH_WAIT_MS = 5_000;

export interface EtcdTlsFiles {
  /** PEM of the CA that signed the members' certificates (k3s --datastore-cafile). */
  ca?: Buffer;
  /** PEM client certificate and key (k3s --datastore-certfile / --datastore-keyfile). */
  cert?: Buffer;
  key?: Buffer;
}

export interface EtcdStoreOptions {
  /** Client URLs of the members, e.g. https://etcd-1:2379 (all https or all http). */
  endpoints: string[];
  tls?: EtcdTlsFiles;
  /** Every key lives under it; must start and end with '/'. */
  prefix?: string;
  logger?: Logger;
  /** Encrypts Secrets at rest; without it they are stored in the clear (only tests omit it). */
  secrets?: ValueCipher;
  /** Revisions of history kept for watches to resume from; older ones are compacted. */
  compactKeep?: number;
  /** How long a call may wait for etcd (default CALL_TIMEOUT_MS). */
  callTimeoutMs?: number;
}

/** The bytes etcd holds for an object: JSON without resourceVersion, or a sealed Secret. */
function storedValue(codec: SecretCodec, rel: string, obj: ApiObject): Buffer {
  const { resourceVersion: _dropped, ...metadata } = obj.metadata;
  const bare = { ...obj, metadata };
  const encoded = codec.encode(rel, bare);
  return Buffer.from(typeof encoded === 'string' ? encoded : JSON.stringify(encoded), 'utf8');
}

/** The parsed value: an object, or an envelope string. */
function parseValue(value: Buffer): unknown {
  const text = value.toString('utf8');
  return isEnvelope(text) ? text : JSON.parse(text);
}

/**
 * grpc's message on one line, without its trailing timestamp or empty "Resolution note", and with what
 * a TLS failure most likely means in terms of the datastore flags.
 */
function readableCause(err: unknown): string {
  const msg = errorMessage(err)
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)\s*$/, '')
    .replace(/[.\s]*Resolution note:\s*$/, '')
    .replace(/\s+/g, ' ')
    .trim();
  if (/alert bad certificate|certificate required|alert number 4[26]\b/i.test(msg)) return `${msg} (etcd refused the client certificate: --datastore-certfile/--datastore-keyfile must be signed by a CA etcd trusts)`;
  if (/unable to verify|self[- ]signed|certificate verify failed|unable to get local issuer/i.test(msg)) return `${msg} (the etcd members' certificate is not signed by --datastore-cafile)`;
  if (/does not match certificate|altnames/i.test(msg)) return `${msg} (the etcd members' certificate does not name this endpoint's host)`;
  return msg;
}

/** The leadership a fenced write is made under, read at each attempt (undefined: unfenced write). */
type Fence = (() => WriteFence | undefined) | undefined;

/** An object read with the mod revision a write must compare against. */
interface Current {
  object: ApiObject;
  modRevision: string;
}

/**
 * The desired-state store on etcd v3 (see the key layout above). Stateless between calls apart from
 * the latest revision seen (revision() is synchronous) and the compaction floor: several servers may
 * share one etcd.
 */
export class EtcdStore implements BackendStore {
  private rev = 0;
  private compacted = 0;
  private compacting = false;
  private closing = false;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly watches = new Set<EtcdWatch>();
  /** Writes done in etcd, waiting for this store's watches to deliver them before they are acknowledged. */
  private readonly unpublished = new Set<{ rel: string; revision: number; done: () => void }>();
  private commitObserver: ((writes: number, seconds: number, ok: boolean) => void) | undefined;
  readonly codec: SecretCodec;
  /** The prefix without its last '/': full key = base + relative key ('/registry/...'). */
  private readonly base: string;

  private constructor(
    readonly etcd: Etcd3,
    readonly endpoints: string[],
    prefix: string,
    readonly logger: Logger,
    private readonly compactKeep: number,
    private readonly timeoutMs: number,
    cipher: ValueCipher | undefined,
  ) {
    this.base = prefix.slice(0, -1);
    this.codec = new SecretCodec(cipher);
  }

  /**
   * Connects and reads what the store needs to start; StoreUnavailableError naming the endpoints when
   * etcd does not answer within the call timeout. With `secrets`, Secrets not yet sealed with its
   * primary key are re-encrypted (as LevelStore.open does).
   */
  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const logger = opts.logger ?? silentLogger;
    const prefix = opts.prefix ?? DEFAULT_PREFIX;
    const compactKeep = opts.compactKeep ?? DEFAULT_COMPACT_KEEP;
    const problems: Array<{ field: string; message: string }> = [];
    if (opts.endpoints.length === 0) problems.push({ field: 'datastoreEndpoint', message: 'names no endpoint' });
    for (const e of opts.endpoints) {
      if (!/^https?:\/\/[^/\s]+:\d+\/?$/.test(e)) problems.push({ field: 'datastoreEndpoint', message: `"${e}" is not http(s)://host:port` });
    }
    const schemes = new Set(opts.endpoints.map((e) => e.split(':')[0]));
    if (schemes.size > 1) problems.push({ field: 'datastoreEndpoint', message: 'mixes https and http endpoints' });
    if (!/^\/(.*\/)?$/.test(prefix)) problems.push({ field: 'prefix', message: `must start and end with '/', got "${prefix}"` });
    if (!Number.isInteger(compactKeep) || compactKeep < 1) problems.push({ field: 'compactKeep', message: `must be a positive integer, got ${compactKeep}` });
    if ((opts.tls?.cert === undefined) !== (opts.tls?.key === undefined)) problems.push({ field: 'datastoreCertfile', message: 'a client certificate and its key go together' });
    if (problems.length > 0) throw new ValidationError(problems, 'invalid datastore options');
    const endpoints = opts.endpoints.map((e) => e.replace(/\/$/, ''));
    const tls = opts.tls;
    const etcd = new Etcd3({
      hosts: endpoints,
      ...(tls && (tls.ca || tls.cert) ? { credentials: { rootCertificate: tls.ca as Buffer, privateKey: tls.key, certChain: tls.cert } } : {}),
      grpcOptions: {
        // A list of a large fleet is one response per chunk; grpc-js refuses more than 4 MiB by default.
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
        // A member that vanished without closing its connections (power loss, partition) shows as a
        // failed watch within keepalive time + timeout instead of a silent stall.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2_000,
      },
      faultHandling: faultPolicies(endpoints),
    });
    const store = new EtcdStore(etcd, endpoints, prefix, logger, compactKeep, opts.callTimeoutMs ?? CALL_TIMEOUT_MS, opts.secrets);
    try {
      const sealedWith = await store.call('connecting', async (o) => {
        const r = await etcd.kv.range({ key: store.metaKey('secrets-sealed') }, o);
        store.noteRevision(r.header.revision);
        return r.kvs[0]?.value.toString('utf8');
      });
      store.compacted = await store.findCompacted();
      logger.info({ endpoints, prefix, revision: store.rev, compacted: store.compacted, secretsEncrypted: opts.secrets !== undefined }, 'store opened on etcd');
      if (opts.secrets && sealedWith !== opts.secrets.primaryKeyId) {
        const report = await store.sealSecrets();
        if (report.failed.length > 0) logger.error({ failed: report.failed }, 'some Secrets cannot be decrypted with the secrets keyring; reads of them fail until the right key is restored');
      }
    } catch (err) {
      etcd.close();
      throw err;
    }
    return store;
  }

  revision(): number {
    return this.rev;
  }

  compactedRevision(): number {
    return this.compacted;
  }

  onCommit(observer: (writes: number, seconds: number, ok: boolean) => void): void {
    this.commitObserver = observer;
  }

  /** Keeps the latest revision any response showed. */
  noteRevision(revision: string | number): void {
    const r = Number(revision);
    if (r > this.rev) this.rev = r;
  }

  /** A floor learnt from etcd (a watch refused as compacted). */
  noteCompacted(revision: number): void {
    if (revision > this.compacted) this.compacted = revision;
  }

  metaKey(name: string): Buffer {
    return Buffer.from(`${this.base}/meta/${name}`);
  }

  fullKey(rel: string): Buffer {
    return Buffer.from(this.base + rel);
  }

  /** The etcd key range of every key under a relative prefix ('/registry/Pod/'). */
  rangeOf(relPrefix: string): { key: Buffer; range_end: Buffer } {
    return { key: this.fullKey(relPrefix), range_end: Buffer.from(this.base + prefixEnd(relPrefix)) };
  }

  relKey(key: Buffer): string {
    return key.toString('utf8').slice(this.base.length);
  }

  /** An object as stored under `rel`, with resourceVersion = its mod revision. */
  decode(rel: string, value: Buffer, modRevision: string | number): ApiObject {
    const obj = this.codec.decodeObject(rel, parseValue(value)) as ApiObject;
    obj.metadata = { ...obj.metadata, resourceVersion: String(modRevision) };
    return obj;
  }

  private current(kv: IKeyValue | undefined): Current | undefined {
    return kv ? { object: this.decode(this.relKey(kv.key), kv.value, kv.mod_revision), modRevision: kv.mod_revision } : undefined;
  }

  /**
   * Runs one store call against etcd: refused once closing; every etcd request in it shares one
   * deadline, and the whole is bounded by it too (a request the client library holds back is not
   * waited for). Errors: the store's own (NotFound, Conflict, ...) as they are; etcd unreachable as
   * StoreUnavailableError naming the endpoints; anything else etcd says as StoreError.
   */
  call<T>(doing: string, fn: (opts: CallOptions) => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new StoreError('store is closed'));
    const deadline = Date.now() + this.timeoutMs;
    const run = (async () => {
      try {
        return await fn({ deadline });
      } catch (err) {
        throw this.translate(doing, err);
      }
    })();
    this.inflight.add(run);
    void run.then(
      () => this.inflight.delete(run),
      () => this.inflight.delete(run),
    );
    return withTimeout(run, this.timeoutMs + 250, () => {
      throw new StoreUnavailableError(this.endpoints, new Error(`no answer within ${this.timeoutMs} ms (${doing})`));
    });
  }

  translate(doing: string, err: unknown): Error {
    if (err instanceof DroverError) return err;
    if (isUnreachable(err)) return new StoreUnavailableError(this.endpoints, new Error(readableCause(err), { cause: err }));
    return new StoreError(`store: ${doing} failed: etcd at ${this.endpoints.join(',')}: ${errorMessage(err)}`, err);
  }

  async get<K extends string>(kind: K, namespace: string, name: string): Promise<ObjectOf<K> | undefined> {
    return this.call(`reading ${objectKey(kind, namespace, name)}`, async (o) => (await this.read(objectKey(kind, namespace, name), o))?.object as ObjectOf<K> | undefined);
  }

  private async read(rel: string, o: CallOptions): Promise<Current | undefined> {
    const { value: r } = await this.attempts(o, (a) => this.etcd.kv.range({ key: this.fullKey(rel) }, a));
    this.noteRevision(r.header.revision);
    return this.current(r.kvs[0]);
  }

  /** One consistent read: every chunk at the revision of the first, which is the list's revision. */
  async list<K extends string>(kind: K, namespace?: string): Promise<ListResult<ObjectOf<K>>> {
    const prefix = listPrefix(kind, namespace);
    return this.call(`listing ${prefix}`, async (o) => {
      const { key: start, range_end: end } = this.rangeOf(prefix);
      const items: ObjectOf<K>[] = [];
      let from = start;
      let revision: string | undefined;
      for (;;) {
        const req = { key: from, range_end: end, limit: LIST_CHUNK, ...(revision ? { revision } : {}) };
        const { value: r } = await this.attempts(o, (a) => this.etcd.kv.range(req, a));
        revision ??= r.header.revision;
        this.noteRevision(r.header.revision);
        for (const kv of r.kvs) items.push(this.decode(this.relKey(kv.key), kv.value, kv.mod_revision) as ObjectOf<K>);
        if (!r.more || r.kvs.length === 0) break;
        from = Buffer.concat([r.kvs.at(-1)!.key, Buffer.from([0])]);
      }
      return { items: sortByNamespaceName(items), revision: Number(revision) };
    });
  }

  /**
   * `fn` with a deadline of its own (ATTEMPT_TIMEOUT_MS, within the call's), sent again while the call
   * has time when its outcome is unknown; `unsure` says a copy before the last may have been applied.
   */
  private async attempts<T>(o: CallOptions, fn: (a: CallOptions) => Promise<T>): Promise<{ value: T; unsure: boolean }> {
    const end = Number(o.deadline);
    let unsure = false;
    for (let i = 0; ; i++) {
      try {
        return { value: await fn({ deadline: Math.min(end, Date.now() + ATTEMPT_TIMEOUT_MS) }), unsure };
      } catch (err) {
        if (!outcomeUnknown(err) || Date.now() + ATTEMPT_BACKOFF.maxMs >= end) throw err;
        unsure = true;
        await sleep(backoffDelay(i, ATTEMPT_BACKOFF));
      }
    }
  }

  /**
   * A write transaction (sent again when its outcome is unknown, see attempts()); its observer sees it
   * as one commit. Fenced: each attempt reads the fence and adds its compare (the leader key still has
   * the term's create revision) and, on failure, a read of that key after the write's own ops, so
   * `responses[0]` stays the object's; no fence at all refuses the write before anything is sent.
   */
  private async txn(o: CallOptions, rel: string, compare: Parameters<Etcd3['kv']['txn']>[0]['compare'], success: IRequestOp[], failure: IRequestOp[], fence: Fence): Promise<{ r: ITxnResponse; unsure: boolean; fenced?: WriteFence }> {
    const began = performance.now();
    try {
      const { value, unsure } = await this.attempts(o, async (a) => {
        const f = fence?.();
        if (fence && !f) throw this.notLeader(rel);
        const key = f ? Buffer.from(f.key) : undefined;
        const r = await this.etcd.kv.txn(
          key
            ? { compare: [...(compare ?? []), { key, target: 'Create', result: 'Equal', create_revision: f!.createRevision }], success, failure: [...failure, { request_range: { key } }] }
            : { compare, success, failure },
          a,
        );
        return { r, f };
      });
      const { r, f } = value;
      this.noteRevision(r.header.revision);
      if (r.succeeded) this.commitObserver?.(1, (performance.now() - began) / 1000, true);
      return { r, unsure, ...(f ? { fenced: f } : {}) };
    } catch (err) {
      this.commitObserver?.(1, (performance.now() - began) / 1000, false);
      throw err;
    }
  }

  private notLeader(rel: string): NotLeaderError {
    const ref = parseObjectKey(rel);
    return new NotLeaderError(`this server does not lead (its leadership ended): the write of ${ref ? what(ref.kind, ref.namespace, ref.name) : rel} was not made`);
  }

  /** After a fenced transaction failed: NotLeaderError when it was the fence (the leader key gone or re-created). */
  private assertFence(r: ITxnResponse, fenced: WriteFence | undefined, rel: string): void {
    if (!fenced) return;
    const leader = r.responses.at(-1)?.response_range?.kvs[0];
    if (!leader || leader.create_revision !== fenced.createRevision) throw this.notLeader(rel);
  }

  /** After a retried write whose compare failed: whether the value in place is the one this write put (its earlier copy won). */
  private ours(unsure: boolean, kv: IKeyValue | undefined, put: IRequestOp | undefined): boolean {
    const value = put?.request_put?.value;
    return unsure && kv !== undefined && value !== undefined && kv.value.equals(value);
  }

  /** The puts of a write: the object, and with a Secret written in the clear the sealed marker's removal. */
  private putOps(rel: string, obj: ApiObject): IRequestOp[] {
    const ops: IRequestOp[] = [{ request_put: { key: this.fullKey(rel), value: storedValue(this.codec, rel, obj) } }];
    // A Secret written in the clear (no cipher) makes the next start with a keyring look for it.
    if (obj.kind === ENCRYPTED_KIND && !this.codec.cipher) ops.push({ request_delete_range: { key: this.metaKey('secrets-sealed') } });
    return ops;
  }

  /**
   * `written` once every watch of this store that covers its key has delivered its revision: as with
   * LevelStore, a write's event has reached this store's watches when the write is acknowledged, so a
   * cache kept by a watch (server/cache/object-cache.ts) holds every write its server made. Bounded by
   * PUBLISH_WAIT_MS: a watch cut off from etcd does not turn a done write into a failed one.
   */
  private published<T extends ApiObject>(rel: string, written: T): Promise<T> {
    this.maybeCompact();
    const revision = Number(written.metadata.resourceVersion);
    if (this.caughtUp(rel, revision)) return Promise.resolve(written);
    return new Promise((resolve) => {
      const entry = {
        rel,
        revision,
        done: () => {
          clearTimeout(timer);
          this.unpublished.delete(entry);
          resolve(written);
        },
      };
      const timer = setTimeout(() => {
        this.logger.warn({ key: rel, revision, waitedMs: PUBLISH_WAIT_MS }, 'write acknowledged before a watch of this store delivered it (its etcd watch is reconnecting)');
        entry.done();
      }, PUBLISH_WAIT_MS);
      this.unpublished.add(entry);
    });
  }

  private caughtUp(rel: string, revision: number): boolean {
    for (const w of this.watches) if (w.covers(rel) && w.watcher.lastRevision() < revision) return false;
    return true;
  }

  /** A watch delivered more (or closed): acknowledges the writes every watch has now delivered. */
  watchAdvanced(): void {
    for (const e of [...this.unpublished]) if (this.caughtUp(e.rel, e.revision)) e.done();
  }

  create<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    return this.doCreate(obj, undefined);
  }

  update<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    return this.doUpdate(obj, undefined);
  }

  patch<K extends string>(kind: K, namespace: string, name: string, mutate: (cur: ObjectOf<K>) => ApiObject | undefined): Promise<ObjectOf<K> | undefined> {
    return this.doPatch(kind, namespace, name, mutate, undefined);
  }

  delete<K extends string>(kind: K, namespace: string, name: string, opts: { resourceVersion?: string } = {}): Promise<ObjectOf<K>> {
    return this.doDelete(kind, namespace, name, opts, undefined);
  }

  /** This store with every write fenced by `fence` (see BackendStore.fenced); reads and watches are the store's. */
  fenced(fence: () => WriteFence | undefined): Store {
    return storeView(this, {
      create: (obj) => this.doCreate(obj, fence),
      update: (obj) => this.doUpdate(obj, fence),
      patch: (kind, namespace, name, mutate) => this.doPatch(kind, namespace, name, mutate, fence),
      delete: (kind, namespace, name, opts = {}) => this.doDelete(kind, namespace, name, opts, fence),
    });
  }

  private doCreate<T extends ApiObject>(obj: T, fence: Fence): Promise<Stored<T>> {
    const namespace = obj.metadata.namespace ?? '';
    const rel = objectKey(obj.kind, namespace, obj.metadata.name);
    return this.call(`creating ${rel}`, async (o) => {
      const created = createdObject(obj, '');
      const key = this.fullKey(rel);
      const ops = this.putOps(rel, created);
      const { r, unsure, fenced } = await this.txn(o, rel, [{ key, target: 'Create', result: 'Equal', create_revision: 0 }], ops, [{ request_range: { key } }], fence);
      let revision = r.header.revision;
      if (!r.succeeded) {
        // The value carries this create's fresh uid: found in place, it is this create's own (an
        // earlier copy landed, while still leading if fenced: it stands).
        const kv = r.responses[0]?.response_range?.kvs[0];
        if (!this.ours(unsure, kv, ops[0])) {
          this.assertFence(r, fenced, rel);
          throw new AlreadyExistsError(what(obj.kind, namespace, obj.metadata.name));
        }
        revision = kv!.mod_revision;
      }
      created.metadata.resourceVersion = revision;
      return created;
    }).then((created) => this.published(rel, created));
  }

  private doUpdate<T extends ApiObject>(obj: T, fence: Fence): Promise<Stored<T>> {
    const namespace = obj.metadata.namespace ?? '';
    const rel = objectKey(obj.kind, namespace, obj.metadata.name);
    return this.call(`updating ${rel}`, async (o) => {
      let cur = await this.read(rel, o);
      for (;;) {
        // NotFound and a stale resourceVersion are decided here, on the latest read.
        const next = updatedObject(obj, cur?.object, '');
        const won = await this.swap(o, rel, cur!, this.putOps(rel, next), fence);
        if (won.revision) {
          next.metadata.resourceVersion = won.revision;
          return next;
        }
        // Another write landed between the read and ours: a named resourceVersion is now stale (the
        // loop's next decision says so); without one the update applies to the latest object.
        cur = won.current;
      }
    }).then((updated) => this.published(rel, updated));
  }

  /**
   * Writes `ops` if the key still has cur's mod revision; else what the key holds now (undefined:
   * deleted), read in the same transaction.
   */
  private async swap(o: CallOptions, rel: string, cur: Current, ops: IRequestOp[], fence: Fence): Promise<{ revision?: string; current?: Current }> {
    const key = this.fullKey(rel);
    const { r, unsure, fenced } = await this.txn(o, rel, [{ key, target: 'Mod', result: 'Equal', mod_revision: cur.modRevision }], ops, [{ request_range: { key } }], fence);
    if (r.succeeded) return { revision: r.header.revision };
    const kv = r.responses[0]?.response_range?.kvs[0];
    // A retried write that finds its own value in place (or, for a delete, the key gone) was applied
    // by an earlier copy. (A delete's revision is then the read's, at or after the real one, which the
    // DELETED event carries.)
    if (this.ours(unsure, kv, ops[0])) return { revision: kv!.mod_revision };
    if (unsure && !kv && ops[0]?.request_delete_range) return { revision: r.header.revision };
    // A failed fence ends the write (and the caller's retry loop) with NotLeaderError.
    this.assertFence(r, fenced, rel);
    return { current: this.current(kv) };
  }

  /**
   * Read, `mutate`, and a write conditional on nothing having changed since the read; a lost race
   * runs `mutate` again on the object that won (so no ConflictError reaches the caller).
   */
  private doPatch<K extends string>(kind: K, namespace: string, name: string, mutate: (cur: ObjectOf<K>) => ApiObject | undefined, fence: Fence): Promise<ObjectOf<K> | undefined> {
    const rel = objectKey(kind, namespace, name);
    return this.call(`patching ${rel}`, async (o) => {
      let cur = await this.read(rel, o);
      for (;;) {
        if (!cur) throw new NotFoundError(what(kind, namespace, name));
        const proposed = mutate(deepCopy(cur.object) as ObjectOf<K>);
        if (proposed === undefined) return undefined;
        const next = updatedObject(patchedObject(kind, namespace, name, proposed, cur.object), cur.object, '');
        const won = await this.swap(o, rel, cur, this.putOps(rel, next), fence);
        if (won.revision) {
          next.metadata.resourceVersion = won.revision;
          return next as ObjectOf<K>;
        }
        cur = won.current;
      }
    }).then((patched) => (patched === undefined ? undefined : this.published(rel, patched)));
  }

  private doDelete<K extends string>(kind: K, namespace: string, name: string, opts: { resourceVersion?: string }, fence: Fence): Promise<ObjectOf<K>> {
    const rel = objectKey(kind, namespace, name);
    return this.call(`deleting ${rel}`, async (o) => {
      let cur = await this.read(rel, o);
      for (;;) {
        if (!cur) throw new NotFoundError(what(kind, namespace, name));
        assertResourceVersion(kind, namespace, name, opts.resourceVersion, cur.object);
        const won = await this.swap(o, rel, cur, [{ request_delete_range: { key: this.fullKey(rel) } }], fence);
        if (won.revision) return deletedObject(cur.object, won.revision) as ObjectOf<K>;
        cur = won.current;
      }
    }).then((deleted) => this.published(rel, deleted));
  }

  watch(fromRevision: number, onEvent: (e: WatchEvent) => void, opts: WatchOptions = {}): Watch {
    if (this.closing) throw new StoreError('store is closed');
    if (fromRevision < this.compacted) {
      throw new GoneError(`revision ${fromRevision} has been compacted (oldest watchable revision is ${this.compacted}); list again and watch from its revision`);
    }
    const kinds = opts.kinds ? new Set(opts.kinds) : undefined;
    // One kind: etcd sends only its keys. Several: the whole registry, filtered here (one etcd watch
    // keeps them in revision order across kinds).
    const prefix = kinds?.size === 1 ? listPrefix([...kinds][0]!) : REGISTRY;
    const w = new EtcdWatch(this, prefix, fromRevision, kinds, onEvent, opts.onError, (x) => {
      this.watches.delete(x);
      this.watchAdvanced();
    });
    this.watches.add(w);
    w.connect();
    return w.watcher;
  }

  /** Compacts etcd's history to the last `compactKeep` revisions now (it also happens after writes). */
  async compact(): Promise<void> {
    const target = this.rev - this.compactKeep;
    if (target <= this.compacted) return;
    await this.call(`compacting to revision ${target}`, async (o) => {
      try {
        await this.etcd.kv.compact({ revision: target }, o);
      } catch (err) {
        // Another server (or etcd's own auto-compaction) got there first: the floor is at least this.
        if (!/required revision has been compacted/.test(errorMessage(err))) throw err;
      }
    });
    // Raised after etcd dropped the history: a watch from below it would have been refused by etcd anyway.
    this.noteCompacted(target);
    this.logger.debug({ compacted: target }, 'etcd history compacted');
  }

  /** Compaction waits until history is `slack` revisions over its limit, so it is one call per many writes. */
  private maybeCompact(): void {
    const slack = Math.min(1000, Math.max(16, Math.ceil(this.compactKeep / 10)));
    if (this.compacting || this.closing || this.rev - this.compacted < this.compactKeep + slack) return;
    this.compacting = true;
    this.compact()
      .catch((err) => this.logger.warn({ err: errorMessage(err) }, 'etcd compaction failed; will retry after later writes'))
      .finally(() => {
        this.compacting = false;
      });
  }

  /**
   * etcd's compaction floor, asked without writing anything: a read at a revision below it is refused
   * as compacted, so the floor is the lowest revision a read succeeds at (a binary search, ~log2(revision)
   * reads of one key that does not exist).
   */
  private findCompacted(): Promise<number> {
    return this.call('reading the compaction floor', async (o) => {
      const key = this.metaKey('compaction-probe');
      const readable = async (revision: number): Promise<boolean> => {
        try {
          await this.etcd.kv.range({ key, revision }, o);
          return true;
        } catch (err) {
          if (/required revision has been compacted/.test(errorMessage(err))) return false;
          throw err;
        }
      };
      if (this.rev <= 1 || (await readable(1))) return 0;
      let low = 1; // not readable
      let high = this.rev; // readable: the current revision always is
      while (high - low > 1) {
        const mid = Math.floor((low + high) / 2);
        if (await readable(mid)) high = mid;
        else low = mid;
      }
      return high;
    });
  }

  /**
   * Re-encrypts every stored Secret that is plaintext or under another key than the primary one, each
   * with a write conditional on its mod revision (a Secret written meanwhile is read again). etcd's
   * history keeps the old values until compaction (and the member's defragmentation) removes them.
   */
  async sealSecrets(): Promise<SealReport> {
    const cipher = this.codec.cipher;
    if (!cipher) throw new StoreError('store: cannot encrypt Secrets: the store was opened without the secrets keyring');
    const report: SealReport = { objects: 0, logEntries: 0, plaintext: 0, current: 0, failed: [] };
    for (const kv of await this.rawSecrets()) {
      let raw: IKeyValue | undefined = kv;
      for (let attempt = 0; raw && attempt < SEAL_CHANGED_RETRIES; attempt++) {
        const rel = this.relKey(raw.key);
        const text = raw.value.toString('utf8');
        if (envelopeKeyId(text) === cipher.primaryKeyId) {
          report.current += 1;
          break;
        }
        let obj: ApiObject;
        try {
          obj = this.decode(rel, raw.value, raw.mod_revision);
        } catch (err) {
          report.failed.push(errorMessage(err));
          break;
        }
        const cur: Current = { object: obj, modRevision: raw.mod_revision };
        const won: { revision?: string; current?: Current } = await this.call(`re-encrypting ${rel}`, (o) => this.swap(o, rel, cur, this.putOps(rel, obj), undefined));
        if (won.revision) {
          report.objects += 1;
          if (!isEnvelope(text)) report.plaintext += 1;
          break;
        }
        raw = won.current ? await this.call(`reading ${rel}`, async (o): Promise<IKeyValue | undefined> => (await this.etcd.kv.range({ key: this.fullKey(rel) }, o)).kvs[0]) : undefined;
      }
    }
    if (report.failed.length === 0) {
      await this.call('writing the secrets marker', (o) => this.etcd.kv.put({ key: this.metaKey('secrets-sealed'), value: Buffer.from(cipher.primaryKeyId) }, o));
    }
    if (report.objects > 0) this.logger.info({ keyId: cipher.primaryKeyId, objects: report.objects, plaintext: report.plaintext }, 'Secrets re-encrypted');
    return report;
  }

  async secretKeyUsage(): Promise<Record<string, number>> {
    const usage: Record<string, number> = {};
    for (const kv of await this.rawSecrets()) {
      const id = envelopeKeyId(kv.value.toString('utf8')) ?? 'plaintext';
      usage[id] = (usage[id] ?? 0) + 1;
    }
    return usage;
  }

  private rawSecrets(): Promise<IKeyValue[]> {
    const prefix = listPrefix(ENCRYPTED_KIND);
    return this.call('reading the Secrets', async (o) => (await this.etcd.kv.range(this.rangeOf(prefix), o)).kvs);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Calls already under way finish (or time out) before the client goes away.
    await Promise.allSettled([...this.inflight]);
    for (const w of [...this.watches]) w.watcher.close();
    this.etcd.close();
  }
}
