/**
 * Garbage collector: an object with ownerReferences whose owners are all gone (no object of that
 * kind and name with that uid) is deleted. Deletion cascades one level per step: a Deployment's
 * deletion removes its ReplicaSets, and each ReplicaSet's deletion removes its pods.
 *
 * Keys (opaque to the runner; only Pod keys come from keyOf):
 * - `ns/name`                  a Pod (the primary kind, so every pod is looked at on each resync);
 * - `Kind|ns/name|uid`         an owner-kind object changed or was deleted: if it is still there
 *                              with that uid, check its own owners; otherwise collect its dependents;
 * - `#sweep`                   a full pass over every namespaced kind, at most once per sweep
 *                              period; catches orphans whose owner was deleted while the server was
 *                              down (the runner only resyncs Pods). Node changes trigger it, and any
 *                              reconcile runs it inline when one is due.
 */
import { KINDS } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { errorMessage, isConflict, isNotFound } from '../../src/util/errors.js';
import type { ControllerDeps } from './deps.js';
import type { WatchEventType } from '../store/types.js';
import { type Controller, keyOf, splitKey } from './runner.js';

/** Kinds that own other objects in drover; their changes are watched. */
export const OWNER_KINDS = ['Deployment', 'ReplicaSet', 'DaemonSet', 'Job'] as const;

/** Kinds whose objects may carry ownerReferences: every namespaced kind but Event. */
export const DEPENDENT_KINDS: readonly string[] = KINDS.filter((k) => k.namespaced && k.kind !== 'Event').map((k) => k.kind);

export const SWEEP_KEY = '#sweep';

/** Dependents of a deleted owner collected at once. */
const COLLECT_BATCH = 32;

/** Default period of the full sweep: orphans left while the server was down go within a minute. */
export const GC_SWEEP_MS = 60_000;

/** `Kind|ns/name|uid`, the key of an owner-kind object (`uid`: its own unless given). */
export function ownerEventKey(obj: ApiObject, uid = obj.metadata.uid): string {
  return `${obj.kind}|${obj.metadata.namespace ?? ''}/${obj.metadata.name}|${uid ?? ''}`;
}

/** `Kind|ns/name`: an owner by name, as its references name it from a dependent in `ns`. */
const ownerId = (kind: string, ns: string, name: string) => `${kind}|${ns}/${name}`;

export function parseOwnerEventKey(key: string): { kind: string; namespace: string; name: string; uid: string } | undefined {
  const parts = key.split('|');
  if (parts.length !== 3) return undefined;
  const { namespace, name } = splitKey(parts[1]!);
  return { kind: parts[0]!, namespace, name, uid: parts[2]! };
}

type OwnerRef = NonNullable<ApiObject['metadata']['ownerReferences']>[number];

