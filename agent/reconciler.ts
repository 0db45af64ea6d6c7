/**
 * Keeps the runtime's containers equal to the desired state, from the disk cache when the link is
 * down: list → plan → hand each pod's steps to that pod's worker (engine/pod-workers.ts), then wait
 * for the resync period, a back-off expiry, a new desired state, a container exit, a probe or a
 * worker's end. A reconcile never waits for a worker: a pod in a long graceful stop delays no other.
 * One reconcile at a time; triggers while one runs coalesce into one more. Its findings go to the
 * reporter.
 */
import type { payloads } from '../src/contract/index.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { AGENT_DEFAULTS, type AgentConfig } from './config.js';
import { applyPlan, applySteps, type ApplyDeps, type ServerImages, type StepDone, type StepError } from './engine/apply.js';
import { configLookup, type RunContext } from './engine/env.js';
import { managedSelector } from './engine/naming.js';
import { plan, type PlanResult, type Step } from './engine/plan.js';
import { PodWorkers, stepsByWorker } from './engine/pod-workers.js';
import { boundedRuntime, RemoveBatches, Slots } from './runtime/bounded.js';
import { podReports } from './engine/report.js';
import type { ServiceForwarder } from './network/iptables.js';
import { PodAddresses, withPodIPs } from './network/pod-addresses.js';
import { addressTakenIn, POD_IP_LABEL, PodIPPlan } from './network/pod-ip-plan.js';
import type { RestartTracker } from './engine/restart-tracker.js';
import { probeSubjects, type ProbeEvent, type ProbeManager } from './probes/manager.js';
import type { AgentMetricsSink } from './metrics-sink.js';
import type { EventInput, NodeStatus } from './reporter.js';
import type { ContainerRuntime, RuntimeContainer } from './runtime/types.js';
import type { TargetState } from './target.js';
import type { VolumeManager } from './volume-manager.js';

/** Batches a worker runs in a row before it waits for the resync: guards against a plan that never converges. */
const MAX_ROUNDS = 5;

/** Runtime calls (run, start, remove, pull) at once across all pods' workers. */
const RUNTIME_SLOTS = 4;

/** Delay between a container exit event and the reconcile that handles it. */
const EXIT_SETTLE_MS = 750;

/** How long after its removal a container's exit event is still taken for the removal's own. */
const REMOVED_EXIT_GRACE_MS = 10_000;

/** Next reconcile after one that failed outright, or whose steps failed (they back off on their own). */
const FAILED_REQUEUE_MS = 5_000;

/** Next look after a failed runtime call while the runtime still counts as healthy. */
const RUNTIME_RETRY_MS = 1_000;

/** Next ask for the bridge subnet after the runtime could not tell it. */
const SUBNET_RETRY_MS = 60_000;

export interface ReconcilerDeps {
  cfg: AgentConfig;
  runtime: ContainerRuntime;
  target: TargetState;
  restarts: RestartTracker;
  volumes: VolumeManager;
  /** Its events go to onProbeReadiness, onProbeFailure and onProbeKill. */
  probes: ProbeManager;
  logger: Logger;
  now: () => number;
  /** The node's address for pods' status.hostIP and the downward API. */
  hostIP: () => string | undefined;
  emit: (e: EventInput) => void;
  /** Called after every reconcile (and probe readiness change) with what it found. */
  report: (s: NodeStatus) => void;
  /** Forwards the desired Services' cluster IPs and nodePorts; none where the node cannot (no iptables). */
  services?: ServiceForwarder;
  /** What the node offers pods (as reported to the server): resourceFieldRef limits.* of a container without that limit. */
  allocatable?: { cpuMilli: number; memoryBytes: number };
  /** Told each reconcile's duration (for /metrics). */
  metrics?: AgentMetricsSink;
  /** The server's images (agent/images/manager.ts): told each desired state's list; the pull step asks it first. */
  images?: ServerImages & { setDesired(images: payloads.Desired['images']): void };
  /** Told each desired state's image bandwidth budget (the node's label; undefined: the agent's own). */
  imageBandwidth?(bytesPerSecond: number | undefined): void;
}

