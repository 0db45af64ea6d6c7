import { AgentEventLog } from './event-dedup.js';
import { CONTRACT_VERSION, decode, payloads, type ParsedTopic } from '../../src/contract/index.js';
import type { Condition } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { PodStatus } from '../../src/api/pod.js';
import { backoffDelay, sleep } from '../../src/util/backoff.js';
import { BadRequestError, NotFoundError, errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import type { Store } from '../store/types.js';
import type { MetricsCache } from '../metrics/cache.js';
import type { ReportCopy } from '../mqtt/link.js';
import { applyDiskPressure, NodeConditions, setCondition } from './conditions.js';
import type { NodeLiveness } from './liveness.js';
import { podStatusFromReport, statusesEqual } from './pod-status.js';
import { deepCopy } from '../../src/util/deep-copy.js';
import { TurnsByKey } from '../../src/util/turns.js';

export interface RegistryOptions {
  store: Store;
  events: EventRecorder;
  logger: Logger;
  /** Heard reports and disconnects go here, for the node-lifecycle controller. */
  liveness: NodeLiveness;
  /** Where reported resource use goes (served by the metrics API, never stored). */
  metrics?: MetricsCache;
  /** `pods` in a Node's capacity: how many pods the scheduler places on it. */
  maxPodsPerNode: number;
  /**
   * Labels the server side gave the node when it joined (its join token's `--labels`): applied at every
   * hello over what the agent reports, so they may carry restricted keys the agent cannot set itself.
   */
  assignedLabels?: (node: string) => Record<string, string> | undefined;
  /**
   * The server hears the agents' MQTT pings (its embedded broker; NodeLiveness.touch): their liveness is
   * then timed by the keepalive, not by the rare heartbeats. False with an external broker, whose pings
   * the server cannot see.
   */
  pingsCarryLiveness?: boolean;
  /**
   * The Node as the store last made it durable, from memory (the object cache; frozen, never changed here).
   * Read at every status report instead of LevelDB; only where the cache holds every acknowledged write
   * (LevelDB, which delivers a write's watch event before acknowledging it), and not when several servers
   * share the reports (another server may have just written the node's hello).
   */
  cachedNode?: (name: string) => Node | undefined;
  /** Told every hello once its Node is written (the desired-state publisher reads its `accepts`). */
  onHello?: (node: string, h: payloads.Hello) => void;
  now?: () => number;
}

/**
 * The period the server times a node's silence by (pure). Heartbeats are rare (10 minutes by default)
 * and carry liveness no more: an agent that announces its keepalive pings at least that often, so
 * where the server hears the pings the period is two keepalives (30 s at the default 15 s: late after
 * 45 s, NotReady after 90 s, as when heartbeats came every 30 s; one ping lost or late is no silence),
 * never longer than the heartbeat. Agents older than the field, and servers behind an external broker,
 * keep to the heartbeat.
 */
export function livenessPeriodSeconds(s: Pick<payloads.Status, 'heartbeatSeconds' | 'keepaliveSeconds'>, pingsCarryLiveness: boolean): number {
  if (!pingsCarryLiveness || s.keepaliveSeconds === undefined) return s.heartbeatSeconds;
  return Math.min(s.heartbeatSeconds, 2 * s.keepaliveSeconds);
}

/** A status whose timestamp is this much older than the last applied one is not applied (a replay, or a clock gone wrong). */
const STALE_STATUS_MS = 10 * 60_000;

/**
 * Several servers: a status may reach the server handling it before the hello that creates its Node
 * (handled by another server at the same moment). It waits for the Node this long, in a few looks.
 */
const NODE_WAIT = { attempts: 6, backoff: { baseMs: 100, maxMs: 2_000 } } as const;

/**
 * Several servers: how recent a status heard by every server must be for the leader to apply it again when
 * a server is gone (reapplyHeard): one that died may have taken it with it, unhandled. Older ones were
 * handled, or their node has said more since.
 */
export const REAPPLY_WINDOW_MS = 60_000;

/** The last status a server took from a node: its boot, sequence number and timestamp. */
export interface AppliedStatus {
  bootId: string;
  seq: number;
  tsMs: number;
}

/**
 * Where a status stands against the last one taken (pure): `replay` (same boot, sequence number not
 * above: QoS 1 redelivery, or sent again), `stale` (fresh by its number but timestamped over 10 minutes
 * before: a clock stepped back; proves the node alive, its pod states are not applied), or `fresh`.
 */
export function statusOrder(last: AppliedStatus | undefined, s: Pick<payloads.Status, 'bootId' | 'seq' | 'ts'>): 'replay' | 'stale' | 'fresh' {
  if (last && last.bootId === s.bootId && s.seq <= last.seq) return 'replay';
  const tsMs = Date.parse(s.ts);
  if (last !== undefined && last.bootId === s.bootId && (Number.isNaN(tsMs) || last.tsMs - tsMs > STALE_STATUS_MS)) return 'stale';
  return 'fresh';
}

/** How far apart two reports of one node handled at once by two servers can be (the agent sends a status at most every few seconds on change). */
export const CROSSED_REPORTS_MS = 30_000;

/**
 * Several servers: statuses of one node are spread over them (a shared subscription hands each message to
 * the next server), so two of its statuses can be applied at once, in either order. A pod keeps the time of
 * the report its status came from (`lastReportTime`, the agent's clock): a report up to CROSSED_REPORTS_MS
 * older is not applied over it (pure). Further back it is the device's clock that moved (a board without a
 * real-time clock booting hours behind): applied, as one server does. One server handles a node's reports in
 * order and needs no such rule.
 */
export function olderThanApplied(stored: string | undefined, reportTs: string): boolean {
  if (!stored) return false;
  const a = Date.parse(stored);
  const b = Date.parse(reportTs);
  return !Number.isNaN(a) && !Number.isNaN(b) && b < a && a - b <= CROSSED_REPORTS_MS;
}

/**
 * Label prefixes an agent may not set on its own Node (NodeRestriction, as Kubernetes): labels under them
 * steer sensitive workloads, so they come only from the join token or the API (`drover label`).
 */
export const RESTRICTED_LABEL_PREFIXES = ['node-restriction.drover.io/', 'node-role.kubernetes.io/'];

/** Splits an agent's self-reported labels into those it may set and the keys it may not. */
export function selfReportedLabels(labels: Record<string, string>): { allowed: Record<string, string>; refused: string[] } {
  const allowed: Record<string, string> = {};
  const refused: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (RESTRICTED_LABEL_PREFIXES.some((p) => k.startsWith(p))) refused.push(k);
    else allowed[k] = v;
  }
  return { allowed, refused: refused.sort() };
}

