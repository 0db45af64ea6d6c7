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
import type { ControllerDeps } from './deps.js';
import { splitKey, type Controller, type ReconcileResult } from './runner.js';

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

  async function expire(key: string): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const e = await store.get('Event', namespace, name);
    if (!e) return;
    const left = touchedMs(e) + ttlMs - now();
    if (left > 0) return { requeueAfterMs: left };
    await remove(e);
    log.debug({ namespace, name, reason: e.reason }, 'expired event deleted');
  }

  async function enforceCap(key: string): Promise<void> {
    const o = parseCapKey(key);
    if (!o) return;
    const about = (await store.list('Event', o.namespace)).items.filter(
      (e) => e.involvedObject.kind === o.kind && e.involvedObject.name === o.name && (e.involvedObject.uid ?? '') === o.uid,
    );
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
    watches: [{ kind: 'Event', keys: (obj: ApiObject, type) => (type === 'DELETED' ? [] : [capKey(obj as Event)]) }],
    async reconcile(key) {
      if (key.startsWith(CAP_PREFIX)) return enforceCap(key);
      return expire(key);
    },
  };
}
