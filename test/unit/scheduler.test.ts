import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Container, Pod } from '../../src/api/pod.js';
import { parseCpu, parseMemory } from '../../src/api/quantity.js';
import {
  emptyUsage,
  addPod,
  type NodeUsage,
  nodeNameFilter,
  nodePortsFilter,
  nodeReadyFilter,
  nodeResourcesFitFilter,
  nodeSelectorFilter,
  nodeUnschedulableFilter,
  podRequests,
  REASON,
} from '../../server/scheduler/filters.js';
import { computeUsage, formatMessage, place, scheduleBatch } from '../../server/scheduler/place.js';
import { balancedAllocation, imageLocality, leastAllocated, normalizeImage } from '../../server/scheduler/scorers.js';

// ---------------------------------------------------------------------------------------------
// Builders: plain values, only the fields the scheduler reads.
// ---------------------------------------------------------------------------------------------

interface NodeOpts {
  cpu?: string;
  memory?: string;
  pods?: string;
  ready?: boolean;
  unschedulable?: boolean;
  labels?: Record<string, string>;
  images?: string[];
  noAllocatable?: boolean;
}

function mkNode(name: string, o: NodeOpts = {}): Node {
  const alloc = { cpu: o.cpu ?? '4', memory: o.memory ?? '8Gi', pods: o.pods ?? '110' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/arch': 'arm64', 'kubernetes.io/os': 'linux', ...o.labels } },
    spec: o.unschedulable ? { unschedulable: true } : {},
    status: {
      capacity: alloc,
      allocatable: o.noAllocatable ? undefined : alloc,
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
      images: o.images,
    },
  };
}

interface PodOpts {
  cpu?: string;
  memory?: string;
  limitsCpu?: string;
  limitsMemory?: string;
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  phase?: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  hostPort?: number;
  hostIP?: string;
  protocol?: 'TCP' | 'UDP';
  hostNetwork?: boolean;
  containerPort?: number;
  image?: string;
  containers?: Container[];
}

let seq = 0;
function mkPod(name: string, o: PodOpts = {}): Pod {
  const requests = { ...(o.cpu ? { cpu: o.cpu } : {}), ...(o.memory ? { memory: o.memory } : {}) };
  const limits = { ...(o.limitsCpu ? { cpu: o.limitsCpu } : {}), ...(o.limitsMemory ? { memory: o.limitsMemory } : {}) };
  const port = o.hostPort !== undefined || o.containerPort !== undefined
    ? [{ containerPort: o.containerPort ?? 80, hostPort: o.hostPort, hostIP: o.hostIP, protocol: o.protocol ?? ('TCP' as const) }]
    : undefined;
  const c: Container = {
    name: 'main',
    image: o.image ?? 'nginx:1.27',
    ports: port,
    resources: { requests, limits },
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', uid: `uid-${name}-${++seq}` },
    spec: {
      containers: o.containers ?? [c],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 10,
      nodeName: o.nodeName,
      nodeSelector: o.nodeSelector,
      hostNetwork: o.hostNetwork,
    },
    status: { phase: o.phase ?? (o.nodeName ? 'Running' : 'Pending') },
  };
}

