/**
 * The one place for retry delays: exponential backoff with full jitter, capped.
 * Reconcilers return "requeue after N ms" computed here instead of sleeping themselves.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** 0 = no jitter, 1 = full jitter (delay uniformly in [0, d]); default 0.5 (delay in [d/2, d]). */
  jitter?: number;
  random?: () => number;
}

export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt));
  const jitter = opts.jitter ?? 0.5;
  const r = (opts.random ?? Math.random)();
  return Math.round(exp * (1 - jitter * r));
}

/** Per-key failure counters: the delay grows per key while it keeps failing and resets on success. */
export class KeyedBackoff {
  private readonly attempts = new Map<string, number>();
  constructor(private readonly opts: BackoffOptions) {}
  next(key: string): number {
    const n = this.attempts.get(key) ?? 0;
    this.attempts.set(key, n + 1);
    return backoffDelay(n, this.opts);
  }
  forget(key: string): void {
    this.attempts.delete(key);
  }
  failures(key: string): number {
    return this.attempts.get(key) ?? 0;
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    // The listener goes with the timer: a loop sleeping on one signal must not pile them up.
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * `p`, unless `ms` pass first: then what `onTimeout` returns, or its throw as the rejection (e.g. a
 * TimeoutError). The timer never outlives the race; `p` itself is not cancelled.
 */
export async function withTimeout<T, U = never>(p: Promise<T>, ms: number, onTimeout: () => U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<U>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (err) {
        reject(err);
      }
    }, ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What serveQueue needs of a work queue (server/controllers/queue.ts's WorkQueue). */
export interface KeyQueue {
  /** The next key, or undefined once the queue is stopped. */
  get(): Promise<string | undefined>;
  done(key: string): void;
  forget(key: string): void;
  /** Queues the key again after its own growing delay; returns that delay. */
  addRateLimited(key: string): number;
}

/**
 * Processes a queue's keys until it stops: a key whose handling fails comes back after its own
 * growing delay (the queue's backoff), one that succeeds starts afresh.
 */
export async function serveQueue(queue: KeyQueue, handle: (key: string) => Promise<void>, onError: (key: string, err: unknown, retryMs: number) => void): Promise<void> {
  for (;;) {
    const key = await queue.get();
    if (key === undefined) return;
    try {
      await handle(key);
      queue.forget(key);
    } catch (err) {
      onError(key, err, queue.addRateLimited(key));
    } finally {
      queue.done(key);
    }
  }
}