/**
 * Whether a status must write the Node's Ready condition (and lastHeard with it): only when it changes
 * something a reader of the store would see. A heartbeat of a Ready node that changes nothing writes
 * nothing: at 1,000 nodes a periodic lastHeard was ~900 store writes a minute for no news. Written when
 * this process had not heard the node yet (its first status after a server start refreshes the
 * stored time once), when the node was marked late (the write lets the lifecycle controller clear the
 * mark), when it was not Ready, or when the runtime's health flipped (pure).
 */
export function readyWriteNeeded(node: Node, runtimeHealthy: boolean, heardBefore: boolean): boolean {
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const markedLate = node.status?.conditions?.some((c) => c.type === 'HeartbeatLate' && c.status === 'True') ?? false;
  if (!heardBefore || markedLate) return true;
  if (runtimeHealthy) return ready?.status !== 'True';
  return ready?.reason !== 'RuntimeUnhealthy';
}

/**
 * Status ingest: turns agent reports into Node objects and pod statuses. The agent's retained hello
 * creates or refreshes its Node; presence and status reports set the Ready condition; status reports
 * update the pods bound to the node (only when something a user would see changed, to spare the
 * store). What follows from silence over time (late, lost, evictions, a link calm again) is the
 * node-lifecycle controller's (server/controllers/node-lifecycle.ts), fed through NodeLiveness.
 */
export class NodeRegistry {
  /** Per node, its reports being handled, one at a time. */
  private readonly queues = new TurnsByKey();
  private readonly eventLog = new AgentEventLog();
  private closing = false;
  /** The last status applied per node: its boot, sequence number and timestamp. */
  private readonly lastApplied = new Map<string, { bootId: string; seq: number; tsMs: number }>();
  private readonly now: () => number;
  private readonly conditions: NodeConditions;

  constructor(private readonly opts: RegistryOptions) {
    this.now = opts.now ?? Date.now;
    this.conditions = new NodeConditions({ store: opts.store, events: opts.events, component: 'node-registry', now: this.now });
  }

