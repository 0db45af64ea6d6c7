import { createHash } from 'node:crypto';
import type { Event } from '../../src/api/event.js';
import { errorMessage, isAlreadyExists, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Store } from '../store/types.js';
import { EventAggregator } from './aggregate.js';

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
 * a count, as Kubernetes does, so a crash loop does not flood the store; and past ten different messages
 * of one (object, type, reason) within ten minutes they fold into one "combined" Event too (aggregate.ts).
 */
export class EventRecorder {
  /** Events being written by `emit`, awaited by `drain`. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly aggregator: EventAggregator;
  /**
   * Per Event (namespace/name), while one write of it is in flight: the records that came meanwhile, folded into the
   * single write that follows it. A ReplicaSet creating a batch of 256 pods records 256 times into one
   * combined Event: one write after the one in flight, not 256 read-modify-writes in a row.
   */
  private readonly writing = new Map<string, { next?: Fold }>();
  /**
   * Events (namespace/name) this recorder wrote lately, least recently written first: one of them is counted into
   * (patched) at once; any other is most likely new (its name digests what it says) and is created at once. Trying
   * the patch first cost every new Event a failed read and a thrown NotFound (client-go's recorder keeps such a cache).
   */
  private readonly known = new Map<string, true>();

  constructor(
    private readonly store: Store,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.aggregator = new EventAggregator(now);
  }

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

  /** Resolves once the Event is written (or could not be: that is logged, never thrown). */
  record(e: EventInput): Promise<void> {
    const ns = e.involved.namespace ?? 'default';
    const { combined, message } = this.aggregator.aggregate(e);
    const what = combined ? EventAggregator.keyOf(e) : `${e.involved.uid ?? ''}|${e.involved.kind}|${e.reason}|${e.message}`;
    const key = createHash('sha256').update(what).digest('hex').slice(0, 10);
    const name = `${e.involved.name}.${key}`;
    // A time given by an agent is its clock's: one in the future (a wrong clock, or a device that wants its
    // Event to outlive the TTL) is taken as now. An unreadable one too.
    const nowMs = this.now();
    const givenMs = e.ts === undefined ? NaN : Date.parse(e.ts);
    const ts = Number.isNaN(givenMs) || givenMs > nowMs ? new Date(nowMs).toISOString() : new Date(givenMs).toISOString();
    const slotKey = `${ns}/${name}`;
    const slot = this.writing.get(slotKey);
    if (slot) return addRecord((slot.next ??= newFold(e, ns, name)), ts, message);
    const f = newFold(e, ns, name);
    addRecord(f, ts, message);
    this.writing.set(slotKey, {});
    void this.writeAll(slotKey, f).catch((err: unknown) => this.logger.warn({ err: errorMessage(err), reason: e.reason }, 'cannot record event'));
    return f.written;
  }

  /** Writes `first`, then whatever folded into the slot meanwhile, until nothing is left. */
  private async writeAll(slotKey: string, first: Fold): Promise<void> {
    const slot = this.writing.get(slotKey)!;
    try {
      for (let f: Fold | undefined = first; f; f = slot.next, slot.next = undefined) {
        try {
          await this.write(f);
        } finally {
          f.done();
        }
      }
    } finally {
      // Whatever happened, no record waits on this slot: a later one starts a new one.
      slot.next?.done();
      this.writing.delete(slotKey);
    }
  }

  private async write(f: Fold, attempt = 0): Promise<void> {
    const e = f.input;
    const slotKey = `${f.namespace}/${f.name}`;
    try {
      if (attempt > 0 || this.known.has(slotKey)) {
        const updated = await this.store
          .patch('Event', f.namespace, f.name, (ev) => {
            ev.count += f.count;
            if (f.last > ev.lastTimestamp) ev.lastTimestamp = f.last;
            // A combined Event shows the latest of the messages it counts (as Kubernetes').
            ev.message = f.message;
            return ev;
          })
          .catch((err) => {
            // Gone meanwhile (expired, deleted): made again below.
            if (isNotFound(err)) return undefined;
            throw err;
          });
        if (updated) return this.remember(slotKey);
      }
      const ev: Event = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: f.name, namespace: f.namespace },
        involvedObject: { kind: e.involved.kind, name: e.involved.name, namespace: e.involved.namespace, uid: e.involved.uid },
        type: e.type,
        reason: e.reason,
        message: f.message,
        source: { component: e.component, host: e.host },
        firstTimestamp: f.first,
        lastTimestamp: f.last,
        count: f.count,
      };
      await this.store.create(ev);
      this.remember(slotKey);
    } catch (err) {
      // There already (written before this recorder started, or by another server): count into it.
      if (isAlreadyExists(err) && attempt === 0) return this.write(f, 1);
      // An event is a courtesy to the user; failing to record one must never fail the caller. The records
      // folded into this write are lost with it (a count, not a retry queue).
      this.logger.warn({ err: errorMessage(err), reason: e.reason, object: e.involved.name }, 'cannot record event');
    }
  }

  private remember(slotKey: string): void {
    this.known.delete(slotKey);
    this.known.set(slotKey, true);
    if (this.known.size > KNOWN_EVENTS_MAX) this.known.delete(this.known.keys().next().value!);
  }
}

/** Events remembered as written (EventRecorder.known). */
const KNOWN_EVENTS_MAX = 2048;

/** Records of one Event name written together. */
interface Fold {
  input: EventInput;
  namespace: string;
  name: string;
  count: number;
  first: string;
  last: string;
  message: string;
  written: Promise<void>;
  done: () => void;
}

/** Counts one record into `f`; resolves when `f` is written. */
function addRecord(f: Fold, ts: string, message: string): Promise<void> {
  f.count += 1;
  if (ts < f.first) f.first = ts;
  if (ts > f.last) f.last = ts;
  f.message = message;
  return f.written;
}

/** A fold with no record in it yet (addRecord fills it). */
function newFold(input: EventInput, namespace: string, name: string): Fold {
  let done!: () => void;
  const written = new Promise<void>((resolve) => (done = resolve));
  return { input, namespace, name, count: 0, first: '\uffff', last: '', message: input.message, written, done };
}
