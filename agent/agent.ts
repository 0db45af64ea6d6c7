import { join } from 'node:path';
import { CONTRACT_VERSION, type payloads } from '../src/contract/index.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { AGENT_VERSION, type AgentConfig } from './config.js';
import type { AgentLink } from './connection.js';
import { applyPlan, RestartTracker } from './engine/apply.js';
import { configLookup, type RunContext } from './engine/env.js';
import { LABELS, managedSelector } from './engine/naming.js';
import { plan, type PlanResult } from './engine/plan.js';
import { podReports } from './engine/report.js';
import type { Hardware } from './hardware.js';
import { EventJournal, JOURNAL_FILE } from './journal.js';
import { ProbeManager, probeSubjects, type ProbeEvent } from './probes/manager.js';
import type { ContainerRuntime, RuntimeContainer } from './runtime/types.js';
import type { TargetState } from './target.js';
import type { UsageSample, UsageSampler } from './usage.js';
import { VolumeManager } from './volumes.js';

export interface AgentDeps {
  cfg: AgentConfig;
  runtime: ContainerRuntime;
  link: AgentLink;
  target: TargetState;
  hardware: Hardware;
  bootId: string;
  logger: Logger;
  /** Measures node and pod resource use for `drover top`; heartbeats carry no usage without it. */
  usage?: UsageSampler;
  now?: () => number;
}

/** Steps applied in one reconcile before yielding: guards against a plan that never converges. */
const MAX_ROUNDS = 5;

/** Consecutive failed reconciles (runtime calls) before the runtime is reported unhealthy. */
const RUNTIME_FAILURES_UNHEALTHY = 3;

/** Delay between a container exit event and the reconcile that handles it. */
const EXIT_SETTLE_MS = 750;

/** Longest a heartbeat waits for usage figures. */
const USAGE_TIMEOUT_MS = 5_000;

/** The value, or undefined when `p` does not settle (or fails) within `ms`. */
async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The node agent: keeps the runtime's containers equal to the desired state, from the disk cache when
 * the link is down. One reconcile at a time; triggers while one runs coalesce into one more.
 */
export class Agent {
  private readonly journal: EventJournal;
  private readonly restarts: RestartTracker;
  private readonly now: () => number;
  private reconciling: Promise<void> | undefined;
  /** When a reconcile asked for while one ran is due (performance.now() time). */
  private rerunDue: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastStatusKey = '';
  private lastReports: payloads.PodReport[] = [];
  private runtimeHealthy = true;
  private runtimeMessage: string | undefined;
  private observedGeneration = 0;
  private runtimeVersion = 'unknown';
  private readonly volumes: VolumeManager;
  private readonly probes: ProbeManager;
  /** The plan of what the last reconcile saw, so probe results can be reported without another one. */
  private lastPlan: PlanResult | undefined;

  constructor(private readonly deps: AgentDeps) {
    this.now = deps.now ?? Date.now;
    this.journal = new EventJournal({ path: join(deps.cfg.stateDir, JOURNAL_FILE), logger: deps.logger });
    this.restarts = new RestartTracker({ clock: this.now });
    this.volumes = new VolumeManager(deps.cfg.stateDir, deps.logger);
    this.probes = new ProbeManager({
      runtime: deps.runtime,
      logger: deps.logger,
      clock: this.now,
      onReadiness: () => this.refreshReports(),
      onFailure: (e) => this.probeFailed(e),
      onKill: (e) => void this.killUnhealthy(e),
    });
  }

