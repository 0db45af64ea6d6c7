import { AgentEventLog } from './event-dedup.js';
import { CONTRACT_VERSION, decode, payloads, type ParsedTopic } from '../../src/contract/index.js';
import type { Condition } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { PodStatus } from '../../src/api/pod.js';
import { BadRequestError, NotFoundError, errorMessage, isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import type { Store } from '../store/types.js';
import type { MetricsCache } from '../metrics/cache.js';
import { NodeConditions, setCondition } from './conditions.js';
import type { NodeLiveness } from './liveness.js';
import { podStatusFromReport, statusesEqual } from './pod-status.js';

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
   * While nothing else changes, a Node's Ready condition and lastHeard are rewritten at most this
   * often: every heartbeat would be a store write per node.
   */
  lastHeardWriteMs: number;
  now?: () => number;
}

/** How much older than the newest applied report a report may be and still count as out of order. */
const STRAGGLER_WINDOW_MS = 10 * 60_000;

/**
 * Status ingest: turns agent reports into Node objects and pod statuses. The agent's retained hello
 * creates or refreshes its Node; presence and status reports set the Ready condition; status reports
 * update the pods bound to the node (only when something a user would see changed, to spare the
 * store). What follows from silence over time (late, lost, evictions, a link calm again) is the
 * node-lifecycle controller's (server/controllers/node-lifecycle.ts), fed through NodeLiveness.
 */
export class NodeRegistry {
  /** Per node, the tail of its chain of reports being handled (settled either way). */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly eventLog = new AgentEventLog();
  private closing = false;
  /** Time of the newest status report applied per node, within one boot of the device. */
  private readonly newestReport = new Map<string, { bootId: string; tsMs: number }>();
  private readonly now: () => number;
  private readonly conditions: NodeConditions;

  constructor(private readonly opts: RegistryOptions) {
    this.now = opts.now ?? Date.now;
    this.conditions = new NodeConditions({ store: opts.store, events: opts.events, component: 'node-registry', now: this.now });
  }

  /**
   * Reports of one node are handled in arrival order (hello before status); nodes run in parallel.
   * A failure is the caller's to report (the returned promise rejects); the next report runs anyway.
   */
  handle(t: ParsedTopic, payload: Buffer): Promise<void> {
    // Shutting down: the store is about to close; the agent sends its state again to the next server.
    if (this.closing) return Promise.resolve();
    const run = (this.queues.get(t.node) ?? Promise.resolve()).then(() => this.handleOne(t, payload));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(t.node, settled);
    void settled.then(() => {
      if (this.queues.get(t.node) === settled) this.queues.delete(t.node);
    });
    return run;
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
    if (h.node !== name) throw new BadRequestError(`hello on topic of node ${name} names node ${h.node}`);
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
    if (!compatible) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: ready.reason!, message: ready.message!, component: 'node-registry' });
    }
  }

  private async onPresence(name: string, p: payloads.Presence): Promise<void> {
    if (p.state === 'offline') {
      const nowMs = this.now();
      if (this.opts.liveness.wentOffline(name, nowMs).degraded) {
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

  private async onStatus(name: string, s: payloads.Status): Promise<void> {
    const node = await this.opts.store.get('Node', '', name);
    if (!node) throw new NotFoundError(`nodes "${name}" (a status before its hello)`);
    // Whatever its content, a report proves the node alive.
    const prevBeat = this.opts.liveness.heard(name, { lastHeardMs: this.now(), periodMs: s.heartbeatSeconds * 1000, bootId: s.bootId });
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
    // Marked late (also by an earlier server process): writing lastHeard now lets the lifecycle controller clear the mark.
    const markedLate = node.status?.conditions?.some((c) => c.type === 'HeartbeatLate' && c.status === 'True');
    const runtimeOk = s.runtimeHealthy;
    if (!prevBeat || markedLate || ready?.status !== 'True' || (!runtimeOk && ready?.reason !== 'RuntimeUnhealthy') || this.now() - lastHeardMs > this.opts.lastHeardWriteMs) {
      await this.conditions.ready(
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
        await this.opts.store.patch('Pod', report.namespace, report.name, (pod) => {
          if (pod.metadata.uid !== report.uid || pod.spec.nodeName !== name) return undefined;
          const next: PodStatus = podStatusFromReport(pod.status, report, hostIP, s.ts);
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

  private async onEvents(name: string, e: payloads.Events): Promise<void> {
    const fresh = this.eventLog.fresh(name, e);
    // Every event of the batch was recorded before: a redelivery, and its drop count with it.
    if (e.events.length > 0 && fresh.length === 0) return;
    for (const ev of fresh) {
      await this.opts.events.record({ involved: ev.involved, type: ev.type, reason: ev.reason, message: ev.message, component: 'drover-agent', host: name, ts: ev.ts });
      this.eventLog.recorded(name, e.journal, ev.seq);
    }
    if (e.dropped > 0) {
      await this.opts.events.record({ involved: { kind: 'Node', name }, type: 'Warning', reason: 'EventsDropped', message: `${e.dropped} events from the offline period were dropped (journal full)`, component: 'node-registry' });
    }
  }

  /** Stops taking reports and waits for those being handled, so the store can close. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.queues.values());
  }
}
