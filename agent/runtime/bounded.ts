/**
 * A bound on runtime calls made at once: each podman call is a process that parses its store and
 * takes locks, so a burst of pods must not start dozens side by side on a 2-core device. A graceful
 * stop only waits (the container's grace period), so it takes no slot: a pod in a 20 s stop must not
 * keep others' starts waiting.
 */
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
const BOUNDED = ['run', 'start', 'remove', 'pull'] as const;

/** The runtime with run, start, remove and pull held to `slots`; every other call passes straight through. */
export function boundedRuntime(runtime: ContainerRuntime, slots: Slots): ContainerRuntime {
  const bounded: Partial<ContainerRuntime> = {};
  for (const m of BOUNDED) {
    const call = runtime[m].bind(runtime) as (...a: unknown[]) => Promise<unknown>;
    (bounded as Record<string, unknown>)[m] = (...a: unknown[]) => slots.hold(() => call(...a));
  }
  return new Proxy(runtime, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in bounded) return (bounded as Record<string, unknown>)[prop];
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
