import type { Condition } from '../../src/api/meta.js';
import type { PodStatus } from '../../src/api/pod.js';
import type { payloads } from '../../src/contract/index.js';

function cond(type: string, ok: boolean, prev: Condition[] | undefined, ts: string): Condition {
  const status = ok ? 'True' : 'False';
  const old = prev?.find((c) => c.type === type);
  return { type, status, lastTransitionTime: old && old.status === status ? old.lastTransitionTime : ts };
}

/** The pod status the API shows, from one agent report (pure). */
export function podStatusFromReport(prev: PodStatus | undefined, r: payloads.PodReport, hostIP: string | undefined, ts: string): PodStatus {
  const prevConds = prev?.conditions;
  const allReady = r.containers.length > 0 && r.containers.every((c) => c.ready);
  const scheduled = prevConds?.find((c) => c.type === 'PodScheduled') ?? { type: 'PodScheduled', status: 'True' as const, lastTransitionTime: ts };
  return {
    phase: r.phase,
    message: r.message,
    reason: r.reason,
    hostIP,
    startTime: r.startTime ?? prev?.startTime,
    containerStatuses: r.containers,
    conditions: [
      scheduled,
      cond('Initialized', true, prevConds, ts),
      cond('ContainersReady', allReady, prevConds, ts),
      cond('Ready', allReady, prevConds, ts),
    ],
    lastReportTime: ts,
  };
}

/** Equal for a user: ignores the report time, so unchanged heartbeats cause no store write. */
export function statusesEqual(a: PodStatus | undefined, b: PodStatus): boolean {
  if (!a) return false;
  const strip = (s: PodStatus) => JSON.stringify({ ...s, lastReportTime: undefined });
  return strip(a) === strip(b);
}
