import type { ApiObject } from '../../src/api/meta.js';
import type { Store } from '../store/types.js';

/**
 * Between the steps of a long reconcile (one pod written after another): is the object it works for still
 * the one it read, and is that object's controlling owner still there? A ReplicaSet of 1e9 replicas went on
 * creating pods long after its Deployment was deleted; checking before every step stops it at the next one.
 * Throws when the server is stopping (the runner's signal), so a shutdown never waits for a long loop.
 * Returns why to stop, or undefined to go on.
 */
export async function whyStop(store: Store, obj: ApiObject, signal?: AbortSignal): Promise<string | undefined> {
  signal?.throwIfAborted();
  const ns = obj.metadata.namespace ?? '';
  const cur = await store.get(obj.kind, ns, obj.metadata.name);
  if (!cur || cur.metadata.uid !== obj.metadata.uid) return `${obj.kind} ${obj.metadata.name} is gone`;
  if (cur.metadata.deletionTimestamp) return `${obj.kind} ${obj.metadata.name} is being deleted`;
  // Its spec changed (scaled, new template): the change queued it again; that pass works from the new spec.
  if (cur.metadata.generation !== obj.metadata.generation) return `${obj.kind} ${obj.metadata.name} changed`;
  const ref = (cur.metadata.ownerReferences ?? []).find((r) => r.controller);
  if (ref) {
    const owner = await store.get(ref.kind, ns, ref.name);
    if (!owner || (ref.uid && owner.metadata.uid !== ref.uid) || owner.metadata.deletionTimestamp) return `its owner ${ref.kind} ${ref.name} is gone`;
  }
  return undefined;
}

/**
 * Pods one reconcile creates or deletes at most; more are left to the next pass (queued at once). Keeps a
 * step short, so a shutdown, a deletion or a scale-down is noticed within one batch, not 10,000 pods later.
 */
export const MAX_POD_WRITES_PER_STEP = 500;

/**
 * Pod writes made side by side in a slow-start batch: 1, 2, 4, ... up to this many (Kubernetes'
 * slowStartBatch: a template every create fails with costs one failed write, not a burst of them). Kubernetes'
 * batches double through 256 within its 500 per sync; here a pass goes on at the size the last one reached, so
 * 256 at a time after the first pass: at 128, a 5,000-pod Deployment took 10 % longer to bind, the scheduler
 * making a pass (a list of every pod) per batch. Quotas hold for a whole batch (admission counts the creates in
 * flight).
 */
export const POD_WRITE_BATCH_MAX = 256;

/**
 * Runs `write` on `count` pods in slow-start batches (1, 2, 4, ... POD_WRITE_BATCH_MAX) side by side,
 * each batch allowed by `steps.take`; stops after a batch in which a write failed and throws the
 * first failure. Returns what the writes returned, in order.
 */
export async function slowStartBatches<T>(steps: PodWriteSteps, count: number, write: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  // A pass that goes on where the last one left (firstBatch > 1) still sends one write first: whatever changed
  // between the passes (a quota reached, a policy, an edited template) costs one failed write, not a batch.
  for (let size = 1; out.length < count; size = Math.min(Math.max(size * 2, steps.firstBatch), POD_WRITE_BATCH_MAX)) {
    const n = await steps.take(Math.min(size, count - out.length));
    if (n === 0) break;
    const base = out.length;
    const settled = await Promise.allSettled(Array.from({ length: n }, (_, i) => write(base + i)));
    for (const s of settled) if (s.status === 'fulfilled') out.push(s.value);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    steps.reached = Math.max(steps.reached, Math.min(size * 2, POD_WRITE_BATCH_MAX));
  }
  return out;
}

/**
 * The pod writes of one reconcile: each must be allowed by `next()` (or a batch by `take()`), which stops at the batch limit or when
 * whyStop finds a reason (kept in `stopped`, for the caller's log).
 */
export class PodWriteSteps {
  private left = MAX_POD_WRITES_PER_STEP;
  stopped: string | undefined;
  /**
   * The batch size the next pass may start at: where this one's batches had grown to with every write succeeding.
   * A reconcile that writes thousands of pods in passes of MAX_POD_WRITES_PER_STEP goes on at that size instead of
   * starting again at 1 each pass (ten commit rounds per 500 pods instead of three, measured: 5,000 replicas).
   */
  reached: number;

  constructor(
    private readonly store: Store,
    private readonly obj: ApiObject,
    private readonly signal?: AbortSignal,
    /** Where slow start begins: 1, or what the previous pass of the same work reached (`reached`). */
    readonly firstBatch = 1,
  ) {
    this.reached = firstBatch;
  }

  async next(): Promise<boolean> {
    if (this.left <= 0 || this.stopped) return false;
    this.stopped = await whyStop(this.store, this.obj, this.signal);
    if (this.stopped) return false;
    this.left--;
    return true;
  }

  /**
   * Up to `n` writes allowed at once after one check (0 when stopped or at the limit): a batch of pod
   * writes made side by side, which the store commits together.
   */
  async take(n: number): Promise<number> {
    if (this.left <= 0 || this.stopped || n <= 0) return 0;
    this.stopped = await whyStop(this.store, this.obj, this.signal);
    if (this.stopped) return 0;
    const k = Math.min(n, this.left);
    this.left -= k;
    return k;
  }

  /** The batch limit was reached: the rest is for the next pass, which should come at once. */
  get exhausted(): boolean {
    return this.left <= 0;
  }
}
