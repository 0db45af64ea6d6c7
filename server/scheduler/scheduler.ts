import type { Pod } from '../../src/api/pod.js';
import { serveQueue, type BackoffOptions } from '../../src/util/backoff.js';
import { errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import { isKind, type Store, type Watch } from '../store/types.js';
import { WorkQueue } from '../controllers/queue.js';
import { scheduleBatch } from './place.js';

function podKey(p: Pod): string {
  return `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
}

function isPending(p: Pod): boolean {
  return !p.spec.nodeName && !p.metadata.deletionTimestamp;
}

/**
 * The one key of the scheduler's work queue: "the pending pods". A pass places all of them (oldest
 * first, each seeing the ones placed before it), so there is nothing to gain from a key per pod; the
 * queue coalesces triggers into one more pass and retries a failed one with backoff.
 */
const PENDING = 'pending-pods';

/** Bindings (and unschedulable notes) written at once; each write also records an Event. */
const WRITES_IN_FLIGHT = 256;

/** Retry of a failed pass (store trouble): soon, then less often. */
const RETRY: BackoffOptions = { baseMs: 100, maxMs: 10_000, jitter: 0.2 };

/**
 * The scheduling loop: level-triggered, on a work queue like the controllers'. Any pod or node
 * change, and the resync after each pass, queues a pass over every unbound pod; the pure `place`
 * decides, the pass only writes the binding or the reason it could not bind.
 */
export class Scheduler {
  private watch: Watch | undefined;
  private readonly queue = new WorkQueue(RETRY);
  private worker: Promise<void> | undefined;
  /** Unbound pods as last seen (by the watch, and by each pass), with when they were noted. */
  private readonly pending = new Map<string, number>();
  private seq = 0;
  private stopping = false;

  constructor(
    private readonly deps: {
      store: Store;
      events: EventRecorder;
      logger: Logger;
      resyncMs?: number;
      /** Counts each pod placed or found unschedulable (/metrics). */
      metrics?: { attempt(result: 'scheduled' | 'unschedulable'): void };
    },
  ) {}

  async start(): Promise<void> {
    this.watch = this.deps.store.watch(
      this.deps.store.revision(),
      (e) => {
        if (isKind(e.object, 'Pod')) {
          const key = podKey(e.object);
          if (e.type !== 'DELETED' && isPending(e.object)) {
            this.pending.set(key, ++this.seq);
            this.queue.add(PENDING);
            return;
          }
          this.pending.delete(key);
        }
        // A node change or a pod gone can make room, but only matters while some pod waits: node
        // heartbeats must not cost a pass over every pod.
        if (this.pending.size > 0) this.queue.add(PENDING);
      },
      { kinds: ['Pod', 'Node'] },
    );
    this.worker = serveQueue(
      this.queue,
      async () => {
        await this.pass();
        // A missed event is repaired within one resync period.
        this.queue.addAfter(PENDING, this.deps.resyncMs ?? 10_000);
      },
      (_key, err, retryMs) => this.deps.logger.error({ err: errorMessage(err), retryMs }, 'scheduling pass failed; will retry'),
    );
    this.queue.add(PENDING);
  }

  private async pass(): Promise<void> {
    const { store } = this.deps;
    const startedAt = this.seq;
    const nodes = (await store.list('Node')).items;
    const pods = (await store.list('Pod')).items;
    const pending = pods.filter(isPending).sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
    const stillPending = new Set(pending.map(podKey));
    // Noted now, not after the pass: a node that turns Ready meanwhile must find them waiting.
    for (const k of stillPending) if (!this.pending.has(k)) this.pending.set(k, startedAt);
    // Every decision first (each pod sees the ones placed before it, as kube-scheduler's assumed
    // pods), then the writes in flight together so group commit syncs them in a few batches: one
    // synced write after the other held 5,000 pods to a few hundred a second. A binding that fails
    // (the pod was deleted or bound meanwhile) only leaves its node looking fuller for this pass.
    const decisions = scheduleBatch(pending, { nodes, pods });
    for (let i = 0; i < decisions.length; i += WRITES_IN_FLIGHT) {
      // A pass over thousands of pods must not hold a shutdown (SIGTERM ends within 10 s).
      if (this.stopping) return;
      await Promise.all(
        decisions.slice(i, i + WRITES_IN_FLIGHT).map(async ({ pod, node, message }) => {
          if (node) {
            const bound = await this.bind(pod, node);
            if (bound) this.deps.metrics?.attempt('scheduled');
            if (bound) stillPending.delete(podKey(pod));
          } else {
            this.deps.metrics?.attempt('unschedulable');
            await this.markUnschedulable(pod, message);
          }
        }),
      );
    }
    // What this pass saw replaces older notes; notes the watch made during the pass stay (they
    // triggered another pass already).
    for (const [k, at] of this.pending) if (at <= startedAt && !stillPending.has(k)) this.pending.delete(k);
  }

  private async bind(pod: Pod, node: string): Promise<Pod | undefined> {
    const ns = pod.metadata.namespace ?? 'default';
    const now = new Date().toISOString();
    try {
      const bound = await this.deps.store.patch('Pod', ns, pod.metadata.name, (p) => {
        if (p.metadata.uid !== pod.metadata.uid || p.spec.nodeName) return undefined;
        p.spec.nodeName = node;
        const conds = (p.status?.conditions ?? []).filter((c) => c.type !== 'PodScheduled');
        p.status = { ...p.status, phase: p.status?.phase ?? 'Pending', message: undefined, reason: undefined, conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: now }, ...conds] };
        return p;
      });
      if (bound) {
        this.deps.logger.info({ pod: `${ns}/${pod.metadata.name}`, node }, 'pod scheduled');
        // Not waited for: the binds of a pass would wait for a second commit (their Events').
        this.deps.events.emit({ involved: { kind: 'Pod', namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid }, type: 'Normal', reason: 'Scheduled', message: `Successfully assigned ${ns}/${pod.metadata.name} to ${node}`, component: 'drover-scheduler' });
      }
      return bound;
    } catch (err) {
      // Deleted meanwhile: nothing to bind.
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async markUnschedulable(pod: Pod, message: string): Promise<void> {
    const ns = pod.metadata.namespace ?? 'default';
    const prev = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    // Only write (and emit an event) when the reason changed: a resync must not rewrite every pending pod.
    if (prev?.status === 'False' && prev.message === message) return;
    const now = new Date().toISOString();
    try {
      await this.deps.store.patch('Pod', ns, pod.metadata.name, (p) => {
        if (p.metadata.uid !== pod.metadata.uid || p.spec.nodeName) return undefined;
        const conds = (p.status?.conditions ?? []).filter((c) => c.type !== 'PodScheduled');
        p.status = { ...p.status, phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message, lastTransitionTime: now }, ...conds] };
        return p;
      });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await this.deps.events.record({ involved: { kind: 'Pod', namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid }, type: 'Warning', reason: 'FailedScheduling', message, component: 'drover-scheduler' });
  }

  /** Stops scheduling and waits for a pass in progress, so the store can close under it. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.watch?.close();
    this.queue.stop();
    await this.worker;
  }
}
