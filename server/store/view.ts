import type { Store } from './types.js';

/**
 * A view of `store` (BackendStore.fenced): its reads and watches, `writes` in place of its writes,
 * and a close() that leaves the store open: the view's holder (a leader's components, whose term may
 * end) does not own the store; the entry point closes it.
 */
export function storeView(store: Store, writes: Pick<Store, 'create' | 'update' | 'patch' | 'delete'>): Store {
  return {
    get: (kind, namespace, name) => store.get(kind, namespace, name),
    list: (kind, namespace) => store.list(kind, namespace),
    watch: (from, onEvent, opts) => store.watch(from, onEvent, opts),
    revision: () => store.revision(),
    close: async () => {},
    create: (obj) => writes.create(obj),
    update: (obj) => writes.update(obj),
    patch: (kind, namespace, name, mutate) => writes.patch(kind, namespace, name, mutate),
    delete: (kind, namespace, name, opts) => writes.delete(kind, namespace, name, opts),
  };
}