export function garbageCollector(deps: ControllerDeps): Controller {
  const { store, logger } = deps;
  const log = logger.child({ controller: 'garbage-collector' });
  const sweepMs = deps.gcSweepMs ?? GC_SWEEP_MS;
  let lastSweep: number | undefined;
  /**
   * Owners whose last change this controller saw was not a deletion, uid → `Kind|ns/name`, from the watch
   * alone; the name's entry goes with the event that deletes it, or replaces it (a uid-less deletion, as an
   * etcd watch may send, is found by name). A pod whose owner references all name such an owner — same uid,
   * kind, name, and the pod's namespace — needs no read: while 5,000 pods were placed, each pod change read the
   * pod and its ReplicaSet from LevelDB (4 % of the server's CPU) to find the owner alive. Any other pod is
   * read, as before. Forgotten when the watch is started again after an error (it may have missed a deletion).
   */
  const aliveOwners = new Map<string, string>();
  const ownerUidByName = new Map<string, string>();
  /** Per pod key queued by a change and not yet reconciled: its owner references then, as `uid` and `Kind|ns/name` (null: one without a uid). */
  const podOwners = new Map<string, ReadonlyArray<readonly [string, string]> | null>();

  /** Notes an owner-kind change; returns the uid it concerned (from the name when the event has none). */
  function noteOwner(o: ApiObject, type: WatchEventType): string | undefined {
    const id = ownerId(o.kind, o.metadata.namespace ?? '', o.metadata.name);
    const before = ownerUidByName.get(id);
    if (before !== undefined) {
      aliveOwners.delete(before);
      ownerUidByName.delete(id);
    }
    const uid = o.metadata.uid;
    if (type !== 'DELETED' && uid) {
      aliveOwners.set(uid, id);
      ownerUidByName.set(id, uid);
    }
    return uid || (type === 'DELETED' ? before : undefined);
  }
  let sweeping: Promise<void> | undefined;

  /** Is the referenced owner still there? Owners of unknown kinds are never judged gone. */
  async function ownerAlive(ref: OwnerRef, depNamespace: string, cache?: Map<string, boolean>): Promise<boolean> {
    const info = KINDS.find((k) => k.kind === ref.kind);
    if (!info) return true;
    const ns = info.namespaced ? depNamespace : '';
    const ck = `${ref.kind}|${ns}/${ref.name}|${ref.uid}`;
    const hit = cache?.get(ck);
    if (hit !== undefined) return hit;
    const o = await store.get(ref.kind, ns, ref.name);
    const alive = !!o && (!ref.uid || o.metadata.uid === ref.uid);
    cache?.set(ck, alive);
    return alive;
  }

  async function allOwnersGone(obj: ApiObject, cache?: Map<string, boolean>): Promise<boolean> {
    const refs = obj.metadata.ownerReferences ?? [];
    if (refs.length === 0) return false;
    for (const r of refs) if (await ownerAlive(r, obj.metadata.namespace ?? '', cache)) return false;
    return true;
  }

  /**
   * Reads the object fresh and deletes it if all its owners are gone (only that version: a
   * concurrent change means look again). `uid` pins the object that was meant. True if deleted.
   */
  async function collect(kind: string, namespace: string, name: string, uid?: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const obj = await store.get(kind, namespace, name);
      if (!obj || (uid && obj.metadata.uid !== uid)) return false;
      if (!(await allOwnersGone(obj))) return false;
      try {
        await store.delete(kind, namespace, name, { resourceVersion: obj.metadata.resourceVersion });
      } catch (err) {
        if (isNotFound(err)) return false;
        if (isConflict(err) && attempt < 3) continue;
        throw err;
      }
      const owners = (obj.metadata.ownerReferences ?? []).map((r) => `${r.kind}/${r.name}`);
      log.info({ kind, namespace, name, owners }, 'deleted object whose owners are gone');
      return true;
    }
  }

  /**
   * Every object in `namespace` naming `ownerUid` as an owner is collected if orphaned. A Deployment of
   * 10,000 replicas leaves 10,000 pods: the loop stops between them when the server stops.
   */
  async function collectDependents(namespace: string, ownerUid: string, signal?: AbortSignal): Promise<void> {
    for (const kind of DEPENDENT_KINDS) {
      const { items } = await store.list(kind, namespace);
      const dependents = items.filter((o) => (o.metadata.ownerReferences ?? []).some((r) => r.uid === ownerUid));
      // Side by side, a batch at a time: the store commits a batch's deletions together (one sync,
      // where one after the other took one each: a 50-pod ReplicaSet's pods went in seconds).
      for (let i = 0; i < dependents.length; i += COLLECT_BATCH) {
        signal?.throwIfAborted();
        await Promise.all(dependents.slice(i, i + COLLECT_BATCH).map((o) => collect(kind, namespace, o.metadata.name, o.metadata.uid)));
      }
    }
  }

  async function sweep(signal?: AbortSignal): Promise<void> {
    const started = deps.now();
    const cache = new Map<string, boolean>();
    let deleted = 0;
    for (const kind of DEPENDENT_KINDS) {
      let items: ApiObject[];
      try {
        items = (await store.list(kind)).items;
      } catch (err) {
        log.warn({ kind, err: errorMessage(err) }, 'sweep: list failed');
        continue;
      }
      for (const o of items) {
        if (signal?.aborted) return;
        if (!o.metadata.ownerReferences?.length) continue;
        try {
          // The cached answer only picks candidates; `collect` re-checks before deleting.
          if (!(await allOwnersGone(o, cache))) continue;
          if (await collect(kind, o.metadata.namespace ?? '', o.metadata.name, o.metadata.uid)) deleted++;
        } catch (err) {
          log.warn({ kind, name: o.metadata.name, err: errorMessage(err) }, 'sweep: cannot collect');
        }
      }
    }
    lastSweep = started;
    if (deleted) log.info({ deleted }, 'garbage collection sweep');
  }

  /** Runs the sweep when one is due (never two at once). */
  async function maybeSweep(signal?: AbortSignal): Promise<void> {
    if (sweeping) return;
    if (lastSweep !== undefined && deps.now() - lastSweep < sweepMs) return;
    sweeping = sweep(signal).finally(() => {
      sweeping = undefined;
    });
    await sweeping;
  }

  const untilNextSweep = () => Math.max(1, (lastSweep ?? deps.now()) + sweepMs - deps.now());

  return {
    name: 'garbage-collector',
    kind: 'Pod',
    watches: [
      ...OWNER_KINDS.map((kind) => ({
        kind,
        keys: (o: ApiObject, type: WatchEventType) => {
          const uid = noteOwner(o, type);
          return [ownerEventKey(o, uid)];
        },
      })),
      // The runner queues the pod's own key; this notes who owned it then.
      {
        kind: 'Pod',
        keys: (o: ApiObject, type: WatchEventType) => {
          const key = keyOf(o);
          const refs = o.metadata.ownerReferences ?? [];
          const ns = o.metadata.namespace ?? '';
          if (type === 'DELETED') podOwners.delete(key);
          else podOwners.set(key, refs.every((r) => r.uid) ? refs.map((r) => [r.uid!, ownerId(r.kind, ns, r.name)] as const) : null);
          return [];
        },
      },
      { kind: 'Node', keys: () => [SWEEP_KEY] },
    ],
    watchRestarted() {
      aliveOwners.clear();
      ownerUidByName.clear();
      podOwners.clear();
    },
    async reconcile(key, signal) {
      await maybeSweep(signal);
      if (key === SWEEP_KEY) return { requeueAfterMs: untilNextSweep() };
      const owner = parseOwnerEventKey(key);
      if (!owner) {
        const owners = podOwners.get(key);
        podOwners.delete(key);
        if (owners && owners.every(([uid, id]) => aliveOwners.get(uid) === id)) return;
        const { namespace, name } = splitKey(key);
        await collect('Pod', namespace, name);
        return;
      }
      const cur = await store.get(owner.kind, owner.namespace, owner.name);
      if (!cur || cur.metadata.uid !== owner.uid) await collectDependents(owner.namespace, owner.uid, signal);
      if (cur) await collect(owner.kind, owner.namespace, owner.name, cur.metadata.uid);
    },
  };
}
