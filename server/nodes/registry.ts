import { CONTRACT_VERSION, decode, payloads, type ParsedTopic } from '../../src/contract/index.js';
import type { Condition } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { Pod, PodStatus } from '../../src/api/pod.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import type { Store } from '../store/types.js';
import type { MetricsCache } from '../metrics/cache.js';
import { dueEvictions, FlapTracker, lifecycleTaints } from './lifecycle.js';
import { lostPodStatus, podStatusFromReport, statusesEqual } from './pod-status.js';

export interface RegistryOptions {
  store: Store;
  events: EventRecorder;
  logger: Logger;
  /** A node whose last status is older than this many heartbeats turns NotReady. */
  missedHeartbeats?: number;
  /** Where reported resource use goes (served by the metrics API, never stored). */
  metrics?: MetricsCache;
  /** Disconnects within the window that make a node's link "degraded". */
  flapThreshold?: number;
  flapWindowMs?: number;
  now?: () => number;
}

function setCondition(conds: Condition[] | undefined, c: Condition, now: string): Condition[] {
  const list = [...(conds ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const prev = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...c,
    lastHeartbeatTime: now,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now,
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

/**
 * Turns agent reports into Node objects and pod statuses. The agent's retained hello creates or
 * refreshes its Node; presence and heartbeats drive the Ready condition; status reports update the
 * pods bound to the node (only when something a user would see changed, to spare the store).
 */
/** Pod condition set while the pod's node is late with its reports (see markPodsStale). */
export const STALE_CONDITION = 'StatusStale';

/** A node this many heartbeat periods without a status is marked HeartbeatLate (stale status). */
const LATE_FACTOR = 1.5;

/** How much older than the newest applied report a report may be and still count as out of order. */
const STRAGGLER_WINDOW_MS = 10 * 60_000;

export class NodeRegistry {
  private readonly queues = new Map<string, Promise<void>>();
  private closing = false;
  /** Nodes marked HeartbeatLate (in the store) and not heard since. */
  private readonly late = new Set<string>();
  /** Pods flagged StatusStale per node, to unflag when it reports again. */
  private readonly stalePods = new Map<string, Pod[]>();
  private sweeping: Promise<void> | undefined;
  private readonly flaps: FlapTracker;
  private readonly heartbeat = new Map<string, { lastHeard: number; periodMs: number; bootId: string }>();
  /** Time of the newest status report applied per node, within one boot of the device. */
  private readonly newestReport = new Map<string, { bootId: string; tsMs: number }>();
  private readonly now: () => number;
  private readonly missed: number;

  constructor(private readonly opts: RegistryOptions) {
    this.now = opts.now ?? Date.now;
    this.missed = opts.missedHeartbeats ?? 3;
    this.flaps = new FlapTracker(opts.flapThreshold ?? 3, opts.flapWindowMs ?? 10 * 60_000);
  }

  /** Reports of one node are handled in arrival order (hello before status); nodes run in parallel. */
  handle(t: ParsedTopic, payload: Buffer): Promise<void> {
    // Shutting down: the store is about to close; the agent sends its state again to the next server.
    if (this.closing) return Promise.resolve();
    const prev = this.queues.get(t.node) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => this.handleOne(t, payload));
    this.queues.set(t.node, next);
    void next.finally(() => {
      if (this.queues.get(t.node) === next) this.queues.delete(t.node);
    }).catch(() => {});
    return next;
  }

  private async handleOne(t: ParsedTopic, payload: Buffer): Promise<void> {
    // An empty retained payload is how a retained message is cleared; nothing to do.
    if (payload.length === 0) return;
    switch (t.kind) {
      case 'hello':
        return this.onHello(t.node, decode(payloads.hello, payload, `hello from ${t.node}`));
      case 'presence':
        return this.onPresence(t.node, decode(payloads.presence, payload, `presence from ${t.node}`));
      case 'status':
        return this.onStatus(t.node, decode(payloads.status, payload, `status from ${t.node}`));
      case 'events':
        return this.onEvents(t.node, decode(payloads.events, payload, `events from ${t.node}`));
      default:
        return;
    }
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  private async onHello(name: string, h: payloads.Hello): Promise<void> {
    if (h.node !== name) throw new Error(`hello on topic of node ${name} names node ${h.node}`);
    const now = this.iso();
    const compatible = h.contractVersion === CONTRACT_VERSION;
    const labels: Record<string, string> = {
      ...h.labels,
      'kubernetes.io/arch': h.arch,
      'kubernetes.io/os': h.os,
      'kubernetes.io/hostname': name,
      'drover.io/hostname': h.hostname,
    };
    const status: Node['status'] = {
      capacity: { cpu: String(h.cpu.cores), memory: String(h.memoryBytes), pods: '110' },
      allocatable: { cpu: String(h.cpu.cores), memory: String(h.memoryBytes), pods: '110' },
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
    const existing = (await store.get('Node', '', name)) as Node | undefined;
    if (!existing) {
      await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name, labels }, spec: {}, status: { ...status, conditions: setCondition([], ready, now) } } as never);
      this.opts.logger.info({ node: name, arch: h.arch }, 'node registered');
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Normal', reason: 'Registered', message: `Node ${name} registered (${h.arch}, ${h.runtime.name} ${h.runtime.version})`, component: 'node-registry' });
    } else {
      await store.patch('Node', '', name, (cur) => {
        const n = cur as unknown as Node;
        n.metadata.labels = { ...n.metadata.labels, ...labels };
        n.status = { ...status, conditions: setCondition(n.status?.conditions, ready, now) };
        return n as never;
      });
    }
    if (!compatible) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: ready.reason!, message: ready.message!, component: 'node-registry' });
    }
  }

  private async setReady(name: string, ready: Condition, eventType?: 'Normal' | 'Warning'): Promise<void> {
    const now = this.iso();
    let changed = false;
    await this.opts.store
      .patch('Node', '', name, (cur) => {
        const n = cur as unknown as Node;
        const prev = n.status?.conditions?.find((c) => c.type === 'Ready');
        if (prev?.reason === 'ContractVersionMismatch') return undefined;
        changed = prev?.status !== ready.status;
        n.spec = { ...n.spec, taints: lifecycleTaints(ready, n.spec?.taints, now) };
        if (!n.spec.taints?.length) delete n.spec.taints;
        n.status = { ...n.status, conditions: setCondition(n.status?.conditions, ready, now), lastHeard: ready.status === 'True' ? now : n.status?.lastHeard };
        return n as never;
      })
      .catch((err) => {
        if ((err as { code?: number }).code !== 404) throw err;
      });
    if (!changed) return;
    if (eventType) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: eventType, reason: ready.status === 'True' ? 'NodeReady' : 'NodeNotReady', message: `Node ${name} status is now: ${ready.reason}${ready.message ? ` (${ready.message})` : ''}`, component: 'node-registry' });
    }
    if (ready.status !== 'True') await this.markPodsUnknown(name, ready);
  }

  /**
   * A node we cannot hear: its pods' last statuses can no longer be trusted, so they show Unknown
   * (not Failed: the device most likely keeps running them). The agent's next report replaces this.
   */
  private async markPodsUnknown(node: string, ready: Condition): Promise<void> {
    const pods = ((await this.opts.store.list('Pod')).items as Pod[]).filter((p) => p.spec.nodeName === node);
    for (const p of pods) {
      if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed' || p.status?.phase === 'Unknown') continue;
      await this.opts.store
        .patch('Pod', p.metadata.namespace ?? 'default', p.metadata.name, (cur) => {
          const pod = cur as unknown as Pod;
          if (pod.metadata.uid !== p.metadata.uid) return undefined;
          pod.status = lostPodStatus(pod.status, node, ready);
          return pod as never;
        })
        .catch(() => {});
    }
  }

  /** Marks (lastHeardMs given) or clears the HeartbeatLate condition; marking also records when the node was last heard. */
  private async setLate(name: string, lastHeardMs: number | undefined, periodMs: number): Promise<void> {
    const now = this.iso();
    const late = lastHeardMs !== undefined;
    const secs = late ? Math.round((this.now() - lastHeardMs) / 1000) : 0;
    const message = late ? `no status for ${secs}s (heartbeat every ${Math.round(periodMs / 1000)}s): what this node last reported may be out of date` : 'status reports arriving';
    await this.opts.store
      .patch('Node', '', name, (cur) => {
        const n = cur as unknown as Node;
        n.status = {
          ...n.status,
          conditions: setCondition(n.status?.conditions, { type: 'HeartbeatLate', status: late ? 'True' : 'False', reason: late ? 'NoRecentStatus' : 'StatusReceived', message }, now),
          ...(late ? { lastHeard: new Date(lastHeardMs).toISOString() } : { lastHeard: now }),
        };
        return n as never;
      })
      .catch((err) => {
        if ((err as { code?: number }).code !== 404) throw err;
      });
    if (late) await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: 'HeartbeatLate', message: `Node ${name}: ${message}`, component: 'node-registry' });
    if (!late) await this.unflagPods(name);
  }

  /**
   * Flags the pods of nodes whose reports are late with a StatusStale condition, so `get pods` does
   * not show their last status as current. One pass over the pods for all the nodes that turned late
   * in a sweep (after an outage of an external broker that is every node); writes only on the
   * transitions.
   */
  private async flagPods(late: Map<string, number>): Promise<void> {
    if (!late.size) return;
    const now = this.iso();
    const pods = ((await this.opts.store.list('Pod')).items as Pod[]).filter((p) => p.spec.nodeName !== undefined && late.has(p.spec.nodeName));
    for (const p of pods) {
      if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
      const node = p.spec.nodeName!;
      const message = `node ${node} has not reported for ${late.get(node)}s: this status may be out of date`;
      const ok = await this.patchStale(p, message, now);
      if (!ok) continue;
      const list = this.stalePods.get(node) ?? [];
      list.push(p);
      this.stalePods.set(node, list);
    }
  }

  /**
   * Clears what flagPods set, for the pods it flagged (kept in memory). Pods flagged by an earlier
   * server process lose the flag with their node's next report of them, which rebuilds their status.
   */
  private async unflagPods(node: string): Promise<void> {
    const pods = this.stalePods.get(node);
    this.stalePods.delete(node);
    for (const p of pods ?? []) await this.patchStale(p, undefined, this.iso());
  }

  private async patchStale(p: Pod, message: string | undefined, now: string): Promise<boolean> {
    let written = false;
    await this.opts.store
      .patch('Pod', p.metadata.namespace ?? 'default', p.metadata.name, (cur) => {
        const pod = cur as unknown as Pod;
        if (pod.metadata.uid !== p.metadata.uid) return undefined;
        const had = pod.status?.conditions?.some((c) => c.type === STALE_CONDITION);
        if (!message && !had) return undefined;
        const rest = (pod.status?.conditions ?? []).filter((c) => c.type !== STALE_CONDITION);
        pod.status = { ...pod.status, phase: pod.status?.phase ?? 'Pending', conditions: message ? [...rest, { type: STALE_CONDITION, status: 'True', reason: 'NodeHeartbeatLate', message, lastTransitionTime: now }] : rest };
        written = true;
        return pod as never;
      })
      .catch(() => {});
    return written;
  }

  private async setDegraded(name: string, degraded: boolean, message: string): Promise<void> {
    const now = this.iso();
    await this.opts.store
      .patch('Node', '', name, (cur) => {
        const n = cur as unknown as Node;
        n.status = { ...n.status, conditions: setCondition(n.status?.conditions, { type: 'LinkDegraded', status: degraded ? 'True' : 'False', reason: degraded ? 'Flapping' : 'LinkStable', message }, now) };
        return n as never;
      })
      .catch(() => {});
    await this.opts.events.record({ involved: { kind: 'Node', name }, type: degraded ? 'Warning' : 'Normal', reason: degraded ? 'LinkDegraded' : 'LinkStable', message: `Node ${name}: ${message}`, component: 'node-registry' });
  }

  private async onPresence(name: string, p: payloads.Presence): Promise<void> {
    if (p.state === 'offline') {
      this.heartbeat.delete(name);
      const nowMs = this.now();
      if (this.flaps.disconnect(name, nowMs)) {
        await this.setDegraded(name, true, `link flapping: ${this.flaps.count(name, nowMs)} disconnects within the window`);
      }
      await this.setReady(name, { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'agent went offline' }, 'Warning');
    } else {
      await this.setReady(name, { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'agent connected' }, 'Normal');
    }
  }

  private async onStatus(name: string, s: payloads.Status): Promise<void> {
    const node = (await this.opts.store.get('Node', '', name)) as Node | undefined;
    if (!node) throw new Error(`status from unknown node ${name} (no hello received yet)`);
    const prevBeat = this.heartbeat.get(name);
    // Whatever its content, a report proves the node alive.
    this.heartbeat.set(name, { lastHeard: this.now(), periodMs: s.heartbeatSeconds * 1000, bootId: s.bootId });
    // Also when the flag was set by an earlier server process (the set is in memory only).
    const flagged = node.status?.conditions?.some((c) => c.type === 'HeartbeatLate' && c.status === 'True');
    if (this.late.delete(name) || flagged) await this.setLate(name, undefined, s.heartbeatSeconds * 1000);
    // A report a little older than one already applied (same boot) arrived out of order, e.g. held in
    // a broker queue: its pod states would move pods back. Much older means the device clock was
    // stepped back (NTP after boot): then it is the new normal, not a straggler.
    const tsMs = Date.parse(s.ts);
    const newest = this.newestReport.get(name);
    const straggler = newest !== undefined && newest.bootId === s.bootId && tsMs < newest.tsMs && newest.tsMs - tsMs < STRAGGLER_WINDOW_MS;
    if (!straggler) {
      this.newestReport.set(name, { bootId: s.bootId, tsMs });
      this.opts.metrics?.record(name, s);
    }
    const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
    const lastHeardMs = node.status?.lastHeard ? Date.parse(node.status.lastHeard) : 0;
    // Refresh Ready/lastHeard when it changed or once a minute: every heartbeat would be a store write per node.
    const runtimeOk = s.runtimeHealthy;
    if (!prevBeat || ready?.status !== 'True' || (!runtimeOk && ready?.reason !== 'RuntimeUnhealthy') || this.now() - lastHeardMs > 60_000) {
      await this.setReady(
        name,
        runtimeOk
          ? { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'agent reporting' }
          : { type: 'Ready', status: 'False', reason: 'RuntimeUnhealthy', message: s.runtimeMessage ?? 'container runtime not working' },
        runtimeOk ? 'Normal' : 'Warning',
      );
    }
    if (straggler) {
      this.opts.logger.debug({ node: name, ts: s.ts }, 'out-of-order status report: pod states not applied');
      return;
    }
    const hostIP = node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    for (const report of s.pods) {
      try {
        await this.opts.store.patch('Pod', report.namespace, report.name, (cur) => {
          const pod = cur as unknown as Pod;
          if (pod.metadata.uid !== report.uid || pod.spec.nodeName !== name) return undefined;
          const next: PodStatus = podStatusFromReport(pod.status, report, hostIP, s.ts);
          if (statusesEqual(pod.status, next)) return undefined;
          pod.status = next;
          return pod as never;
        });
      } catch (err) {
        if ((err as { code?: number }).code !== 404) this.opts.logger.warn({ node: name, pod: report.name, err: errorMessage(err) }, 'cannot update pod status');
      }
    }
  }

  private async onEvents(name: string, e: payloads.Events): Promise<void> {
    for (const ev of e.events) {
      await this.opts.events.record({ involved: ev.involved, type: ev.type, reason: ev.reason, message: ev.message, component: 'drover-agent', host: name, ts: ev.ts });
    }
    if (e.dropped > 0) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: 'EventsDropped', message: `${e.dropped} events from the offline period were dropped (journal full)`, component: 'node-registry' });
    }
  }

  /** Stops taking reports and waits for those being handled and a running sweep, so the store can close. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.queues.values(), this.sweeping ?? Promise.resolve()]);
  }

  async sweep(): Promise<void> {
    if (this.closing || this.sweeping) return;
    this.sweeping = this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  /**
   * Periodic duties: a node one heartbeat late is marked HeartbeatLate (what it last reported may be
   * out of date); nodes whose heartbeats stopped without a last will (a half-open link) turn
   * NotReady; flapping nodes that calmed down lose LinkDegraded; opted-in pods are evicted.
   */
  private async sweepOnce(): Promise<void> {
    const now = this.now();
    const turnedLate = new Map<string, number>();
    for (const [name, hb] of this.heartbeat) {
      const age = now - hb.lastHeard;
      if (age > hb.periodMs * LATE_FACTOR && !this.late.has(name)) {
        this.late.add(name);
        turnedLate.set(name, Math.round(age / 1000));
        await this.setLate(name, hb.lastHeard, hb.periodMs);
        // A status that came in meanwhile replaced the heartbeat: this one is out of date.
        if (this.heartbeat.get(name) !== hb) continue;
      }
      if (age > hb.periodMs * this.missed) {
        this.heartbeat.delete(name);
        await this.setReady(name, { type: 'Ready', status: 'False', reason: 'NodeStatusUnknown', message: `no heartbeat for ${Math.round((now - hb.lastHeard) / 1000)}s` }, 'Warning');
      }
    }
    // Nodes heard again while the sweep ran are not late any more.
    for (const name of turnedLate.keys()) if (!this.late.has(name)) turnedLate.delete(name);
    await this.flagPods(turnedLate);
    for (const name of this.flaps.recovered(now)) await this.setDegraded(name, false, 'link stable again');
    await this.evict(now);
  }

  private async evict(nowMs: number): Promise<void> {
    const nodes = ((await this.opts.store.list('Node')).items as Node[]).filter((n) => n.spec?.taints?.length);
    if (!nodes.length) return;
    const pods = (await this.opts.store.list('Pod')).items as Pod[];
    for (const node of nodes) {
      for (const pod of dueEvictions(node, pods, nowMs).due) {
        const ns = pod.metadata.namespace ?? 'default';
        await this.opts.store.delete('Pod', ns, pod.metadata.name, { resourceVersion: pod.metadata.resourceVersion }).catch(() => undefined);
        this.opts.logger.info({ pod: `${ns}/${pod.metadata.name}`, node: node.metadata.name }, 'pod evicted from unreachable node');
        await this.opts.events.record({ involved: { kind: 'Pod', namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid }, type: 'Warning', reason: 'TaintManagerEviction', message: `Evicting pod from node ${node.metadata.name}: its toleration of ${node.spec?.taints?.map((t) => t.key).join(', ')} expired`, component: 'node-lifecycle' });
      }
    }
  }

  /**
   * After a server restart nobody has heard from any node yet: give every Ready node one full grace
   * period to report before it is judged, instead of trusting a Ready written long ago.
   */
  async init(defaultHeartbeatMs = 30_000): Promise<void> {
    const nodes = (await this.opts.store.list('Node')).items as Node[];
    for (const n of nodes) {
      if (n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True') {
        this.heartbeat.set(n.metadata.name, { lastHeard: this.now(), periodMs: defaultHeartbeatMs, bootId: n.status?.nodeInfo?.bootID ?? '' });
      }
    }
  }
}
