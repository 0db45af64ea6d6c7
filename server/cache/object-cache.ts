import type { ApiObject } from '../../src/api/meta.js';
import { deepFreeze } from '../../src/util/deep-freeze.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { ListResult, ObjectOf, Store, Watch, WatchEvent } from '../store/types.js';

/**
 * An in-memory copy of every object of a few kinds, kept in step by one store watch: client-go's informer
 * cache. The scheduler and the controllers list Pods and Nodes at every pass; read from LevelDB each time
 * (an iterator and a JSON decode per object), placing 5,000 pods on 1,000 nodes decoded ~280,000 objects
 * and spent a quarter of the server's CPU doing it (bench/placement.ts).
 *
 * A store delivers a write's watch event before it acknowledges the write (LevelStore.flush), so once
 * started the cache holds every acknowledged write: a controller lists what it has just written.
 *
 * Cached objects are shared by every reader and frozen: a reader that changes one throws a TypeError at the
 * assignment instead of silently changing what every other reader sees. Readers that build a changed object
 * copy it first (patch() hands its `mutate` a private copy, as before).
 */
export class ObjectCache {
  private readonly byKind = new Map<string, Map<string, ApiObject>>();
  /**
   * Every object of a kind in list order (namespace, then name), kept in order change by change: sorting
   * the whole kind again at each list after a change was a few percent of the server's CPU while 5,000
   * pods were placed (the scheduler and the controllers list after nearly every write).
   */
  private readonly ordered = new Map<string, ApiObject[]>();
  /** One namespace's part of `ordered`, made when listed, dropped when one of its objects changes. */
  private readonly sorted = new Map<string, ApiObject[]>();
  private watch: Watch | undefined;

  private constructor(
    private readonly store: Store,
    private readonly logger: Logger,
  ) {}

  /**
   * Watches first, then lists each kind: an event that lands while a list runs is held and applied after
   * it when newer than the list, so nothing between the two is lost and nothing is applied twice.
   */
  static async start(store: Store, kinds: string[], logger: Logger): Promise<ObjectCache> {
    const cache = new ObjectCache(store, logger);
    await cache.sync(kinds);
    return cache;
  }

  private async sync(kinds: string[]): Promise<void> {
    const { store } = this;
    const listedAt = new Map<string, number>();
    const held: WatchEvent[] = [];
    const fresh = new Map<string, Map<string, ApiObject>>();
    let live = false;
    const watch = store.watch(
      store.revision(),
      (e) => {
        if (!live) {
          held.push(e);
          return;
        }
        if (e.revision > listedAt.get(e.object.kind)!) this.apply(e);
      },
      {
        kinds,
        // The store ended the watch by itself (etcd compacted past it): list again, meanwhile serving what it holds.
        onError: (err) => {
          if (this.watch !== watch) return;
          this.logger.warn({ err: errorMessage(err) }, 'object cache watch ended; listing again');
          watch.close();
          this.sync(kinds).catch((e: unknown) => this.logger.error({ err: errorMessage(e) }, 'object cache could not list again; it serves what it held'));
        },
      },
    );
    try {
      for (const kind of kinds) {
        const list = await store.list(kind);
        const objects = new Map<string, ApiObject>();
        for (const o of list.items) objects.set(keyOf(o), deepFreeze(o));
        fresh.set(kind, objects);
        listedAt.set(kind, list.revision);
      }
    } catch (err) {
      watch.close();
      throw err;
    }
    this.watch?.close();
    this.watch = watch;
    for (const [kind, objects] of fresh) {
      this.byKind.set(kind, objects);
      this.ordered.set(kind, [...objects.values()].sort(byNamespaceName));
    }
    this.sorted.clear();
    live = true;
    for (const e of held) if (e.revision > listedAt.get(e.object.kind)!) this.apply(e);
  }

  has(kind: string): boolean {
    return this.byKind.has(kind);
  }

  /** Like Store.list for a cached kind: sorted by namespace then name, frozen objects in a new array. */
  list<K extends string>(kind: K, namespace?: string): ListResult<ObjectOf<K>> {
    const objects = this.byKind.get(kind);
    if (!objects) throw new Error(`kind ${kind} is not cached`);
    const all = this.ordered.get(kind)!;
    let items = all;
    if (namespace !== undefined) {
      const prefix = `${kind}/${namespace}/`;
      let part = this.sorted.get(prefix);
      if (!part) this.sorted.set(prefix, (part = all.filter((o) => (o.metadata.namespace ?? '') === namespace)));
      items = part;
    }
    // Every event up to the store's revision has been applied (see the class comment).
    return { items: items.slice() as ObjectOf<K>[], revision: this.store.revision() };
  }

  /** Like Store.get for a cached kind: the frozen object every reader shares (undefined when there is none). */
  get<K extends string>(kind: K, namespace: string, name: string): ObjectOf<K> | undefined {
    const objects = this.byKind.get(kind);
    if (!objects) throw new Error(`kind ${kind} is not cached`);
    return objects.get(`${namespace}/${name}`) as ObjectOf<K> | undefined;
  }

  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  private apply(e: WatchEvent): void {
    const objects = this.byKind.get(e.object.kind);
    if (!objects) return;
    try {
      const key = keyOf(e.object);
      const all = this.ordered.get(e.object.kind)!;
      const at = firstNotBefore(all, e.object);
      const present = at < all.length && byNamespaceName(all[at]!, e.object) === 0;
      if (e.type === 'DELETED') {
        objects.delete(key);
        if (present) all.splice(at, 1);
      } else {
        const o = deepFreeze(e.object);
        objects.set(key, o);
        if (present) all[at] = o;
        else all.splice(at, 0, o);
      }
      this.sorted.delete(`${e.object.kind}/${e.object.metadata.namespace ?? ''}/`);
    } catch (err) {
      this.logger.error({ err: errorMessage(err), kind: e.object.kind, revision: e.revision }, 'object cache could not apply a change');
    }
  }
}

/** The store with list() of the cache's kinds answered from the cache; every other call goes to the store. */
export function withCachedLists(store: Store, cache: ObjectCache): Store {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'list') {
        return <K extends string>(kind: K, namespace?: string) => (cache.has(kind) ? Promise.resolve(cache.list(kind, namespace)) : target.list(kind, namespace));
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const keyOf = (o: ApiObject) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

/** The index of the first object of `sorted` that does not sort before `o` (binary search). */
function firstNotBefore(sorted: readonly ApiObject[], o: ApiObject): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byNamespaceName(sorted[mid]!, o) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function byNamespaceName(a: ApiObject, b: ApiObject): number {
  const na = a.metadata.namespace ?? '';
  const nb = b.metadata.namespace ?? '';
  if (na !== nb) return na < nb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}
