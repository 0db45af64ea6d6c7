/**
 * Event expiry: Events are a recent history, not a record. As in Kubernetes (kube-apiserver
 * --event-ttl, 1 h), an Event goes once it has not been updated for the TTL, and no object keeps more
 * than a bounded number of Events (the newest), so a crash loop, a controller gone wild or a chatty
 * agent cannot fill the store.
 *
 * Keys (opaque to the runner):
 * - `ns/name`                         an Event (the primary kind, resynced): deleted when expired, else
 *                                     looked at again when it would expire;
 * - `#cap|Kind|ns|name|uid`           the Events about one object: the oldest beyond the cap are deleted.
 */
import type { ApiObject } from '../../src/api/meta.js';
import type { Event } from '../../src/api/event.js';
import { isConflict, isNotFound } from '../../src/util/errors.js';
import type { WatchEventType } from '../store/types.js';
import type { ControllerDeps } from './deps.js';
import { keyOf, splitKey, type Controller, type ReconcileResult } from './runner.js';

/** Kubernetes' default --event-ttl. */
export const EVENT_TTL_MS = 3600_000;
/** Events kept per involved object (the newest). */
export const EVENTS_PER_OBJECT = 100;

const CAP_PREFIX = '#cap|';

function capKey(e: Event): string {
  const o = e.involvedObject;
  return `${CAP_PREFIX}${o.kind}|${e.metadata.namespace ?? ''}|${o.name}|${o.uid ?? ''}`;
}

function parseCapKey(key: string): { kind: string; namespace: string; name: string; uid: string } | undefined {
  const parts = key.slice(CAP_PREFIX.length).split('|');
  if (parts.length !== 4) return undefined;
  return { kind: parts[0]!, namespace: parts[1]!, name: parts[2]!, uid: parts[3]! };
}

/**
 * When the Event was last touched: its lastTimestamp (the recorder never stamps one later than the server's
 * clock, so an agent cannot make an Event outlive the TTL by dating it in the future).
 */
function touchedMs(e: Event): number {
  const last = Date.parse(e.lastTimestamp);
  const first = Date.parse(e.metadata.creationTimestamp ?? '');
  if (Number.isNaN(last)) return Number.isNaN(first) ? 0 : first;
  return last;
}

