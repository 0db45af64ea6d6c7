import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import type { DaemonSet, Deployment } from '../../src/api/workloads.js';
import { fleetStatus, DEFAULT_STALE_AFTER_MS, type FleetInput } from '../../server/fleet/summary.js';

const NOW = Date.parse('2026-11-27T12:00:00Z');
const ago = (s: number) => new Date(NOW - s * 1000).toISOString();

function node(name: string, o: { ready?: 'True' | 'False' | 'Unknown'; heardSecondsAgo?: number; labels?: Record<string, string>; arch?: string; version?: string; runtime?: string; conditions?: Array<{ type: string; status: 'True' | 'False' }> } = {}): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: o.labels ?? {} },
    spec: {},
    status: {
      conditions: [...(o.ready ? [{ type: 'Ready', status: o.ready, reason: o.ready === 'True' ? 'AgentReady' : 'NodeStatusUnknown' }] : []), ...(o.conditions ?? [])],
      ...(o.heardSecondsAgo !== undefined ? { lastHeard: ago(o.heardSecondsAgo) } : {}),
      nodeInfo: {
        architecture: o.arch ?? 'amd64', operatingSystem: 'linux', osImage: 'Debian', kernelVersion: '6.1', containerRuntimeVersion: o.runtime ?? 'podman://4.3.1',
        agentVersion: o.version ?? '0.1.0', contractVersion: 1, bootID: 'b',
      },
    },
  };
}

function pod(name: string, nodeName: string | undefined, phase: 'Pending' | 'Running' | 'Failed', o: { namespace?: string; waiting?: string } = {}): Pod {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: o.namespace ?? 'default' },
    spec: { ...(nodeName ? { nodeName } : {}), containers: [{ name: 'c', image: 'i' }] },
    status: { phase, ...(o.waiting ? { containerStatuses: [{ name: 'c', state: 'waiting', reason: o.waiting, ready: false, restartCount: 3, image: 'i' }] } : {}) },
  } as unknown as Pod;
}

function input(o: Partial<FleetInput>): FleetInput {
  return { nodes: [], pods: [], deployments: [], daemonSets: [], nowMs: NOW, serverVersion: '0.1.0', ...o };
}

test('each node is in exactly one bucket; a Ready node last heard too long ago is stale, never ready', () => {
  const nodes = [
    node('ok', { ready: 'True', heardSecondsAgo: 10 }),
    node('late-flag', { ready: 'True', heardSecondsAgo: 10, conditions: [{ type: 'HeartbeatLate', status: 'True' }] }),
    node('silent', { ready: 'True', heardSecondsAgo: DEFAULT_STALE_AFTER_MS / 1000 + 1 }),
    node('never', { ready: 'True' }),
    node('flaps', { ready: 'True', heardSecondsAgo: 5, conditions: [{ type: 'LinkDegraded', status: 'True' }] }),
    node('crashing', { ready: 'True', heardSecondsAgo: 5 }),
    node('down', { ready: 'False', heardSecondsAgo: 7200 }),
    node('gone', { ready: 'Unknown', heardSecondsAgo: 400 }),
    node('new'),
  ];
  const s = fleetStatus(input({ nodes, pods: [pod('p', 'crashing', 'Running', { waiting: 'CrashLoopBackOff' }), pod('q', 'ok', 'Running')] }));
  assert.deepEqual(s.nodes.byState, { ready: 1, degraded: 2, stale: 3, notReady: 1, unknown: 2 });
  assert.equal(s.nodes.total, nodes.length);
  const bucket = Object.fromEntries(s.nodes.list.map((e) => [e.name, e.bucket]));
  assert.equal(bucket.silent, 'stale');
  assert.equal(bucket['late-flag'], 'stale');
  assert.equal(bucket.never, 'stale');
  assert.equal(bucket.ok, undefined, 'a ready node is not in the attention list');
  assert.deepEqual(s.nodes.list.find((e) => e.name === 'crashing')!.reasons, ['PodsFailing(1)']);
  assert.deepEqual(s.nodes.list.find((e) => e.name === 'flaps')!.reasons, ['LinkDegraded']);
  assert.equal(s.nodes.oldestLastHeard.notReady?.node, 'down');
  assert.equal(s.nodes.oldestLastHeard.notReady?.ageSeconds, 7200);
  assert.equal(s.nodes.neverHeard, 2);
  // Worst first: unknown, notReady, stale, degraded.
  assert.deepEqual(s.nodes.list.map((e) => e.bucket), ['unknown', 'unknown', 'notReady', 'stale', 'stale', 'stale', 'degraded', 'degraded']);
});

