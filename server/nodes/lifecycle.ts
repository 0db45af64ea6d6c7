/**
 * The node-lifecycle decisions, pure: taints that follow readiness, who is late / lost / stable again
 * and when to look next, which pods are due for eviction. The node-lifecycle controller
 * (server/controllers/node-lifecycle.ts) reads the state, asks here, and writes the answers.
 */
import type { Condition } from '../../src/api/meta.js';
import type { Node, Taint } from '../../src/api/node.js';
import type { Pod, Toleration } from '../../src/api/pod.js';
import type { Heartbeat } from './liveness.js';

export const TAINT_UNREACHABLE = 'node.kubernetes.io/unreachable';
export const TAINT_NOT_READY = 'node.kubernetes.io/not-ready';

/**
 * The node-lifecycle taints that follow the Ready condition, as Kubernetes sets them: Unknown →
 * unreachable, False → not-ready, True → neither. An unchanged taint keeps its timeAdded (pure).
 */
export function lifecycleTaints(ready: Condition, existing: Taint[] | undefined, now: string): Taint[] {
  const others = (existing ?? []).filter((t) => t.key !== TAINT_UNREACHABLE && t.key !== TAINT_NOT_READY);
  const want = ready.status === 'Unknown' ? TAINT_UNREACHABLE : ready.status === 'False' ? TAINT_NOT_READY : undefined;
  if (!want) return others;
  const prev = (existing ?? []).find((t) => t.key === want);
  return [...others, { key: want, effect: 'NoExecute', timeAdded: prev?.timeAdded ?? now }];
}

function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (!t.key) return t.operator === 'Exists';
  if (t.key !== taint.key) return false;
  return t.operator === 'Exists' || (t.value ?? '') === (taint.value ?? '');
}

/**
 * Pods to evict from a node that lost its link or readiness. Edge policy, unlike Kubernetes: a pod is
 * evicted only when it opted in with a toleration for the taint that carries `tolerationSeconds`, and
 * that time has passed. Every other pod stays bound (shown Unknown) and keeps running on the device.
 * Returns the pods due now and the earliest time another one becomes due (pure).
 */
export function dueEvictions(node: Node, pods: Pod[], nowMs: number): { due: Pod[]; nextAtMs?: number } {
  const taints = (node.spec?.taints ?? []).filter((t) => (t.key === TAINT_UNREACHABLE || t.key === TAINT_NOT_READY) && t.timeAdded);
  const due: Pod[] = [];
  let nextAtMs: number | undefined;
  for (const pod of pods) {
    if (pod.spec.nodeName !== node.metadata.name || pod.metadata.deletionTimestamp) continue;
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
    for (const taint of taints) {
      const tol = (pod.spec.tolerations ?? []).find((t) => tolerates(t, taint) && t.tolerationSeconds !== undefined);
      if (!tol) continue;
      const at = Date.parse(taint.timeAdded!) + Math.max(0, tol.tolerationSeconds!) * 1000;
      if (at <= nowMs) {
        due.push(pod);
        break;
      }
      nextAtMs = nextAtMs === undefined ? at : Math.min(nextAtMs, at);
    }
  }
  return { due, nextAtMs };
}

export interface LifecyclePolicy {
  /** Heartbeat periods of silence after which a node turns NotReady. */
  missedHeartbeats: number;
  /** Heartbeat periods of silence after which a node is marked HeartbeatLate (its status may be stale). */
  lateFactor: number;
  /** A degraded link is stable again after this long without a disconnect. */
  flapWindowMs: number;
}

export interface LifecycleInput {
  node: Node;
  /** Last report heard (undefined: none since the agent went offline). */
  beat: Heartbeat | undefined;
  /** Last disconnect this server process saw (undefined: none since it started). */
  lastDisconnectMs: number | undefined;
  nowMs: number;
  policy: LifecyclePolicy;
}

