import type { Pod } from '../../src/api/pod.js';
import { errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import { isKind, type Store, type Watch } from '../store/types.js';
import { place } from './place.js';

function podKey(p: Pod): string {
  return `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
}

function isPending(p: Pod): boolean {
  return !p.spec.nodeName && !p.metadata.deletionTimestamp;
}

/**
 * The scheduling loop: level-triggered. Any pod or node change (or the periodic resync) triggers a
 * pass over every unbound pod; the pure `place` decides, this loop only writes the binding or the
 * reason it could not bind.
 */
export class Scheduler {
  private watch: Watch | undefined;
  private timer: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Unbound pods as last seen (by the watch, and by each pass), with when they were noted. */
  private readonly pending = new Map<string, number>();
  private seq = 0;

  constructor(private readonly deps: { store: Store; events: EventRecorder; logger: Logger; resyncMs?: number }) {}

  async start(): Promise<void> {
    this.watch = this.deps.store.watch(
      this.deps.store.revision(),
      (e) => {
        if (isKind(e.object, 'Pod')) {
          const key = podKey(e.object);
          if (e.type !== 'DELETED' && isPending(e.object)) {
            this.pending.set(key, ++this.seq);
            this.trigger();
            return;
          }
          this.pending.delete(key);
        }
        // A node change or a pod gone can make room, but only matters while some pod waits: node
        // heartbeats must not cost a pass over every pod.
        if (this.pending.size > 0) this.trigger();
      },
      { kinds: ['Pod', 'Node'] },
    );
    this.resync = setInterval(() => this.trigger(), this.deps.resyncMs ?? 10_000);
    this.resync.unref();
    this.trigger();
    await this.running;
  }

  trigger(): void {
    if (this.stopped) return;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running = this.running.then(() => this.pass()).catch((err) => this.deps.logger.error({ err: errorMessage(err) }, 'scheduling pass failed'));
    }, 10);
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
    for (const pod of pending) {
      const decision = place(pod, { nodes, pods });
      if (decision.node) {
        const bound = await this.bind(pod, decision.node);
        // Later pods in this pass must see this one's requests on its node.
        if (bound) pods[pods.findIndex((p) => p.metadata.uid === pod.metadata.uid)] = bound;
        if (bound) stillPending.delete(podKey(pod));
      } else {
        await this.markUnschedulable(pod, decision.message);
      }
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
        await this.deps.events.record({ involved: { kind: 'Pod', namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid }, type: 'Normal', reason: 'Scheduled', message: `Successfully assigned ${ns}/${pod.metadata.name} to ${node}`, component: 'drover-scheduler' });
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
    this.stopped = true;
    this.watch?.close();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.resync) clearInterval(this.resync);
    await this.running;
  }
}