/** Usage of `node` with the given pods already on it. */
function usageOf(node: Node, pods: Pod[] = []): NodeUsage {
  const u = emptyUsage(node);
  for (const p of pods) addPod(u, p);
  return u;
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

describe('filters', () => {
  it('NodeReady accepts Ready nodes and rejects others', () => {
    const pod = mkPod('p');
    const ok = mkNode('a');
    const bad = mkNode('b', { ready: false });
    assert.deepEqual(nodeReadyFilter.check(pod, ok, usageOf(ok)), []);
    assert.deepEqual(nodeReadyFilter.check(pod, bad, usageOf(bad)), [REASON.notReady]);
    const unknown = mkNode('c');
    unknown.status!.conditions = undefined;
    assert.deepEqual(nodeReadyFilter.check(pod, unknown, usageOf(unknown)), ['node(s) were not ready']);
  });

  it('NodeUnschedulable rejects cordoned nodes', () => {
    const pod = mkPod('p');
    const ok = mkNode('a');
    const cordoned = mkNode('b', { unschedulable: true });
    assert.deepEqual(nodeUnschedulableFilter.check(pod, ok, usageOf(ok)), []);
    assert.deepEqual(nodeUnschedulableFilter.check(pod, cordoned, usageOf(cordoned)), ['node(s) were unschedulable']);
  });

  it('NodeSelector needs every pair to match, including arch and os labels (arch gets its own reason)', () => {
    const node = mkNode('a', { labels: { zone: 'barn' } });
    const u = usageOf(node);
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p'), node, u), []);
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p', { nodeSelector: { zone: 'barn', 'kubernetes.io/arch': 'arm64' } }), node, u), []);
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p', { nodeSelector: { zone: 'field' } }), node, u), ["node(s) didn't match Pod's node affinity/selector"]);
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p', { nodeSelector: { 'kubernetes.io/arch': 'amd64' } }), node, u), ["node(s) didn't match arch (needs amd64)"]);
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p', { nodeSelector: { zone: 'field', 'kubernetes.io/arch': 'amd64' } }), node, u), ["node(s) didn't match arch (needs amd64)"], 'a wrong arch is the definitive reason');
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p', { nodeSelector: { missing: '' } }), node, u), [REASON.nodeSelector]);
    // Inherited object properties are not labels.
    assert.deepEqual(nodeSelectorFilter.check(mkPod('p', { nodeSelector: { toString: 'x' } }), node, u), [REASON.nodeSelector]);
  });

  it('NodeName restricts the pod to the node it names', () => {
    const a = mkNode('a');
    const b = mkNode('b');
    const pinned = mkPod('p', { nodeName: 'a', phase: 'Pending' });
    assert.deepEqual(nodeNameFilter.check(pinned, a, usageOf(a)), []);
    assert.deepEqual(nodeNameFilter.check(pinned, b, usageOf(b)), ["node(s) didn't match the requested node name"]);
    assert.deepEqual(nodeNameFilter.check(mkPod('free'), b, usageOf(b)), []);
  });

  it('NodeResourcesFit accepts a pod that fits exactly and rejects cpu/memory shortfalls', () => {
    const node = mkNode('a', { cpu: '2', memory: '4Gi' });
    const existing = [mkPod('x', { nodeName: 'a', cpu: '1500m', memory: '3Gi' })];
    const u = usageOf(node, existing);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p', { cpu: '500m', memory: '1Gi' }), node, u), []);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p', { cpu: '501m', memory: '1Gi' }), node, u), ['Insufficient cpu']);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p', { cpu: '100m', memory: '2Gi' }), node, u), ['Insufficient memory']);
    // Both shortfalls are reported so the node counts in both buckets.
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p', { cpu: '1', memory: '2Gi' }), node, u), ['Insufficient cpu', 'Insufficient memory']);
  });

  it('NodeResourcesFit: a pod without requests fits even an overcommitted node', () => {
    const node = mkNode('a', { cpu: '1', memory: '1Gi' });
    const u = usageOf(node);
    u.requested = { cpu: 5000, memory: 2 ** 40 };
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p'), node, u), []);
  });

  it('NodeResourcesFit counts pods against allocatable.pods', () => {
    const node = mkNode('a', { pods: '2' });
    const two = [mkPod('x', { nodeName: 'a' }), mkPod('y', { nodeName: 'a' })];
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p'), node, usageOf(node, two.slice(0, 1))), []);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p'), node, usageOf(node, two)), ['Too many pods']);
  });

  it('NodeResourcesFit rejects a node that has not reported allocatable', () => {
    const node = mkNode('a', { noAllocatable: true });
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p'), node, usageOf(node)), [REASON.noAllocatable]);
    const garbage = mkNode('b', { cpu: 'lots' });
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p'), garbage, usageOf(garbage)), [REASON.noAllocatable]);
  });

  it('accepts allocatable memory as a plain byte count', () => {
    const node = mkNode('a', { memory: String(8 * 2 ** 30) });
    assert.equal(usageOf(node).allocatable?.memory, 8 * 2 ** 30);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p', { memory: '8Gi' }), node, usageOf(node)), []);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('p', { memory: '9Gi' }), node, usageOf(node)), [REASON.memory]);
  });

  it('limits stand in for missing requests, per resource', () => {
    const p = mkPod('p', { limitsCpu: '750m', limitsMemory: '256Mi', memory: '128Mi' });
    assert.deepEqual(podRequests(p), { cpu: 750, memory: 128 * 2 ** 20 });
    const node = mkNode('a', { cpu: '1', memory: '1Gi' });
    const u = usageOf(node, [mkPod('x', { nodeName: 'a', limitsCpu: '500m' })]);
    assert.equal(u.requested.cpu, 500);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('q', { limitsCpu: '600m' }), node, u), [REASON.cpu]);
    assert.deepEqual(nodeResourcesFitFilter.check(mkPod('q', { limitsCpu: '500m' }), node, u), []);
  });

  it('sums requests across containers', () => {
    const p = mkPod('p', {
      containers: [
        { name: 'a', image: 'x', resources: { requests: { cpu: '250m', memory: '64Mi' } } },
        { name: 'b', image: 'y', resources: { requests: { cpu: 0.5, memory: '64Mi' } } },
        { name: 'c', image: 'z' },
      ],
    });
    assert.deepEqual(podRequests(p), { cpu: 750, memory: 128 * 2 ** 20 });
  });

  it('terminated pods free their resources, pod slot and ports', () => {
    const node = mkNode('a', { cpu: '1', memory: '1Gi', pods: '1' });
    const done = mkPod('done', { nodeName: 'a', cpu: '1', memory: '1Gi', hostPort: 8080, phase: 'Succeeded' });
    const failed = mkPod('failed', { nodeName: 'a', cpu: '1', memory: '1Gi', hostPort: 8080, phase: 'Failed' });
    const usage = computeUsage({ nodes: [node], pods: [done, failed] }).get('a')!;
    assert.deepEqual(usage.requested, { cpu: 0, memory: 0 });
    assert.equal(usage.pods, 0);
    assert.equal(usage.hostPorts.length, 0);
    const d = place(mkPod('p', { cpu: '1', memory: '1Gi', hostPort: 8080 }), { nodes: [node], pods: [done, failed] });
    assert.equal(d.node, 'a');
    // The same pod still Running blocks it.
    const running = mkPod('run', { nodeName: 'a', cpu: '1', memory: '1Gi' });
    assert.equal(place(mkPod('p', { cpu: '1' }), { nodes: [node], pods: [running] }).node, undefined);
  });

  it('NodePorts rejects a host port already taken on the node', () => {
    const node = mkNode('a');
    const u = usageOf(node, [mkPod('x', { nodeName: 'a', hostPort: 8080 })]);
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 8081 }), node, u), []);
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { containerPort: 8080 }), node, u), [], 'containerPort alone takes no host port');
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 8080, protocol: 'UDP' }), node, u), [], 'different protocol');
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 8080 }), node, u), ["node(s) didn't have free ports for the requested pod ports"]);
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 8080, hostIP: '10.0.0.5' }), node, u), [REASON.hostPorts], 'wildcard holder blocks a specific IP');
  });

  it('NodePorts: distinct specific IPs do not conflict; hostNetwork uses containerPort', () => {
    const node = mkNode('a');
    const u = usageOf(node, [mkPod('x', { nodeName: 'a', hostPort: 53, hostIP: '10.0.0.5', protocol: 'UDP' })]);
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 53, hostIP: '10.0.0.6', protocol: 'UDP' }), node, u), []);
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 53, protocol: 'UDP' }), node, u), [REASON.hostPorts]);
    const hn = usageOf(node, [mkPod('x', { nodeName: 'a', hostNetwork: true, containerPort: 9100 })]);
    assert.deepEqual(nodePortsFilter.check(mkPod('p', { hostPort: 9100 }), node, hn), [REASON.hostPorts]);
  });
});

