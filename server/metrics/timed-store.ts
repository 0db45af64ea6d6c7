import { DroverError } from '../../src/util/errors.js';
import type { Store } from '../store/types.js';
import type { StoreOperation, StoreSink, WriteResult } from './server-metrics.js';

function resultOf(err: unknown): WriteResult {
  // Conflict, not found, already exists, a bad patch: the caller's request, not a store failure.
  return err instanceof DroverError && err.code < 500 ? 'refused' : 'error';
}

/**
 * The store with each write timed from call to durable acknowledgement (its wait for the group's fsync
 * included), by operation and result. Reads and watches pass through untouched: they are memory and
 * snapshot reads, and timing every list would cost more than it tells.
 */
export function timedStore(store: Store, sink: Pick<StoreSink, 'write'>): Store {
  const timed = async <T>(op: StoreOperation, call: () => Promise<T>): Promise<T> => {
    const began = performance.now();
    try {
      const out = await call();
      sink.write(op, 'ok', (performance.now() - began) / 1000);
      return out;
    } catch (err) {
      sink.write(op, resultOf(err), (performance.now() - began) / 1000);
      throw err;
    }
  };
  return {
    get: (kind, namespace, name) => store.get(kind, namespace, name),
    list: (kind, namespace) => store.list(kind, namespace),
    create: (obj) => timed('create', () => store.create(obj)),
    update: (obj) => timed('update', () => store.update(obj)),
    patch: (kind, namespace, name, mutate) => timed('patch', () => store.patch(kind, namespace, name, mutate)),
    delete: (kind, namespace, name, opts) => timed('delete', () => store.delete(kind, namespace, name, opts)),
    watch: (from, onEvent, opts) => store.watch(from, onEvent, opts),
    revision: () => store.revision(),
    close: () => store.close(),
  };
}
