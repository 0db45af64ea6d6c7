import type { Pod } from '../../src/api/pod.js';
import { serveQueue, type BackoffOptions } from '../../src/util/backoff.js';
import { errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import { isKind, type Store, type Watch } from '../store/types.js';
import { WorkQueue } from '../controllers/queue.js';
import { isTerminated } from './filters.js';
import { scheduleBatch } from './place.js';
import { UsageCarry } from './usage-carry.js';
import { compareStrings } from '../../src/util/compare.js';

/** Keys of frozen pods (the object cache's, unchanged from one pass to the next), made once. */
const podKeys = new WeakMap<Pod, string>();

function podKey(p: Pod): string {
  let key = podKeys.get(p);
  if (key === undefined) {
    key = `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
    if (Object.isFrozen(p)) podKeys.set(p, key);
  }
  return key;
}

function isPending(p: Pod): boolean {
  return !p.spec.nodeName && !p.metadata.deletionTimestamp;
}

/** What of a pod its placement reads: its spec and labels (a status change leaves it as it was). */
function placementInput(p: Pod): string {
  return JSON.stringify([p.spec, p.metadata.labels]);
}

/**
 * The one key of the scheduler's work queue: "the pending pods". A pass places all of them (oldest
 * first, each seeing the ones placed before it), so there is nothing to gain from a key per pod; the
 * queue coalesces triggers into one more pass and retries a failed one with backoff.
 */
const PENDING = 'pending-pods';

/** Bindings (and unschedulable notes) written at once; each write also records an Event. */
const WRITES_IN_FLIGHT = 256;
/** How long the node usage outlives the last pass that placed a pod (see carryUnused). */
const CARRY_IDLE_MS = 5_000;

/** Retry of a failed pass (store trouble): soon, then less often. */
const RETRY: BackoffOptions = { baseMs: 100, maxMs: 10_000, jitter: 0.2 };

/**
 * The scheduling loop: level-triggered, on a work queue like the controllers'. Any pod or node
 * change, and the resync after each pass, queues a pass over the unbound pods, less the ones that fit
 * nowhere last time and wait for room; the pure `place` decides, the pass only writes the binding or
 * the reason it could not bind.
 */
export class Scheduler {
  private watch: Watch | undefined;
  private readonly queue = new WorkQueue(RETRY);
  private worker: Promise<void> | undefined;
  /** Unbound pods as last seen (by the watch, and by each pass), with when they were noted. */
  private readonly pending = new Map<string, number>();
  /** The unbound pods themselves, as last seen (the frozen objects the object cache shares). */
  private readonly pendingPods = new Map<string, Pod>();
  /**
   * Unbound pods with no "unschedulable" note: what a pass tries, with the notes that have expired. A pass
   * looks up these alone instead of going over every unbound pod (with 12,000 waiting, that walk, at each new
   * pod, was a tenth of the API's CPU and held the event loop a millisecond at a time).
   */
  private readonly tryable = new Set<string>();
  /** Every note was dropped (room may have been made): the next pass tries every unbound pod. */
  private allTryable = true;
  /**
   * Pods the watch saw bound or gone while a pass runs: its list may be older than that (a list read while the
   * delete committed, a list cache behind the watch), and must not bring them back as waiting pods.
   */
  private goneDuringPass: Set<string> | undefined;
  private seq = 0;
  /**
   * Pods the last try found no node for, with when (kube-scheduler's unschedulable pods): a pass leaves
   * them out until something could make room (a node changes, a bound pod is deleted or finishes, a
   * pod is bound that a required pod affinity may want) or until they have waited resyncMs. Without
   * it, every new pod cost a pass over every pod that waited, so 18,000 pods created with no node to
   * take them spent most of the server's CPU re-deciding the same "no".
   */
  private readonly unschedulable = new Map<string, { at: number; uid: string | undefined; asked: string }>();
  /** The waiting pods with required pod (anti-)affinity: a pod bound or relabelled may change their answer. */
  private readonly unschedulableWithPodTerms = new Set<string>();
  /** Counts the events that may have made room; a pass's notes are dropped when it moved meanwhile. */
  private roomEpoch = 0;
  /** When a pass last listed every pod (Date.now()). */
  private lastFullPass = 0;
  private stopping = false;
  /** The node usage one pass leaves for the next (usage-carry.ts). */
  private readonly carry = new UsageCarry();
  /** Forgets the carried usage once no pass has placed a pod for CARRY_IDLE_MS. */
  private carryIdle: NodeJS.Timeout | undefined;

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
            const seen = this.pending.has(key);
            this.pending.set(key, ++this.seq);
            this.pendingPods.set(key, e.object);
            const noted = this.unschedulable.get(key);
            // Its own "unschedulable" note coming back (or another status change) is no reason to try
            // it again: it waits for room or for its retry. A new pod of that name, or a change of
            // what placement reads (tolerations, labels for affinity), is tried at once.
            if (e.type === 'MODIFIED' && seen && noted !== undefined && noted.uid === e.object.metadata.uid && noted.asked === placementInput(e.object)) return;
            this.forgetUnschedulable(key);
            this.tryable.add(key);
            this.queue.add(PENDING);
            return;
          }
          this.forgetPending(key);
          this.goneDuringPass?.add(key);
          const pod = e.object;
          if (pod.spec.nodeName && (e.type === 'DELETED' || isTerminated(pod))) this.roomMayHaveFreed();
          // A pod bound, or a bound pod relabelled, can satisfy another's required pod affinity or stop
          // its anti-affinity from forbidding a node: the pods with such terms try again.
          else if (pod.spec.nodeName && this.unschedulableWithPodTerms.size > 0) {
            for (const k of this.unschedulableWithPodTerms) {
              this.unschedulable.delete(k);
              if (this.pending.has(k)) this.tryable.add(k);
            }
            this.unschedulableWithPodTerms.clear();
            this.roomEpoch++;
          }
        } else this.roomMayHaveFreed();
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

  /** A node changed, or a bound pod went: every pod that fit nowhere gets another try. */
  private roomMayHaveFreed(): void {
    this.unschedulable.clear();
    this.unschedulableWithPodTerms.clear();
    this.allTryable = true;
    this.roomEpoch++;
  }

  private forgetUnschedulable(key: string): void {
    this.unschedulable.delete(key);
    this.unschedulableWithPodTerms.delete(key);
  }

  /** The pod is bound, gone or no longer waiting: it leaves every record of waiting pods. */
  private forgetPending(key: string): void {
    this.pending.delete(key);
    this.pendingPods.delete(key);
    this.tryable.delete(key);
    this.forgetUnschedulable(key);
  }

  /** Waiting pods whose note is older than `retryMs`, oldest first (notes are kept in the order they were made). */
  private expiredNotes(now: number, retryMs: number): string[] {
    const out: string[] = [];
    for (const [k, noted] of this.unschedulable) {
      if (now - noted.at < retryMs) break;
      out.push(k);
    }
    return out;
  }

  private anyToTry(now: number, retryMs: number): boolean {
    if (this.allTryable || this.tryable.size > 0) return true;
    const oldest = this.unschedulable.values().next().value;
    return oldest !== undefined && now - oldest.at >= retryMs;
  }

  private async pass(): Promise<void> {
    const startedAt = this.seq;
    const epoch = this.roomEpoch;
    const now = Date.now();
    const retryMs = this.deps.resyncMs ?? 10_000;
    // Nothing the watch noted can be tried (every unbound pod waits for room): no list of every pod,
    // which with thousands waiting was most of a pass. A full pass still runs once per resync period,
    // so a missed event is repaired.
    const full = now - this.lastFullPass >= retryMs;
    if (!full && !this.anyToTry(now, retryMs)) {
      // Every waiting pod waits for room: no placement is going on, and the usage is not kept for it.
      this.carryUnused();
      return;
    }
    if (full) this.lastFullPass = now;
    this.goneDuringPass = new Set();
    try {
      await this.passOver(now, retryMs, full, startedAt, epoch);
    } finally {
      this.goneDuringPass = undefined;
    }
  }

  /** One pass's decisions and writes (see pass). */
  private async passOver(now: number, retryMs: number, full: boolean, startedAt: number, epoch: number): Promise<void> {
    const { store } = this.deps;
    // Every unbound pod is looked at once per resync period and after room may have been made; otherwise only
    // the ones without a note and those whose note expired (taken now: the watch may add more meanwhile).
    const everyPod = full || this.allTryable;
    const candidates = everyPod ? undefined : [...this.tryable, ...this.expiredNotes(now, retryMs)];
    const nodes = (await store.list('Node')).items;
    const pods = (await store.list('Pod')).items;
    const waiting = (p: Pod) => {
      const noted = this.unschedulable.get(podKey(p));
      return noted !== undefined && noted.uid === p.metadata.uid && now - noted.at < retryMs;
    };
    let unbound: Pod[] | undefined;
    let pending: Pod[];
    if (candidates) {
      pending = [];
      for (const k of new Set(candidates)) {
        const p = this.pendingPods.get(k);
        if (p && isPending(p) && !waiting(p)) pending.push(p);
      }
    } else {
      unbound = pods.filter(isPending);
      pending = unbound.filter((p) => !waiting(p));
    }
    // Oldest first; pods created in the same millisecond in list order (namespace, name), however they were found.
    pending.sort(
      (a, b) =>
        compareStrings(a.metadata.creationTimestamp ?? '', b.metadata.creationTimestamp ?? '') ||
        compareStrings(a.metadata.namespace ?? '', b.metadata.namespace ?? '') ||
        compareStrings(a.metadata.name, b.metadata.name),
    );
    // The watch keeps `pending` in step; once per resync period a pass also checks it against the list
    // (a set of every unbound pod, which with thousands waiting was a tenth of the server's CPU per pass).
    const stillPending = full ? new Set(unbound!.map(podKey)) : undefined;
    // Noted now, not after the pass: a node that turns Ready meanwhile must find them waiting.
    if (unbound) {
      for (const p of unbound) {
        const k = podKey(p);
        if (this.pending.has(k) || this.goneDuringPass?.has(k)) continue;
        this.pending.set(k, startedAt);
        this.pendingPods.set(k, p);
        if (!this.unschedulable.has(k)) this.tryable.add(k);
      }
    }
    // Every decision first (each pod sees the ones placed before it, as kube-scheduler's assumed
    // pods), then the writes in flight together so group commit syncs them in a few batches: one
    // synced write after the other held 5,000 pods to a few hundred a second. A binding that fails
    // (the pod was deleted or bound meanwhile) only leaves its node looking fuller for this pass.
    const decisions = pending.length === 0 ? [] : scheduleBatch(pending, { nodes, pods }, {}, this.carry);
    // A pass that placed nothing (pods that fit nowhere, retried each resync) keeps no usage either.
    if (decisions.some((d) => d.node)) this.carryUsed();
    else this.carryUnused();
    for (let i = 0; i < decisions.length; i += WRITES_IN_FLIGHT) {
      // A pass over thousands of pods must not hold a shutdown (SIGTERM ends within 10 s).
      if (this.stopping) return;
      await Promise.all(
        decisions.slice(i, i + WRITES_IN_FLIGHT).map(async ({ pod, node, message }) => {
          if (node) {
            const bound = await this.bind(pod, node);
            if (bound) this.deps.metrics?.attempt('scheduled');
            if (bound) stillPending?.delete(podKey(pod));
            // Gone, bound elsewhere or replaced: that object is no longer a waiting pod (the watch says the same,
            // unless what it saw was older than the list this pass read).
            else if (this.pendingPods.get(podKey(pod)) === pod) this.forgetPending(podKey(pod));
          } else {
            this.deps.metrics?.attempt('unschedulable');
            this.noteUnschedulable(pod, now, startedAt, epoch);
            await this.markUnschedulable(pod, message);
          }
        }),
      );
    }
    // What this pass saw replaces older notes; notes the watch made during the pass stay (they
    // triggered another pass already).
    if (stillPending) for (const [k, at] of this.pending) if (at <= startedAt && !stillPending.has(k)) this.forgetPending(k);
    // Every pod was tried; a room event during the pass asks for another such pass (and a failed pass, which
    // never gets here, is retried with it still set).
    if (everyPod && this.roomEpoch === epoch) this.allTryable = false;
  }

  /**
   * Notes a pod this pass found no node for, unless what the pass decided on is already stale: room may
   * have been made since the pass began (its later writes land after the node event that cleared the
   * notes), or the watch saw the pod change (a new pod of that name, a new spec) meanwhile. Such a pod
   * is tried again by the pass that event queued instead of waiting out resyncMs.
   */
  private noteUnschedulable(pod: Pod, at: number, passStartedAt: number, passEpoch: number): void {
    const key = podKey(pod);
    // Bound or gone meanwhile (the watch forgot it): a note would outlive it.
    const seen = this.pending.get(key);
    if (seen === undefined || this.roomEpoch !== passEpoch || seen > passStartedAt) return;
    // Moved to the end: the notes stay in the order they were made, so the oldest is the first (expiredNotes).
    this.unschedulable.delete(key);
    this.unschedulable.set(key, { at, uid: pod.metadata.uid, asked: placementInput(pod) });
    this.tryable.delete(key);
    const terms = pod.spec.affinity;
    if (terms?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.length || terms?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.length) this.unschedulableWithPodTerms.add(key);
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

  private carryUsed(): void {
    clearTimeout(this.carryIdle);
    this.carryIdle = undefined;
  }

  /**
   * The usage is forgotten only once placement has paused for a while: a ReplicaSet creating 5,000 pods
   * leaves passes with nothing to place between its batches, and building the usage afresh after each
   * (every pod bound so far) was 5 % of the placement's CPU. Until then the next pass checks it against
   * the pods as usual.
   */
  private carryUnused(): void {
    this.carryIdle ??= setTimeout(() => {
      this.carryIdle = undefined;
      this.carry.clear();
    }, CARRY_IDLE_MS).unref();
  }

  /** Stops scheduling and waits for a pass in progress, so the store can close under it. */
  async stop(): Promise<void> {
    this.carryUsed();
    this.carry.clear();
    this.stopping = true;
    this.watch?.close();
    this.queue.stop();
    await this.worker;
  }
}
