import type { payloads } from '../src/contract/index.js';

/**
 * Events waiting to reach the server. Bounded: when the link is down for long, the oldest events
 * are dropped first and counted, and the count is reported so the loss is visible.
 */
export class EventJournal {
  private events: payloads.AgentEvent[] = [];
  private dropped = 0;

  constructor(private readonly capacity = 1000) {}

  push(e: payloads.AgentEvent): void {
    this.events.push(e);
    if (this.events.length > this.capacity) {
      this.dropped += this.events.length - this.capacity;
      this.events = this.events.slice(-this.capacity);
    }
  }

  get size(): number {
    return this.events.length;
  }

  /** Takes up to `max` events (and the drop count) for sending; `restore` puts them back on failure. */
  take(max = 200): { events: payloads.AgentEvent[]; dropped: number; restore(): void } {
    const events = this.events.slice(0, max);
    const dropped = this.dropped;
    this.events = this.events.slice(events.length);
    this.dropped = 0;
    return {
      events,
      dropped,
      restore: () => {
        this.events = [...events, ...this.events];
        this.dropped += dropped;
      },
    };
  }
}