  /**
   * Reports of one node are handled in arrival order (hello before status); nodes run in parallel.
   * A failure is the caller's to report (the returned promise rejects); the next report runs anyway.
   * `copy` (server/mqtt/link.ts ReportCopy): `only`, all of it; with several servers on one broker,
   * `every` (each server's copy: memory only, no store write) or `once` (this server's share: the writes).
   */
  handle(t: ParsedTopic, payload: Buffer, copy: ReportCopy = 'only'): Promise<void> {
    // Shutting down: the store is about to close; the agent sends its state again to the next server.
    if (this.closing) return Promise.resolve();
    if (copy === 'every') return this.remember(t, payload);
    return this.enqueue(t.node, () => this.handleOne(t, payload, copy === 'once'));
  }

  /** Per node, the last status this server heard through its own copy (several servers: `every`). */
  private readonly lastHeard = new Map<string, AppliedStatus>();
  /** Per node, the last status with pod reports it heard, and when (several servers: for reapplyHeard; heartbeats carry none). */
  private readonly lastHeardStatus = new Map<string, { payload: Buffer; atMs: number }>();

  /**
   * Several servers: a server is gone (killed, cut off) or this one has just become leader (the last one is
   * gone). The statuses the broker had handed it and it had not handled died with its session (it ends with
   * the connection), and an agent sends its pods' states on change only: a pod that started just then would
   * show its old state until its next change. So the leader applies again each node's last status it heard
   * itself within REAPPLY_WINDOW_MS, as its own share: one already applied (here, or on the other server)
   * changes nothing (statusesEqual, readyWriteNeeded). It is the node's newest pod reports, so it cannot take
   * a pod back to an older state; nodes that said goodbye or are late since are left alone (their pods' marks
   * stand). Returns how many statuses were looked at again.
   */
  reapplyHeard(): Promise<number> {
    if (this.closing) return Promise.resolve(0);
    const nowMs = this.now();
    const runs: Array<Promise<void>> = [];
    for (const [node, { payload, atMs }] of this.lastHeardStatus) {
      const beat = this.opts.liveness.heardBeat(node);
      if (atMs < nowMs - REAPPLY_WINDOW_MS || this.opts.liveness.isOffline(node) || !beat || beat.lastHeardMs + beat.periodMs < nowMs) continue;
      runs.push(
        this.enqueue(node, () => this.handleOne({ kind: 'status', node }, payload, true, true)).catch((err) =>
          this.opts.logger.warn({ node, err: errorMessage(err) }, 'status applied again after a server left: refused'),
        ),
      );
    }
    return Promise.all(runs).then(() => runs.length);
  }

  /**
   * Several servers, the copy every server gets: what this process keeps in memory, for whichever of its
   * components needs it now or after it becomes leader — the last heard time and heartbeat period
   * (NodeLiveness: the node-lifecycle controller, Node reads), goodbyes and link flaps, the reported
   * resource use (metrics API), the encodings the node reads (desired-state publisher). No store write:
   * that is the `once` copy's, on one server.
   */
  private remember(t: ParsedTopic, payload: Buffer): Promise<void> {
    if (payload.length === 0) return Promise.resolve();
    switch (t.kind) {
      case 'status': {
        const s = decode(payloads.status, payload, `status from ${t.node}`);
        const order = statusOrder(this.lastHeard.get(t.node), s);
        if (order === 'replay') return Promise.resolve();
        const tsMs = Date.parse(s.ts);
        const last = this.lastHeard.get(t.node);
        this.lastHeard.set(t.node, order === 'stale' && last ? { ...last, seq: s.seq } : { bootId: s.bootId, seq: s.seq, tsMs: Number.isNaN(tsMs) ? this.now() : tsMs });
        this.opts.liveness.heard(t.node, { lastHeardMs: this.now(), periodMs: livenessPeriodSeconds(s, this.opts.pingsCarryLiveness ?? false) * 1000, bootId: s.bootId });
        if (order === 'fresh') {
          this.opts.metrics?.record(t.node, s);
          if (s.pods.length > 0) this.lastHeardStatus.set(t.node, { payload, atMs: this.now() });
        }
        return Promise.resolve();
      }
      case 'hello': {
        const h = decode(payloads.hello, payload, `hello from ${t.node}`);
        if (h.node !== t.node) return Promise.reject(new BadRequestError(`hello on topic of node ${t.node} names node ${h.node}`));
        this.opts.onHello?.(t.node, h);
        return Promise.resolve();
      }
      case 'presence': {
        const p = decode(payloads.presence, payload, `presence from ${t.node}`);
        // In the node's queue: after the reports before it, and with the store's boot of the node to compare.
        return this.enqueue(t.node, async () => {
          if (!(await this.ofCurrentBoot(t.node, p))) return;
          const nowMs = this.now();
          if (p.state === 'offline') this.opts.liveness.wentOffline(t.node, nowMs);
          // Online after a goodbye (the will of a replaced connection arrived late): timing starts again.
          else this.opts.liveness.pingedAfterGoodbye(t.node, nowMs);
        });
      }
      default:
        return Promise.resolve();
    }
  }

