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

  async function admit<T extends ApiObject>(obj: T): Promise<T> {
    const o = normalize(obj);
    const info = kindInfo(o.kind);
    if (!info.namespaced) return o;
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
        const existing = (await store.list(o.kind, ns)).items;
        const v = quotaViolation(o, quotas, existing);
        if (v) throw new ForbiddenError(`${info.plural} "${o.metadata.name}" is forbidden: ${v}`);
      }
    }
    return o;
  }
  return {
    get: (k, ns, n) => store.get(k, ns, n),
    list: (k, ns) => store.list(k, ns),
    create: async (obj) => store.create(await admit(obj)),
    update: async (obj) => store.update(normalize(obj)),
    patch: (k, ns, n, m) => store.patch(k, ns, n, m),
    delete: (k, ns, n, o) => store.delete(k, ns, n, o),
    watch: (from, cb, o) => store.watch(from, cb, o),
    revision: () => store.revision(),
    close: () => store.close(),
  };
}
