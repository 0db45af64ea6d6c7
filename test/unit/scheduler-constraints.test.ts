/**
 * Scheduler constraints beyond resources: taints/tolerations, node affinity (and arch), devices,
 * inter-pod affinity/anti-affinity, preference scorers and topology spread, plus the fleet-scale
 * batch with anti-affinity. Table-driven over plain values.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node, Taint } from '../../src/api/node.js';
import type { Affinity, NodeSelectorTerm, Pod, PodAffinityTerm, Toleration } from '../../src/api/pod.js';
import { type NodeSelectorRequirement, requirementMatches } from '../../server/scheduler/affinity.js';
import { ClusterIndex, podGroupKey } from '../../server/scheduler/cluster.js';
import {
  addPod,
  defaultFilters,
  eligibilityFilters,
  emptyUsage,
  existingPodsAntiAffinityFilter,
  type Filter,
  nodeAffinityFilter,
  nodeDevicesFilter,
  nodePortsFilter,
  nodeSelectorFilter,
  nodeUnschedulableFilter,
  type NodeUsage,
  podAffinityFilter,
  podAntiAffinityFilter,
  REASON,
  reasonKey,
  runFilters,
  taintTolerationFilter,
} from '../../server/scheduler/filters.js';
import { computeUsage, formatMessage, place, scheduleBatch } from '../../server/scheduler/place.js';
import {
  balancedAllocation,
  defaultScorers,
  imageLocality,
  interPodAffinityPreferred,
  leastAllocated,
  nodeAffinityPreferred,
  taintTolerationPreferred,
  topologySpread,
} from '../../server/scheduler/scorers.js';
import { toleratesTaint } from '../../server/scheduler/taints.js';

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

interface NodeOpts {
  cpu?: string;
  memory?: string;
  pods?: string;
  ready?: boolean;
  unschedulable?: boolean;
  arch?: string;
  zone?: string;
  labels?: Record<string, string>;
  taints?: Taint[];
  devices?: string[];
}

function mkNode(name: string, o: NodeOpts = {}): Node {
  const alloc = { cpu: o.cpu ?? '4', memory: o.memory ?? '8Gi', pods: o.pods ?? '110' };
  const labels: Record<string, string> = { 'kubernetes.io/hostname': name, 'kubernetes.io/arch': o.arch ?? 'arm64', 'kubernetes.io/os': 'linux', ...o.labels };
  if (o.zone) labels['topology.kubernetes.io/zone'] = o.zone;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels },
    spec: { ...(o.unschedulable ? { unschedulable: true } : {}), ...(o.taints ? { taints: o.taints } : {}) },
    status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }], devices: o.devices },
  };
}

interface PodOpts {
  ns?: string;
  labels?: Record<string, string>;
  owner?: string;
  cpu?: string;
  memory?: string;
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  tolerations?: Toleration[];
  affinity?: Affinity;
  devices?: string[];
  hostPort?: number;
}

let seq = 0;
function mkPod(name: string, o: PodOpts = {}): Pod {
  const requests = { ...(o.cpu ? { cpu: o.cpu } : {}), ...(o.memory ? { memory: o.memory } : {}) };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: o.ns ?? 'default',
      uid: `uid-${name}-${++seq}`,
      labels: o.labels,
      ownerReferences: o.owner ? [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: o.owner, uid: `rs-${o.owner}` }] : undefined,
    },
    spec: {
      containers: [
        {
          name: 'main',
          image: 'app:1',
          resources: { requests },
          devices: o.devices?.map((hostPath) => ({ hostPath })),
          ports: o.hostPort ? [{ containerPort: 80, hostPort: o.hostPort, protocol: 'TCP' as const }] : undefined,
        },
      ],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 10,
      nodeName: o.nodeName,
      nodeSelector: o.nodeSelector,
      tolerations: o.tolerations,
      affinity: o.affinity,
    },
    status: { phase: o.nodeName ? 'Running' : 'Pending' },
  };
}

/** Usage map for a fleet with the given bound pods (shared cluster index, as place() builds it). */
function fleetUsage(nodes: Node[], pods: Pod[] = []): Map<string, NodeUsage> {
  return computeUsage({ nodes, pods });
}

/** Reasons `filter` gives for each node, by node name ([] = fits). */
function checkAll(filter: Filter, pod: Pod, nodes: Node[], pods: Pod[] = []): Record<string, readonly string[]> {
  const usage = fleetUsage(nodes, pods);
  return Object.fromEntries(nodes.map((n) => [n.metadata.name, filter.check(pod, n, usage.get(n.metadata.name)!)]));
}

const term = (labelSelector: PodAffinityTerm['labelSelector'], topologyKey: string, namespaces?: string[]): PodAffinityTerm => ({ labelSelector, topologyKey, namespaces });
const antiAffinity = (...terms: PodAffinityTerm[]): Affinity => ({ podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: terms } });
const podAffinity = (...terms: PodAffinityTerm[]): Affinity => ({ podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: terms } });
const nodeAffinity = (...terms: NodeSelectorTerm[]): Affinity => ({ nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } });
const HOST = 'kubernetes.io/hostname';
const ZONE = 'topology.kubernetes.io/zone';