export function eventExpiryController(deps: ControllerDeps): Controller {
  const { store, logger, now } = deps;
  const ttlMs = deps.eventTtlMs ?? EVENT_TTL_MS;
  const cap = deps.eventsPerObject ?? EVENTS_PER_OBJECT;
  const log = logger.child({ controller: 'event-expiry' });

  /** Deletes exactly the version read: an Event counted again meanwhile is no longer the one judged. */
  async function remove(e: Event): Promise<void> {
    try {
      await store.delete('Event', e.metadata.namespace ?? 'default', e.metadata.name, { resourceVersion: e.metadata.resourceVersion });
    } catch (err) {
      if (isNotFound(err)) return;
      // Updated meanwhile: the runner looks at it again (the update queued its key).
      if (isConflict(err)) return;
      throw err;
    }
  }

  /**
   * Per Event key queued by a change and not yet looked at: when that change touched it. Its first look only
   * sets the requeue an hour ahead, and needs no read for that (one LevelDB read per Event written was 1.3 %
   * of the server's CPU while 5,000 pods were placed). The look an hour later reads the Event.
   */
  const touchedAt = new Map<string, number>();

  async function expire(key: string): Promise<ReconcileResult | void> {
    const seen = touchedAt.get(key);
    touchedAt.delete(key);
    const leftBySeen = seen === undefined ? 0 : seen + ttlMs - now();
    if (leftBySeen > 0) return { requeueAfterMs: leftBySeen };
    const { namespace, name } = splitKey(key);
    const e = await store.get('Event', namespace, name);
    if (!e) return;
    const left = touchedMs(e) + ttlMs - now();
    if (left > 0) return { requeueAfterMs: left };
    await remove(e);
    log.debug({ namespace, name, reason: e.reason }, 'expired event deleted');
  }

  /**
   * The Events about each object, by name, per namespace: built by one list the first time a namespace's
   * cap is checked, then kept by the watch. Without it every new Event listed all Events of its namespace
   * (one per unschedulable pod create: quadratic over a burst, the API's top CPU item at 16 creates in
   * flight). Sets of names make a watch event seen both before and after the list count once.
   */
  const index = new Map<string, Map<string, Set<string>>>();
  /**
   * Watch events seen while a namespace is being listed, per list in flight: replayed over the list's
   * items, so an Event created during the list is never missing from the index built from it (a name
   * missing would hide an object past its cap: CI saw 130 Events stay where 100 was the cap).
   */
  const listing = new Map<string, Set<Array<[Event, WatchEventType]>>>();

  function apply(byKey: Map<string, Set<string>>, e: Event, type: WatchEventType): void {
    if (type !== 'DELETED') return addName(byKey, e);
    const k = capKey(e);
    const names = byKey.get(k);
    names?.delete(e.metadata.name);
    if (names?.size === 0) byKey.delete(k);
  }

  function track(e: Event, type: WatchEventType): void {
    if (type === 'DELETED') touchedAt.delete(keyOf(e));
    else touchedAt.set(keyOf(e), touchedMs(e));
    const ns = e.metadata.namespace ?? '';
    for (const seen of listing.get(ns) ?? []) seen.push([e, type]);
    const byKey = index.get(ns);
    if (byKey) apply(byKey, e, type);
  }

  function addName(byKey: Map<string, Set<string>>, e: Event): void {
    const k = capKey(e);
    const names = byKey.get(k);
    if (names) names.add(e.metadata.name);
    else byKey.set(k, new Set([e.metadata.name]));
  }

  /** Lists a namespace's Events and indexes them anew, with the watch events seen meanwhile replayed over the list. */
  async function listIndexed(namespace: string): Promise<Event[]> {
    const seen: Array<[Event, WatchEventType]> = [];
    const inFlight = listing.get(namespace) ?? new Set();
    listing.set(namespace, inFlight.add(seen));
    try {
      const items = (await store.list('Event', namespace)).items;
      const byKey = new Map<string, Set<string>>();
      for (const e of items) addName(byKey, e);
      for (const [e, type] of seen) apply(byKey, e, type);
      index.set(namespace, byKey);
      return items;
    } finally {
      inFlight.delete(seen);
      if (inFlight.size === 0) listing.delete(namespace);
    }
  }

  async function enforceCap(key: string): Promise<void> {
    const o = parseCapKey(key);
    if (!o) return;
    if (!index.has(o.namespace)) await listIndexed(o.namespace);
    if ((index.get(o.namespace)!.get(key)?.size ?? 0) <= cap) return;
    // Past the cap by the index: the list decides (and corrects the index).
    const all = await listIndexed(o.namespace);
    const about = all.filter((e) => e.involvedObject.kind === o.kind && e.involvedObject.name === o.name && (e.involvedObject.uid ?? '') === o.uid);
    if (about.length <= cap) return;
    // Newest first; the name breaks ties so every pass picks the same ones.
    about.sort((a, b) => touchedMs(b) - touchedMs(a) || (a.metadata.name < b.metadata.name ? -1 : 1));
    const surplus = about.slice(cap);
    for (const e of surplus) await remove(e);
    log.info({ object: `${o.kind} ${o.namespace}/${o.name}`, deleted: surplus.length, cap }, 'events beyond the per-object cap deleted (oldest first)');
  }

  return {
    name: 'event-expiry',
    kind: 'Event',
    watches: [
      {
        kind: 'Event',
        keys: (obj: ApiObject, type) => {
          track(obj as Event, type);
          return type === 'DELETED' ? [] : [capKey(obj as Event)];
        },
      },
    ],
    async reconcile(key) {
      if (key.startsWith(CAP_PREFIX)) return enforceCap(key);
      return expire(key);
    },
  };
}
