/**
 * Taints and tolerations, with Kubernetes semantics (k8s.io/api/core/v1 Toleration.ToleratesTaint).
 */
import type { Node, Taint } from '../../src/api/node.js';
import type { Pod, Toleration } from '../../src/api/pod.js';

export type TaintEffect = Taint['effect'];

/**
 * Does one toleration tolerate one taint?
 * - an effect, when set, must equal the taint's (empty = every effect);
 * - a key, when set, must equal the taint's (empty key with Exists = every taint);
 * - Exists ignores the value, Equal (the default) needs the same value (a missing value is "").
 */
export function toleratesTaint(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  const op = t.operator ?? 'Equal';
  if (op === 'Exists') return true;
  if (op === 'Equal') return (t.value ?? '') === (taint.value ?? '');
  return false;
}

export function podToleratesTaint(pod: Pod, taint: Taint): boolean {
  return (pod.spec.tolerations ?? []).some((t) => toleratesTaint(t, taint));
}

/** Node taints with one of `effects` that none of the pod's tolerations covers. */
export function untoleratedTaints(pod: Pod, node: Node, effects: readonly TaintEffect[]): Taint[] {
  const taints = node.spec?.taints;
  if (!taints || taints.length === 0) return [];
  return taints.filter((taint) => effects.includes(taint.effect) && !podToleratesTaint(pod, taint));
}

/** kube-scheduler's wording: `node(s) had untolerated taint {node.kubernetes.io/unreachable: }`. */
export function taintReason(taint: Taint): string {
  return `node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
}

/** The taint kube puts on cordoned nodes; a pod tolerating it may land on a cordoned node. */
export const UNSCHEDULABLE_TAINT: Taint = { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' };
