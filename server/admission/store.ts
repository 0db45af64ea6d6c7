import { normalizeSecret } from '../../src/api/config.js';
import { kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { ForbiddenError, NotFoundError } from '../../src/util/errors.js';
import { isKind, type Store } from '../store/types.js';
import { QUOTA_COUNTED_KINDS, quotaViolation } from './quota.js';

/**
 * The store every writer uses (API handlers and controllers alike), with admission in front of
 * create: the namespace must exist and be active, quotas hold, Secrets' stringData is folded into
 * data. So a ReplicaSet's pod creation meets the same quota as a user's.
 */
export function withAdmission(store: Store): Store {
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
