import { normalizeSecret } from '../../src/api/config.js';
import { kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import type { Namespace } from '../../src/api/namespace.js';
import { ForbiddenError, NotFoundError } from '../../src/util/errors.js';
import { TurnsByKey } from '../../src/util/turns.js';
import { isKind, type Store, type Stored } from '../store/types.js';
import { assertPodSecurity, DEFAULT_POD_SECURITY, type PodSecurityPolicy } from './pod-security.js';
import { QUOTA_COUNTED_KINDS, quotaViolation } from './quota.js';

export interface AdmissionOptions {
  /** The hostPath allow-list of the pod security switch; give the API server the same one. */
  podSecurity?: PodSecurityPolicy;
  /** Shared by every admission over one store (the API's and the leader's), so their quota checks take turns. */
  quotaTurns?: QuotaTurns;
  /**
   * Reads a namespace for the checks of a create, read-only (default: a store read). The server gives a read from
   * its object cache where that holds every acknowledged write (LevelDB): a store read per create was two LevelDB
   * reads and parses for each pod and Event.
   */
  readNamespace?: NamespaceReader;
}

/**
 * Creates under a ResourceQuota take turns per namespace: the count, the check and the write that adds to the
 * count are one step, and the next create counts after it is stored. Counted side by side, every create of a
 * ReplicaSet's batch of 256 saw the same pods, and a quota of 50 let 257 through. Only a namespace with a quota
 * waits (one synced write per create); one process only: servers sharing etcd do not take turns with each other.
 */
export class QuotaTurns extends TurnsByKey {}

/** Reads a namespace, read-only (see AdmissionOptions.readNamespace). */
export type NamespaceReader = (name: string) => Namespace | undefined | Promise<Namespace | undefined>;

/**
 * The store every writer uses (API handlers and controllers alike), with admission in front of
 * create: the namespace must exist and be active, quotas hold, Secrets' stringData is folded into
 * data, and a Pod asking for host access needs a namespace labelled drover.io/privileged=true. So a
 * ReplicaSet's pod creation meets the same quota and the same pod security as a user's: a template
 * admitted while its namespace had the label makes no more such pods once the label is removed.
 */
export function withAdmission(store: Store, opts: AdmissionOptions = {}): Store {
  const podSecurity = opts.podSecurity ?? DEFAULT_POD_SECURITY;
  /** Secrets' stringData is folded into data on every write, so it is never stored. */
  function normalize<T extends ApiObject>(obj: T): T {
    return isKind(obj, 'Secret') ? normalizeSecret(obj) : obj;
  }

  const turns = opts.quotaTurns ?? new QuotaTurns();

  /** The create of `o` (admitted otherwise), refused when it would exceed a quota of its namespace. */
  async function createCounted<T extends ApiObject>(o: T, ns: string, plural: string): Promise<Stored<T>> {
    if (!(await store.list('ResourceQuota', ns)).items.length) return store.create(o);
    return turns.take(ns, async () => {
      // Read again in turn: the quotas may have changed while this create waited.
      const quotas = (await store.list('ResourceQuota', ns)).items;
      if (quotas.length) {
        const v = quotaViolation(o, quotas, (await store.list(o.kind, ns)).items);
        if (v) throw new ForbiddenError(`${plural} "${o.metadata.name}" is forbidden: ${v}`);
      }
      return store.create(o);
    });
  }

  async function create<T extends ApiObject>(obj: T): Promise<Stored<T>> {
    const o = normalize(obj);
    const info = kindInfo(o.kind);
    if (!info.namespaced) return store.create(o);
    const ns = o.metadata.namespace ?? 'default';
    const nsObj = await (opts.readNamespace ? opts.readNamespace(ns) : store.get('Namespace', '', ns));
    if (!nsObj) throw new NotFoundError(`namespaces "${ns}"`);
    if (nsObj.status?.phase === 'Terminating') {
      throw new ForbiddenError(`${info.plural} "${o.metadata.name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`);
    }
    if (o.kind === 'Pod') {
      // The role was checked where the request came in (the API, for the pod or its template); here the
      // writer is the system, so the namespace label alone decides.
      assertPodSecurity({ kind: 'Pod', plural: info.plural, name: o.metadata.name, namespace: ns, body: o, namespaceLabels: nsObj.metadata.labels, role: 'admin', policy: podSecurity });
    }
    return QUOTA_COUNTED_KINDS.includes(o.kind) ? createCounted(o, ns, info.plural) : store.create(o);
  }
  return {
    get: (k, ns, n) => store.get(k, ns, n),
    list: (k, ns) => store.list(k, ns),
    create,
    update: async (obj) => store.update(normalize(obj)),
    patch: (k, ns, n, m) => store.patch(k, ns, n, m),
    delete: (k, ns, n, o) => store.delete(k, ns, n, o),
    watch: (from, cb, o) => store.watch(from, cb, o),
    revision: () => store.revision(),
    close: () => store.close(),
  };
}
