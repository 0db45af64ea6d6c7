import { CONTRACT_VERSION, type payloads } from '../src/contract/index.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { AGENT_VERSION, type AgentConfig } from './config.js';
import type { AgentLink } from './connection.js';
import { applyPlan, RestartTracker } from './engine/apply.js';
import { LABELS, managedSelector } from './engine/naming.js';
import { plan } from './engine/plan.js';
import { podReports } from './engine/report.js';
import type { Hardware } from './hardware.js';
import { EventJournal } from './journal.js';
import type { ContainerRuntime, RuntimeContainer } from './runtime/types.js';
import type { TargetState } from './target.js';

export interface AgentDeps {
  cfg: AgentConfig;
  runtime: ContainerRuntime;
  link: AgentLink;
  target: TargetState;
  hardware: Hardware;
  bootId: string;
  logger: Logger;
  now?: () => number;
}

/** Steps applied in one reconcile before yielding: guards against a plan that never converges. */
const MAX_ROUNDS = 5;

/**
 * The node agent: keeps the runtime's containers equal to the desired state, from the disk cache when
 * the link is down. One reconcile at a time; triggers while one runs coalesce into one more.
 */
export class Agent {
  private readonly journal = new EventJournal();
  private readonly restarts: RestartTracker;
  private readonly now: () => number;
  private reconciling: Promise<void> | undefined;
  private rerun = false;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastStatusKey = '';
  private lastReports: payloads.PodReport[] = [];
  private runtimeHealthy = true;
  private runtimeMessage: string | undefined;
  private observedGeneration = 0;
  private runtimeVersion = 'unknown';

  constructor(private readonly deps: AgentDeps) {
    this.now = deps.now ?? Date.now;
    this.restarts = new RestartTracker({ clock: this.now });
  }

  /** Reconcile from the cache first (works with no link), then connect. */
  async start(): Promise<void> {
    const { target, logger, link, cfg } = this.deps;
    const cached = await target.load();
    if (cached.corrupt) this.emit({ type: 'Warning', reason: 'CorruptCache', message: cached.corrupt, involved: { kind: 'Node', name: cfg.node } });
    if (cached.desired) logger.info({ generation: cached.desired.generation, pods: cached.desired.pods.length }, 'desired state loaded from cache');
    this.runtimeVersion = await this.deps.runtime.version().catch((err) => {
      this.setRuntimeHealth(false, errorMessage(err));
      return 'unknown';
    });
    await this.reconcile();
    link.start();
    this.heartbeat = setInterval(() => this.sendStatus(true), cfg.heartbeatSeconds * 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.reconciling;
    await this.deps.link.stop();
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

  onDesired(d: payloads.Desired): void {
    if (d.node !== this.deps.cfg.node) {
      this.deps.logger.warn({ node: d.node }, 'desired state for another node ignored');
      return;
    }
    this.deps.target
      .accept(d)
      .then((accepted) => {
        if (accepted) {
          this.deps.logger.info({ generation: d.generation, pods: d.pods.length }, 'new desired state');
          this.trigger(0);
        }
      })
      .catch((err) => this.deps.logger.error({ err: errorMessage(err) }, 'cannot persist desired state; not applied'));
  }

  async onRequest(req: payloads.Request): Promise<payloads.Response> {
    switch (req.op) {
      case 'logs': {
        const all = await this.deps.runtime.list({ [LABELS.managed]: 'true' });
        const matches = all
          .filter((c) => c.labels[LABELS.namespace] === req.namespace && c.labels[LABELS.pod] === req.pod && (!req.uid || c.labels[LABELS.podUid] === req.uid) && (!req.container || c.labels[LABELS.container] === req.container))
          .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''));
        const c = matches[0];
        if (!c) return { ok: false, error: { code: 'NotFound', message: `no container for pod ${req.namespace}/${req.pod}${req.container ? ` container ${req.container}` : ''} on this node (not started yet?)` } };
        return { ok: true, data: await this.deps.runtime.logs(c.id, { tail: req.tail }) };
      }
    }
  }