export class Reconciler {
  /** The runtime's version as found at start. */
  runtimeVersion = 'unknown';
  private reconciling: Promise<void> | undefined;
  /** When a reconcile asked for while one ran is due (performance.now() time). */
  private rerunDue: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = 0;
  private stopped = false;
  private unwatchExits: (() => void) | undefined;
  private runtimeHealthy = true;
  private runtimeMessage: string | undefined;
  private runtimeFailures = 0;
  private observedGeneration = 0;
  private lastReports: payloads.PodReport[] = [];
  /** The plan of what the last reconcile saw, so probe results can be reported without another one. */
  private lastPlan: PlanResult | undefined;

  private readonly restarts: RestartTracker;
  private readonly volumes: VolumeManager;
  private readonly probes: ProbeManager;
  /** The addresses of the pods' containers, read once per container (status.podIP). */
  private readonly addresses: PodAddresses;
  /** The addresses the agent picks for bridge pods before they start (status.podIP in env). */
  private readonly podIPs = new PodIPPlan();
  private subnetAskedAt = -Infinity;
  /** One worker per pod (see engine/pod-workers.ts). */
  private readonly workers = new PodWorkers();
  /** Batches each worker ran in a row (reset once a plan has nothing for it). */
  private readonly rounds = new Map<string, number>();
  /** What the workers' steps run with: the runtime held to RUNTIME_SLOTS calls at once. */
  private readonly applyDeps: ApplyDeps;
  /** Shared by the workers; its peak is what the unit test checks. */
  readonly runtimeSlots = new Slots(RUNTIME_SLOTS);
  private images: Set<string> | undefined;
  private imagesAt = 0;
  /** The managed containers as last listed, with the workers' outcomes since (see containers()). */
  private view: Map<string, RuntimeContainer> | undefined;
  private listedAt = -Infinity;
  /** Something outside the workers changed containers: the next reconcile lists them. */
  private stale = true;
  /** Containers the workers are removing (or just removed): their exit events are the removal's own. */
  private readonly removing = new Set<string>();
  /** Workers' outcomes since the last list began, replayed on it. */
  private outcomes: Array<(view: Map<string, RuntimeContainer>) => void> = [];

  constructor(private readonly deps: ReconcilerDeps) {
    this.restarts = deps.restarts;
    this.volumes = deps.volumes;
    this.probes = deps.probes;
    this.addresses = new PodAddresses(deps.runtime, deps.logger);
    this.applyDeps = {
      runtime: boundedRuntime(deps.runtime, this.runtimeSlots, new RemoveBatches(deps.runtime, deps.logger)),
      logger: deps.logger,
      emit: (e) => deps.emit(e),
      restarts: deps.restarts,
      ...(deps.images ? { images: deps.images } : {}),
    };
  }

  /** Loads the cached desired state and reconciles it (works with no link), then watches for container exits. */
  async start(): Promise<void> {
    const { target, logger, cfg, runtime } = this.deps;
    const cached = await target.load(cfg.node);
    if (cached.corrupt) this.deps.emit({ type: 'Warning', reason: 'CorruptCache', message: cached.corrupt, involved: { kind: 'Node', name: cfg.node } });
    if (cached.desired) logger.info({ generation: cached.desired.generation, pods: cached.desired.pods.length }, 'desired state loaded from cache');
    // Transfers resume from the cache too: a device restarted offline goes on once the server is back.
    this.deps.images?.setDesired(cached.desired?.images);
    this.deps.imageBandwidth?.(cached.desired?.imageBandwidth);
    this.runtimeVersion = await runtime.version().catch((err) => {
      this.setRuntimeHealth(false, errorMessage(err));
      return 'unknown';
    });
    await this.askSubnet();
    await this.reconcile();
    // A container that exits is seen within a second rather than at the next resync (restart policy,
    // Jobs). Not at once: podman's cleanup records the exit a moment after the event.
    // A second look covers a slow cleanup under load.
    // Each of those looks lists the containers again: a reconcile in between (a worker's end) may
    // have listed before podman recorded the exit.
    const relist = () => {
      this.stale = true;
      this.trigger(0);
    };
    this.unwatchExits = runtime.watchExits?.(managedSelector(cfg.node), (id) => {
      // A container a worker is removing dies on its way out: its worker records the removal, and
      // listing for it would only add `podman ps` calls beside a mass removal's own.
      if (id !== undefined && this.removing.has(id)) return;
      this.stale = true;
      setTimeout(relist, EXIT_SETTLE_MS).unref();
      setTimeout(relist, 4 * EXIT_SETTLE_MS).unref();
    });
    // An exit between the first list and the watch's start would otherwise wait for the resync.
    this.stale = true;
  }

