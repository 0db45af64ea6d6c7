import type { KindMap, KnownKind } from '../../src/api/kinds.js';
import type { ApiObject, ObjectMeta } from '../../src/api/meta.js';

/*
 * Reads are typed by kind (src/api/kinds.ts KindMap). Objects reach the store only through schema
 * validation (the API, or a controller building them from a validated owner), so a read of kind K is
 * typed KindMap[K]; controllers still validate what they act on (server/controllers/valid-stored.ts),
 * because a stored object may predate a schema change.
 */
export type { KindMap, KnownKind };

/** The object type of kind K: its KindMap entry, or ApiObject for a kind only known at run time. */
export type ObjectOf<K extends string> = K extends KnownKind ? KindMap[K] : ApiObject;

/** Any stored object, typed by its kind. */
export type StoredObject = KindMap[KnownKind];

/** An object as a write returns it: with the metadata the store assigns always present. */
export type Stored<T extends ApiObject> = T & { metadata: Required<Pick<ObjectMeta, 'uid' | 'resourceVersion' | 'creationTimestamp' | 'generation'>> };

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  revision: number;
  /** Untyped: a watch may span kinds; narrow with `e.object.kind` and validate before acting. */
  object: ApiObject;
}

/**
 * Encrypts values at rest (server/secrets/keyring.ts implements it). `aad` is the store key the value
 * lives under, so a ciphertext copied to another key does not open. `unseal` throws when it cannot.
 */
export interface ValueCipher {
  readonly primaryKeyId: string;
  seal(plaintext: Buffer, aad: string): string;
  unseal(envelope: string, aad: string): Buffer;
}

/** What a pass over the stored Secrets re-encrypted (BackendStore.sealSecrets). */
export interface SealReport {
  /** Secret objects rewritten under the primary key. */
  objects: number;
  /** Change-log entries holding a Secret rewritten under the primary key (LevelStore; etcd's history is not rewritten). */
  logEntries: number;
  /** Of those, how many were plaintext (written before encryption existed). */
  plaintext: number;
  /** Secrets (objects and log entries) already under the primary key. */
  current: number;
  /** Why each Secret that could not be decrypted (and was left as it was) failed, naming it. */
  failed: string[];
}

export interface Watch {
  close(): void;
}

export interface WatchOptions {
  kinds?: string[];
  onError?: (err: Error) => void;
}

export interface ListResult<T extends ApiObject = ApiObject> {
  items: T[];
  /** Store revision the list is consistent with: watch from it to see every later change. */
  revision: number;
}

/**
 * The desired-state store. Keys are (kind, namespace, name); cluster-scoped kinds use namespace ''.
 * Every write bumps one global revision and appends a change-log entry; the returned object carries
 * metadata.resourceVersion = String(revision). A write resolves only once it is durable (LevelStore: on
 * disk, fsynced; EtcdStore: committed by a quorum of etcd members).
 * Reads and writes are typed by kind (`get('Pod', …)` is a `Pod`); with a kind held in a string the
 * type is ApiObject.
 * Errors (src/util/errors.ts; test with isNotFound / isConflict / isAlreadyExists): AlreadyExistsError,
 * NotFoundError, ConflictError (stale resourceVersion), GoneError (watch from a compacted revision),
 * StoreError (closed, or cannot open the data dir; StoreUnavailableError: etcd cannot be reached),
 * BadRequestError (a patch that renames its object).
 */
