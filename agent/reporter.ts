/**
 * What the agent tells the server: a hello on every connect, the node's status (pod reports, runtime
 * health) when it changes and on every heartbeat with usage figures, and events through the on-disk
 * journal, so none is lost while the link is down.
 */
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { CONTRACT_VERSION, type payloads } from '../src/contract/index.js';
import { REPORT_LIMITS } from '../src/contract/payloads.js';
import { withTimeout } from '../src/util/backoff.js';
import { errorMessage } from '../src/util/errors.js';
import { hasErrno } from './fs-errors.js';
import type { Logger } from '../src/util/logger.js';
import { AGENT_VERSION, type AgentConfig } from './config.js';
import type { AgentLink } from './connection.js';
import { managedSelector } from './engine/naming.js';
import type { Hardware } from './hardware.js';
import type { EventJournal } from './journal.js';
import type { ContainerRuntime } from './runtime/types.js';
import type { UsageSample, UsageSampler } from './usage.js';

/** Longest a heartbeat's usage sample may take; a later one is dropped. */
const USAGE_TIMEOUT_MS = 5_000;

/** An event as the agent's parts raise it: stamped with the time when it has none. */
export type EventInput = Omit<payloads.AgentEvent, 'ts'> & { ts?: string };

/** What the reconciler last found: the part of the status that is not measured at heartbeat time. */
export interface NodeStatus {
  observedGeneration: number;
  pods: payloads.PodReport[];
  runtimeHealthy: boolean;
  runtimeMessage?: string;
}

export interface ReporterDeps {
  cfg: AgentConfig;
  link: AgentLink;
  runtime: ContainerRuntime;
  hardware: Hardware;
  bootId: string;
  logger: Logger;
  journal: EventJournal;
  /** Measures node and pod resource use for `drover top`; heartbeats carry no usage without it. */
  usage?: UsageSampler;
  /** The address the node is known by: first in the hello's addresses. */
  nodeIP: () => string | undefined;
  /** The runtime's version as found at start ('unknown' when it did not answer). */
  runtimeVersion: () => string;
  now: () => number;
}

export class Reporter {
  private status: NodeStatus = { observedGeneration: 0, pods: [], runtimeHealthy: true };
  private lastStatusKey = '';
  private heartbeat: NodeJS.Timeout | undefined;
  /** Events waiting for their batch to go out (cfg.eventBatchSeconds). */
  private batchTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private flushing = false;
  private sampling = false;
  /** The latest usage sample, sent with the next heartbeat. */
  private lastUsage: UsageSample | undefined;
  /** Milliseconds since boot; until start() has read the boot clock, since this process started. */
  private bootClockMs: () => number = () => performance.now();
  private lastSeq = -1;

  constructor(private readonly deps: ReporterDeps) {}

  /** Loads the events of an earlier run that never reached the server: they are sent first, oldest first. */
  async start(): Promise<void> {
    const { journal, logger, cfg } = this.deps;
    this.bootClockMs = await bootClock();
    const loaded = await journal.load();
    if (loaded.corrupt) this.emit({ type: 'Warning', reason: 'CorruptJournal', message: loaded.corrupt, involved: { kind: 'Node', name: cfg.node } });
    if (journal.size > 0) logger.info({ events: journal.size, dropped: journal.droppedCount }, 'unsent events from an earlier run loaded');
  }

  startHeartbeat(): void {
    if (this.stopped || this.heartbeat) return;
    this.heartbeat = setInterval(() => this.beat(), this.deps.cfg.heartbeatSeconds * 1000);
  }

  /** No more heartbeats; events raised later are still journaled. */
  stop(): void {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
  }

  /** Writes out the journal: call after everything that may raise events has stopped. */
  async close(): Promise<void> {
    this.stop();
    await this.deps.journal.close();
  }

  emit(e: EventInput): void {
    this.deps.journal.push({ ...e, ts: e.ts ?? new Date(this.deps.now()).toISOString() });
    const batchMs = (this.deps.cfg.eventBatchSeconds ?? 0) * 1000;
    if (batchMs <= 0) {
      void this.flushEvents();
      return;
    }
    // A metered link: the events of the next while go out as one batch (the journal keeps them meanwhile).
    if (this.batchTimer || this.stopped) return;
    this.batchTimer = setTimeout(() => {
      this.batchTimer = undefined;
      void this.flushEvents();
    }, batchMs);
  }

  /** The reconciler's latest findings: sent at once when they changed. */
  update(status: NodeStatus): void {
    this.status = status;
    this.sendStatus(false);
  }

  onConnect(): void {
    // Hello first: the server registers the Node from it, and a status before that is refused.
    void this.sendHello()
      .catch((err) => this.deps.logger.warn({ err: errorMessage(err) }, 'cannot send hello'))
      .then(() => {
        this.sendStatus(true);
        return this.flushEvents();
      });
  }

