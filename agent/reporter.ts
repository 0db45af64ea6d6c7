/**
 * What the agent tells the server: a hello on every connect, the node's status (pod reports, runtime
 * health) when it changes, a heartbeat status without pod reports, and events through the on-disk
 * journal, so none is lost while the link is down. Resource use goes out only when the server asks
 * (a `usage` request, see agent/usage.ts).
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
import type { Hardware } from './hardware.js';
import type { EventJournal } from './journal.js';
import type { ContainerRuntime } from './runtime/types.js';
import { DESIRED_ENCODINGS } from '../src/contract/payloads.js';
import type { ImageTransfer } from '../src/contract/images.js';

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
  /** The address the node is known by: first in the hello's addresses. */
  nodeIP: () => string | undefined;
  /** The runtime's version as found at start ('unknown' when it did not answer). */
  runtimeVersion: () => string;
  now: () => number;
  /** The server's images on this device (agent/images/manager.ts): in every status. */
  images?: { digests(): string[]; transfers(): ImageTransfer[]; diskPressure?(): payloads.Status['diskPressure'] };
}

export class Reporter {
  private status: NodeStatus = { observedGeneration: 0, pods: [], runtimeHealthy: true };
  private lastStatusKey = '';
  private lastImagesKey = '';
  private heartbeat: NodeJS.Timeout | undefined;
  /** Events waiting for their batch to go out (cfg.eventBatchSeconds). */
  private batchTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private flushing = false;
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

  /** The server's images changed (loaded, a transfer's state or progress): sent at once. */
  imagesChanged(): void {
    this.sendStatus(false);
  }

  onConnect(): void {
    // Hello first: the server registers the Node from it, and a status before that is refused.
    void this.sendHello()
      .catch((err) => this.deps.logger.warn({ err: errorMessage(err) }, 'cannot send hello'))
      .then(() => {
        // Every pod's report: the server may have restarted, or missed reports while the link was down.
        this.sendStatus(true, true);
        return this.flushEvents();
      });
  }

  /** A heartbeat: a status without pod reports (they went out when they changed), and a retry of events not acknowledged in time. */
  private beat(): void {
    if (this.stopped) return;
    this.sendStatus(true);
    void this.flushEvents();
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

  /**
   * Sends status when it changed (with every pod's report), or always on a heartbeat (pod reports only if
   * they changed since last sent: a heartbeat proves the agent and its runtime alive, nothing more);
   * coalesced to the latest while offline. `full`: the pod reports even if unchanged (after a connect).
   */
  private sendStatus(heartbeat: boolean, full = false): void {
    const { cfg, bootId, link, now } = this.deps;
    const s = this.status;
    const key = JSON.stringify([s.observedGeneration, s.pods, s.runtimeHealthy, s.runtimeMessage]);
    const changed = key !== this.lastStatusKey;
    const disk = this.deps.images?.diskPressure?.();
    const images = this.deps.images ? { imageDigests: this.deps.images.digests(), imageTransfers: this.deps.images.transfers(), ...(disk ? { diskPressure: disk } : {}) } : undefined;
    // Apart from the pods' key: a transfer's progress resends no pod report.
    const imagesKey = images ? JSON.stringify(images) : '';
    if (!heartbeat && !changed && imagesKey === this.lastImagesKey) return;
    // Strictly increasing even when two reports fall in the same millisecond.
    const seq = Math.max(this.lastSeq + 1, Math.floor(this.bootClockMs()));
    this.lastSeq = seq;
    const sent = link.publishStatus({
      node: cfg.node,
      bootId,
      seq,
      observedGeneration: s.observedGeneration,
      ts: new Date(now()).toISOString(),
      pods: changed || full ? s.pods : [],
      runtimeHealthy: s.runtimeHealthy,
      runtimeMessage: s.runtimeMessage,
      heartbeatSeconds: cfg.heartbeatSeconds,
      keepaliveSeconds: cfg.keepaliveSeconds,
      ...images,
    });
    if (sent) {
      this.lastStatusKey = key;
      this.lastImagesKey = imagesKey;
    }
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
      ...(cfg.compressDesired ? { accepts: [...DESIRED_ENCODINGS] } : {}),
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
