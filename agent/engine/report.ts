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
import { errorMessage } from '../../src/util/errors.js';
import type { RuntimeContainer } from '../runtime/types.js';
import type { RunContext } from './env.js';
import { containerKey, identityOf, LABELS } from './naming.js';
import { containerSpecHash, epochMs, imagePresent, neverPullMessage, rankContainers, toRunSpec, wantsRestart } from './plan.js';

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

/** What reports need from the node beyond the containers, all optional. */
export interface ReportContext {
  node?: string;
  /** As given to the plan: lets a missing ConfigMap or key show as CreateContainerConfigError. */
  run?: RunContext;
  /** Images present on the node: lets imagePullPolicy Never show ErrImageNeverPull. */
  images?: Set<string>;
  /**
   * Readiness of a running container from its probes; undefined when no probe decides it (then a
   * running container is ready).
   */
  ready?: (key: string, id: string) => boolean | undefined;
}

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
  view: ReportView,
  now: number,
  ctx: ReportContext,
): { status: ContainerStatus; cls: PhaseClass } {
  const key = containerKey(pod.uid, name);
  const base = { name, image: c?.image || image, containerID: c?.id, restartCount: view.restartCount(key) };
  const err = view.lastError?.(key, image);

  if (!c || c.state === 'created') {
    let reason = 'ContainerCreating';
    let message: string | undefined;
    const blocked = c ? undefined : blockedReason(pod, name, image, ctx);
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
      const ready = ctx.ready?.(key, c.id) ?? true;
      return { status: { ...base, ready, state: 'running', startedAt: c.startedAt }, cls: 'running' };
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

/**
 * Why a container that does not exist cannot be created as things are, checked in the kubelet's
 * order (image, then config) and as the plan checks it.
 */
function blockedReason(pod: DesiredPod, name: string, image: string, ctx: ReportContext): { reason: string; message: string } | undefined {
  const spec = pod.spec.containers.find((c) => c.name === name);
  if (ctx.images && spec?.imagePullPolicy === 'Never' && !imagePresent(ctx.images, image)) {
    return { reason: 'ErrImageNeverPull', message: neverPullMessage(image) };
  }
  try {
    toRunSpec(pod, name, ctx.node ?? '', ctx.run);
    return undefined;
  } catch (err) {
    return { reason: 'CreateContainerConfigError', message: errorMessage(err) };
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
 * One report per target pod. `restarts` is a ReportView (pass the RestartTracker) or just a
 * restart-count lookup; `now` decides whether a failed pull is still backing off; `ctx` adds what
 * the node knows (ConfigMaps, images, probe readiness).
 */
export function podReports(
  target: DesiredPod[],
  current: RuntimeContainer[],
  restarts: ReportView | ((key: string) => number),
  now: number,
  ctx: ReportContext = {},
): PodReport[] {
  const view: ReportView = typeof restarts === 'function' ? { restartCount: restarts } : restarts;
  const found = new Map<string, RuntimeContainer[]>();
  for (const c of current) {
    if (c.labels[LABELS.managed] !== 'true') continue;
    const id = identityOf(c);
    if (!id) continue;
    const key = containerKey(id.pod.uid, id.container);
    found.set(key, [...(found.get(key) ?? []), c]);
  }

  return target.map((pod) => {
    const entries = pod.spec.containers.map((spec) => {
      const key = containerKey(pod.uid, spec.name);
      let hash: string | undefined;
      try {
        hash = containerSpecHash(pod, spec.name);
      } catch (err) {
        const status: ContainerStatus = {
          name: spec.name,
          image: spec.image,
          ready: false,
          restartCount: view.restartCount(key),
          state: 'waiting',
          reason: 'CreateContainerConfigError',
          message: errorMessage(err),
        };
        return { status, cls: 'waiting' as const, c: undefined };
      }
      // Rank as the plan does, so the report speaks of the container the plan keeps.
      const c = rankContainers(found.get(key) ?? [], hash)[0];
      return { ...containerStatus(pod, spec.name, spec.image, c, view, now, ctx), c };
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