  /** No reconcile starts after this; resolves when the running one is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.unwatchExits?.();
    this.probes.stop();
    await this.reconciling;
    await this.workers.idle();
    await this.servicesChain;
    // Forwarding goes with the agent: rules left behind would send traffic to pods nobody looks after.
    await this.deps.services?.close();
  }

  /** Whether the last Services sync failed (so its failure is announced once, and its recovery). */
  private servicesFailing = false;

  /** Service syncs one at a time, apart from the container reconcile (which may take seconds of podman calls). */
  private servicesChain: Promise<void> = Promise.resolve();

  /** Brings forwarding to the current desired Services; a change of endpoints does not wait for the containers. */
  private syncServices(): Promise<void> {
    this.servicesChain = this.servicesChain.then(() => this.syncServicesNow(this.deps.target.desired?.services ?? []));
    return this.servicesChain;
  }

  private async syncServicesNow(services: payloads.DesiredService[]): Promise<void> {
    const fwd = this.deps.services;
    if (!fwd || this.stopped) return;
    try {
      await fwd.sync(services);
      if (this.servicesFailing) this.deps.logger.info('service forwarding works again');
      this.servicesFailing = false;
    } catch (err) {
      this.deps.logger.error({ err: errorMessage(err) }, 'cannot apply service forwarding');
      if (!this.servicesFailing) this.deps.emit({ type: 'Warning', reason: 'ServiceForwardingFailed', message: `cannot forward Services on this node: ${errorMessage(err)}`, involved: { kind: 'Node', name: this.deps.cfg.node } });
      this.servicesFailing = true;
    }
  }

  onDesired(d: payloads.Desired): void {
    const { cfg, target, logger } = this.deps;
    // With 'new desired state' below: the time taken to accept and cache it (the deploy bench reads both).
    logger.debug({ generation: d.generation }, 'desired state received');
    if (d.node !== cfg.node) {
      logger.warn({ node: d.node }, 'desired state for another node ignored');
      return;
    }
    target
      .accept(d)
      .then((accepted) => {
        if (accepted) {
          logger.info({ generation: d.generation, pods: d.pods.length }, 'new desired state');
          this.deps.images?.setDesired(d.images);
          this.deps.imageBandwidth?.(d.imageBandwidth);
          const why = target.saveError;
          if (why) this.deps.emit({ type: 'Warning', reason: 'CacheWriteFailed', message: `desired state generation ${d.generation} applied but not saved to disk (${why}); an offline restart would run an older one`, involved: { kind: 'Node', name: cfg.node } });
          void this.syncServices();
          this.trigger(0);
        }
      })
      .catch((err) => logger.error({ err: errorMessage(err) }, 'cannot accept desired state'));
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
    let next = FAILED_REQUEUE_MS;
    const began = performance.now();
    this.reconciling = this.reconcileOnce()
      .then((requeueMs) => {
        next = requeueMs;
      })
      .catch((err) => this.deps.logger.error({ err: errorMessage(err) }, 'reconcile failed'))
      .finally(() => {
        this.deps.metrics?.reconcile((performance.now() - began) / 1000);
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
      hostIP: this.deps.hostIP(),
      services: this.deps.target.desired?.services ?? [],
      volumeError: (uid, volume) => this.volumes.error(uid, volume),
      // Without a known subnet the agent picks no address: status.podIP in env then waits (ConfigError).
      ...(this.podIPs.enabled ? { podIP: (uid: string) => this.podIPs.ip(uid) } : {}),
      ...(this.deps.allocatable ? { allocatable: this.deps.allocatable } : {}),
    };
  }

  /**
   * The runtime's bridge subnet, asked until it answers (at most once a minute); a runtime that
   * cannot tell leaves pods with the addresses it gives them as they start.
   */
  private async askSubnet(): Promise<void> {
    const { runtime, logger } = this.deps;
    if (this.podIPs.enabled || !runtime.bridgeSubnet) return;
    const now = this.deps.now();
    if (now - this.subnetAskedAt < SUBNET_RETRY_MS) return;
    this.subnetAskedAt = now;
    try {
      const subnet = await runtime.bridgeSubnet();
      if (!subnet) {
        logger.warn('the runtime\'s bridge network has no IPv4 subnet: bridge pods get their addresses as they start');
        return;
      }
      this.podIPs.setSubnet(subnet);
      logger.info({ subnet: subnet.subnet }, 'bridge pod addresses are picked by the agent');
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'no bridge subnet to pick pod addresses in: bridge pods get their addresses as they start');
    }
  }