  /** False (and logged) for the presence of an earlier boot of the node than the one its Node holds. */
  private async ofCurrentBoot(name: string, p: payloads.Presence): Promise<boolean> {
    // The last will of the device's previous boot can arrive after its new boot said hello (the broker
    // notices the dead link late): it is about a connection that no longer exists.
    const bootId = (await this.opts.store.get('Node', '', name))?.status?.nodeInfo?.bootID;
    if (bootId && p.bootId !== bootId) {
      this.opts.logger.info({ node: name, state: p.state, bootId: p.bootId, currentBootId: bootId }, 'presence from an earlier boot of the node ignored');
      return false;
    }
    return true;
  }

  /** Runs `step` after everything queued for `node` (a failed step does not stop the next). */
  private enqueue(node: string, step: () => Promise<void>): Promise<void> {
    return this.queues.take(node, step);
  }

  /**
   * An MQTT ping from the node's agent (the embedded broker hears them): moves its last heard time. A
   * ping after the node's goodbye means its agent is connected again: the broker published the old
   * connection's last will after the new connection's hello and status (a reconnect under load), which
   * would otherwise leave the node Unknown until its next heartbeat (10 minutes by default). In the
   * node's queue, after the reports that came before it.
   */
  pinged(name: string): Promise<void> {
    if (this.closing) return Promise.resolve();
    // The common case, a ping of a live node with nothing of it queued, needs no turn in the queue.
    if (!this.queues.has(name) && !this.opts.liveness.isOffline(name)) {
      this.opts.liveness.touch(name, this.now());
      return Promise.resolve();
    }
    return this.enqueue(name, async () => {
      const nowMs = this.now();
      if (!this.opts.liveness.pingedAfterGoodbye(name, nowMs)) {
        this.opts.liveness.touch(name, nowMs);
        return;
      }
      this.opts.logger.info({ node: name }, 'ping after the agent\'s goodbye: its connection is back (the will was of a replaced connection)');
      await this.conditions.ready(name, { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'agent connected' }, 'Normal');
    });
  }