// ---------------------------------------------------------------------------------------------
// Taints and tolerations
// ---------------------------------------------------------------------------------------------

describe('taints and tolerations', () => {
  const gpu: Taint = { key: 'dedicated', value: 'gpu', effect: 'NoSchedule' };
  const cases: { name: string; tol: Toleration; taint: Taint; want: boolean }[] = [
    { name: 'Equal: key, value and effect match', tol: { key: 'dedicated', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' }, taint: gpu, want: true },
    { name: 'Equal: other value', tol: { key: 'dedicated', operator: 'Equal', value: 'cpu', effect: 'NoSchedule' }, taint: gpu, want: false },
    { name: 'Equal: other key', tol: { key: 'other', operator: 'Equal', value: 'gpu' }, taint: gpu, want: false },
    { name: 'Equal: no value matches a taint without value', tol: { key: 'k', operator: 'Equal' }, taint: { key: 'k', effect: 'NoSchedule' }, want: true },
    { name: 'Equal: no value does not match a taint with value', tol: { key: 'dedicated', operator: 'Equal' }, taint: gpu, want: false },
    { name: 'Exists: any value of the key', tol: { key: 'dedicated', operator: 'Exists' }, taint: gpu, want: true },
    { name: 'Exists: other key', tol: { key: 'other', operator: 'Exists' }, taint: gpu, want: false },
    { name: 'empty key + Exists tolerates everything', tol: { operator: 'Exists' }, taint: { key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }, want: true },
    { name: 'empty key + Exists with effect: only that effect', tol: { operator: 'Exists', effect: 'NoSchedule' }, taint: { key: 'x', effect: 'NoExecute' }, want: false },
    { name: 'empty effect matches every effect', tol: { key: 'dedicated', operator: 'Equal', value: 'gpu' }, taint: { ...gpu, effect: 'NoExecute' }, want: true },
    { name: 'effect mismatch', tol: { key: 'dedicated', operator: 'Equal', value: 'gpu', effect: 'NoExecute' }, taint: gpu, want: false },
  ];
  for (const c of cases) it(`toleratesTaint: ${c.name}`, () => assert.equal(toleratesTaint(c.tol, c.taint), c.want));

  const filterCases: { name: string; taints: Taint[]; tolerations?: Toleration[]; want: string[] }[] = [
    { name: 'no taints', taints: [], want: [] },
    { name: 'untolerated NoSchedule', taints: [gpu], want: ['node(s) had untolerated taint {dedicated: gpu}'] },
    { name: 'untolerated NoExecute (kube wording, empty value)', taints: [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }], want: ['node(s) had untolerated taint {node.kubernetes.io/unreachable: }'] },
    { name: 'PreferNoSchedule never filters', taints: [{ key: 'soft', effect: 'PreferNoSchedule' }], want: [] },
    { name: 'tolerated NoSchedule', taints: [gpu], tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'gpu', effect: 'NoSchedule' }], want: [] },
    { name: 'tolerated NoExecute via Exists', taints: [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }], tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' }], want: [] },
    {
      name: 'first untolerated of several is reported',
      taints: [gpu, { key: 'b', value: '1', effect: 'NoExecute' }],
      tolerations: [{ key: 'dedicated', operator: 'Exists' }],
      want: ['node(s) had untolerated taint {b: 1}'],
    },
    { name: 'toleration for NoSchedule does not cover NoExecute', taints: [{ ...gpu, effect: 'NoExecute' }], tolerations: [{ key: 'dedicated', operator: 'Exists', effect: 'NoSchedule' }], want: ['node(s) had untolerated taint {dedicated: gpu}'] },
  ];
  for (const c of filterCases) {
    it(`TaintToleration filter: ${c.name}`, () => {
      const node = mkNode('a', { taints: c.taints });
      assert.deepEqual(taintTolerationFilter.check(mkPod('p', { tolerations: c.tolerations }), node, emptyUsage(node)), c.want);
    });
  }

  it('summarizes taints as kube-scheduler does', () => {
    const nodes = [mkNode('a', { taints: [{ key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' }] }), mkNode('b', { taints: [gpu] }), mkNode('c', { taints: [gpu] })];
    assert.equal(place(mkPod('p'), { nodes, pods: [] }).message, '0/3 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.');
  });

  it('PreferNoSchedule costs score but does not filter', () => {
    const soft: Taint = { key: 'edge/battery', effect: 'PreferNoSchedule' };
    // The tainted node is emptier, yet the untainted one wins.
    const a = mkNode('a', { taints: [soft], cpu: '16', memory: '32Gi' });
    const b = mkNode('b');
    assert.equal(place(mkPod('p', { cpu: '100m' }), { nodes: [a, b], pods: [] }).node, 'b');
    assert.equal(taintTolerationPreferred.score(mkPod('p'), a, emptyUsage(a)), 50);
    assert.equal(taintTolerationPreferred.score(mkPod('p'), b, emptyUsage(b)), 100);
    // Tolerated: no penalty, the emptier node wins.
    const tolerant = mkPod('p', { cpu: '100m', tolerations: [{ key: 'edge/battery', operator: 'Exists', effect: 'PreferNoSchedule' }] });
    assert.equal(taintTolerationPreferred.score(tolerant, a, emptyUsage(a)), 100);
    assert.equal(place(tolerant, { nodes: [a, b], pods: [] }).node, 'a');
    // Still schedulable when it is the only node.
    assert.equal(place(mkPod('p'), { nodes: [a], pods: [] }).node, 'a');
  });

  it('a cordoned node takes a pod that tolerates node.kubernetes.io/unschedulable', () => {
    const node = mkNode('a', { unschedulable: true });
    assert.deepEqual(nodeUnschedulableFilter.check(mkPod('p'), node, emptyUsage(node)), [REASON.unschedulable]);
    const tol = mkPod('p', { tolerations: [{ key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' }] });
    assert.deepEqual(nodeUnschedulableFilter.check(tol, node, emptyUsage(node)), []);
  });
});

// ---------------------------------------------------------------------------------------------
// Node affinity and arch
// ---------------------------------------------------------------------------------------------

describe('node affinity', () => {
  const labels = { zone: 'barn', cores: '8', empty: '' };
  const req = (key: string, operator: NodeSelectorRequirement['operator'], values?: string[]): NodeSelectorRequirement => ({ key, operator, values });
  const cases: { r: NodeSelectorRequirement; want: boolean }[] = [
    { r: req('zone', 'In', ['barn', 'field']), want: true },
    { r: req('zone', 'In', ['field']), want: false },
    { r: req('missing', 'In', ['']), want: false },
    { r: req('zone', 'NotIn', ['field']), want: true },
    { r: req('zone', 'NotIn', ['barn']), want: false },
    { r: req('missing', 'NotIn', ['x']), want: true },
    { r: req('empty', 'Exists'), want: true },
    { r: req('missing', 'Exists'), want: false },
    { r: req('missing', 'DoesNotExist'), want: true },
    { r: req('zone', 'DoesNotExist'), want: false },
    { r: req('cores', 'Gt', ['4']), want: true },
    { r: req('cores', 'Gt', ['8']), want: false },
    { r: req('cores', 'Lt', ['16']), want: true },
    { r: req('cores', 'Lt', ['8']), want: false },
    { r: req('cores', 'Gt', ['-1']), want: true },
    { r: req('zone', 'Gt', ['1']), want: false }, // label not an integer
    { r: req('cores', 'Gt', ['four']), want: false }, // value not an integer
    { r: req('cores', 'Gt', ['1', '2']), want: false }, // exactly one value
    { r: req('missing', 'Lt', ['100']), want: false },
  ];
  for (const c of cases) {
    it(`requirement ${c.r.key} ${c.r.operator} ${(c.r.values ?? []).join(',')} → ${c.want}`, () => assert.equal(requirementMatches(c.r, labels), c.want));
  }

  const node = mkNode('edge-7', { labels: { zone: 'barn', cores: '8' } });
  const NA = "node(s) didn't match Pod's node affinity/selector";
  const filterCases: { name: string; terms: NodeSelectorTerm[]; want: string[] }[] = [
    { name: 'one matching term', terms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['barn'] }] }], want: [] },
    { name: 'expressions are ANDed', terms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['barn'] }, { key: 'cores', operator: 'Gt', values: ['8'] }] }], want: [NA] },
    {
      name: 'terms are ORed',
      terms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['field'] }] }, { matchExpressions: [{ key: 'cores', operator: 'Lt', values: ['9'] }] }],
      want: [],
    },
    { name: 'matchFields metadata.name In', terms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['edge-7'] }] }], want: [] },
    { name: 'matchFields metadata.name In (other)', terms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['edge-8'] }] }], want: [NA] },
    { name: 'matchFields metadata.name NotIn', terms: [{ matchFields: [{ key: 'metadata.name', operator: 'NotIn', values: ['edge-7'] }] }], want: [NA] },
    {
      name: 'matchFields and matchExpressions ANDed',
      terms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['edge-7'] }], matchExpressions: [{ key: 'zone', operator: 'DoesNotExist' }] }],
      want: [NA],
    },
    { name: 'unknown field never matches', terms: [{ matchFields: [{ key: 'spec.foo', operator: 'Exists' }] }], want: [NA] },
    { name: 'an empty term matches nothing', terms: [{}], want: [NA] },
    { name: 'arch In fails → arch reason', terms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }], want: ["node(s) didn't match arch (needs amd64)"] },
    {
      name: 'arch failing in every term → arch reason listing choices',
      terms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }, { matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'NotIn', values: ['arm64'] }, { key: 'zone', operator: 'Exists' }] }],
      want: ["node(s) didn't match arch (needs amd64 or not arm64)"],
    },
    {
      name: 'a term that fails on something else → generic reason',
      terms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['amd64'] }] }, { matchExpressions: [{ key: 'zone', operator: 'In', values: ['field'] }] }],
      want: [NA],
    },
    { name: 'arch that matches + other failure → generic', terms: [{ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['arm64'] }, { key: 'zone', operator: 'In', values: ['field'] }] }], want: [NA] },
  ];
  for (const c of filterCases) {
    it(`NodeAffinity filter: ${c.name}`, () => {
      assert.deepEqual(nodeAffinityFilter.check(mkPod('p', { affinity: nodeAffinity(...c.terms) }), node, emptyUsage(node)), c.want);
    });
  }

  it('no required affinity accepts every node; preferred terms never filter', () => {
    assert.deepEqual(nodeAffinityFilter.check(mkPod('p'), node, emptyUsage(node)), []);
    const pref = mkPod('p', { affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 5, preference: { matchExpressions: [{ key: 'zone', operator: 'In', values: ['field'] }] } }] } } });
    assert.deepEqual(nodeAffinityFilter.check(pref, node, emptyUsage(node)), []);
  });

  it('nodeSelector and affinity must both hold (both in the default chain)', () => {
    const pod = mkPod('p', { nodeSelector: { zone: 'barn' }, affinity: nodeAffinity({ matchExpressions: [{ key: 'cores', operator: 'Gt', values: ['16'] }] }) });
    assert.deepEqual(nodeSelectorFilter.check(pod, node, emptyUsage(node)), []);
    assert.deepEqual(runFilters(pod, node, emptyUsage(node)), ["node(s) didn't match Pod's node affinity/selector"]);
  });

  it('reasonKey strips the detail', () => {
    assert.equal(reasonKey("node(s) didn't match arch (needs arm64)"), REASON.arch);
    assert.equal(reasonKey('Insufficient cpu'), 'Insufficient cpu');
    assert.equal(reasonKey('node(s) had untolerated taint {a: b}'), 'node(s) had untolerated taint {a: b}');
    assert.equal(formatMessage(3, new Map([["node(s) didn't match arch (needs arm64)", 1], ["node(s) didn't match arch (needs amd64)", 2]])), "0/3 nodes are available: 3 node(s) didn't match arch.");
  });

  it("the issue's message from a 40-node fleet: 25 wrong arch, 15 short on memory", () => {
    const nodes = [
      ...Array.from({ length: 25 }, (_, i) => mkNode(`x86-${String(i).padStart(2, '0')}`, { arch: 'amd64', memory: '16Gi' })),
      ...Array.from({ length: 15 }, (_, i) => mkNode(`pi-${String(i).padStart(2, '0')}`, { arch: 'arm64', memory: '1Gi' })),
    ];
    const pod = mkPod('vision', { memory: '2Gi', nodeSelector: { 'kubernetes.io/arch': 'arm64' } });
    const d = place(pod, { nodes, pods: [] });
    assert.equal(d.node, undefined);
    assert.equal(d.message, "0/40 nodes are available: 25 node(s) didn't match arch, 15 Insufficient memory.");
    assert.deepEqual(Object.fromEntries(d.reasons), { "node(s) didn't match arch": 25, 'Insufficient memory': 15 });
    // The per-node explanation says what was needed.
    assert.deepEqual(d.nodeReasons.get('x86-00'), ["node(s) didn't match arch (needs arm64)"]);
    assert.deepEqual(d.nodeReasons.get('pi-00'), ['Insufficient memory']);
    // Same via required node affinity.
    const viaAffinity = mkPod('vision', { memory: '2Gi', affinity: nodeAffinity({ matchExpressions: [{ key: 'kubernetes.io/arch', operator: 'In', values: ['arm64'] }] }) });
    assert.equal(place(viaAffinity, { nodes, pods: [] }).message, "0/40 nodes are available: 25 node(s) didn't match arch, 15 Insufficient memory.");
  });

  it('preferred node affinity: weights of matching terms, normalized', () => {
    const a = mkNode('a', { labels: { disk: 'ssd' } });
    const b = mkNode('b', { labels: { disk: 'ssd', gpu: 'yes' } });
    const c = mkNode('c');
    const pod = mkPod('p', {
      affinity: {
        nodeAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 20, preference: { matchExpressions: [{ key: 'disk', operator: 'In', values: ['ssd'] }] } },
            { weight: 80, preference: { matchExpressions: [{ key: 'gpu', operator: 'Exists' }] } },
          ],
        },
      },
    });
    const scores = [a, b, c].map((n) => nodeAffinityPreferred.score(pod, n, emptyUsage(n)));
    assert.deepEqual(scores, [20, 100, 0]);
    assert.equal(place(pod, { nodes: [c, a, b], pods: [] }).node, 'b');
    assert.equal(nodeAffinityPreferred.score(mkPod('q'), a, emptyUsage(a)), 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------------------------

describe('devices', () => {
  const cases: { name: string; node?: string[]; want: string[]; got: string[] }[] = [
    { name: 'no devices requested', want: [], node: undefined, got: [] },
    { name: 'present', want: ['/dev/ttyUSB0'], node: ['/dev/ttyUSB0', '/dev/video0'], got: [] },
    { name: 'one missing', want: ['/dev/ttyUSB0', '/dev/video0'], node: ['/dev/ttyUSB0'], got: ["node(s) didn't have the requested devices (missing /dev/video0)"] },
    { name: 'node reports none', want: ['/dev/gpiomem'], node: undefined, got: ["node(s) didn't have the requested devices (missing /dev/gpiomem)"] },
  ];
  for (const c of cases) {
    it(`NodeDevices: ${c.name}`, () => {
      const node = mkNode('a', { devices: c.node });
      assert.deepEqual(nodeDevicesFilter.check(mkPod('p', { devices: c.want }), node, emptyUsage(node)), c.got);
    });
  }

  it('counts under one reason in the summary', () => {
    const nodes = [mkNode('a'), mkNode('b', { devices: ['/dev/video0'] }), mkNode('c', { devices: ['/dev/ttyUSB0'] })];
    const d = place(mkPod('p', { devices: ['/dev/ttyUSB0'] }), { nodes, pods: [] });
    assert.equal(d.node, 'c');
    assert.deepEqual(Object.fromEntries(d.reasons), { [REASON.devices]: 2 });
    assert.equal(place(mkPod('p', { devices: ['/dev/i2c-1'] }), { nodes, pods: [] }).message, "0/3 nodes are available: 3 node(s) didn't have the requested devices.");
  });
});

// ---------------------------------------------------------------------------------------------
// Inter-pod affinity
// ---------------------------------------------------------------------------------------------

describe('pod anti-affinity', () => {
  // n1, n2 in zone a; n3 in zone b; n4 has no zone label.
  const nodes = [mkNode('n1', { zone: 'a' }), mkNode('n2', { zone: 'a' }), mkNode('n3', { zone: 'b' }), mkNode('n4')];
  const web = mkPod('web-0', { nodeName: 'n1', labels: { app: 'web' } });
  const webOther = mkPod('web-x', { nodeName: 'n3', ns: 'other', labels: { app: 'web' } });
  const AA = "node(s) didn't match pod anti-affinity rules";
  const cases: { name: string; affinity: Affinity; want: Record<string, string[]> }[] = [
    { name: 'hostname: only the node holding a match', affinity: antiAffinity(term({ matchLabels: { app: 'web' } }, HOST)), want: { n1: [AA], n2: [], n3: [], n4: [] } },
    { name: 'zone: the whole zone; a node without the key never conflicts', affinity: antiAffinity(term({ matchLabels: { app: 'web' } }, ZONE)), want: { n1: [AA], n2: [AA], n3: [], n4: [] } },
    { name: 'explicit namespaces', affinity: antiAffinity(term({ matchLabels: { app: 'web' } }, ZONE, ['other'])), want: { n1: [], n2: [], n3: [AA], n4: [] } },
    { name: 'selector matching nothing', affinity: antiAffinity(term({ matchLabels: { app: 'db' } }, ZONE)), want: { n1: [], n2: [], n3: [], n4: [] } },
    { name: 'no labelSelector selects nothing', affinity: antiAffinity(term(undefined, ZONE)), want: { n1: [], n2: [], n3: [], n4: [] } },
    { name: 'empty selector selects every pod of the namespace', affinity: antiAffinity(term({}, HOST)), want: { n1: [AA], n2: [], n3: [], n4: [] } },
    {
      name: 'matchExpressions',
      affinity: antiAffinity(term({ matchExpressions: [{ key: 'app', operator: 'In', values: ['web', 'api'] }] }, HOST, ['default', 'other'])),
      want: { n1: [AA], n2: [], n3: [AA], n4: [] },
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(checkAll(podAntiAffinityFilter, mkPod('p', { affinity: c.affinity }), nodes, [web, webOther]), c.want));
  }

  it("symmetric: an existing pod's anti-affinity keeps matching pods out of its domain", () => {
    const loner = mkPod('loner', { nodeName: 'n1', labels: { app: 'loner' }, affinity: antiAffinity(term({ matchLabels: { app: 'web' } }, ZONE)) });
    const EX = "node(s) didn't satisfy existing pods anti-affinity rules";
    assert.deepEqual(checkAll(existingPodsAntiAffinityFilter, mkPod('w', { labels: { app: 'web' } }), nodes, [loner]), { n1: [EX], n2: [EX], n3: [], n4: [] });
    assert.deepEqual(checkAll(existingPodsAntiAffinityFilter, mkPod('w', { labels: { app: 'api' } }), nodes, [loner]), { n1: [], n2: [], n3: [], n4: [] });
    // The term applies in the existing pod's namespace only.
    assert.deepEqual(checkAll(existingPodsAntiAffinityFilter, mkPod('w', { ns: 'other', labels: { app: 'web' } }), nodes, [loner]), { n1: [], n2: [], n3: [], n4: [] });
    const d = place(mkPod('w', { labels: { app: 'web' } }), { nodes: nodes.slice(0, 2), pods: [loner] });
    assert.equal(d.message, `0/2 nodes are available: 2 ${EX}.`);
  });

  it('terminated pods do not count', () => {
    const done = { ...web, status: { phase: 'Succeeded' as const } };
    assert.deepEqual(checkAll(podAntiAffinityFilter, mkPod('p', { affinity: antiAffinity(term({ matchLabels: { app: 'web' } }, HOST)) }), nodes, [done]), { n1: [], n2: [], n3: [], n4: [] });
  });
});

describe('pod affinity', () => {
  const nodes = [mkNode('n1', { zone: 'a' }), mkNode('n2', { zone: 'a' }), mkNode('n3', { zone: 'b' }), mkNode('n4')];
  const db = mkPod('db-0', { nodeName: 'n1', labels: { app: 'db' } });
  const PA = "node(s) didn't match pod affinity rules";

  const cases: { name: string; pod: Pod; pods: Pod[]; want: Record<string, string[]> }[] = [
    { name: 'zone of a matching pod; a node without the key fails', pod: mkPod('p', { affinity: podAffinity(term({ matchLabels: { app: 'db' } }, ZONE)) }), pods: [db], want: { n1: [], n2: [], n3: [PA], n4: [PA] } },
    { name: 'hostname', pod: mkPod('p', { affinity: podAffinity(term({ matchLabels: { app: 'db' } }, HOST)) }), pods: [db], want: { n1: [], n2: [PA], n3: [PA], n4: [PA] } },
    {
      name: 'all terms must be met by the same pods',
      pod: mkPod('p', { affinity: podAffinity(term({ matchLabels: { app: 'db' } }, ZONE), term({ matchLabels: { tier: 'cache' } }, ZONE)) }),
      pods: [db, mkPod('cache', { nodeName: 'n2', labels: { tier: 'cache' } })],
      want: { n1: [PA], n2: [PA], n3: [PA], n4: [PA] },
    },
    { name: 'other namespace does not count by default', pod: mkPod('p', { ns: 'other', affinity: podAffinity(term({ matchLabels: { app: 'db' } }, ZONE)) }), pods: [db], want: { n1: [PA], n2: [PA], n3: [PA], n4: [PA] } },
    {
      name: 'first pod of a group: nothing matches anywhere and it matches itself',
      pod: mkPod('db-0', { labels: { app: 'db' }, affinity: podAffinity(term({ matchLabels: { app: 'db' } }, ZONE)) }),
      pods: [],
      want: { n1: [], n2: [], n3: [], n4: [PA] },
    },
    {
      name: 'no special case when the pod does not match its own selector',
      pod: mkPod('p', { labels: { app: 'web' }, affinity: podAffinity(term({ matchLabels: { app: 'db' } }, ZONE)) }),
      pods: [],
      want: { n1: [PA], n2: [PA], n3: [PA], n4: [PA] },
    },
    {
      name: 'no special case once a matching pod exists elsewhere',
      pod: mkPod('db-1', { labels: { app: 'db' }, affinity: podAffinity(term({ matchLabels: { app: 'db' } }, ZONE)) }),
      pods: [db],
      want: { n1: [], n2: [], n3: [PA], n4: [PA] },
    },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(checkAll(podAffinityFilter, c.pod, nodes, c.pods), c.want));

  it('message in kube wording', () => {
    const d = place(mkPod('p', { affinity: podAffinity(term({ matchLabels: { app: 'db' } }, HOST)) }), { nodes, pods: [db] });
    assert.equal(d.node, 'n1');
    const none = place(mkPod('p', { affinity: podAffinity(term({ matchLabels: { app: 'nope' } }, HOST)) }), { nodes, pods: [db] });
    assert.equal(none.message, `0/4 nodes are available: 4 ${PA}.`);
  });

  it('preferred affinity and anti-affinity steer placement', () => {
    const ns = [mkNode('n1', { zone: 'a' }), mkNode('n2', { zone: 'b' }), mkNode('n3', { zone: 'c' })];
    const cache = mkPod('cache', { nodeName: 'n2', labels: { app: 'cache' } });
    const noisy = mkPod('noisy', { nodeName: 'n1', labels: { app: 'noisy' } });
    const near = mkPod('p', { affinity: { podAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, podAffinityTerm: term({ matchLabels: { app: 'cache' } }, ZONE) }] } } });
    // n2 is the busier node, but the preference wins.
    assert.equal(place(near, { nodes: ns, pods: [cache, noisy] }).node, 'n2');
    const usage = fleetUsage(ns, [cache, noisy]);
    assert.deepEqual(ns.map((n) => interPodAffinityPreferred.score(near, n, usage.get(n.metadata.name)!)), [0, 100, 0]);
    const away = mkPod('q', { affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 50, podAffinityTerm: term({ matchLabels: { app: 'noisy' } }, ZONE) }] } } });
    assert.deepEqual(ns.map((n) => interPodAffinityPreferred.score(away, n, usage.get(n.metadata.name)!)), [0, 100, 100]);
    assert.notEqual(place(away, { nodes: ns, pods: [cache, noisy] }).node, 'n1');
    // Symmetric: an existing pod preferring company attracts pods it selects.
    const friendly = mkPod('friendly', { nodeName: 'n3', affinity: { podAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 10, podAffinityTerm: term({ matchLabels: { app: 'sidecar' } }, HOST) }] } } });
    assert.equal(place(mkPod('s', { labels: { app: 'sidecar' } }), { nodes: ns, pods: [friendly] }).node, 'n3');
  });
});

