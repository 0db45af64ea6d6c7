/**
 * A bound on runtime calls made at once: each podman call is a process that parses its store and
 * takes locks, so a burst of pods must not start dozens side by side on a 2-core device.
 * Removes take no slot: a remove is mostly a wait for the container's stop (its grace period), and a
 * pod in a 20 s graceful stop must not keep others' starts waiting. Instead the removes asked for in
 * one turn of the event loop (a deleted Deployment's 50 pods, a rolling update's batch) go to the
 * runtime as one call per grace period, which stops them side by side: one process, not 50.
 */
import { errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { ContainerRuntime } from './types.js';

export class Slots {
  private free: number;
  private readonly waitingList: Array<() => void> = [];
  /** Most slots ever held at once (tests, benchmarks). */
  peak = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`slots: size must be a positive integer, got ${size}`);
    this.free = size;
  }

  /** Callers waiting for a slot now. */
  get waiting(): number {
    return this.waitingList.length;
  }

  async hold<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waitingList.push(resolve));
    this.peak = Math.max(this.peak, this.size - this.free);
    try {
      return await fn();
    } finally {
      const next = this.waitingList.shift();
      // The slot passes straight to the next caller: `free` stays as it is.
      if (next) next();
      else this.free++;
    }
  }
}

/** Methods that do work in the runtime and count against the bound. */
const BOUNDED = ['run', 'start', 'pull'] as const;

/** Most containers in one remove call. */
export const REMOVE_BATCH_MAX = 64;

interface PendingRemove {
  id: string;
  graceSeconds: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Gathers the removes asked for in one turn of the event loop and hands them to the runtime's
 * removeMany, one call per grace period (a container is never given more or less grace than its
 * pod asked). When a batch fails, each of its containers is removed again on its own, so the error
 * goes to the pod it belongs to. A runtime without removeMany gets one remove per container.
 */
export class RemoveBatches {
  private pending: PendingRemove[] = [];
  private scheduled = false;
  /** Runtime remove calls made (tests, benchmarks). */
  calls = 0;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly logger: Logger = silentLogger,
  ) {}

  remove(id: string, graceSeconds = 0): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ id, graceSeconds, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const byGrace = new Map<number, PendingRemove[]>();
    for (const p of this.pending) {
      const list = byGrace.get(p.graceSeconds);
      if (list) list.push(p);
      else byGrace.set(p.graceSeconds, [p]);
    }
    this.pending = [];
    for (const [grace, list] of byGrace) {
      for (let i = 0; i < list.length; i += REMOVE_BATCH_MAX) void this.send(list.slice(i, i + REMOVE_BATCH_MAX), grace);
    }
  }

  private async send(batch: PendingRemove[], grace: number): Promise<void> {
    const removeMany = this.runtime.removeMany?.bind(this.runtime);
    if (batch.length > 1 && removeMany) {
      this.calls++;
      try {
        await removeMany(batch.map((p) => p.id), grace);
        for (const p of batch) p.resolve();
        return;
      } catch (err) {
        // Some may be gone already (removing a missing container is no error): each again on its own
        // tells whose removal failed.
        this.logger.warn({ containers: batch.length, err: errorMessage(err) }, 'removing containers together failed; removing each on its own');
      }
    }
    await Promise.all(
      batch.map(async (p) => {
        this.calls++;
        try {
          await this.runtime.remove(p.id, grace);
          p.resolve();
        } catch (err) {
          p.reject(err);
        }
      }),
    );
  }
}

/**
 * The runtime with run, start and pull held to `slots`, and removes gathered into batches (see
 * RemoveBatches); every other call passes straight through.
 */
export function boundedRuntime(runtime: ContainerRuntime, slots: Slots, removes = new RemoveBatches(runtime)): ContainerRuntime {
  const bounded: Partial<ContainerRuntime> = {};
  for (const m of BOUNDED) {
    const call = runtime[m].bind(runtime) as (...a: unknown[]) => Promise<unknown>;
    (bounded as Record<string, unknown>)[m] = (...a: unknown[]) => slots.hold(() => call(...a));
  }
  bounded.remove = (id: string, graceSeconds?: number) => removes.remove(id, graceSeconds);
  return new Proxy(runtime, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in bounded) return (bounded as Record<string, unknown>)[prop];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
