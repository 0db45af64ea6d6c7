/**
 * Per-pod workers (the kubelet's shape): each pod's steps run on that pod's own worker, one batch
 * after the other, while other pods' workers run beside it. A pod stopping through a 20 s grace
 * period holds up only that pod. The reconcile loop plans and hands out; it never waits for a worker.
 */
import type { Step } from './plan.js';

/**
 * Which worker carries out a step: the pod's (by uid), an image's for a pull (pods that need the same
 * image share one download), a container's own for a leftover that names no pod.
 */
export function workerKey(step: Step): string {
  switch (step.action) {
    case 'pull':
      return `image:${step.image}`;
    case 'remove':
      return step.pod ? `pod:${step.pod.uid}` : `container:${step.name}`;
    default:
      return `pod:${step.pod.uid}`;
  }
}

/** A plan's steps split by worker, each worker's in the plan's order (removes before runs, as planned). */
export function stepsByWorker(steps: Step[]): Map<string, Step[]> {
  const out = new Map<string, Step[]>();
  for (const step of steps) {
    const key = workerKey(step);
    const list = out.get(key);
    if (list) list.push(step);
    else out.set(key, [step]);
  }
  return out;
}

export class PodWorkers {
  private readonly running = new Map<string, Promise<void>>();
  /** Workers that finished since the last `look()`: what the look saw of them may be out of date. */
  private finishedSinceLook = new Set<string>();

  /**
   * Call before reading the runtime for a plan: `mayStart` then refuses any worker that was busy
   * or finished meanwhile, since the plan was made from containers as they were before its steps.
   */
  look(): void {
    this.finishedSinceLook = new Set();
  }

  busy(key: string): boolean {
    return this.running.has(key);
  }

  /** Whether a batch planned from the last look may start on this worker now. */
  mayStart(key: string): boolean {
    return !this.running.has(key) && !this.finishedSinceLook.has(key);
  }

  /** Starts `work` on the worker `key` unless it is busy; false when it was. `work` must not throw. */
  start(key: string, work: () => Promise<void>): boolean {
    if (this.running.has(key)) return false;
    const done = work().finally(() => {
      this.running.delete(key);
      this.finishedSinceLook.add(key);
    });
    this.running.set(key, done);
    return true;
  }

  /** Resolves when every worker running now (and any started meanwhile) is done. */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running.values()]);
  }

  get size(): number {
    return this.running.size;
  }
}
