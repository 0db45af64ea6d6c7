import { createHash } from 'node:crypto';
import type { Pod } from '../../src/api/pod.js';
import type { payloads } from '../../src/contract/index.js';

/** Pods that belong in a node's desired state: bound to it and not being deleted (pure). */
export function desiredPodsFor(node: string, pods: Pod[]): payloads.DesiredPod[] {
  return pods
    .filter((p) => p.spec.nodeName === node && !p.metadata.deletionTimestamp)
    .map((p) => ({ uid: p.metadata.uid!, namespace: p.metadata.namespace ?? 'default', name: p.metadata.name, spec: p.spec }))
    .sort((a, b) => (a.namespace + '/' + a.name).localeCompare(b.namespace + '/' + b.name));
}

/** A digest of what the agent would do: equal digests mean nothing to publish. */
export function contentDigest(pods: payloads.DesiredPod[]): string {
  return createHash('sha256').update(JSON.stringify(pods)).digest('hex');
}