test('agent versions: the majority and the server version set the norm; others are flagged as skew', () => {
  const nodes = [
    ...Array.from({ length: 5 }, (_, i) => node(`a${i}`, { ready: 'True', heardSecondsAgo: 1, version: '0.1.0' })),
    node('old', { ready: 'True', heardSecondsAgo: 1, version: '0.0.9' }),
    node('arm', { ready: 'True', heardSecondsAgo: 1, version: '0.1.0', arch: 'arm64', runtime: 'nerdctl://1.7.0' }),
  ];
  const s = fleetStatus(input({ nodes }));
  assert.deepEqual(s.nodes.agentVersions, [{ version: '0.1.0', nodes: 6, skew: false }, { version: '0.0.9', nodes: 1, skew: true }]);
  assert.equal(s.nodes.skewedNodes, 1);
  assert.deepEqual(s.nodes.byArch, { amd64: 6, arm64: 1 });
  assert.deepEqual(s.nodes.runtimes, [{ runtime: 'podman', version: '4.3.1', nodes: 6 }, { runtime: 'nerdctl', version: '1.7.0', nodes: 1 }]);
  // The whole fleet on a version the server is not: every node is skewed from the server.
  const t = fleetStatus(input({ nodes: nodes.slice(0, 2), serverVersion: '0.2.0' }));
  assert.equal(t.nodes.skewedNodes, 2);
});

test('filters: label selector, site (site label, else zone), state; pods follow the selected nodes', () => {
  const nodes = [
    node('n1', { ready: 'True', heardSecondsAgo: 1, labels: { site: 'north', tier: 'gw' } }),
    node('n2', { ready: 'False', heardSecondsAgo: 1, labels: { 'topology.kubernetes.io/zone': 'north' } }),
    node('s1', { ready: 'True', heardSecondsAgo: 1, labels: { site: 'south', 'topology.kubernetes.io/zone': 'north' } }),
  ];
  const pods = [pod('a', 'n1', 'Running'), pod('b', 'n2', 'Running', { namespace: 'x' }), pod('c', 's1', 'Running'), pod('d', undefined, 'Pending')];
  const north = fleetStatus(input({ nodes, pods, filters: { site: 'north' } }));
  assert.equal(north.nodes.total, 2);
  assert.deepEqual(north.pods.byNamespace, { default: { Running: 1 }, x: { Running: 1 } });
  assert.deepEqual(north.pods.bySite, { north: { Running: 2 } });
  assert.deepEqual(fleetStatus(input({ nodes, pods })).pods.bySite, { '<unscheduled>': { Pending: 1 }, north: { Running: 2 }, south: { Running: 1 } });
  assert.deepEqual(Object.keys(fleetStatus(input({ nodes })).nodes.bySite), ['north', 'south']);
  const gw = fleetStatus(input({ nodes, pods, filters: { labelSelector: 'tier=gw' } }));
  assert.deepEqual([gw.nodes.total, gw.pods.total], [1, 1]);
  const down = fleetStatus(input({ nodes, pods, filters: { state: 'NotReady' } }));
  assert.deepEqual([down.nodes.total, down.nodes.byState.notReady, down.pods.total], [1, 1, 1]);
  // Unfiltered, the unbound pod counts too.
  assert.equal(fleetStatus(input({ nodes, pods })).pods.total, 4);
  assert.throws(() => fleetStatus(input({ nodes, filters: { state: 'sleepy' } })), /^BadRequestError: state: "sleepy"/);
  assert.throws(() => fleetStatus(input({ nodes, filters: { labelSelector: 'a=b,=' } })), /labelSelector/);
});

test('workloads healthy vs not per namespace; rollouts: waved (wave shown 1-based) and classic', () => {
  const dep = (name: string, ns: string, replicas: number, ready: number, updated: number, rollout?: unknown): Deployment =>
    ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace: ns }, spec: { replicas }, status: { readyReplicas: ready, updatedReplicas: updated, ...(rollout ? { drover: { rollout } } : {}) } }) as unknown as Deployment;
  const ds = (name: string, desired: number, ready: number, updated: number): DaemonSet =>
    ({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name, namespace: 'edge' }, spec: {}, status: { desiredNumberScheduled: desired, numberReady: ready, updatedNumberScheduled: updated } }) as unknown as DaemonSet;
  const s = fleetStatus(
    input({
      deployments: [
        dep('web', 'default', 3, 3, 3),
        dep('api', 'default', 3, 1, 1),
        dep('waved', 'edge', 100, 40, 30, { phase: 'Progressing', wave: 1, waves: 4, counts: { updated: 30, ready: 28, total: 100 }, message: 'wave 2: 30/50 ready' }),
        dep('done', 'edge', 5, 5, 5, { phase: 'Complete', wave: 3, waves: 4 }),
        dep('junk', 'edge', 5, 5, 5, 'not an object'),
      ],
      daemonSets: [ds('agentd', 10, 10, 10), ds('logger', 10, 7, 4)],
    }),
  );
  assert.deepEqual([s.workloads.healthy, s.workloads.unhealthy], [4, 3]);
  assert.deepEqual(s.workloads.byNamespace, { default: { healthy: 1, unhealthy: 1 }, edge: { healthy: 3, unhealthy: 2 } });
  assert.deepEqual(
    s.rollouts.map((r) => [r.kind, r.name, r.type, r.wave, r.waves, r.updated, r.desired]),
    [['Deployment', 'api', 'classic', undefined, undefined, 1, 3], ['DaemonSet', 'logger', 'classic', undefined, undefined, 4, 10], ['Deployment', 'waved', 'waves', 2, 4, 30, 100]],
  );
  assert.equal(s.rollouts.find((r) => r.name === 'waved')!.message, 'wave 2: 30/50 ready');
});
