import type { ApiObject } from '../../src/api/meta.js';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  revision: number;
  object: ApiObject;
}

export interface Watch {
  close(): void;
}

export interface ListResult {
  items: ApiObject[];
  /** Store revision the list is consistent with: watch from it to see every later change. */
  revision: number;
}

/**
 * The desired-state store. Keys are (kind, namespace, name); cluster-scoped kinds use namespace ''.
 * Every write bumps one global revision and appends a change-log entry; the returned object carries
 * metadata.resourceVersion = String(revision). A write resolves only once it is durable on disk.
 * Errors: AlreadyExistsError, NotFoundError, ConflictError (stale resourceVersion), GoneError (watch
 * from a compacted revision) — all from src/util/errors.ts.
 */
export interface Store {
  get(kind: string, namespace: string, name: string): Promise<ApiObject | undefined>;
  /** namespace undefined = all namespaces. Items sorted by namespace then name. */
  list(kind: string, namespace?: string): Promise<ListResult>;
  /** Assigns uid, creationTimestamp, resourceVersion, generation = 1. */
  create(obj: ApiObject): Promise<ApiObject>;
  /**
   * Replaces the object. If obj.metadata.resourceVersion is set and differs from the stored one,
   * throws ConflictError. Keeps uid and creationTimestamp; bumps metadata.generation when spec changed.
   */
  update(obj: ApiObject): Promise<ApiObject>;
  /** Read-modify-write with retry on conflict; `mutate` returns the new object or undefined to skip. */
  patch(kind: string, namespace: string, name: string, mutate: (cur: ApiObject) => ApiObject | undefined): Promise<ApiObject | undefined>;
  delete(kind: string, namespace: string, name: string, opts?: { resourceVersion?: string }): Promise<ApiObject>;
  /**
   * Delivers every change with revision > fromRevision (replayed from the change log, then live),
   * in revision order, optionally only for the given kinds.
   */
  watch(fromRevision: number, onEvent: (e: WatchEvent) => void, opts?: { kinds?: string[] }): Watch;
  revision(): number;
  close(): Promise<void>;
}