  /**
   * A run or restart refused because the pod's address is in use (another container took it): the
   * address is given up and the pod gets another on the next pass.
   */
  private giveUpTakenAddresses(errors: StepError[]): void {
    for (const { step, error } of errors) {
      const ip = addressTakenIn(error.message);
      if (!ip) continue;
      const held = step.action === 'run' ? step.spec.ip : step.action === 'restart' ? step.exited.labels[POD_IP_LABEL] : undefined;
      if (held !== ip || (step.action !== 'run' && step.action !== 'restart')) continue;
      this.podIPs.markTaken(ip);
      const { pod } = step;
      this.deps.emit({ type: 'Warning', reason: 'AddressInUse', message: `Address ${ip} is already in use on the ${this.deps.runtime.name} bridge network: the pod gets another address`, involved: { kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid } });
    }
  }

  /** Returns when the next reconcile is due (ms). */
  private async reconcileOnce(): Promise<number> {
    const { runtime, target, cfg, logger } = this.deps;
    const desired = target.desired;
    const pods = desired?.pods ?? [];
    await this.askSubnet();
    const run = this.runContext();
    let requeueMs = cfg.resyncSeconds * 1000;
    let seen: { current: RuntimeContainer[]; plan: PlanResult } | undefined;
    // Volumes first: a container must find its configMap files when it starts; running ones get
    // changed files in place.
    await this.volumes.sync(pods, run).catch((err) => logger.error({ err: errorMessage(err) }, 'cannot prepare volumes'));
    try {
      this.workers.look();
      const [current, images] = await Promise.all([this.containers(), this.knownImages()]);
      this.podIPs.update(pods, current, this.addresses.inUse());
      const served = this.deps.images;
      // A server image pushed again under its tag: a new container waits for the new archive.
      const p = plan(current, pods, { ...this.restarts.planContext(cfg.node, images, run), ...(served ? { imageStale: (i: string) => served.awaiting(i), imageIdFor: (i: string) => served.loadedId(i) } : {}) });
      if (p.requeueAfterMs !== undefined) requeueMs = Math.min(requeueMs, p.requeueAfterMs);
      // Announces back-offs and invalid specs (once each); the steps go to the pods' workers.
      await applyPlan({ ...p, steps: [] }, this.applyDeps);
      this.dispatch(p.steps);
      seen = { current, plan: p };
      this.runtimeFailures = 0;
      this.setRuntimeHealth(true);
    } catch (err) {
      // One failed `podman ps` (a container removed while it lists, a lock timeout under load) is not
      // a dead runtime: the node turning NotReady would mark all its pods Unknown. Look again soon;
      // only repeated failures count.
      this.runtimeFailures++;
      if (this.runtimeFailures >= (cfg.runtimeFailures ?? AGENT_DEFAULTS.runtimeFailures)) {
        this.setRuntimeHealth(false, errorMessage(err));
        logger.error({ err: errorMessage(err), failures: this.runtimeFailures }, 'container runtime not usable');
      } else {
        logger.warn({ err: errorMessage(err), failures: this.runtimeFailures }, 'container runtime call failed; trying again');
      }
      requeueMs = Math.min(requeueMs, this.runtimeHealthy ? RUNTIME_RETRY_MS : FAILED_REQUEUE_MS);
      this.stale = true;
    }
    this.restarts.retain(pods);
    await this.syncServices();
    if (desired) this.observedGeneration = desired.generation;
    if (seen) {
      // Only with a true picture of the containers: a pod whose containers could not be listed keeps
      // its volumes and its last report.
      await this.volumes.cleanup(pods, seen.current);
      this.probes.sync(probeSubjects(seen.plan.matches));
      await this.addresses.refresh(seen.current);
      this.lastPlan = seen.plan;
      this.lastReports = this.reports(seen.plan);
    }
    this.publish();
    return requeueMs;
  }