  /** Reconcile from the cache first (works with no link), then connect. */
  async start(): Promise<void> {
    const { target, logger, link, cfg } = this.deps;
    // Events of an earlier run that never reached the server are sent after these, oldest first.
    const journal = await this.journal.load();
    if (journal.corrupt) this.emit({ type: 'Warning', reason: 'CorruptJournal', message: journal.corrupt, involved: { kind: 'Node', name: cfg.node } });
    if (this.journal.size > 0) logger.info({ events: this.journal.size, dropped: this.journal.droppedCount }, 'unsent events from an earlier run loaded');
    const cached = await target.load(cfg.node);
    if (cached.corrupt) this.emit({ type: 'Warning', reason: 'CorruptCache', message: cached.corrupt, involved: { kind: 'Node', name: cfg.node } });
    if (cached.desired) logger.info({ generation: cached.desired.generation, pods: cached.desired.pods.length }, 'desired state loaded from cache');
    this.runtimeVersion = await this.deps.runtime.version().catch((err) => {
      this.setRuntimeHealth(false, errorMessage(err));
      return 'unknown';
    });
    await this.reconcile();
    // A container that exits is seen within a second rather than at the next resync (restart policy,
    // Jobs). Not at once: podman's cleanup records the exit a moment after the event.
    // A second look covers a slow cleanup under load.
    this.unwatchExits = this.deps.runtime.watchExits?.(managedSelector(cfg.node), () => {
      this.trigger(EXIT_SETTLE_MS);
      setTimeout(() => this.trigger(0), 4 * EXIT_SETTLE_MS).unref();
    });
    link.start();
    this.heartbeat = setInterval(() => this.beat(), cfg.heartbeatSeconds * 1000);
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
    if (this.beating || !this.deps.usage || !this.deps.link.connected) return;
    this.beating = true;
    void withTimeout(this.sampleUsage(this.deps.usage), USAGE_TIMEOUT_MS)
      .then((u) => {
        this.lastUsage = u;
      })
      .finally(() => {
        this.beating = false;
      });
  }

