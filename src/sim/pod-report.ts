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

/** Why a container waits: its reason, and a message when there is more to say. */
export type WaitingWhy = { reason: string; message?: string };

/**
 * A pod the fake runtime has not started (yet): every container waiting, with `why` (one answer for
 * all, or per container), as the real agent reports a pod being created or an image it cannot pull.
 */
export function waitingPodReport(p: payloads.DesiredPod, why: WaitingWhy | ((c: payloads.DesiredPod['spec']['containers'][number]) => WaitingWhy)): payloads.PodReport {
  return {
    uid: p.uid,
    namespace: p.namespace,
    name: p.name,
    phase: 'Pending' as const,
    containers: p.spec.containers.map((c) => {
      const w = typeof why === 'function' ? why(c) : why;
      return { name: c.name, image: c.image, ready: false, restartCount: 0, state: 'waiting' as const, reason: w.reason, ...(w.message ? { message: w.message } : {}) };
    }),
  };
}