// ---------------------------------------------------------------------------------------------
// Spreading
// ---------------------------------------------------------------------------------------------

describe('topology spread', () => {
  it('groups by first ownerReference uid, else namespace + labels, else none', () => {
    assert.equal(podGroupKey(mkPod('a', { owner: 'web', labels: { app: 'x' } })), 'owner:rs-web');
    assert.equal(podGroupKey(mkPod('a', { labels: { b: '2', a: '1' } })), podGroupKey(mkPod('b', { labels: { a: '1', b: '2' } })));
    assert.notEqual(podGroupKey(mkPod('a', { labels: { a: '1' } })), podGroupKey(mkPod('b', { ns: 'x', labels: { a: '1' } })));
    assert.equal(podGroupKey(mkPod('a')), undefined);
  });

  it('spreads a 10-replica group across 5 zones of unequal size 2/2/2/2/2', () => {
    // Zone z0 has 1 node, z4 has 5: least-allocated alone would favour the big zones.
    const nodes: Node[] = [];
    for (let z = 0; z < 5; z++) for (let i = 0; i <= z; i++) nodes.push(mkNode(`z${z}-n${i}`, { zone: `z${z}` }));
    const pods = Array.from({ length: 10 }, (_, i) => mkPod(`web-${i}`, { owner: 'web', labels: { app: 'web' }, cpu: '100m', memory: '64Mi' }));
    const perZone = (scorers?: typeof defaultScorers): number[] => {
      const out = scheduleBatch(pods, { nodes, pods: [] }, scorers ? { scorers } : {});
      assert.ok(out.every((r) => r.node));
      const counts = [0, 0, 0, 0, 0];
      for (const r of out) counts[Number(r.node!.slice(1, 2))]! += 1;
      return counts;
    };
    assert.deepEqual(perZone(), [2, 2, 2, 2, 2]);
    // Without the spread scorer the zones are not balanced: the scorer is what does it.
    assert.notDeepEqual(perZone([leastAllocated, balancedAllocation, imageLocality]), [2, 2, 2, 2, 2]);
  });

  it('without zones spreads per node, against a node that is emptier', () => {
    const nodes = [mkNode('a', { cpu: '16', memory: '32Gi' }), mkNode('b'), mkNode('c')];
    const existing = mkPod('web-0', { owner: 'web', nodeName: 'a' });
    assert.equal(place(mkPod('web-1', { owner: 'web' }), { nodes, pods: [existing] }).node, 'b');
    // A pod of another group still prefers the roomy node.
    assert.equal(place(mkPod('api-1', { owner: 'api' }), { nodes, pods: [existing] }).node, 'a');
    const usage = fleetUsage(nodes, [existing]);
    assert.equal(topologySpread.score(mkPod('web-1', { owner: 'web' }), nodes[0]!, usage.get('a')!), 0);
    assert.equal(topologySpread.score(mkPod('web-1', { owner: 'web' }), nodes[1]!, usage.get('b')!), 100);
  });
});