// ---------------------------------------------------------------------------------------------
// Scorers
// ---------------------------------------------------------------------------------------------

describe('scorers', () => {
  it('stay within 0..100', () => {
    const node = mkNode('a', { cpu: '1', memory: '1Gi', images: ['docker.io/library/nginx:1.27'] });
    const pod = mkPod('p', { cpu: '4', memory: '4Gi' });
    for (const s of [leastAllocated, balancedAllocation, imageLocality]) {
      const v = s.score(pod, node, usageOf(node));
      assert.ok(v >= 0 && v <= 100, `${s.name} = ${v}`);
    }
  });

  it('least-allocated prefers the emptier node', () => {
    const a = mkNode('a');
    const b = mkNode('b');
    const busy = mkPod('x', { nodeName: 'a', cpu: '2', memory: '4Gi' });
    const pod = mkPod('p', { cpu: '100m', memory: '64Mi' });
    assert.ok(leastAllocated.score(pod, b, usageOf(b)) > leastAllocated.score(pod, a, usageOf(a, [busy])));
    assert.equal(place(pod, { nodes: [a, b], pods: [busy] }).node, 'b');
  });

  it('pods without requests still spread (non-zero defaults for scoring)', () => {
    const nodes = [mkNode('a'), mkNode('b'), mkNode('c')];
    const out = scheduleBatch([1, 2, 3, 4, 5, 6].map((i) => mkPod(`be-${i}`)), { nodes, pods: [] });
    const per = new Map<string, number>();
    for (const r of out) per.set(r.node!, (per.get(r.node!) ?? 0) + 1);
    assert.deepEqual([...per.values()], [2, 2, 2]);
  });

  it('image locality breaks a tie', () => {
    const a = mkNode('a');
    const b = mkNode('b', { images: ['docker.io/library/nginx:1.27', 'docker.io/library/redis:latest'] });
    // Without the image bonus, equal nodes go to the smaller name.
    assert.equal(place(mkPod('p', { image: 'alpine' }), { nodes: [a, b], pods: [] }).node, 'a');
    assert.equal(place(mkPod('p', { image: 'nginx:1.27' }), { nodes: [a, b], pods: [] }).node, 'b');
    assert.equal(place(mkPod('p', { image: 'redis' }), { nodes: [b, a], pods: [] }).node, 'b');
    // ...but it does not outweigh a clearly emptier node.
    const busy = mkPod('x', { nodeName: 'b', cpu: '3', memory: '6Gi' });
    assert.equal(place(mkPod('p', { image: 'nginx:1.27' }), { nodes: [a, b], pods: [busy] }).node, 'a');
  });

  it('normalizes image references the way podman lists them', () => {
    assert.equal(normalizeImage('nginx'), 'docker.io/library/nginx:latest');
    assert.equal(normalizeImage('nginx:1.27'), 'docker.io/library/nginx:1.27');
    assert.equal(normalizeImage('grafana/grafana'), 'docker.io/grafana/grafana:latest');
    assert.equal(normalizeImage('ghcr.io/a/b:v1'), 'ghcr.io/a/b:v1');
    assert.equal(normalizeImage('localhost:5000/app'), 'localhost:5000/app:latest');
    assert.equal(normalizeImage('localhost/app:dev'), 'localhost/app:dev');
    assert.equal(normalizeImage('alpine@sha256:abc'), 'docker.io/library/alpine@sha256:abc');
  });

  it('ties in score go to the smallest node name regardless of input order', () => {
    const nodes = ['n3', 'n1', 'n2'].map((n) => mkNode(n));
    assert.equal(place(mkPod('p', { cpu: '100m' }), { nodes, pods: [] }).node, 'n1');
  });
});