export interface LifecycleDecision {
  /** Mark the node HeartbeatLate (with when it was last heard), or clear the mark; absent: leave it. */
  late?: { set: true; lastHeardMs: number; periodMs: number } | { set: false };
  /** Its heartbeats stopped without a last will (a half-open link): this Ready condition. */
  notReady?: Condition;
  /** A degraded link had a whole window without a disconnect. */
  linkStable?: true;
  /** When something becomes due if nothing is heard meanwhile. */
  nextAtMs?: number;
}

export function condition(node: Node, type: string): Condition | undefined {
  return node.status?.conditions?.find((c) => c.type === type);
}

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

/** What the node's silence (or its calm) means now (pure). */
export function decideLifecycle({ node, beat, lastDisconnectMs, nowMs, policy }: LifecycleInput): LifecycleDecision {
  const out: LifecycleDecision = {};
  const flagged = condition(node, 'HeartbeatLate')?.status === 'True';
  const ready = condition(node, 'Ready');
  if (beat) {
    // Ingest writes Ready=True with lastHeard on a hello or when the agent comes back online: that is
    // a sign of life too, even before its first status report refreshes the heartbeat.
    const readySince = ready?.status === 'True' ? Date.parse(node.status?.lastHeard ?? '') : NaN;
    const lastHeardMs = readySince > beat.lastHeardMs ? readySince : beat.lastHeardMs;
    const lateAt = lastHeardMs + beat.periodMs * policy.lateFactor;
    const lostAt = lastHeardMs + beat.periodMs * policy.missedHeartbeats;
    if (nowMs > lateAt) {
      if (!flagged) out.late = { set: true, lastHeardMs, periodMs: beat.periodMs };
    } else {
      if (flagged) out.late = { set: false };
      out.nextAtMs = earliest(out.nextAtMs, lateAt + 1);
    }
    // Already NotReady for silence, for a contract mismatch no heartbeat can cure, or Unknown (its last
    // will arrived): nothing to add.
    const judged = ready?.reason === 'NodeStatusUnknown' || ready?.reason === 'ContractVersionMismatch' || ready?.status === 'Unknown';
    if (nowMs > lostAt) {
      if (!judged) out.notReady = { type: 'Ready', status: 'False', reason: 'NodeStatusUnknown', message: `no heartbeat for ${Math.round((nowMs - lastHeardMs) / 1000)}s` };
    } else {
      out.nextAtMs = earliest(out.nextAtMs, lostAt + 1);
    }
  }
  const degraded = condition(node, 'LinkDegraded');
  if (degraded?.status === 'True') {
    // Set by an earlier server process: its disconnects are unknown here, so count from the mark.
    const quietSince = lastDisconnectMs ?? Date.parse(degraded.lastTransitionTime ?? new Date(nowMs).toISOString());
    const stableAt = quietSince + policy.flapWindowMs;
    if (nowMs > stableAt) out.linkStable = true;
    else out.nextAtMs = earliest(out.nextAtMs, stableAt + 1);
  }
  return out;
}

/**
 * What the pods of a node must show about it (pure): lost while it is not Ready, stale while it is
 * late. `key` changes exactly when either does, so the controller touches the pods once per change.
 */
export function podMarks(node: Node): { lost?: Condition; stale?: Condition; key: string } {
  const ready = condition(node, 'Ready');
  const late = condition(node, 'HeartbeatLate');
  const lost = ready && ready.status !== 'True' ? ready : undefined;
  const stale = late?.status === 'True' ? late : undefined;
  return { lost, stale, key: `lost:${lost ? (lost.lastTransitionTime ?? '?') : '-'} stale:${stale ? (stale.lastTransitionTime ?? '?') : '-'}` };
}

/** The node carries a taint that can evict pods (unreachable / not-ready). */
export function hasLifecycleTaint(node: Node): boolean {
  return (node.spec?.taints ?? []).some((t) => t.key === TAINT_UNREACHABLE || t.key === TAINT_NOT_READY);
}
