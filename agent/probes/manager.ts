/**
 * The thin, impure half of probing: one worker per running container that defines probes, one timer
 * chain per probe (a probe never overlaps itself), decisions from logic.ts. The agent tells it which
 * containers run (sync), asks it for readiness (ready) and hears from it when readiness changes or a
 * container must be killed.
 */
import type { Container, Probe } from '../../src/api/pod.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Matching } from '../engine/match.js';
import { LABELS, type PodRef } from '../engine/naming.js';
import { DEFAULT_GRACE_SECONDS, podRef } from '../engine/plan.js';
import type { ContainerRuntime } from '../runtime/types.js';
import { decide, firstRunDelay, initialStates, ready, timing, type ContainerProbeStates, type ProbeKind } from './logic.js';
import { runProbe, type ProbeEndpoint } from './run.js';

/** A running container whose probes should run. */
export interface ProbeSubject {
  /** containerKey: uid/container. */
  key: string;
  pod: PodRef;
  container: Container;
  containerId: string;
  startedAt?: string;
  hostNetwork: boolean;
  /** Grace period for a kill (the pod's terminationGracePeriodSeconds, or the probe's own). */
  graceSeconds: number;
}

export interface ProbeEvent {
  subject: ProbeSubject;
  kind: ProbeKind;
  message: string;
}

export interface ProbeManagerDeps {
  runtime: ContainerRuntime;
  logger: Logger;
  clock?: () => number;
  /** A container's readiness changed. */
  onReadiness(): void;
  /** A probe failed in a way worth an event (Unhealthy). */
  onFailure(e: ProbeEvent): void;
  /** A liveness or startup probe failed for good: the container must be killed. */
  onKill(e: ProbeEvent): void;
}

const PROBE_FIELD: Record<ProbeKind, 'startupProbe' | 'livenessProbe' | 'readinessProbe'> = {
  startup: 'startupProbe',
  liveness: 'livenessProbe',
  readiness: 'readinessProbe',
};

/** Containers with at least one probe get a worker. */
export function hasProbes(c: Container): boolean {
  return Boolean(c.startupProbe || c.livenessProbe || c.readinessProbe);
}

/**
 * The running containers of target pods that define probes (pure): the container the plan keeps for
 * each pod container, when it runs the current spec.
 */
export function probeSubjects(matches: Matching): ProbeSubject[] {
  const out: ProbeSubject[] = [];
  for (const { pod, containers } of matches.pods) {
    for (const { key, spec, kept: c, hash } of containers) {
      if (!hasProbes(spec)) continue;
      if (!c || c.state !== 'running' || (hash !== undefined && c.labels[LABELS.specHash] !== hash)) continue;
      const probeGrace = spec.livenessProbe?.terminationGracePeriodSeconds ?? spec.startupProbe?.terminationGracePeriodSeconds;
      out.push({
        key,
        pod: podRef(pod),
        container: spec,
        containerId: c.id,
        startedAt: c.startedAt,
        hostNetwork: Boolean(pod.spec.hostNetwork),
        graceSeconds: probeGrace ?? pod.spec.terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS,
      });
    }
  }
  return out;
}

class Worker {
  states: ContainerProbeStates;
  private readonly timers = new Map<ProbeKind, NodeJS.Timeout>();
  private stopped = false;
  private killed = false;
  private ipLookup: Promise<string | undefined> | undefined;
  private readonly endpoint: ProbeEndpoint;

  constructor(
    readonly subject: ProbeSubject,
    private readonly deps: ProbeManagerDeps,
  ) {
    const c = subject.container;
    this.states = initialStates({ startup: c.startupProbe, liveness: c.livenessProbe, readiness: c.readinessProbe });
    this.endpoint = {
      runtime: deps.runtime,
      containerId: subject.containerId,
      ports: c.ports ?? [],
      hostNetwork: subject.hostNetwork,
      ip: () => (this.ipLookup ??= deps.runtime.inspect(subject.containerId).then((x) => x?.ip)),
    };
  }

  private probe(kind: ProbeKind): Probe | undefined {
    return this.subject.container[PROBE_FIELD[kind]];
  }

  private now(): number {
    return (this.deps.clock ?? Date.now)();
  }

  start(): void {
    if (this.states.startup) this.scheduleFirst('startup');
    else this.startMain();
  }

  private startMain(): void {
    if (this.states.liveness) this.scheduleFirst('liveness');
    if (this.states.readiness) this.scheduleFirst('readiness');
  }

  private scheduleFirst(kind: ProbeKind): void {
    const p = this.probe(kind)!;
    const startedAt = this.subject.startedAt ? Date.parse(this.subject.startedAt) : undefined;
    this.schedule(kind, firstRunDelay(startedAt, this.now(), timing(p).initialDelaySeconds));
  }

  private schedule(kind: ProbeKind, ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => void this.tick(kind), ms);
    this.timers.set(kind, t);
  }

  private async tick(kind: ProbeKind): Promise<void> {
    this.timers.delete(kind);
    if (this.stopped) return;
    const p = this.probe(kind)!;
    const t = timing(p);
    const outcome = await runProbe(p, this.endpoint);
    if (this.stopped) return;
    const d = decide(this.states, kind, outcome.ok, t);
    this.states = d.states;
    const event = { subject: this.subject, kind, message: outcome.message };
    this.deps.logger.debug({ container: this.subject.key, kind, ok: outcome.ok, message: outcome.message }, 'probe');
    if (d.announce) this.deps.onFailure(event);
    if (d.kill) {
      this.killed = true;
      this.stop();
      this.deps.onKill(event);
      return;
    }
    if (d.startedNow) this.startMain();
    if (d.readyChanged) this.deps.onReadiness();
    // A passed startup probe is done; the others run for the container's life.
    if (!(kind === 'startup' && d.states.startup?.result === 'success')) this.schedule(kind, t.periodSeconds * 1000);
  }

  ready(): boolean {
    return !this.killed && ready(this.states);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

export class ProbeManager {
  /** By container id. */
  private readonly workers = new Map<string, Worker>();
  private stopped = false;

  constructor(private readonly deps: ProbeManagerDeps) {}

  /**
   * The running containers, all of them: a worker starts for each new one with probes, and stops for
   * each one no longer listed. A container started again (same id, new start time) gets a new worker.
   */
  sync(subjects: ProbeSubject[]): void {
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const s of subjects) {
      if (!hasProbes(s.container)) continue;
      seen.add(s.containerId);
      const w = this.workers.get(s.containerId);
      if (w && w.subject.startedAt === s.startedAt) continue;
      w?.stop();
      const nw = new Worker(s, this.deps);
      this.workers.set(s.containerId, nw);
      try {
        nw.start();
      } catch (err) {
        this.deps.logger.warn({ container: s.key, err: errorMessage(err) }, 'cannot start probes');
      }
    }
    for (const [id, w] of this.workers) {
      if (seen.has(id)) continue;
      w.stop();
      this.workers.delete(id);
    }
  }

  /** Readiness by probes of a running container; undefined when no probe decides it. */
  ready(_key: string, containerId: string): boolean | undefined {
    return this.workers.get(containerId)?.ready();
  }

  /** Stops every worker for good: later syncs start none. */
  stop(): void {
    this.stopped = true;
    for (const w of this.workers.values()) w.stop();
    this.workers.clear();
  }
}
