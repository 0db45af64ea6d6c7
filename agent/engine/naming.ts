/**
 * How the agent marks the containers it owns. Labels, not names, are the source of truth: the plan
 * finds its containers by label, so a container someone renamed is still recognised and one merely
 * named like ours is never touched.
 */
import type { RuntimeContainer } from '../runtime/types.js';

export const LABELS = {
  managed: 'drover.io/managed',
  podUid: 'drover.io/pod-uid',
  namespace: 'drover.io/namespace',
  pod: 'drover.io/pod',
  container: 'drover.io/container',
  specHash: 'drover.io/spec-hash',
  node: 'drover.io/node',
} as const;

/** Identity of one pod, enough to address it in events and reports. */
export interface PodRef {
  uid: string;
  namespace: string;
  name: string;
}

/** What a managed container's labels say about it. */
export interface ContainerIdentity {
  pod: PodRef;
  container: string;
  specHash?: string;
  node?: string;
}

/** Per-container key used by restart tracking and reports: stable for the pod's lifetime. */
export function containerKey(podUid: string, container: string): string {
  return `${podUid}/${container}`;
}

/** Label filter for `ContainerRuntime.list`: every container this node's agent manages. */
export function managedSelector(node: string): Record<string, string> {
  return { [LABELS.managed]: 'true', [LABELS.node]: node };
}

/** Podman accepts `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else becomes '-'. */
function sanitize(s: string): string {
  return s.replace(/[^a-zA-Z0-9_.-]/g, '-');
}

/**
 * Runtime container name. The uid prefix keeps a re-created pod of the same name from colliding
 * with the old pod's container while that one is still being removed.
 */
export function containerName(namespace: string, pod: string, container: string, uid: string): string {
  return sanitize(`drover-${namespace}-${pod}-${container}-${uid.slice(0, 8)}`);
}

export function containerLabels(pod: PodRef, container: string, node: string, specHash: string): Record<string, string> {
  return {
    [LABELS.managed]: 'true',
    [LABELS.podUid]: pod.uid,
    [LABELS.namespace]: pod.namespace,
    [LABELS.pod]: pod.name,
    [LABELS.container]: container,
    [LABELS.specHash]: specHash,
    [LABELS.node]: node,
  };
}

/** True for containers this node's agent owns; containers of other agents sharing the runtime are left alone. */
export function isManagedBy(c: RuntimeContainer, node: string): boolean {
  return c.labels[LABELS.managed] === 'true' && c.labels[LABELS.node] === node;
}

/** The pod and container a managed container belongs to, or undefined when its labels are incomplete. */
export function identityOf(c: RuntimeContainer): ContainerIdentity | undefined {
  const l = c.labels;
  const uid = l[LABELS.podUid];
  const container = l[LABELS.container];
  if (!uid || !container) return undefined;
  return {
    pod: { uid, namespace: l[LABELS.namespace] ?? '', name: l[LABELS.pod] ?? '' },
    container,
    specHash: l[LABELS.specHash],
    node: l[LABELS.node],
  };
}