  /**
   * The managed containers: the runtime's list when something outside the workers may have changed
   * them (an exit, a failure, a probe's kill, the resync period passed), else the last list with the
   * workers' outcomes since. A new pod thus goes to Running with one runtime call, its run.
   */
  private async containers(): Promise<RuntimeContainer[]> {
    const now = performance.now();
    // A runtime that does not tell exits is listed every time: an exit must not wait for the resync.
    const watched = this.unwatchExits !== undefined;
    if (watched && this.view && !this.stale && now - this.listedAt < this.deps.cfg.resyncSeconds * 1000) return [...this.view.values()];
    this.stale = false;
    this.outcomes = [];
    const listed = await this.listManaged();
    const view = new Map(listed.map((c) => [c.id, c]));
    // Workers that ended while the list ran: their outcome may be missing from it (replaying one it
    // has changes nothing).
    for (const apply of this.outcomes) apply(view);
    this.view = view;
    this.listedAt = now;
    return [...view.values()];
  }

  /** What a worker's steps did to the containers, in the view (and for a list under way). */
  private record(done: StepDone[]): void {
    const at = new Date(Math.floor(this.deps.now() / 1000) * 1000).toISOString();
    for (const { step, id } of done) {
      let apply: ((view: Map<string, RuntimeContainer>) => void) | undefined;
      if (step.action === 'run' && id) {
        const c: RuntimeContainer = { id, name: step.spec.name, image: step.spec.image, labels: step.spec.labels, state: 'running', createdAt: at, startedAt: at };
        apply = (view) => {
          if (!view.has(id)) view.set(id, c);
        };
      } else if (step.action === 'restart') {
        apply = (view) => {
          const c = view.get(step.id);
          if (c && c.state !== 'running') {
            const { exitCode: _, ...rest } = c;
            view.set(step.id, { ...rest, state: 'running', startedAt: at });
          }
        };
      } else if (step.action === 'remove') {
        apply = (view) => void view.delete(step.id);
      }
      if (!apply) continue;
      if (this.view) apply(this.view);
      this.outcomes.push(apply);
    }
  }

  /** The images present, asked again only after a pull or once per resync period (nothing else adds one here). */
  private async knownImages(): Promise<Set<string>> {
    const now = performance.now();
    if (!this.images || now - this.imagesAt > this.deps.cfg.resyncSeconds * 1000) {
      this.imagesAt = now;
      this.images = new Set(await this.deps.runtime.images());
    }
    return this.images;
  }

