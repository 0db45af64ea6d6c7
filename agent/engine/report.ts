/**
 * Pod status as the agent reports it, derived purely from target and current, with Kubernetes
 * meaning (kubelet's getPhase): a container waiting for its first start keeps the pod Pending; a
 * crash-looping container counts as "stopped but will run again", so an Always pod stays Running.
 *
 * Reports are compared between heartbeats to skip unchanged store writes, so nothing in them may
 * tick with the clock: a back-off message names its full delay, never the time left.
 */
import type { ContainerStatus, PodPhase } from '../../src/api/pod.js';
import type { DesiredPod, PodReport } from '../../src/contract/payloads.js';
import type { RuntimeContainer } from '../runtime/types.js';
import { epochMs } from './match.js';
import { containerKey } from './naming.js';
import { wantsRestart, type InvalidContainer, type PlanResult } from './plan.js';

/** The last failure of a step for one container, as RestartTracker records it. */
export interface StepFailure {
  reason: 'ErrImagePull' | 'RunContainerError';
  message: string;
  /** Consecutive failures so far. */
  failures: number;
  at: number;
  retryAt: number;
}

/** What reports need beyond the containers themselves; RestartTracker implements it. */
export interface ReportView {
  restartCount(key: string): number;
  /** Full back-off before the next restart of this exited container (for the CrashLoopBackOff message). */
  restartDelay?(key: string, exited: RuntimeContainer): number;
  /** Why the container under `key` (running `image`) could not be created, if it could not. */
  lastError?(key: string, image: string): StepFailure | undefined;
  /** True for a container the agent killed after failed liveness/startup probes. */
  killedUnhealthy?(id: string): boolean;
}

/**
 * Readiness of a running container from its probes; undefined when no probe decides it (then a
 * running container is ready).
 */
export type Readiness = (key: string, id: string) => boolean | undefined;

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}` : `${s}s`;
}

/** Kubelet's counting classes for getPhase. */
type PhaseClass = 'waiting' | 'running' | 'succeeded' | 'failed-stopped' | 'restarting';

function containerStatus(
  pod: DesiredPod,
  name: string,
  image: string,
  c: RuntimeContainer | undefined,
  blocked: InvalidContainer | undefined,
  view: ReportView,
  now: number,
  ready: Readiness | undefined,
): { status: ContainerStatus; cls: PhaseClass } {
  const key = containerKey(pod.uid, name);
  const base = { name, image: c?.image || image, containerID: c?.id, restartCount: view.restartCount(key) };
  const err = view.lastError?.(key, image);

  if (!c || c.state === 'created') {
    let reason = 'ContainerCreating';
    let message: string | undefined;
    if (blocked) {
      ({ reason, message } = blocked);
    } else if (err?.reason === 'ErrImagePull' && !c) {
      reason = now < err.retryAt ? 'ImagePullBackOff' : 'ErrImagePull';
      message = err.message;
    } else if (err?.reason === 'RunContainerError') {
      reason = 'RunContainerError';
      message = err.message;
    }
    return { status: { ...base, ready: false, state: 'waiting', reason, message }, cls: 'waiting' };
  }

  switch (c.state) {
    case 'running': {
      const isReady = ready?.(key, c.id) ?? true;
      return { status: { ...base, ready: isReady, state: 'running', startedAt: c.startedAt }, cls: 'running' };
    }
    case 'paused':
    case 'stopping': {
      // The process still exists, but it serves nothing: running, not ready.
      const reason = c.state === 'paused' ? 'Paused' : 'Stopping';
      return { status: { ...base, ready: false, state: 'running', reason, startedAt: c.startedAt }, cls: 'running' };
    }
    case 'exited': {
      const times = { exitCode: c.exitCode, startedAt: c.startedAt, finishedAt: c.finishedAt };
      if (wantsRestart(c, pod.spec.restartPolicy, view.killedUnhealthy?.(c.id))) {
        const delay = view.restartDelay?.(key, c);
        const target = `container=${name} pod=${pod.name}_${pod.namespace}(${pod.uid})`;
        const message = delay ? `back-off ${formatDuration(delay)} restarting failed ${target}` : `restarting failed ${target}`;
        // exitCode and finishedAt describe the last termination, as Kubernetes' lastState would.
        return {
          status: { ...base, ready: false, state: 'waiting', reason: 'CrashLoopBackOff', message, ...times },
          cls: 'restarting',
        };
      }
      const ok = c.exitCode === 0;
      return {
        status: { ...base, ready: false, state: 'terminated', reason: ok ? 'Completed' : 'Error', ...times },
        cls: ok ? 'succeeded' : 'failed-stopped',
      };
    }
    default:
      return { status: { ...base, ready: false, state: 'waiting', reason: 'Unknown' }, cls: 'waiting' };
  }
}

/** kubelet getPhase over the containers' classes. */
export function podPhase(classes: PhaseClass[], restartPolicy: DesiredPod['spec']['restartPolicy']): PodPhase {
  const n = (k: PhaseClass) => classes.filter((c) => c === k).length;
  const waiting = n('waiting');
  const running = n('running');
  const succeeded = n('succeeded');
  const stopped = succeeded + n('failed-stopped') + n('restarting');
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (restartPolicy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (restartPolicy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

/**
 * One report per target pod, about the containers the plan matched and with the reasons it found a
 * container cannot be created (`result`: the plan of the containers as they are now). `view` gives
 * restart counts and step failures (the RestartTracker); `now` decides whether a failed pull is
 * still backing off; `ready` adds probe readiness.
 */
export function podReports(result: Pick<PlanResult, 'matches' | 'invalid'>, view: ReportView, now: number, ready?: Readiness): PodReport[] {
  const invalid = new Map(result.invalid.map((i) => [i.key, i]));
  return result.matches.pods.map(({ pod, containers }) => {
    const entries = containers.map((m) => {
      const blocked = invalid.get(m.key);
      // A spec that cannot be hashed has no container the plan would keep: whatever runs is left alone, unreported.
      const c = m.hash === undefined ? undefined : m.kept;
      return { ...containerStatus(pod, m.spec.name, m.spec.image, c, blocked, view, now, ready), c };
    });
    const started = entries.map((e) => epochMs(e.c?.startedAt)).filter((t) => t > 0);
    return {
      uid: pod.uid,
      namespace: pod.namespace,
      name: pod.name,
      phase: podPhase(
        entries.map((e) => e.cls),
        pod.spec.restartPolicy,
      ),
      startTime: started.length ? new Date(Math.min(...started)).toISOString() : undefined,
      containers: entries.map((e) => e.status),
    };
  });
}
