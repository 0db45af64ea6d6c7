/**
 * Probe decisions, pure (the kubelet's prober worker without the timers): thresholds turn raw probe
 * outcomes into results, and the results of a container's startup, liveness and readiness probes into
 * "started", "ready" and "kill it".
 *
 * - startup: unknown until it passes; while it has not, liveness and readiness do not run and the
 *   container is not ready; failureThreshold failures in a row kill the container.
 * - liveness: success until failureThreshold failures in a row, which kill the container.
 * - readiness: failure (not ready) until successThreshold successes in a row, and again after
 *   failureThreshold failures in a row. Without a readiness probe a started container is ready.
 */
import type { Probe } from '../../src/api/pod.js';

export type ProbeKind = 'startup' | 'liveness' | 'readiness';
export type ProbeResult = 'unknown' | 'success' | 'failure';

export interface ProbeState {
  /** The result that counts, after thresholds. */
  result: ProbeResult;
  /** The last raw outcome, and how many times in a row it came. */
  last?: boolean;
  run: number;
}

/** Probe timing and thresholds with Kubernetes' defaults for what is unset. */
export interface ProbeTiming {
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

export function timing(p: Partial<Probe>): ProbeTiming {
  return {
    initialDelaySeconds: p.initialDelaySeconds ?? 0,
    periodSeconds: Math.max(1, p.periodSeconds ?? 10),
    timeoutSeconds: Math.max(1, p.timeoutSeconds ?? 1),
    successThreshold: Math.max(1, p.successThreshold ?? 1),
    failureThreshold: Math.max(1, p.failureThreshold ?? 3),
  };
}

export function initialState(kind: ProbeKind): ProbeState {
  return { result: kind === 'liveness' ? 'success' : kind === 'readiness' ? 'failure' : 'unknown', run: 0 };
}

/** One raw outcome folded into the state: the result changes only once a threshold is reached. */
export function observe(state: ProbeState, ok: boolean, t: Pick<ProbeTiming, 'successThreshold' | 'failureThreshold'>): ProbeState {
  const run = state.last === ok ? state.run + 1 : 1;
  const needed = ok ? t.successThreshold : t.failureThreshold;
  return { result: run >= needed ? (ok ? 'success' : 'failure') : state.result, last: ok, run };
}

/** The probe states of one container; a probe the container does not define is absent. */
export interface ContainerProbeStates {
  startup?: ProbeState;
  liveness?: ProbeState;
  readiness?: ProbeState;
}

export function initialStates(defined: { startup?: unknown; liveness?: unknown; readiness?: unknown }): ContainerProbeStates {
  return {
    ...(defined.startup ? { startup: initialState('startup') } : {}),
    ...(defined.liveness ? { liveness: initialState('liveness') } : {}),
    ...(defined.readiness ? { readiness: initialState('readiness') } : {}),
  };
}

export function started(s: ContainerProbeStates): boolean {
  return !s.startup || s.startup.result === 'success';
}

export function ready(s: ContainerProbeStates): boolean {
  return started(s) && (!s.readiness || s.readiness.result === 'success');
}

export interface Decision {
  states: ContainerProbeStates;
  /** The container's readiness changed: its status must be sent. */
  readyChanged: boolean;
  /** The startup probe has just passed: liveness and readiness start now. */
  startedNow: boolean;
  /** The liveness or startup probe failed for good: kill the container (it is restarted per policy). */
  kill: boolean;
  /** Worth a Warning event (Unhealthy): every failed liveness/startup probe, the first of a run of failed readiness probes. */
  announce: boolean;
}

/** Folds one outcome of one probe into a container's states and says what follows from it. */
export function decide(states: ContainerProbeStates, kind: ProbeKind, ok: boolean, t: Pick<ProbeTiming, 'successThreshold' | 'failureThreshold'>): Decision {
  const prev = states[kind];
  if (!prev) return { states, readyChanged: false, startedNow: false, kill: false, announce: false };
  const next = observe(prev, ok, t);
  const after = { ...states, [kind]: next };
  return {
    states: after,
    readyChanged: ready(states) !== ready(after),
    startedNow: !started(states) && started(after),
    kill: kind !== 'readiness' && next.result === 'failure',
    announce: !ok && (kind !== 'readiness' || prev.last !== false),
  };
}

/** ms from `now` until a probe's first run: initialDelaySeconds after the container started. */
export function firstRunDelay(startedAtMs: number | undefined, now: number, initialDelaySeconds: number): number {
  const from = startedAtMs && startedAtMs > 0 ? startedAtMs : now;
  return Math.max(0, from + initialDelaySeconds * 1000 - now);
}