  /**
   * Hands each pod's steps to its worker. A worker that is busy, or finished after the containers
   * were listed, gets nothing now: its steps were planned from a picture its own work has changed,
   * and its end asks for another reconcile.
   */
  private dispatch(steps: Step[]): void {
    const batches = stepsByWorker(steps);
    for (const key of this.rounds.keys()) if (!batches.has(key)) this.rounds.delete(key);
    for (const [key, batch] of batches) {
      if (!this.workers.mayStart(key) || this.stopped) continue;
      const rounds = (this.rounds.get(key) ?? 0) + 1;
      this.rounds.set(key, rounds);
      const removing = batch.flatMap((s) => (s.action === 'remove' ? [s.id] : []));
      for (const id of removing) this.removing.add(id);
      this.workers.start(key, async () => {
        const { errors, done } = await applySteps(batch, this.applyDeps);
        // Exit events are written a moment after the exit: ones for these containers may still come.
        if (removing.length) setTimeout(() => removing.forEach((id) => this.removing.delete(id)), REMOVED_EXIT_GRACE_MS).unref();
        this.record(done);
        // A failed step may have left anything behind: the next reconcile lists.
        if (errors.length) this.stale = true;
        this.giveUpTakenAddresses(errors);
        if (batch.some((s) => s.action === 'pull')) this.images = undefined;
        // What the steps did is reported by the reconcile they ask for. Steps that failed back off
        // on their own; a worker whose plan never converges waits for the resync.
        if (errors.length) this.trigger(FAILED_REQUEUE_MS);
        else if (rounds < MAX_ROUNDS) this.trigger(0);
      });
    }
  }

  private reports(matched: PlanResult): payloads.PodReport[] {
    const reports = podReports(matched, this.restarts, this.deps.now(), (key, id) => this.probes.ready(key, id));
    return withPodIPs(reports, matched.matches, (id) => this.addresses.ip(id));
  }

  private publish(): void {
    this.deps.logger.debug({ generation: this.observedGeneration }, 'status reported');
    this.deps.report({ observedGeneration: this.observedGeneration, pods: this.lastReports, runtimeHealthy: this.runtimeHealthy, runtimeMessage: this.runtimeMessage });
  }

  /** A probe changed a container's readiness: report it now, without waiting for a reconcile. */
  onProbeReadiness(): void {
    if (this.stopped || !this.runtimeHealthy || !this.lastPlan) return;
    this.lastReports = this.reports(this.lastPlan);
    this.publish();
  }

  /** A probe failed in a way worth an event. */
  onProbeFailure(e: ProbeEvent): void {
    const what = `${e.kind[0]!.toUpperCase()}${e.kind.slice(1)} probe failed: ${e.message}`;
    this.deps.emit({ type: 'Warning', reason: 'Unhealthy', message: what, involved: { kind: 'Pod', namespace: e.subject.pod.namespace, name: e.subject.pod.name, uid: e.subject.pod.uid } });
  }

  /** Liveness or startup probe failed for good: stop the container; the next reconcile restarts it per policy. */
  async onProbeKill(e: ProbeEvent): Promise<void> {
    const { subject, kind } = e;
    const pod = this.deps.target.desired?.pods.find((p) => p.uid === subject.pod.uid);
    const restart = pod?.spec.restartPolicy !== 'Never';
    this.deps.emit({
      type: 'Normal',
      reason: 'Killing',
      message: `Container ${subject.container.name} failed ${kind} probe${restart ? ', will be restarted' : ''}`,
      involved: { kind: 'Pod', namespace: subject.pod.namespace, name: subject.pod.name, uid: subject.pod.uid },
    });
    this.restarts.killedForProbe(subject.key, subject.containerId);
    this.onProbeReadiness();
    try {
      await this.deps.runtime.stop(subject.containerId, subject.graceSeconds);
    } catch (err) {
      this.deps.logger.warn({ container: subject.key, err: errorMessage(err) }, 'cannot stop unhealthy container');
    }
    this.stale = true;
    this.trigger(0);
  }

  private setRuntimeHealth(ok: boolean, message?: string): void {
    const { runtime, cfg } = this.deps;
    if (ok !== this.runtimeHealthy) {
      this.deps.emit({ type: ok ? 'Normal' : 'Warning', reason: ok ? 'RuntimeReady' : 'RuntimeUnavailable', message: ok ? `container runtime ${runtime.name} is working` : `container runtime ${runtime.name} failed: ${message}`, involved: { kind: 'Node', name: cfg.node } });
    }
    this.runtimeHealthy = ok;
    this.runtimeMessage = ok ? undefined : message;
  }
}
