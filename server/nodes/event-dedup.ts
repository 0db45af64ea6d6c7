import type { payloads } from '../../src/contract/index.js';

/**
 * Which agent events were already recorded, per node: the newest journal position seen. MQTT QoS 1
 * delivers at least once, and the agent sends an unacknowledged batch again after a reconnect, so the
 * same event can arrive twice; recording it twice would show `Created` x2 for one container.
 * Kept in memory: after a server restart an event redelivered at that moment may count twice.
 * Events without a journal position (older agents) are always recorded.
 */
export class AgentEventLog {
  private readonly last = new Map<string, { journal: string; seq: number }>();

  /** The events of a batch not recorded yet, in order. */
  fresh(node: string, batch: payloads.Events): payloads.AgentEvent[] {
    const seen = this.last.get(node);
    if (!batch.journal || !seen || seen.journal !== batch.journal) return batch.events;
    return batch.events.filter((e) => e.seq === undefined || e.seq > seen.seq);
  }

  recorded(node: string, journal: string | undefined, seq: number | undefined): void {
    if (!journal || seq === undefined) return;
    const seen = this.last.get(node);
    if (seen?.journal === journal && seen.seq >= seq) return;
    this.last.set(node, { journal, seq });
  }

  forget(node: string): void {
    this.last.delete(node);
  }
}
