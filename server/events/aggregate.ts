/**
 * Kubernetes' event aggregation (client-go's EventAggregator): Events that differ only in their message
 * (same object, type, reason, component and host) fold into one once ten different messages have come within ten
 * minutes of each other. Without it a ReplicaSet of 5,000 replicas wrote 5,000 "Created pod: …" Events and
 * the per-object cap then deleted 4,900 of them: two store writes per pod for nothing a user reads.
 */

/** Different messages under one aggregate key before they fold (client-go: maxEvents). */
export const AGGREGATE_AFTER_MESSAGES = 10;
/** How long after the last similar Event the count goes on (client-go: maxIntervalInSeconds, 600). */
export const AGGREGATE_WINDOW_MS = 600_000;
/** Aggregate keys remembered, least recently used dropped first (client-go's LRU of 4,096). */
export const AGGREGATE_KEYS_MAX = 4096;

export const COMBINED_PREFIX = '(combined from similar events): ';

export interface SimilarEvent {
  involved: { kind: string; namespace?: string; name: string; uid?: string };
  type: string;
  reason: string;
  message: string;
  component: string;
  /** The node that reported it, for agents' Events (client-go's source.host). */
  host?: string;
}

export interface Aggregated {
  /** true: record under the aggregate Event of this key (one per object, type, reason, component). */
  combined: boolean;
  /** The message to store: the event's own, or it prefixed with COMBINED_PREFIX. */
  message: string;
}

interface SeenMessages {
  messages: Set<string>;
  lastMs: number;
}

export class EventAggregator {
  private readonly seen = new Map<string, SeenMessages>();

  constructor(
    private readonly now: () => number,
    private readonly opts = { after: AGGREGATE_AFTER_MESSAGES, windowMs: AGGREGATE_WINDOW_MS, keysMax: AGGREGATE_KEYS_MAX },
  ) {}

  /** The aggregate key: everything that identifies an Event but its message. */
  static keyOf(e: SimilarEvent): string {
    const o = e.involved;
    return `${o.kind}|${o.namespace ?? ''}|${o.name}|${o.uid ?? ''}|${e.type}|${e.reason}|${e.component}|${e.host ?? ''}`;
  }

  aggregate(e: SimilarEvent): Aggregated {
    const key = EventAggregator.keyOf(e);
    const t = this.now();
    let rec = this.seen.get(key);
    if (!rec || t - rec.lastMs > this.opts.windowMs) rec = { messages: new Set(), lastMs: t };
    rec.messages.add(e.message);
    rec.lastMs = t;
    // Re-inserted: a Map iterates in insertion order, so the first key is the least recently used.
    this.seen.delete(key);
    this.seen.set(key, rec);
    if (this.seen.size > this.opts.keysMax) this.seen.delete(this.seen.keys().next().value!);
    if (rec.messages.size < this.opts.after) return { combined: false, message: e.message };
    // Folding from here on: the set need not grow past the threshold (client-go pops one too).
    rec.messages.delete(e.message);
    return { combined: true, message: COMBINED_PREFIX + e.message };
  }

  /** Keys remembered (for tests: the memory stays bounded). */
  get size(): number {
    return this.seen.size;
  }
}