  /** A heartbeat: status with fresh usage figures, and a retry of events not acknowledged in time. */
  private beat(): void {
    if (this.stopped) return;
    // Sent at once, with the figures of the previous sample: nothing (a slow `podman stats`, an
    // event batch waiting for its acknowledgement) may delay a heartbeat, or the node looks lost.
    const usage = this.lastUsage;
    this.lastUsage = undefined;
    this.sendStatus(true, usage);
    void this.flushEvents();
    const sampler = this.deps.usage;
    if (this.sampling || !sampler || !this.deps.link.connected) return;
    this.sampling = true;
    const late = () => {
      this.deps.logger.debug({ ms: USAGE_TIMEOUT_MS }, 'usage sample late; dropped');
      return undefined;
    };
    void withTimeout(this.sampleUsage(sampler), USAGE_TIMEOUT_MS, late)
      .then((u) => {
        this.lastUsage = u;
      })
      .catch((err: unknown) => this.deps.logger.warn({ err: errorMessage(err) }, 'cannot sample usage'))
      .finally(() => {
        this.sampling = false;
      });
  }

  private async sampleUsage(sampler: UsageSampler): Promise<UsageSample> {
    const { runtime, cfg } = this.deps;
    const containers = await runtime.list(managedSelector(cfg.node)).catch((err: unknown) => {
      // Node figures are still worth sending; pod figures wait for the runtime.
      this.deps.logger.debug({ err: errorMessage(err) }, 'cannot list containers for usage');
      return [];
    });
    return sampler.sample(containers);
  }

  private async flushEvents(): Promise<void> {
    const { journal, link, cfg } = this.deps;
    if (this.flushing || !link.connected) return;
    this.flushing = true;
    try {
      while (journal.size > 0 || journal.droppedCount > 0) {
        const batch = journal.take();
        const ok = await link.publishEvents({ node: cfg.node, journal: journal.id, events: batch.events, dropped: batch.dropped });
        // Not acknowledged: the batch stays in the journal and goes out on the next connect.
        if (!ok) break;
        batch.ack();
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Sends status when it changed, or always on a heartbeat; coalesced to the latest while offline. */
  private sendStatus(heartbeat: boolean, usage?: UsageSample): void {
    const { cfg, bootId, link, now } = this.deps;
    const s = this.status;
    const key = JSON.stringify([s.observedGeneration, s.pods, s.runtimeHealthy, s.runtimeMessage]);
    if (!heartbeat && key === this.lastStatusKey) return;
    // Strictly increasing even when two reports fall in the same millisecond.
    const seq = Math.max(this.lastSeq + 1, Math.floor(this.bootClockMs()));
    this.lastSeq = seq;
    const sent = link.publishStatus({
      node: cfg.node,
      bootId,
      seq,
      observedGeneration: s.observedGeneration,
      ts: new Date(now()).toISOString(),
      pods: usage ? s.pods.map((r) => withUsage(r, usage.pods.get(`${r.namespace}/${r.name}`))) : s.pods,
      ...(usage?.node ? { usage: usage.node } : {}),
      runtimeHealthy: s.runtimeHealthy,
      runtimeMessage: s.runtimeMessage,
      heartbeatSeconds: cfg.heartbeatSeconds,
    });
    if (sent) this.lastStatusKey = key;
  }

  private async sendHello(): Promise<void> {
    const { cfg, hardware, bootId, link, runtime } = this.deps;
    const images = await runtime.images().catch((err: unknown) => {
      // The list only hints the scheduler; the node joins without it.
      this.deps.logger.warn({ err: errorMessage(err) }, 'cannot list images for the hello');
      return [];
    });
    const first = this.deps.nodeIP();
    await link.publishHello({
      agentVersion: AGENT_VERSION,
      contractVersion: CONTRACT_VERSION,
      node: cfg.node,
      bootId,
      ...hardware,
      addresses: first ? [first, ...hardware.addresses.filter((a) => a !== first)] : hardware.addresses,
      runtime: { name: runtime.name, version: this.deps.runtimeVersion() },
      labels: cfg.labels,
      // The server keeps only this many; a device with more still registers.
      images: images.slice(0, REPORT_LIMITS.images),
      devices: hardware.devices,
    });
  }
}

/**
 * The boot clock (CLOCK_BOOTTIME, as /proc/uptime shows it) in milliseconds: it keeps growing across agent
 * restarts within one boot and ignores wall-clock steps, so status sequence numbers taken from it stay above
 * those of an earlier agent run without being saved anywhere. Without /proc (not Linux) each start is its own
 * boot (see readBootId), and the process clock does.
 */
async function bootClock(): Promise<() => number> {
  const base = performance.now();
  try {
    const uptimeMs = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]) * 1000;
    if (!Number.isFinite(uptimeMs)) throw new Error('unreadable /proc/uptime');
    return () => uptimeMs + performance.now() - base;
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return () => performance.now();
    throw err;
  }
}

function withUsage(r: payloads.PodReport, u: payloads.Usage | undefined): payloads.PodReport {
  return u ? { ...r, usage: u } : r;
}
