/**
 * What a simulated agent's fake runtime reports for a pod: the same PodReport shapes the real agent
 * sends (agent/reporter.ts), without a runtime behind them.
 */
import { createHash } from 'node:crypto';
import type { payloads } from '../contract/index.js';

/** Every container of the pod running and ready since `startTime`. */
export function runningPodReport(p: payloads.DesiredPod, startTime: string): payloads.PodReport {
  return {
    uid: p.uid,
    namespace: p.namespace,
    name: p.name,
    phase: 'Running' as const,
    startTime,
    containers: p.spec.containers.map((c) => ({
      name: c.name,
      image: c.image,
      containerID: createHash('sha256').update(`${p.uid}/${c.name}`).digest('hex'),
      ready: true,
      restartCount: 0,
      state: 'running' as const,
      startedAt: startTime,
    })),
  };
}

/** A pod the fake runtime has not started (yet): waiting with `reason`, as the real agent reports a pod being created or refused. */
export function waitingPodReport(p: payloads.DesiredPod, reason: string, message?: string): payloads.PodReport {
  return {
    uid: p.uid,
    namespace: p.namespace,
    name: p.name,
    phase: 'Pending' as const,
    containers: p.spec.containers.map((c) => ({
      name: c.name,
      image: c.image,
      ready: false,
      restartCount: 0,
      state: 'waiting' as const,
      reason,
      ...(message ? { message } : {}),
    })),
  };
}
