import { createHash } from 'node:crypto';
import type { Event } from '../../src/api/event.js';
import { errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Store } from '../store/types.js';

export interface InvolvedObject {
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
}

export interface EventInput {
  involved: InvolvedObject;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  component: string;
  host?: string;
  ts?: string;
}

/**
 * Writes Event objects for `describe`. The same (object, reason, message) folds into one Event with
 * a count, as Kubernetes does, so a crash loop does not flood the store.
 */
export class EventRecorder {
  /** Events being written by `emit`, awaited by `drain`. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records without making the caller wait for the write (client-go's recorder is asynchronous too): a
   * controller creating pods in batches would otherwise wait for two synced commits per batch, the pods'
   * and then their Events'. The write joins the store's next group commit; `drain` waits for it.
   */
  emit(e: EventInput): void {
    const p = this.record(e).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Waits for every Event `emit` started (before the store closes). */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  async record(e: EventInput): Promise<void> {
    const ns = e.involved.namespace ?? 'default';
    const key = createHash('sha256').update(`${e.involved.uid ?? ''}|${e.involved.kind}|${e.reason}|${e.message}`).digest('hex').slice(0, 10);
    const name = `${e.involved.name}.${key}`;
    // A time given by an agent is its clock's: one in the future (a wrong clock, or a device that wants its
    // Event to outlive the TTL) is taken as now. An unreadable one too.
    const nowMs = this.now();
    const givenMs = e.ts === undefined ? NaN : Date.parse(e.ts);
    const ts = Number.isNaN(givenMs) || givenMs > nowMs ? new Date(nowMs).toISOString() : new Date(givenMs).toISOString();
    try {
      const updated = await this.store
        .patch('Event', ns, name, (ev) => {
          ev.count += 1;
          if (ts > ev.lastTimestamp) ev.lastTimestamp = ts;
          return ev;
        })
        .catch((err) => {
          if (isNotFound(err)) return undefined;
          throw err;
        });
      if (updated) return;
      const ev: Event = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: ns },
        involvedObject: { kind: e.involved.kind, name: e.involved.name, namespace: e.involved.namespace, uid: e.involved.uid },
        type: e.type,
        reason: e.reason,
        message: e.message,
        source: { component: e.component, host: e.host },
        firstTimestamp: ts,
        lastTimestamp: ts,
        count: 1,
      };
      await this.store.create(ev);
    } catch (err) {
      // An event is a courtesy to the user; failing to record one must never fail the caller.
      this.logger.warn({ err: errorMessage(err), reason: e.reason, object: e.involved.name }, 'cannot record event');
    }
  }
}
