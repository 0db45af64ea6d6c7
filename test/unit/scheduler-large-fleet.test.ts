/**
 * The scheduler in a fleet of 1,000 nodes looks for enough feasible nodes rather than all of them
 * (kube-scheduler's adaptive percentage), from a start that rotates: what a user would notice is that
 * pods still spread over every node, a pod that fits one node only still lands there, and a pod that
 * fits none is told about every node.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { feasibleNodesToFind, MIN_FEASIBLE_NODES, place, scheduleBatch } from '../../server/scheduler/place.js';

const node = (i: number, labels: Record<string, string> = {}): Node => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: `n-${String(i).padStart(4, '0')}`, labels: { 'kubernetes.io/hostname': `n-${i}`, ...labels } },
  spec: {},
  status: { allocatable: { cpu: '4', memory: '8Gi', pods: '110' }, capacity: { cpu: '4', memory: '8Gi', pods: '110' }, conditions: [{ type: 'Ready', status: 'True' }] },
});
const pod = (i: number, spec: Partial<Pod['spec']> = {}): Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `p-${i}`, namespace: 'default', uid: `u-${i}`, labels: { app: 'web' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid: 'rs-1', controller: true }] },
  spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 10, containers: [{ name: 'c', image: 'localhost/x:1', resources: { requests: { cpu: '10m', memory: '8Mi' } } }], ...spec },
});
const fleet = (n: number) => Array.from({ length: n }, (_, i) => node(i));

describe('scheduling in a large fleet', () => {
  it('looks at every node of a fleet up to 100, and at a shrinking share above', () => {
    assert.equal(feasibleNodesToFind(MIN_FEASIBLE_NODES), MIN_FEASIBLE_NODES);
    assert.equal(feasibleNodesToFind(1_000), 420);
    assert.equal(feasibleNodesToFind(5_000), 500);
    assert.equal(feasibleNodesToFind(200), 100);
  });

  it('spreads 1,000 replicas over all 1,000 nodes, one each', () => {
    const out = scheduleBatch(Array.from({ length: 1_000 }, (_, i) => pod(i)), { nodes: fleet(1_000), pods: [] });
    assert.ok(out.every((r) => r.node), 'every replica placed');
    assert.equal(new Set(out.map((r) => r.node)).size, 1_000);
  });

  it('finds the one node a pod fits, wherever it is in the list', () => {
    const nodes = fleet(1_000);
    nodes[999] = node(999, { 'drover.io/gpu': 'yes' });
    const only = { nodeSelector: { 'drover.io/gpu': 'yes' } };
    assert.equal(place(pod(1, only), { nodes, pods: [] }).node, 'n-0999');
    // In a batch, after earlier pods moved the start along.
    const out = scheduleBatch([...Array.from({ length: 300 }, (_, i) => pod(i)), pod(300, only)], { nodes, pods: [] });
    assert.equal(out.at(-1)!.node, 'n-0999');
  });

  it('tells a pod that fits nowhere about every node', () => {
    const p = place(pod(1, { nodeSelector: { 'drover.io/gpu': 'yes' } }), { nodes: fleet(1_000), pods: [] });
    assert.equal(p.node, undefined);
    assert.match(p.message, /^0\/1000 nodes are available: 1000 /);
  });
});
