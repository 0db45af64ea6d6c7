/*
 * What a store decides about an object's metadata, whatever holds it: pure functions both backends
 * (LevelStore, EtcdStore) call, so uid, generation, creationTimestamp and the precondition checks are
 * one rule. The resourceVersion is the backend's (its revision), passed in.
 */
import { randomUUID } from 'node:crypto';
import type { ApiObject } from '../../src/api/meta.js';
import { jsonEqual } from '../../src/util/canonical-json.js';
import { deepCopy } from '../../src/util/deep-copy.js';
import { BadRequestError, ConflictError, NotFoundError } from '../../src/util/errors.js';
import { what } from './keys.js';
import type { Stored } from './types.js';

/** A new object: a fresh uid, the creation time, generation 1. Does not touch `obj`. */
export function createdObject<T extends ApiObject>(obj: T, resourceVersion: string): Stored<T> {
  const created = deepCopy(obj) as Stored<T>;
  created.metadata = {
    ...created.metadata,
    uid: randomUUID(),
    creationTimestamp: new Date().toISOString(),
    generation: 1,
    resourceVersion,
  };
  return created;
}

/**
 * `obj` replacing `cur`: NotFoundError when there is no `cur`, ConflictError when obj names a
 * resourceVersion other than cur's. uid and creationTimestamp are cur's whatever obj says; generation
 * is cur's, bumped when the spec changed (key order aside).
 */
export function updatedObject<T extends ApiObject>(obj: T, cur: ApiObject | undefined, resourceVersion: string): Stored<T> {
  const namespace = obj.metadata.namespace ?? '';
  if (!cur) throw new NotFoundError(what(obj.kind, namespace, obj.metadata.name));
  assertResourceVersion(obj.kind, namespace, obj.metadata.name, obj.metadata.resourceVersion, cur);
  const generation = cur.metadata.generation ?? 1;
  // The metadata assigned below completes what Stored<T> promises (uid and creation time come from
  // the stored object, which the create gave them).
  const updated = deepCopy(obj) as Stored<T>;
  updated.metadata = {
    ...updated.metadata,
    uid: cur.metadata.uid!,
    creationTimestamp: cur.metadata.creationTimestamp!,
    generation: jsonEqual(obj.spec, cur.spec) ? generation : generation + 1,
    resourceVersion,
  };
  return updated;
}

/** ConflictError when `expected` is set and is not cur's resourceVersion. */
export function assertResourceVersion(kind: string, namespace: string, name: string, expected: string | undefined, cur: ApiObject): void {
  const stored = cur.metadata.resourceVersion ?? '';
  if (expected !== undefined && expected !== stored) throw new ConflictError(what(kind, namespace, name), expected, stored);
}

/**
 * What a patch's `mutate` returned, checked: it may not rename the object (BadRequestError), and the
 * resourceVersion read (cur's) wins over whatever `mutate` put there.
 */
export function patchedObject(kind: string, namespace: string, name: string, next: ApiObject, cur: ApiObject): ApiObject {
  if (next.kind !== kind || (next.metadata.namespace ?? '') !== namespace || next.metadata.name !== name) {
    throw new BadRequestError(`patch of ${what(kind, namespace, name)} must not change its kind, namespace or name`);
  }
  return { ...next, metadata: { ...next.metadata, resourceVersion: cur.metadata.resourceVersion } };
}

/** The object a delete returns and its DELETED event carries: cur at the deletion's revision. */
export function deletedObject<T extends ApiObject>(cur: T, resourceVersion: string): T {
  return { ...cur, metadata: { ...cur.metadata, resourceVersion } };
}

/** List order: by namespace, then name (key order is not: '-' sorts before the '/' separator). */
export function sortByNamespaceName<T extends ApiObject>(items: T[]): T[] {
  const ns = (o: ApiObject) => o.metadata.namespace ?? '';
  return items.sort((a, b) => (ns(a) !== ns(b) ? (ns(a) < ns(b) ? -1 : 1) : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}
