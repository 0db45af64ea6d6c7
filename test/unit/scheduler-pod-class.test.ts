/**
 * A batch answers the static checks (readiness, cordon, taints, node selector and affinity, image
 * locality…) once per class of pods and node instead of once per pod. What a user would notice if
 * that went wrong: pods of a batch landing elsewhere, or told other reasons, than when each check runs
 * for every pod. So the same batch is placed twice, once with the default chain (cached) and once with
 * copies of the same filters and scorers (which the cache does not know, so each runs per pod). Both
 * look at every node (percentageOfNodesToScore 100): replicas of the default chain are ranked over the
 * whole fleet (class-ranking.ts), so the reference is every check on every node for every pod.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { defaultFilters } from '../../server/scheduler/filters.js';
import { scheduleBatch } from '../../server/scheduler/place.js';
import { defaultScorers } from '../../server/scheduler/scorers.js';

function node(i: number): Node {
  const arch = i % 3 === 0 ? 'arm64' : 'amd64';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `n-${String(i).padStart(3, '0')}`, labels: { 'kubernetes.io/hostname': `n-${i}`, 'kubernetes.io/arch': arch, ...(i % 5 === 0 ? { disk: 'ssd' } : {}) } },
    spec: { ...(i % 11 === 0 ? { unschedulable: true } : {}), ...(i % 7 === 0 ? { taints: [{ key: 'edge', value: 'cellular', effect: 'NoSchedule' as const }] } : {}), ...(i % 13 === 0 ? { taints: [{ key: 'slow', effect: 'PreferNoSchedule' as const }] } : {}) },
    status: {
      allocatable: { cpu: i % 4 === 0 ? '500m' : '4', memory: '8Gi', pods: '110' },
      capacity: { cpu: '4', memory: '8Gi', pods: '110' },
      conditions: [{ type: 'Ready', status: i % 17 === 0 ? 'False' : 'True' }],
      images: i % 2 === 0 ? ['docker.io/library/nginx:1.27'] : [],
    },
  } as Node;
}

function pod(i: number, spec: Partial<Pod['spec']>, app: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${app}-${i}`, namespace: 'default', uid: `${app}-u-${i}`, labels: { app }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: app, uid: `rs-${app}`, controller: true }] },
    spec: { restartPolicy: 'Always', containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu: '300m', memory: '64Mi' } } }], ...spec },
  } as Pod;
}

/**
 * Templates interleaved, as a pass sees pods of several Deployments; each differs from "plain" in one
 * field the static checks read, so a class that left that field out would give one the other's answers.
 */
function batch(): Pod[] {
  const out: Pod[] = [];
  for (let i = 0; i < 150; i++) {
    out.push(pod(i, {}, 'plain'));
    if (i % 2 === 0) out.push(pod(i, { nodeSelector: { 'kubernetes.io/arch': 'arm64' } }, 'arm'));
    if (i % 3 === 0) out.push(pod(i, { tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }] }, 'edge'));
    if (i % 3 === 1) out.push(pod(i, { tolerations: [{ key: 'slow', operator: 'Exists', effect: 'PreferNoSchedule' }] }, 'slow'));
    if (i % 4 === 0) out.push(pod(i, { affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, preference: { matchExpressions: [{ key: 'disk', operator: 'In', values: ['ssd'] }] } }] } } }, 'ssd'));
    if (i % 4 === 1) out.push(pod(i, { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'disk', operator: 'In', values: ['ssd'] }] }] } } } }, 'ssd-only'));
    if (i % 5 === 0) out.push(pod(i, { nodeName: 'n-050' }, 'named'));
    if (i % 10 === 0) out.push(pod(i, { nodeSelector: { gpu: 'yes' } }, 'gpu'));
  }
  return out;
}

describe('static checks answered once per pod class', () => {
  it('places a mixed batch exactly as running every check for every pod does, with the same reasons', () => {
    const ctx = { nodes: Array.from({ length: 240 }, (_, i) => node(i)), pods: [] };
    const cached = scheduleBatch(batch(), ctx, { percentageOfNodesToScore: 100 });
    const uncached = scheduleBatch(batch(), ctx, { filters: defaultFilters.map((f) => ({ ...f })), scorers: defaultScorers.map((s) => ({ ...s })), percentageOfNodesToScore: 100 });
    assert.equal(cached.length, uncached.length);
    assert.deepEqual(cached.map((r) => [r.pod.metadata.name, r.node ?? null, r.message]), uncached.map((r) => [r.pod.metadata.name, r.node ?? null, r.message]));
    // The batch is not trivial: some pods placed on arm64 only, and the gpu pods refused with every node's reason.
    const byName = new Map(cached.map((r) => [r.pod.metadata.name, r]));
    assert.ok(cached.filter((r) => r.pod.metadata.labels!.app === 'arm' && r.node).every((r) => Number(r.node!.slice(2)) % 3 === 0));
    assert.match(byName.get('gpu-0')!.message, /^0\/240 nodes are available: /);
    assert.ok(cached.some((r) => r.pod.metadata.labels!.app === 'edge' && r.node && Number(r.node.slice(2)) % 7 === 0), 'edge pods use the tainted nodes they tolerate');
    assert.ok(cached.filter((r) => r.pod.metadata.labels!.app === 'ssd-only' && r.node).every((r) => Number(r.node!.slice(2)) % 5 === 0), 'required affinity holds');
    const named = cached.filter((r) => r.pod.metadata.labels!.app === 'named' && r.node);
    assert.ok(named.length > 0 && named.every((r) => r.node === 'n-050'), 'a named node is the only one');
    assert.ok(cached.filter((r) => r.pod.metadata.labels!.app === 'plain').every((r) => r.node), 'every plain pod placed');
    assert.ok(cached.filter((r) => r.pod.metadata.labels!.app === 'gpu').every((r) => !r.node), 'no gpu pod placed');
  });

  it('places pods that are each their own class (pinned one per node) as without the cache', () => {
    const ctx = { nodes: Array.from({ length: 120 }, (_, i) => node(i)), pods: [] };
    const pinned = () => Array.from({ length: 120 }, (_, i) => pod(i, { nodeSelector: { 'kubernetes.io/hostname': `n-${i}` } }, 'pinned'));
    const cached = scheduleBatch(pinned(), ctx);
    const uncached = scheduleBatch(pinned(), ctx, { filters: defaultFilters.map((f) => ({ ...f })), scorers: defaultScorers.map((x) => ({ ...x })) });
    assert.deepEqual(cached.map((r) => [r.node ?? null, r.message]), uncached.map((r) => [r.node ?? null, r.message]));
    assert.equal(cached[3]!.node, 'n-003');
  });

  it('gives a pod whose spec differs (another image) its own answers', () => {
    const nodes = [node(2), node(1)]; // n-002 has nginx, n-001 has nothing
    const [a, b] = scheduleBatch([pod(0, {}, 'a'), pod(1, { containers: [{ name: 'c', image: 'busybox:1.36', resources: { requests: { cpu: '300m', memory: '64Mi' } } }] }, 'b')], { nodes, pods: [] });
    assert.equal(a!.node, 'n-002', 'the nginx pod goes where nginx is');
    // Image locality no longer pulls the busybox pod to n-002, where the first pod now is.
    assert.equal(b!.node, 'n-001');
  });
});