  /** Ask for a reconcile after `ms` (sooner requests win). */
  trigger(ms: number): void {
    if (this.stopped) return;
    if (this.reconciling) {
      this.rerun = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reconcile();
    }, ms);
  }

  /** One reconcile; resolves when done. Safe to call concurrently (joins the running one). */
  reconcile(): Promise<void> {
    if (this.reconciling) {
      this.rerun = true;
      return this.reconciling;
    }
    this.reconciling = this.reconcileOnce()
      .catch((err) => this.deps.logger.error({ err: errorMessage(err) }, 'reconcile failed'))
      .finally(() => {
        this.reconciling = undefined;
        if (this.rerun) {
          this.rerun = false;
          this.trigger(0);
        }
      });
    return this.reconciling;
  }

  private async listManaged(): Promise<RuntimeContainer[]> {
    return this.deps.runtime.list(managedSelector(this.deps.cfg.node));
  }

  private async reconcileOnce(): Promise<void> {
    const { runtime, target, cfg, logger } = this.deps;
    const desired = target.desired;
    const pods = desired?.pods ?? [];
    let requeueMs = cfg.resyncSeconds * 1000;
    let current: RuntimeContainer[];
    try {
      current = await this.listManaged();
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const images = new Set(await runtime.images());
        const p = plan(current, pods, this.restarts.planContext(cfg.node, images));
        if (p.requeueAfterMs !== undefined) requeueMs = Math.min(requeueMs, p.requeueAfterMs);
        if (p.steps.length === 0) break;
        const { errors } = await applyPlan(p, { runtime, logger, emit: (e) => this.emit(e), restarts: this.restarts });
        current = await this.listManaged();
        if (errors.length) {
          requeueMs = Math.min(requeueMs, 5_000);
          break;
        }
      }
      this.setRuntimeHealth(true);
    } catch (err) {
      this.setRuntimeHealth(false, errorMessage(err));
      logger.error({ err: errorMessage(err) }, 'container runtime not usable');
      current = [];
      requeueMs = Math.min(requeueMs, 5_000);
    }
    this.restarts.retain(pods);
    if (desired) this.observedGeneration = desired.generation;
    this.lastReports = this.runtimeHealthy ? podReports(pods, current, this.restarts, this.now()) : this.lastReports;
    this.sendStatus(false);
    if (!this.stopped) this.trigger(requeueMs);
  }

  private setRuntimeHealth(ok: boolean, message?: string): void {
    if (ok !== this.runtimeHealthy) {
      this.emit({ type: ok ? 'Normal' : 'Warning', reason: ok ? 'RuntimeReady' : 'RuntimeUnavailable', message: ok ? `container runtime ${this.deps.runtime.name} is working` : `container runtime ${this.deps.runtime.name} failed: ${message}`, involved: { kind: 'Node', name: this.deps.cfg.node } });
    }
    this.runtimeHealthy = ok;
    this.runtimeMessage = ok ? undefined : message;
  }

  private emit(e: Omit<payloads.AgentEvent, 'ts'> & { ts?: string }): void {
    this.journal.push({ ...e, ts: e.ts ?? new Date(this.now()).toISOString() });
    void this.flushEvents();
  }

  private flushing = false;
  private async flushEvents(): Promise<void> {
    if (this.flushing || !this.deps.link.connected) return;
    this.flushing = true;
    try {
      while (this.journal.size > 0) {
        const batch = this.journal.take();
        const ok = await this.deps.link.publishEvents({ node: this.deps.cfg.node, events: batch.events, dropped: batch.dropped });
        if (!ok) {
          batch.restore();
          break;
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Sends status when it changed, or always on a heartbeat; coalesced to the latest while offline. */
  private sendStatus(heartbeat: boolean): void {
    const { cfg, bootId, link } = this.deps;
    const key = JSON.stringify([this.observedGeneration, this.lastReports, this.runtimeHealthy, this.runtimeMessage]);
    if (!heartbeat && key === this.lastStatusKey) return;
    const sent = link.publishStatus({
      node: cfg.node,
      bootId,
      observedGeneration: this.observedGeneration,
      ts: new Date(this.now()).toISOString(),
      pods: this.lastReports,
      runtimeHealthy: this.runtimeHealthy,
      runtimeMessage: this.runtimeMessage,
      heartbeatSeconds: cfg.heartbeatSeconds,
    });
    if (sent) this.lastStatusKey = key;
  }

  private async sendHello(): Promise<void> {
    const { cfg, hardware, bootId, link, runtime } = this.deps;
    const images = await runtime.images().catch(() => []);
    await link.publishHello({
      agentVersion: AGENT_VERSION,
      contractVersion: CONTRACT_VERSION,
      node: cfg.node,
      bootId,
      ...hardware,
      runtime: { name: runtime.name, version: this.runtimeVersion },
      labels: cfg.labels,
      images,
    });
  }
}