// ---------------------------------------------------------------------------------------------
// Filter sets, usage index
// ---------------------------------------------------------------------------------------------

describe('filter sets', () => {
  it('eligibilityFilters skip readiness, cordoning and resources but keep placement rules', () => {
    assert.deepEqual(eligibilityFilters.map((f) => f.name), ['TaintToleration', 'NodeSelector', 'NodeAffinity', 'NodePorts', 'NodeDevices']);
    const down = mkNode('a', { ready: false, unschedulable: true, memory: '64Mi' });
    const pod = mkPod('ds', { memory: '1Gi' });
    assert.deepEqual(runFilters(pod, down, emptyUsage(down), eligibilityFilters), []);
    assert.deepEqual(runFilters(pod, down, emptyUsage(down)), [REASON.unschedulable]);
    const tainted = mkNode('b', { taints: [{ key: 'k', effect: 'NoSchedule' }] });
    assert.deepEqual(runFilters(pod, tainted, emptyUsage(tainted), eligibilityFilters), ['node(s) had untolerated taint {k: }']);
    const dev = mkNode('c');
    assert.deepEqual(runFilters(mkPod('ds', { devices: ['/dev/ttyACM0'] }), dev, emptyUsage(dev), eligibilityFilters), ["node(s) didn't have the requested devices (missing /dev/ttyACM0)"]);
  });

  it('default chain holds every checker', () => {
    assert.deepEqual(defaultFilters.map((f) => f.name), [
      'NodeName', 'NodeUnschedulable', 'NodeReady', 'TaintToleration', 'NodeSelector', 'NodeAffinity', 'NodePorts', 'NodeDevices', 'NodeResourcesFit', 'PodAffinity', 'PodAntiAffinity', 'ExistingPodsAntiAffinity',
    ]);
    assert.ok(defaultFilters.includes(nodePortsFilter));
  });

  it('computeUsage shares one cluster index that addPod keeps current', () => {
    const nodes = [mkNode('a', { zone: 'z1' }), mkNode('b', { zone: 'z2' })];
    const usage = computeUsage({ nodes, pods: [] });
    const cluster = usage.get('a')!.cluster!;
    assert.ok(cluster instanceof ClusterIndex);
    assert.equal(usage.get('b')!.cluster, cluster);
    const pod = mkPod('p', { affinity: antiAffinity(term({ matchLabels: { app: 'web' } }, ZONE)) });
    assert.deepEqual(podAntiAffinityFilter.check(pod, nodes[1]!, usage.get('b')!), []);
    // Committing a matching pod to b invalidates the cached state for `pod`.
    addPod(usage.get('b')!, mkPod('w', { labels: { app: 'web' } }));
    assert.deepEqual(podAntiAffinityFilter.check(pod, nodes[1]!, usage.get('b')!), [REASON.podAntiAffinity]);
    assert.deepEqual(podAntiAffinityFilter.check(pod, nodes[0]!, usage.get('a')!), []);
    assert.equal(cluster.groups.size, 1);
  });

  it('a hand-built usage without an index still works (no pods known)', () => {
    const node = mkNode('a');
    const u: NodeUsage = { allocatable: { cpu: 1000, memory: 2 ** 30, pods: 10 }, requested: { cpu: 0, memory: 0 }, nonZeroRequested: { cpu: 0, memory: 0 }, pods: 0, hostPorts: [] };
    assert.deepEqual(runFilters(mkPod('p', { affinity: antiAffinity(term({}, HOST)) }), node, u), []);
    assert.equal(topologySpread.score(mkPod('p', { owner: 'x' }), node, u), 100);
  });
});