  private async sampleUsage(sampler: UsageSampler): Promise<UsageSample> {
    return sampler.sample(await this.listManaged().catch(() => []));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.unwatchExits?.();
    this.probes.stop();
    await this.reconciling;
    await this.deps.link.stop();
    await this.journal.close();
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
          const why = this.deps.target.saveError;
          if (why) this.emit({ type: 'Warning', reason: 'CacheWriteFailed', message: `desired state generation ${d.generation} applied but not saved to disk (${why}); an offline restart would run an older one`, involved: { kind: 'Node', name: this.deps.cfg.node } });
          this.trigger(0);
        }
      })
      .catch((err) => this.deps.logger.error({ err: errorMessage(err) }, 'cannot accept desired state'));
  }

  async onRequest(req: payloads.Request): Promise<payloads.Response> {
    // The newest container of the pod (a restarted one leaves its predecessor until cleanup).
    const all = await this.deps.runtime.list({ [LABELS.managed]: 'true' });
    const c = all
      .filter((x) => x.labels[LABELS.namespace] === req.namespace && x.labels[LABELS.pod] === req.pod && (!req.uid || x.labels[LABELS.podUid] === req.uid) && (!req.container || x.labels[LABELS.container] === req.container))
      .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? ''))[0];
    const what = `pod ${req.namespace}/${req.pod}${req.container ? ` container ${req.container}` : ''}`;
    if (!c) return { ok: false, error: { code: 'NotFound', message: `no container for ${what} on this node (not started yet?)` } };
    switch (req.op) {
      case 'logs':
        return { ok: true, data: await this.deps.runtime.logs(c.id, { tail: req.tail }) };
      case 'exec': {
        if (c.state !== 'running') return { ok: false, error: { code: 'Conflict', message: `cannot exec in ${what}: the container is ${c.state}, not running` } };
        const r = await this.deps.runtime.exec(c.id, req.command, req.timeoutSeconds * 1000);
        return { ok: true, data: { exitCode: r.exitCode, output: r.output, timedOut: r.timedOut } satisfies payloads.ExecResult };
      }
    }
  }

  /** Ask for a reconcile after `ms` (sooner requests win). */
  trigger(ms: number): void {
    if (this.stopped) return;
    // A monotonic clock: a device clock stepped by NTP must not stretch or skip waits.
    const due = performance.now() + ms;
    if (this.reconciling) {
      // Kept for when the running reconcile ends, with the delay asked for (e.g. the exit settle).
      this.rerunDue = Math.min(this.rerunDue ?? Infinity, due);
      return;
    }
    if (this.timer) {
      if (this.timerDue <= due) return;
      clearTimeout(this.timer);
    }
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reconcile();
    }, ms);
  }

  /** One reconcile; resolves when done. Safe to call concurrently (joins the running one). */
  reconcile(): Promise<void> {
    if (this.reconciling) {
      this.rerunDue = performance.now();
      return this.reconciling;
    }
    let next = 5_000;
    this.reconciling = this.reconcileOnce()
      .then((requeueMs) => {
        next = requeueMs;
      })
      .catch((err) => this.deps.logger.error({ err: errorMessage(err) }, 'reconcile failed'))
      .finally(() => {
        this.reconciling = undefined;
        // The next resync or back-off expiry, or sooner what was asked for while this one ran
        // (a new desired state, a probe, a container exit).
        const rerunDue = this.rerunDue;
        this.rerunDue = undefined;
        this.trigger(next);
        if (rerunDue !== undefined) this.trigger(Math.max(0, rerunDue - performance.now()));
      });
    return this.reconciling;
  }

  private async listManaged(): Promise<RuntimeContainer[]> {
    return this.deps.runtime.list(managedSelector(this.deps.cfg.node));
  }

  /** What building runtime requests needs for the current desired state. */
  private runContext(): RunContext {
    return {
      config: configLookup(this.deps.target.desired),
      stateDir: this.deps.cfg.stateDir,
      hostIP: this.deps.hardware.addresses[0],
      volumeError: (uid, volume) => this.volumes.error(uid, volume),
    };
  }

  /** Returns when the next reconcile is due (ms). */
  private async reconcileOnce(): Promise<number> {
    const { runtime, target, cfg, logger } = this.deps;
    const desired = target.desired;
    const pods = desired?.pods ?? [];
    const run = this.runContext();
    let requeueMs = cfg.resyncSeconds * 1000;
    let seen: { current: RuntimeContainer[]; plan: PlanResult } | undefined;
    // Volumes first: a container must find its configMap files when it starts; running ones get
    // changed files in place.
    await this.volumes.sync(pods, run).catch((err) => logger.error({ err: errorMessage(err) }, 'cannot prepare volumes'));
    try {
      // Each podman call costs tens of milliseconds: ask for both at once, and for the images again
      // only after a pull (nothing else adds one).
      const [listed, present] = await Promise.all([this.listManaged(), runtime.images()]);
      let current = listed;
      let images = new Set(present);
      let p = plan(current, pods, this.restarts.planContext(cfg.node, images, run));
      for (let round = 1; ; round++) {
        if (p.requeueAfterMs !== undefined) requeueMs = Math.min(requeueMs, p.requeueAfterMs);
        // Applied even without steps: it also announces back-offs and invalid specs (once each).
        const { errors } = await applyPlan(p, { runtime, logger, emit: (e) => this.emit(e), restarts: this.restarts });
        if (p.steps.length === 0) break;
        const pulled = p.steps.some((s) => s.action === 'pull');
        [current, images] = await Promise.all([this.listManaged(), pulled ? runtime.images().then((l) => new Set(l)) : Promise.resolve(images)]);
        // Planned again whether or not it is applied: the reports and probes read the matching of
        // the containers as they are now.
        p = plan(current, pods, this.restarts.planContext(cfg.node, images, run));
        if (errors.length) {
          requeueMs = Math.min(requeueMs, 5_000);
          break;
        }
        if (round >= MAX_ROUNDS) break;
      }
      seen = { current, plan: p };
      this.runtimeFailures = 0;
      this.setRuntimeHealth(true);
    } catch (err) {
      // One failed `podman ps` (a container removed while it lists, a lock timeout under load) is not
      // a dead runtime: the node turning NotReady would mark all its pods Unknown. Look again soon;
      // only repeated failures count.
      this.runtimeFailures++;
      if (this.runtimeFailures >= RUNTIME_FAILURES_UNHEALTHY) {
        this.setRuntimeHealth(false, errorMessage(err));
        logger.error({ err: errorMessage(err), failures: this.runtimeFailures }, 'container runtime not usable');
      } else {
        logger.warn({ err: errorMessage(err), failures: this.runtimeFailures }, 'container runtime call failed; trying again');
      }
      requeueMs = Math.min(requeueMs, this.runtimeHealthy ? 1_000 : 5_000);
    }
    this.restarts.retain(pods);
    if (desired) this.observedGeneration = desired.generation;
    if (seen) {
      // Only with a true picture of the containers: a pod whose containers could not be listed keeps
      // its volumes and its last report.
      await this.volumes.cleanup(pods, seen.current);
      this.probes.sync(probeSubjects(seen.plan.matches));
      this.lastPlan = seen.plan;
      this.lastReports = this.reports(seen.plan);
    }
    this.sendStatus(false);
    return requeueMs;
  }

  private reports(matched: PlanResult): payloads.PodReport[] {
    return podReports(matched, this.restarts, this.now(), (key, id) => this.probes.ready(key, id));
  }

  /** A probe changed a container's readiness: report it now, without waiting for a reconcile. */
  private refreshReports(): void {
    if (this.stopped || !this.runtimeHealthy || !this.lastPlan) return;
    this.lastReports = this.reports(this.lastPlan);
    this.sendStatus(false);
  }

  private probeFailed(e: ProbeEvent): void {
    const what = `${e.kind[0]!.toUpperCase()}${e.kind.slice(1)} probe failed: ${e.message}`;
    this.emit({ type: 'Warning', reason: 'Unhealthy', message: what, involved: { kind: 'Pod', namespace: e.subject.pod.namespace, name: e.subject.pod.name, uid: e.subject.pod.uid } });
  }

  /** Liveness or startup probe failed for good: stop the container; the next reconcile restarts it per policy. */
  private async killUnhealthy(e: ProbeEvent): Promise<void> {
    const { subject, kind } = e;
    const pod = this.deps.target.desired?.pods.find((p) => p.uid === subject.pod.uid);
    const restart = pod?.spec.restartPolicy !== 'Never';
    this.emit({
      type: 'Normal',
      reason: 'Killing',
      message: `Container ${subject.container.name} failed ${kind} probe${restart ? ', will be restarted' : ''}`,
      involved: { kind: 'Pod', namespace: subject.pod.namespace, name: subject.pod.name, uid: subject.pod.uid },
    });
    this.restarts.killedForProbe(subject.key, subject.containerId);
    this.refreshReports();
    try {
      await this.deps.runtime.stop(subject.containerId, subject.graceSeconds);
    } catch (err) {
      this.deps.logger.warn({ container: subject.key, err: errorMessage(err) }, 'cannot stop unhealthy container');
    }
    this.trigger(0);
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
  private beating = false;
  private timerDue = 0;
  private runtimeFailures = 0;
  /** The latest usage sample, sent with the next heartbeat. */
  private lastUsage: UsageSample | undefined;
  private unwatchExits: (() => void) | undefined;
  private async flushEvents(): Promise<void> {
    if (this.flushing || !this.deps.link.connected) return;
    this.flushing = true;
    try {
      while (this.journal.size > 0 || this.journal.droppedCount > 0) {
        const batch = this.journal.take();
        const ok = await this.deps.link.publishEvents({ node: this.deps.cfg.node, events: batch.events, dropped: batch.dropped });
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
    const { cfg, bootId, link } = this.deps;
    const key = JSON.stringify([this.observedGeneration, this.lastReports, this.runtimeHealthy, this.runtimeMessage]);
    if (!heartbeat && key === this.lastStatusKey) return;
    const sent = link.publishStatus({
      node: cfg.node,
      bootId,
      observedGeneration: this.observedGeneration,
      ts: new Date(this.now()).toISOString(),
      pods: usage ? this.lastReports.map((r) => withUsage(r, usage.pods.get(`${r.namespace}/${r.name}`))) : this.lastReports,
      ...(usage?.node ? { usage: usage.node } : {}),
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
      devices: hardware.devices,
    });
  }
}

function withUsage(r: payloads.PodReport, u: payloads.Usage | undefined): payloads.PodReport {
  return u ? { ...r, usage: u } : r;
}
