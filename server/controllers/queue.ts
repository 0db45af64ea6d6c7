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
  private readonly delayed = new Map<string, NodeJS.Timeout>();
  private readonly soon = new Map<string, NodeJS.Timeout>();
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

  addAfter(key: string, ms: number): void {
    if (this.shutdown) return;
    const prev = this.delayed.get(key);
    if (prev) clearTimeout(prev);
    const t = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.delayed.set(key, t);
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
        return key;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return undefined;
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirtyWhileProcessing.delete(key)) this.add(key);
  }

  get length(): number {
    return this.queue.length + this.processing.size;
  }

  stop(): void {
    this.shutdown = true;
    for (const t of this.delayed.values()) clearTimeout(t);
    this.delayed.clear();
    for (const t of this.soon.values()) clearTimeout(t);
    this.soon.clear();
    for (const w of this.waiters) w();
    this.waiters = [];
  }
}
