import type { Condition } from '../../src/api/meta.js';
import type { Node, Taint } from '../../src/api/node.js';
import type { Pod, Toleration } from '../../src/api/pod.js';

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

/**
 * Link flapping with hysteresis: degraded once `threshold` disconnects fall within `windowMs`, and
 * healthy again only after a whole window without a disconnect, so the state does not flicker.
 */
export class FlapTracker {
  private readonly drops = new Map<string, number[]>();
  private readonly degraded = new Set<string>();

  constructor(private readonly threshold = 3, private readonly windowMs = 10 * 60_000) {}

  /** Records a disconnect; returns true when this made the node degraded. */
  disconnect(node: string, nowMs: number): boolean {
    const list = [...(this.drops.get(node) ?? []), nowMs].filter((t) => nowMs - t <= this.windowMs);
    this.drops.set(node, list);
    if (list.length >= this.threshold && !this.degraded.has(node)) {
      this.degraded.add(node);
      return true;
    }
    return false;
  }

  count(node: string, nowMs: number): number {
    return (this.drops.get(node) ?? []).filter((t) => nowMs - t <= this.windowMs).length;
  }

  isDegraded(node: string): boolean {
    return this.degraded.has(node);
  }

  /** Nodes that were degraded and had no disconnect for a whole window: healthy again. */
  recovered(nowMs: number): string[] {
    const out: string[] = [];
    for (const node of this.degraded) {
      const last = Math.max(...(this.drops.get(node) ?? [0]));
      if (nowMs - last > this.windowMs) {
        this.degraded.delete(node);
        out.push(node);
      }
    }
    return out;
  }
}