export interface Store {
  get<K extends string>(kind: K, namespace: string, name: string): Promise<ObjectOf<K> | undefined>;
  /** namespace undefined = all namespaces. Items sorted by namespace then name. */
  list<K extends string>(kind: K, namespace?: string): Promise<ListResult<ObjectOf<K>>>;
  /** Assigns uid, creationTimestamp, resourceVersion, generation = 1. */
  create<T extends ApiObject>(obj: T): Promise<Stored<T>>;
  /**
   * Replaces the object. If obj.metadata.resourceVersion is set and differs from the stored one,
   * throws ConflictError. Keeps uid and creationTimestamp; bumps metadata.generation when spec changed.
   */
  update<T extends ApiObject>(obj: T): Promise<Stored<T>>;
  /**
   * Read-modify-write as one atomic step: no other write lands between the read and the write, so a
   * patch never throws ConflictError and callers need no retry loop (EtcdStore retries a lost race
   * itself, so `mutate` may run more than once: it must decide from its argument). `mutate` gets a private copy of
   * the current object and returns the new one, or undefined to leave it unchanged (then patch
   * resolves undefined). NotFoundError when the object does not exist; BadRequestError when `mutate`
   * changed its kind, namespace or name (which is why its result may be typed as any ApiObject).
   */
  patch<K extends string>(
    kind: K,
    namespace: string,
    name: string,
    mutate: (cur: ObjectOf<K>) => ApiObject | undefined,
  ): Promise<ObjectOf<K> | undefined>;
  delete<K extends string>(kind: K, namespace: string, name: string, opts?: { resourceVersion?: string }): Promise<ObjectOf<K>>;
  /**
   * Delivers every change with revision > fromRevision (replayed from the change log, then live),
   * in revision order, optionally only for the given kinds. A write of this store is acknowledged only
   * once its event has reached this store's watches (a watch-fed cache holds every write its server
   * made; EtcdStore waits for its watch streams, at most 5 s while one is reconnecting). Throws
   * GoneError at once when the store knows fromRevision is compacted. `onError` hears a watch that ended by itself and will deliver
   * nothing more: a GoneError found only later (EtcdStore: history compacted by another server while
   * this watch was disconnected); relist and watch again. Without it such an end is logged.
   */
  watch(fromRevision: number, onEvent: (e: WatchEvent) => void, opts?: WatchOptions): Watch;
  revision(): number;
  close(): Promise<void>;
}

/**
 * The leadership a write is made under (server/leader/election.ts LeaderElection.fence()): the leader
 * key must still exist with this create revision.
 */
export interface WriteFence {
  key: string;
  createRevision: string;
}

/**
 * A Store as an entry point opens it (server/store/open.ts): LevelStore or EtcdStore. What the server
 * and `drover secrets rotate-key` need beyond the Store interface.
 */
export interface BackendStore extends Store {
  /** Observes every commit from now on: how many writes shared it, and how long it took. */
  onCommit(observer: (writes: number, seconds: number, ok: boolean) => void): void;
  /**
   * Encrypts every stored Secret that is plaintext or under a key other than the cipher's primary
   * one; one that cannot be opened is left as it is and named in the report.
   */
  sealSecrets(): Promise<SealReport>;
  /** The key ids the stored Secrets are encrypted with ('plaintext' for unencrypted ones), counted. */
  secretKeyUsage(): Promise<Record<string, number>>;
  /** Drops change history older than the store keeps now (it also happens in the background). */
  compact(): Promise<void>;
  /** Highest revision whose change is gone from the history; watching from below it throws GoneError. */
  compactedRevision(): number;
  /**
   * This store, except that every write (create, update, patch, delete) is made only while `fence()`
   * holds, checked by the backend in the write's own transaction: `fence()` undefined, or its key gone
   * or re-created (lease expired, revoked, another leader), and the write is refused with
   * NotLeaderError (503) and nothing is written. Reads and watches are the store's own; closing the
   * view does not close the store. For the
   * leader's components; the API writes through the store itself. LevelStore's view writes unfenced
   * (one server: nothing to fence).
   */
  fenced(fence: () => WriteFence | undefined): Store;
}

/** Narrows an object read untyped (a watch event, a kind held in a string) by its kind. */
export function isKind<K extends KnownKind>(obj: ApiObject, kind: K): obj is ApiObject & KindMap[K] {
  return obj.kind === kind;
}
