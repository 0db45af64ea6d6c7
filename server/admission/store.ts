import { normalizeSecret } from '../../src/api/config.js';
import { kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { ForbiddenError, NotFoundError } from '../../src/util/errors.js';
import { isKind, type Store } from '../store/types.js';
import { assertPodSecurity, DEFAULT_POD_SECURITY, type PodSecurityPolicy } from './pod-security.js';
import { QUOTA_COUNTED_KINDS, quotaViolation } from './quota.js';

export interface AdmissionOptions {
  /** The hostPath allow-list of the pod security switch; give the API server the same one. */
  podSecurity?: PodSecurityPolicy;
}

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

  /**
   * Creates admitted under a quota and not yet stored, by `${kind}/${namespace}` and name. The store's list shows
   * durable objects only: creates sent side by side (a ReplicaSet's batch of 256) each saw the same count, and a
   * quota of 50 pods let 257 through. Counted with the listed ones, each create sees those admitted before it.
   */
  const admitting = new Map<string, Map<string, ApiObject>>();
  const NOTHING_TO_RELEASE = () => {};

  async function admit<T extends ApiObject>(obj: T): Promise<{ object: T; release: () => void }> {
    const o = normalize(obj);
    const info = kindInfo(o.kind);
    if (!info.namespaced) return { object: o, release: NOTHING_TO_RELEASE };
    const ns = o.metadata.namespace ?? 'default';
    const nsObj = await store.get('Namespace', '', ns);
    if (!nsObj) throw new NotFoundError(`namespaces "${ns}"`);
    if (nsObj.status?.phase === 'Terminating') {
      throw new ForbiddenError(`${info.plural} "${o.metadata.name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`);
    }
    if (o.kind === 'Pod') {
      // The role was checked where the request came in (the API, for the pod or its template); here the
      // writer is the system, so the namespace label alone decides.
      assertPodSecurity({ kind: 'Pod', plural: info.plural, name: o.metadata.name, namespace: ns, body: o, namespaceLabels: nsObj.metadata.labels, role: 'admin', policy: podSecurity });
    }
    if (QUOTA_COUNTED_KINDS.includes(o.kind)) {
      const quotas = (await store.list('ResourceQuota', ns)).items;
      if (quotas.length) {
        const listed = (await store.list(o.kind, ns)).items;
        // From here to the registration below nothing awaits: no other admission runs in between.
        const slot = `${o.kind}/${ns}`;
        const pending = admitting.get(slot);
        let existing: ApiObject[] = listed;
        if (pending) {
          const names = new Set(listed.map((x) => x.metadata.name));
          existing = [...listed, ...[...pending.values()].filter((x) => !names.has(x.metadata.name))];
        }
        const v = quotaViolation(o, quotas, existing);
        if (v) throw new ForbiddenError(`${info.plural} "${o.metadata.name}" is forbidden: ${v}`);
        const mine = pending ?? new Map<string, ApiObject>();
        if (!pending) admitting.set(slot, mine);
        mine.set(o.metadata.name, o);
        return {
          object: o,
          release: () => {
            if (mine.get(o.metadata.name) === o) mine.delete(o.metadata.name);
            if (mine.size === 0 && admitting.get(slot) === mine) admitting.delete(slot);
          },
        };
      }
    }
    return { object: o, release: NOTHING_TO_RELEASE };
  }
  return {
    get: (k, ns, n) => store.get(k, ns, n),
    list: (k, ns) => store.list(k, ns),
    create: async (obj) => {
      const { object, release } = await admit(obj);
      try {
        return await store.create(object);
      } finally {
        release();
      }
    },
    update: async (obj) => store.update(normalize(obj)),
    patch: (k, ns, n, m) => store.patch(k, ns, n, m),
    delete: (k, ns, n, o) => store.delete(k, ns, n, o),
    watch: (from, cb, o) => store.watch(from, cb, o),
    revision: () => store.revision(),
    close: () => store.close(),
  };
}