// ---------------------------------------------------------------------------------------------
// place / messages
// ---------------------------------------------------------------------------------------------

describe('place', () => {
  it('reports a mixed fleet in kube-scheduler form', () => {
    const nodes = [
      mkNode('nr-1', { ready: false }),
      mkNode('nr-2', { ready: false }),
      mkNode('small-1', { memory: '1Gi' }),
      mkNode('small-2', { memory: '512Mi' }),
      mkNode('cordoned', { unschedulable: true }),
    ];
    const d = place(mkPod('p', { cpu: '500m', memory: '2Gi' }), { nodes, pods: [] });
    assert.equal(d.node, undefined);
    assert.equal(d.message, '0/5 nodes are available: 2 Insufficient memory, 2 node(s) were not ready, 1 node(s) were unschedulable.');
    assert.deepEqual(Object.fromEntries(d.reasons), { 'Insufficient memory': 2, 'node(s) were not ready': 2, 'node(s) were unschedulable': 1 });
  });

  it('a node short on both cpu and memory counts in both buckets', () => {
    const nodes = [mkNode('a', { cpu: '1', memory: '1Gi' }), mkNode('b', { cpu: '8', memory: '1Gi' }), mkNode('c', { ready: false })];
    const d = place(mkPod('p', { cpu: '2', memory: '2Gi' }), { nodes, pods: [] });
    assert.equal(d.message, '0/3 nodes are available: 2 Insufficient memory, 1 Insufficient cpu, 1 node(s) were not ready.');
  });

  it('no nodes at all', () => {
    const d = place(mkPod('p'), { nodes: [], pods: [] });
    assert.equal(d.node, undefined);
    assert.equal(d.message, '0/0 nodes are available: no nodes registered.');
    assert.equal(d.reasons.size, 0);
  });

  it('a successful placement has an empty message and lists rejected nodes', () => {
    const d = place(mkPod('p'), { nodes: [mkNode('a', { ready: false }), mkNode('b')], pods: [] });
    assert.equal(d.node, 'b');
    assert.equal(d.message, '');
    assert.deepEqual(Object.fromEntries(d.reasons), { [REASON.notReady]: 1 });
  });

  it('sorts equal counts by reason text', () => {
    assert.equal(formatMessage(2, new Map([['b reason', 1], ['a reason', 1]])), '0/2 nodes are available: 1 a reason, 1 b reason.');
  });

  it('a pod already bound does not compete with itself', () => {
    const node = mkNode('a', { cpu: '1', memory: '1Gi' });
    const pod = mkPod('p', { nodeName: 'a', cpu: '1', memory: '1Gi' });
    assert.equal(place(pod, { nodes: [node], pods: [pod] }).node, 'a');
  });

  it('ignores pods bound to unknown nodes and unbound pods in usage', () => {
    const node = mkNode('a', { cpu: '1' });
    const usage = computeUsage({ nodes: [node], pods: [mkPod('x', { nodeName: 'gone', cpu: '1' }), mkPod('y', { cpu: '1' })] });
    assert.deepEqual([...usage.keys()], ['a']);
    assert.equal(usage.get('a')!.pods, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// scheduleBatch at scale
// ---------------------------------------------------------------------------------------------

describe('scheduleBatch', () => {
  const fleet = (n: number): Node[] =>
    Array.from({ length: n }, (_, i) => mkNode(`edge-${String(i).padStart(3, '0')}`, { cpu: '2', memory: '4Gi', pods: '110' }));

  it('binds 1,000 pods on 200 nodes within allocatable and spreads them', () => {
    const nodes = fleet(200);
    const pods = Array.from({ length: 1000 }, (_, i) => mkPod(`w-${i}`, { cpu: '100m', memory: '64Mi' }));
    const out = scheduleBatch(pods, { nodes, pods });
    assert.equal(out.length, 1000);
    assert.ok(out.every((r) => r.node && r.message === ''), 'every pod bound');

    const bound = out.map((r) => ({ ...r.pod, spec: { ...r.pod.spec, nodeName: r.node } }));
    const usage = computeUsage({ nodes, pods: bound });
    const counts: number[] = [];
    for (const [name, u] of usage) {
      assert.ok(u.requested.cpu <= parseCpu('2'), `${name} cpu ${u.requested.cpu}`);
      assert.ok(u.requested.memory <= parseMemory('4Gi'), `${name} memory ${u.requested.memory}`);
      assert.ok(u.pods <= 110, `${name} pods ${u.pods}`);
      counts.push(u.pods);
    }
    assert.equal(counts.reduce((a, b) => a + b, 0), 1000);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `spread ${Math.min(...counts)}..${Math.max(...counts)}`);
  });

  it('later pods see earlier ones; pods that cannot fit get the reason', () => {
    // 2 nodes × 2 cpu = 20 pods of 200m; memory and pod slots are ample, so cpu is the limit.
    const nodes = fleet(2);
    const pods = Array.from({ length: 25 }, (_, i) => mkPod(`w-${i}`, { cpu: '200m', memory: '64Mi' }));
    const out = scheduleBatch(pods, { nodes, pods: [] });
    const placed = out.filter((r) => r.node);
    const unplaced = out.filter((r) => !r.node);
    assert.equal(placed.length, 20);
    assert.equal(unplaced.length, 5);
    // The first 20 are the ones placed: order is respected.
    assert.deepEqual(placed.map((r) => r.pod.metadata.name), pods.slice(0, 20).map((p) => p.metadata.name));
    for (const r of unplaced) assert.equal(r.message, '0/2 nodes are available: 2 Insufficient cpu.');
  });

  it('runs out of pod slots with "Too many pods"', () => {
    const nodes = [mkNode('a', { pods: '3' }), mkNode('b', { pods: '2' })];
    const out = scheduleBatch(Array.from({ length: 6 }, (_, i) => mkPod(`w-${i}`)), { nodes, pods: [] });
    assert.equal(out.filter((r) => r.node === 'a').length, 3);
    assert.equal(out.filter((r) => r.node === 'b').length, 2);
    assert.equal(out[5]!.message, '0/2 nodes are available: 2 Too many pods.');
  });

  it('respects pods already bound in the context', () => {
    const nodes = fleet(2);
    const existing = mkPod('big', { nodeName: 'edge-000', cpu: '1900m' });
    const out = scheduleBatch([mkPod('a', { cpu: '200m' }), mkPod('b', { cpu: '200m' })], { nodes, pods: [existing] });
    assert.deepEqual(out.map((r) => r.node), ['edge-001', 'edge-001']);
  });
});