// ---------------------------------------------------------------------------------------------
// Fleet scale: 1,000 pods in 50 anti-affine groups on 200 nodes
// ---------------------------------------------------------------------------------------------

describe('scheduleBatch with anti-affinity at scale', () => {
  it('binds every pod, never two of a group on one node, within allocatable, in < 2 s', () => {
    const nodes = Array.from({ length: 200 }, (_, i) => mkNode(`edge-${String(i).padStart(3, '0')}`, { cpu: '2', memory: '4Gi', pods: '20', zone: `zone-${i % 8}` }));
    const pods: Pod[] = [];
    for (let g = 0; g < 50; g++) {
      for (let r = 0; r < 20; r++) {
        pods.push(
          mkPod(`g${g}-r${r}`, {
            owner: `g${g}`,
            labels: { app: `g${g}` },
            cpu: '100m',
            memory: '128Mi',
            affinity: antiAffinity(term({ matchLabels: { app: `g${g}` } }, HOST)),
          }),
        );
      }
    }
    const out = scheduleBatch(pods, { nodes, pods: [] });

    assert.equal(out.length, 1000);
    assert.ok(out.every((r) => r.node && r.message === ''), `unbound: ${out.filter((r) => !r.node).map((r) => `${r.pod.metadata.name}: ${r.message}`).slice(0, 3).join('; ')}`);
    const seen = new Set<string>();
    for (const r of out) {
      const key = `${r.pod.metadata.labels!.app}@${r.node}`;
      assert.ok(!seen.has(key), `two pods of ${key}`);
      seen.add(key);
    }
    const bound = out.map((r) => ({ ...r.pod, spec: { ...r.pod.spec, nodeName: r.node } }));
    for (const [name, u] of computeUsage({ nodes, pods: bound })) {
      assert.ok(u.requested.cpu <= 2000, `${name} cpu ${u.requested.cpu}`);
      assert.ok(u.requested.memory <= 4 * 2 ** 30, `${name} memory ${u.requested.memory}`);
      assert.ok(u.pods <= 20, `${name} pods ${u.pods}`);
    }
  });

  it('a group larger than the fleet leaves the surplus pending with the anti-affinity reason', () => {
    const nodes = Array.from({ length: 3 }, (_, i) => mkNode(`n${i}`));
    const pods = Array.from({ length: 4 }, (_, i) => mkPod(`r${i}`, { labels: { app: 'x' }, affinity: antiAffinity(term({ matchLabels: { app: 'x' } }, HOST)) }));
    const out = scheduleBatch(pods, { nodes, pods: [] });
    assert.deepEqual(out.map((r) => r.node).sort(), ['n0', 'n1', 'n2', undefined]);
    assert.equal(out[3]!.message, "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.");
  });

  it('host ports still conflict inside a batch', () => {
    const nodes = [mkNode('a'), mkNode('b')];
    const out = scheduleBatch([1, 2, 3].map((i) => mkPod(`p${i}`, { hostPort: 9100 })), { nodes, pods: [] });
    assert.deepEqual(out.map((r) => r.node), ['a', 'b', undefined]);
  });
});
