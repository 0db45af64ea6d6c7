import { KeyedBackoff, type BackoffOptions } from '../../src/util/backoff.js';

/** A failing key is retried after 50 ms, doubling up to a minute, ±20% so keys spread out. */
export const RETRY_BACKOFF: BackoffOptions = { baseMs: 50, maxMs: 60_000, jitter: 0.2 };

/**
 * A deduplicating work queue of keys (sample-controller's workqueue): a key queued many times is
 * processed once; a key is never processed by two workers at once; a failing key is retried with
 * per-key exponential backoff; a key can ask to be looked at again after a delay.
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  /** Keys added while being processed: re-queued when their turn ends. */
  private readonly dirtyWhileProcessing = new Set<string>();
  /** Keys waiting for their addAfter time: one timer for all of them (a fleet's nodes each wait here). */
  private readonly delayed = new DelayedKeys((key) => this.add(key));
  private readonly soon = new Map<string, NodeJS.Timeout>();
  /** Keys whose last pass asked not to be woken by their children before this time (performance.now()). */
  private readonly pacedUntil = new Map<string, number>();
  /** Keys woken by a child while being processed: queued when their turn ends, paced. */
  private readonly pacedWhileProcessing = new Set<string>();
  private readonly backoff: KeyedBackoff;
  private waiters: Array<() => void> = [];
  private shutdown = false;

  constructor(backoff: BackoffOptions = RETRY_BACKOFF) {
    this.backoff = new KeyedBackoff(backoff);
  }

  add(key: string): void {
    if (this.shutdown) return;
    if (this.processing.has(key)) {
      this.dirtyWhileProcessing.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.waiters.shift()?.();
  }

  /** Adds `key` after `ms`; a later call for the same key replaces the earlier time. */
  addAfter(key: string, ms: number): void {
    if (this.shutdown) return;
    this.delayed.set(key, ms);
  }

  /**
   * Adds `key` within `ms`, gathering every call meanwhile into that one add (a first call sets the time; later
   * ones do not move it, unlike addAfter): a burst of changes that concern one key costs one pass, not one each.
   */
  addSoon(key: string, ms: number): void {
    if (this.shutdown || this.queued.has(key) || this.soon.has(key)) return;
    const t = setTimeout(() => {
      this.soon.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.soon.set(key, t);
  }

  /**
   * The pass of `key` just done looked at so much that it asks not to run again for `ms` when only its
   * children changed (see addPaced). 0 lifts it.
   */
  pace(key: string, ms: number): void {
    if (ms > 0) this.pacedUntil.set(key, performance.now() + ms);
    else this.pacedUntil.delete(key);
  }

  /**
   * Adds `key` for a change of one of its children (a pod of a ReplicaSet): at once, unless its last pass
   * asked to be paced (pace()); then when that time has come, every change meanwhile gathered into one pass.
   * A pass over 5,000 pods woken by the status of each would otherwise run back to back and hold the core
   * the placement of those pods needs. A change of the key's own object still uses add().
   */
  addPaced(key: string): void {
    if (this.shutdown) return;
    if (this.processing.has(key)) {
      this.pacedWhileProcessing.add(key);
      return;
    }
    const until = this.pacedUntil.get(key);
    const wait = until === undefined ? 0 : until - performance.now();
    if (wait <= 0) {
      this.pacedUntil.delete(key);
      this.add(key);
    } else this.addSoon(key, Math.ceil(wait));
  }

  /** After a failure: retry later, later each time. */
  addRateLimited(key: string): number {
    const ms = this.backoff.next(key);
    this.addAfter(key, ms);
    return ms;
  }

  forget(key: string): void {
    this.backoff.forget(key);
  }

  /** Next key to process, or undefined once shut down. */
  async get(): Promise<string | undefined> {
    while (!this.shutdown) {
      const key = this.queue.shift();
      if (key !== undefined) {
        this.queued.delete(key);
        this.processing.add(key);
        // This pass sees every change up to now: an add still waiting for its time (addSoon, a pace) would
        // only cost a second pass, or outlive a pace lifted or shortened since.
        const soon = this.soon.get(key);
        if (soon) {
          clearTimeout(soon);
          this.soon.delete(key);
        }
        return key;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return undefined;
  }

  done(key: string): void {
    this.processing.delete(key);
    const paced = this.pacedWhileProcessing.delete(key);
    if (this.dirtyWhileProcessing.delete(key)) this.add(key);
    else if (paced) this.addPaced(key);
  }

  get length(): number {
    return this.queue.length + this.processing.size;
  }

  stop(): void {
    this.shutdown = true;
    this.delayed.clear();
    for (const t of this.soon.values()) clearTimeout(t);
    this.soon.clear();
    this.pacedUntil.clear();
    this.pacedWhileProcessing.clear();
    for (const w of this.waiters) w();
    this.waiters = [];
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** One key's turn in the heap: due at `at`; `seq` tells a current entry from one replaced since. */
interface DueKey {
  at: number;
  key: string;
  seq: number;
}

/**
 * Keys each due at a time, fired through one unref'd timer armed for the earliest: a timer per key was a
 * Timeout, a closure and its context for every node of the fleet (1,500 of them at 1,000 nodes). A binary
 * heap orders the times; a key set again leaves its old entry behind, skipped when popped (its sequence no
 * longer current) and swept when stale entries outnumber live ones.
 */
export class DelayedKeys {
  private readonly current = new Map<string, number>();
  private heap: DueKey[] = [];
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Infinity;

  constructor(
    private readonly fire: (key: string) => void,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  get size(): number {
    return this.current.size;
  }

  set(key: string, ms: number): void {
    // A delay that is not a number (a bad date in a status) counts as none: NaN in the heap would never come due
    // and would hold up every key behind it.
    const entry: DueKey = { at: this.now() + (Number.isFinite(ms) ? Math.max(0, ms) : 0), key, seq: ++this.seq };
    this.current.set(key, entry.seq);
    this.push(entry);
    if (this.heap.length > 64 && this.heap.length > 2 * this.current.size) this.sweep();
    this.arm();
  }

  clear(): void {
    this.current.clear();
    this.heap = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Infinity;
  }

  private arm(): void {
    const next = this.heap[0];
    if (!next || next.at >= this.armedAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = next.at;
    // +1: a timer may fire up to a millisecond early against performance.now(). At most setTimeout's limit
    // (~24.8 days; beyond it Node fires at once, with a warning): a later time is armed again from run().
    this.timer = setTimeout(() => this.run(), Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(next.at - this.now())) + 1));
    this.timer.unref();
  }

  private run(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const t = this.now();
    const due: string[] = [];
    while (this.heap.length && this.heap[0]!.at <= t) {
      const e = this.pop()!;
      if (this.current.get(e.key) !== e.seq) continue;
      this.current.delete(e.key);
      due.push(e.key);
    }
    this.arm();
    for (const key of due) this.fire(key);
  }

  private sweep(): void {
    this.heap = this.heap.filter((e) => this.current.get(e.key) === e.seq);
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  private push(e: DueKey): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.at <= e.at) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  private pop(): DueKey | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length && last) {
      h[0] = last;
      this.down(0);
    }
    return top;
  }

  private down(i: number): void {
    const h = this.heap;
    const e = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= h.length) break;
      if (c + 1 < h.length && h[c + 1]!.at < h[c]!.at) c++;
      if (h[c]!.at >= e.at) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = e;
  }
}