  /**
   * `shared`: this server's share of a report every server also hears (its memory part was done by `remember`).
   * `again`: a status applied again after a server left (reapplyHeard).
   */
  private async handleOne(t: ParsedTopic, payload: Buffer, shared: boolean, again = false): Promise<void> {
    // An empty retained payload is how a retained message is cleared; nothing to do.
    if (payload.length === 0) return;
    let seq: number | undefined;
    switch (t.kind) {
      case 'hello':
        await this.onHello(t.node, decode(payloads.hello, payload, `hello from ${t.node}`));
        break;
      case 'presence':
        await this.onPresence(t.node, decode(payloads.presence, payload, `presence from ${t.node}`), shared);
        break;
      case 'status': {
        const s = decode(payloads.status, payload, `status from ${t.node}`);
        seq = s.seq;
        await this.onStatus(t.node, s, shared, again);
        break;
      }
      case 'events':
        await this.onEvents(t.node, decode(payloads.events, payload, `events from ${t.node}`));
        break;
      default:
        return;
    }
    // Several servers: which one handled what (test/integration/servers-shared-broker.test.ts counts them: each once).
    if (shared) this.opts.logger.debug({ node: t.node, kind: t.kind, seq, ...(again ? { again } : {}) }, 'agent report handled');
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  private async onHello(name: string, h: payloads.Hello): Promise<void> {
    if (h.node !== name) throw new BadRequestError(`hello on topic of node ${name} names node ${h.node}`);
    const now = this.iso();
    const compatible = h.contractVersion === CONTRACT_VERSION;
    const { allowed, refused } = selfReportedLabels(h.labels);
    const labels: Record<string, string> = {
      ...allowed,
      ...this.opts.assignedLabels?.(name),
      'kubernetes.io/arch': h.arch,
      'kubernetes.io/os': h.os,
      'kubernetes.io/hostname': name,
      'drover.io/hostname': h.hostname,
    };
    const status: Node['status'] = {
      capacity: { cpu: String(h.cpu.cores), memory: String(h.memoryBytes), pods: String(this.opts.maxPodsPerNode) },
      allocatable: { cpu: String(h.cpu.cores), memory: String(h.memoryBytes), pods: String(this.opts.maxPodsPerNode) },
      nodeInfo: {
        architecture: h.arch,
        operatingSystem: h.os,
        osImage: h.osImage,
        kernelVersion: h.kernelVersion,
        containerRuntimeVersion: `${h.runtime.name}://${h.runtime.version}`,
        agentVersion: h.agentVersion,
        contractVersion: h.contractVersion,
        bootID: h.bootId,
        cpuModel: h.cpu.model,
      },
      addresses: [
        { type: 'Hostname', address: h.hostname },
        ...h.addresses.map((a) => ({ type: 'InternalIP', address: a })),
      ],
      images: h.images,
      devices: h.devices ?? [],
      lastHeard: now,
    };
    const ready: Condition = compatible
      ? { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'agent connected' }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'ContractVersionMismatch',
          message: `agent speaks contract v${h.contractVersion}, server speaks v${CONTRACT_VERSION}: upgrade the agent`,
        };
    const { store } = this.opts;
    const existing = await store.get('Node', '', name);
    if (!existing) {
      await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels }, spec: {}, status: { ...status, conditions: setCondition([], ready, now) } } satisfies Node);
      this.opts.logger.info({ node: name, arch: h.arch }, 'node registered');
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Normal', reason: 'Registered', message: `Node ${name} registered (${h.arch}, ${h.runtime.name} ${h.runtime.version})`, component: 'node-registry' });
    } else {
      await store.patch('Node', '', name, (n) => {
        n.metadata.labels = { ...n.metadata.labels, ...labels };
        n.status = { ...status, conditions: setCondition(n.status?.conditions, ready, now) };
        return n;
      });
    }
    this.opts.onHello?.(name, h);
    if (!compatible) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: ready.reason!, message: ready.message!, component: 'node-registry' });
    }
    if (refused.length > 0) {
      const message = `labels ${refused.join(', ')} from the agent's hello not applied: ${RESTRICTED_LABEL_PREFIXES.join(' and ')} labels are set with the join token or \`drover label\`, not by the node itself`;
      this.opts.logger.warn({ node: name, labels: refused }, 'restricted node labels from the agent refused');
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: 'RestrictedLabelsRefused', message, component: 'node-registry' });
    }
  }

  private async onPresence(name: string, p: payloads.Presence, shared: boolean): Promise<void> {
    if (!(await this.ofCurrentBoot(name, p))) return;
    if (p.state === 'offline') {
      const nowMs = this.now();
      // Several servers: every server counted the disconnect from its own copy (remember); the condition
      // is set once, here, and only when it changes (an event with it). By the count in the window, not by
      // this server's degraded mark: the leader marks a link stable again, on its own tracker only.
      if (shared ? this.opts.liveness.flaps.flapping(name, nowMs) : this.opts.liveness.wentOffline(name, nowMs).degraded) {
        const message = `link flapping: ${this.opts.liveness.flaps.count(name, nowMs)} disconnects within the window`;
        if (await this.conditions.set(name, { type: 'LinkDegraded', status: 'True', reason: 'Flapping', message })) {
          await this.conditions.event(name, 'Warning', 'LinkDegraded', `Node ${name}: ${message}`);
        }
      }
      await this.conditions.ready(name, { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'agent went offline' }, 'Warning');
    } else {
      await this.conditions.ready(name, { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'agent connected' }, 'Normal');
    }
  }

  /** Several servers: the Node, waited for a little when its hello is being handled by another server. */
  private async nodeOf(name: string, shared: boolean): Promise<Node | undefined> {
    const cached = shared ? undefined : this.opts.cachedNode?.(name);
    if (cached) return cached;
    for (let attempt = 0; ; attempt++) {
      const node = await this.opts.store.get('Node', '', name);
      if (node || !shared || attempt + 1 >= NODE_WAIT.attempts || this.closing) return node;
      await sleep(backoffDelay(attempt, NODE_WAIT.backoff));
    }
  }

  private async onStatus(name: string, s: payloads.Status, shared: boolean, again = false): Promise<void> {
    const node = await this.nodeOf(name, shared);
    if (!node) throw new NotFoundError(`nodes "${name}" (a status before its hello)`);
    // Only the boot the node's hello announced speaks for it, and only with a sequence number past the
    // last applied: a status replayed (from an earlier boot, or captured and sent again) or delivered out
    // of order is ignored altogether, and does not even count as a sign of life.
    const currentBoot = node.status?.nodeInfo?.bootID;
    const last = this.lastApplied.get(name);
    if (currentBoot !== undefined && s.bootId !== currentBoot) {
      this.opts.logger.warn({ node: name, bootId: s.bootId, currentBootId: currentBoot, seq: s.seq }, 'status from another boot than the node\'s current one ignored');
      return;
    }
    // Applied again (reapplyHeard): this server may have applied a later heartbeat of the node itself, and the
    // status may be the one the other server applied; its sequence number says nothing here.
    const order = again ? 'fresh' : statusOrder(last, s);
    if (order === 'replay') {
      // The same one again is what QoS 1 does after a lost acknowledgement; an older one is worth a look.
      this.opts.logger[s.seq === last!.seq ? 'info' : 'warn']({ node: name, bootId: s.bootId, seq: s.seq, lastSeq: last!.seq }, 'status with a sequence number not above the last applied ignored (replayed or out of order)');
      return;
    }
    // A report proves the node alive. Several servers: every server heard it from its own copy (remember).
    const prevBeat = shared ? undefined : this.opts.liveness.heard(name, { lastHeardMs: this.now(), periodMs: livenessPeriodSeconds(s, this.opts.pingsCarryLiveness ?? false) * 1000, bootId: s.bootId });
    // Several servers: the first status after a server's start needs no refresh of the stored time (the time
    // every server holds in memory is overlaid on reads: live-view.ts).
    const heardBefore = shared || prevBeat !== undefined;
    // Fresh by its sequence number but timestamped long before the last applied: the device's clock was
    // stepped back, or the report was made long ago. Its pod states are not applied; the next report whose
    // clock agrees is.
    const tsMs = Date.parse(s.ts);
    const stale = order === 'stale';
    if (stale) {
      this.opts.logger.warn({ node: name, ts: s.ts, lastAppliedTs: new Date(last!.tsMs).toISOString(), seq: s.seq }, 'status timestamped over 10 minutes before the last applied one: pod states not applied');
      this.lastApplied.set(name, { ...last!, seq: s.seq });
    } else if (!again || !last || last.bootId !== s.bootId || s.seq > last.seq) {
      this.lastApplied.set(name, { bootId: s.bootId, seq: s.seq, tsMs: Number.isNaN(tsMs) ? this.now() : tsMs });
      // Several servers: recorded by every server from its own copy (remember).
      if (!shared) this.opts.metrics?.record(name, s);
    }
    const runtimeOk = s.runtimeHealthy;
    if (readyWriteNeeded(node, runtimeOk, heardBefore)) {
      await this.conditions.ready(
        name,
        runtimeOk
          ? { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'agent reporting' }
          : { type: 'Ready', status: 'False', reason: 'RuntimeUnhealthy', message: s.runtimeMessage ?? 'container runtime not working' },
        runtimeOk ? 'Normal' : 'Warning',
      );
    }
    if (stale) return;
    await this.applyImages(name, node, s);
    await this.applyDiskPressure(name, node, s);
    const hostIP = node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    for (const report of s.pods) {
      try {
        await this.opts.store.patch('Pod', report.namespace, report.name, (pod) => {
          if (pod.metadata.uid !== report.uid || pod.spec.nodeName !== name) return undefined;
          // Several servers: a newer report of this pod was applied by another server meanwhile.
          if (shared && olderThanApplied(pod.status?.lastReportTime, s.ts)) return undefined;
          const next: PodStatus = podStatusFromReport(pod.status, report, hostIP, s.ts, pod.spec.hostNetwork === true);
          if (statusesEqual(pod.status, next)) return undefined;
          pod.status = next;
          return pod;
        });
      } catch (err) {
        // Deleted meanwhile: the report of it is moot.
        if (!isNotFound(err)) this.opts.logger.warn({ node: name, pod: report.name, err: errorMessage(err) }, 'cannot update pod status');
      }
    }
  }

  /**
   * The server's images the device has loaded and its transfers in progress (issue 15), onto the Node:
   * written only when they change (a transfer's progress comes at most every few seconds), so an idle
   * node still costs no store write.
   */
  private async applyImages(name: string, node: Node, s: payloads.Status): Promise<void> {
    if (s.imageDigests === undefined && s.imageTransfers === undefined) return;
    const digests = s.imageDigests ? [...s.imageDigests].sort() : node.status?.imageDigests;
    const transfers = s.imageTransfers ?? node.status?.imageTransfers;
    const same = (a: unknown, b: unknown) => JSON.stringify(a ?? []) === JSON.stringify(b ?? []);
    if (same(digests, node.status?.imageDigests) && same(transfers, node.status?.imageTransfers)) return;
    try {
      await this.opts.store.patch('Node', '', name, (n) => {
        if (same(digests, n.status?.imageDigests) && same(transfers, n.status?.imageTransfers)) return undefined;
        n.status = { ...n.status, imageDigests: digests, imageTransfers: transfers };
        return n;
      });
    } catch (err) {
      if (!isNotFound(err)) this.opts.logger.warn({ node: name, err: errorMessage(err) }, 'cannot record the node\'s images');
    }
  }

  /** The agent's disk pressure onto the Node (condition and NoSchedule taint): written only when the pressure changes. */
  private async applyDiskPressure(name: string, node: Node, s: payloads.Status): Promise<void> {
    if (!s.diskPressure) return;
    const now = new Date(this.now()).toISOString();
    if (!applyDiskPressure(deepCopy(node), s.diskPressure, now)) return;
    try {
      await this.opts.store.patch('Node', '', name, (n) => (applyDiskPressure(n, s.diskPressure!, now) ? n : undefined));
    } catch (err) {
      if (!isNotFound(err)) this.opts.logger.warn({ node: name, err: errorMessage(err) }, 'cannot record the node\'s disk pressure');
    }
  }

  private async onEvents(name: string, e: payloads.Events): Promise<void> {
    const fresh = this.eventLog.fresh(name, e);
    // Every event of the batch was recorded before: a redelivery, and its drop count with it.
    if (e.events.length > 0 && fresh.length === 0) return;
    for (const ev of fresh) {
      if (await this.mayRaise(name, ev.involved)) {
        await this.opts.events.record({ involved: ev.involved, type: ev.type, reason: ev.reason, message: ev.message, component: 'drover-agent', host: name, ts: ev.ts });
      }
      this.eventLog.recorded(name, e.journal, ev.seq);
    }
    if (e.dropped > 0) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: 'EventsDropped', message: `${e.dropped} events from the offline period were dropped (journal full)`, component: 'node-registry' });
    }
  }

  /**
   * An agent speaks only about its own Node and the pods bound to it: an event about anything else would
   * let one device write into the history of objects it has no part in.
   */
  private async mayRaise(node: string, o: payloads.AgentEvent['involved']): Promise<boolean> {
    if (o.kind === 'Node' && o.name === node && o.namespace === undefined) return true;
    if (o.kind === 'Pod' && o.namespace !== undefined) {
      const pod = await this.opts.store.get('Pod', o.namespace, o.name);
      if (pod && pod.spec.nodeName === node && (o.uid === undefined || o.uid === pod.metadata.uid)) return true;
      if (!pod || pod.spec.nodeName === node) {
        // Deleted (or replaced) since: normal for the events of a pod being torn down; nobody can see them.
        this.opts.logger.debug({ node, object: `Pod ${o.namespace}/${o.name}` }, 'event about a pod no longer on the node dropped');
        return false;
      }
    }
    const object = `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
    this.opts.logger.warn({ node, object }, 'event from an agent about an object that is not its node nor one of its pods dropped');
    return false;
  }

  /** Stops taking reports and waits for those being handled, so the store can close. */
  async close(): Promise<void> {
    this.closing = true;
    await this.queues.drain();
  }
}
