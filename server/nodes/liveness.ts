/** The last report heard from a node, by the server's clock. */
export interface Heartbeat {
  lastHeardMs: number;
  /** The heartbeat period the agent announced. */
  periodMs: number;
  bootId: string;
  /** Set by `assume` (a grace period after a server restart): no report or ping was heard. */
  assumed?: true;
}

/**
 * What this server process has heard of each node's link, in memory only: status ingest
 * (server/nodes/registry.ts) writes it as reports and disconnects arrive, the node-lifecycle
 * controller reads it to decide who is late, lost, or stable again. A restarted server starts empty;
 * the controller then gives every Ready node one grace period (see `assume`).
 */
export class NodeLiveness {
  private readonly beats = new Map<string, Heartbeat>();
  /** Said goodbye (last will) and not heard since, with the beat it had: no grace period to assume, nothing to time. */
  private readonly offline = new Map<string, Heartbeat | undefined>();
  readonly flaps: FlapTracker;

  constructor(opts: { flapThreshold: number; flapWindowMs: number }) {
    this.flaps = new FlapTracker(opts.flapThreshold, opts.flapWindowMs);
  }

  /** A report arrived; returns the heartbeat it replaces. */
  heard(node: string, beat: Heartbeat): Heartbeat | undefined {
    this.offline.delete(node);
    const prev = this.beats.get(node);
    this.beats.set(node, beat);
    return prev;
  }

  /**
   * A sign of life that is no report (an MQTT ping: the keepalive carries liveness between the rare
   * heartbeats): moves the last heard time of a node already heard, nothing else. A node not heard in
   * this process, or gone offline, waits for its status.
   */
  touch(node: string, nowMs: number): void {
    const b = this.beats.get(node);
    if (b && nowMs > b.lastHeardMs) this.beats.set(node, { lastHeardMs: nowMs, periodMs: b.periodMs, bootId: b.bootId });
  }

  /** Heard now unless already known: a Ready node nobody in this process has heard yet gets a full grace period. */
  assume(node: string, beat: Heartbeat): Heartbeat | undefined {
    const known = this.beats.get(node);
    if (known || this.offline.has(node)) return known;
    const assumed: Heartbeat = { ...beat, assumed: true };
    this.beats.set(node, assumed);
    return assumed;
  }

  beat(node: string): Heartbeat | undefined {
    return this.beats.get(node);
  }

  /** The last time the node was really heard in this process (a report or a ping); an assumed grace beat is none. */
  heardBeat(node: string): Heartbeat | undefined {
    const b = this.beats.get(node);
    return b?.assumed ? undefined : b;
  }

  /** The agent said goodbye (last will): nothing to time until it reports again. */
  wentOffline(node: string, nowMs: number): { degraded: boolean } {
    this.offline.set(node, this.beats.get(node));
    this.beats.delete(node);
    return { degraded: this.flaps.disconnect(node, nowMs) };
  }

  /** Said goodbye and not heard since. */
  isOffline(node: string): boolean {
    return this.offline.has(node);
  }

  /**
   * A ping from a node that said goodbye: its agent is connected after all (a reconnect whose old
   * connection's last will reached the server after the new connection's hello and status). Timing
   * starts again from now with the beat it had; true when the node was offline.
   */
  pingedAfterGoodbye(node: string, nowMs: number): boolean {
    if (!this.offline.has(node)) return false;
    const before = this.offline.get(node);
    this.offline.delete(node);
    if (before) this.beats.set(node, { lastHeardMs: nowMs, periodMs: before.periodMs, bootId: before.bootId });
    return true;
  }

  /** The Node is gone. */
  forget(node: string): void {
    this.beats.delete(node);
    this.offline.delete(node);
    this.flaps.forget(node);
  }
}

/**
 * Link flapping with hysteresis: degraded once `threshold` disconnects fall within `windowMs`; healthy
 * again only after a whole window without a disconnect (decided in lifecycle.ts), so the state does
 * not flicker.
 */
export class FlapTracker {
  private readonly drops = new Map<string, number[]>();
  private readonly degraded = new Set<string>();

  constructor(private readonly threshold: number, readonly windowMs: number) {}

  /** Records a disconnect; returns true when this made the node degraded. */
  disconnect(node: string, nowMs: number): boolean {
    const list = [...(this.drops.get(node) ?? []), nowMs].filter((t) => nowMs - t <= this.windowMs);
    this.drops.set(node, list);
    if (list.length >= this.threshold && !this.degraded.has(node)) {
      this.degraded.add(node);
      return true;
    }
    return false;
  }

  /**
   * As many disconnects within the window as make a link degraded, whoever marked it so or stable
   * again: several servers count every disconnect each (their own copy of the last will), while only
   * the leader's lifecycle controller marks a link stable again.
   */
  flapping(node: string, nowMs: number): boolean {
    return this.count(node, nowMs) >= this.threshold;
  }

  count(node: string, nowMs: number): number {
    return (this.drops.get(node) ?? []).filter((t) => nowMs - t <= this.windowMs).length;
  }

  lastDisconnectMs(node: string): number | undefined {
    const list = this.drops.get(node);
    return list?.length ? Math.max(...list) : undefined;
  }

  isDegraded(node: string): boolean {
    return this.degraded.has(node);
  }

  /** The store says degraded (marked by an earlier server process): the next disconnect is no new transition. */
  assumeDegraded(node: string): void {
    this.degraded.add(node);
  }

  stable(node: string): void {
    this.degraded.delete(node);
  }

  forget(node: string): void {
    this.drops.delete(node);
    this.degraded.delete(node);
  }
}
