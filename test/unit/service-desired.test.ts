import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import type { EndpointSlice, Service } from '../../src/api/service.js';
import { payloads } from '../../src/contract/index.js';
import { contentDigest, snapshotFor } from '../../server/desired/snapshot.js';
import { desiredSlices } from '../../server/services/slices.js';

function pod(name: string, node: string, ip: string, o: { ns?: string; hostPort?: number; labels?: Record<string, string> } = {}): Pod {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: o.ns ?? 'default', uid: `uid-${name}`, labels: o.labels ?? { app: 'web' } },
    spec: { nodeName: node, containers: [{ name: 'c', image: 'x', ports: [{ name: 'http', containerPort: 8080, ...(o.hostPort ? { hostPort: o.hostPort } : {}) }] }] },
    status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], podIP: ip },
  } as Pod;
}
const node = (name: string, ip: string): Node => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses: [{ type: 'InternalIP', address: ip }], conditions: [{ type: 'Ready', status: 'True' }] } }) as Node;
function svc(name: string, spec: Partial<Service['spec']>, ns = 'default'): Service {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, uid: `u-${name}` }, spec: { type: 'ClusterIP', selector: { app: 'web' }, clusterIP: '10.43.0.10', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'http' }], ...spec } } as Service;
}

const nodes = [node('a', '192.168.1.1'), node('b', '192.168.1.2'), node('idle', '192.168.1.3')];

function world(services: Service[], pods: Pod[]) {
  const slices: EndpointSlice[] = services.flatMap((s) => desiredSlices(s, pods, nodes));
  return { services, slices, nodes };
}

test('local endpoints by pod IP and target port; remote ones through their node and the nodePort', () => {
  const pods = [pod('p1', 'a', '10.88.0.5'), pod('p2', 'b', '10.88.0.5'), pod('client', 'a', '10.88.0.9', { labels: { app: 'client' } })];
  const s = svc('web', { type: 'NodePort', ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'http', nodePort: 30080 }] });
  const snap = snapshotFor('a', pods, [], [], world([s], pods));
  assert.deepEqual(snap.services, [{
    namespace: 'default', name: 'web', clusterIP: '10.43.0.10',
    ports: [{ name: 'http', protocol: 'TCP', port: 80, nodePort: 30080, backends: [{ ip: '10.88.0.5', port: 8080, local: true }, { ip: '192.168.1.2', port: 30080, local: false }] }],
  }]);
  assert.equal(payloads.desired.safeParse({ node: 'a', generation: 1, ts: 't', ...snap }).success, true);
});

test('a ClusterIP Service reaches remote pods only through a hostPort; otherwise they are left out', () => {
  const pods = [pod('p1', 'a', '10.88.0.5'), pod('p2', 'b', '10.88.0.6', { hostPort: 18080 }), pod('p3', 'b', '10.88.0.7')];
  const snap = snapshotFor('a', pods, [], [], world([svc('web', {})], pods));
  assert.deepEqual(snap.services?.[0]?.ports[0]?.backends, [{ ip: '10.88.0.5', port: 8080, local: true }, { ip: '192.168.1.2', port: 18080, local: false }]);
});

test('only Services of the namespaces the node runs pods in; none for a node without pods; headless left out', () => {
  const pods = [pod('p1', 'a', '10.88.0.5'), pod('q1', 'b', '10.88.0.5', { ns: 'prod' })];
  const w = world([svc('web', {}), svc('db', {}, 'prod'), svc('headless', { clusterIP: 'None' })], pods);
  assert.deepEqual(snapshotFor('a', pods, [], [], w).services?.map((s) => `${s.namespace}/${s.name}`), ['default/web']);
  assert.deepEqual(snapshotFor('b', pods, [], [], w).services?.map((s) => `${s.namespace}/${s.name}`), ['prod/db']);
  const idle = snapshotFor('idle', pods, [], [], w);
  assert.equal(idle.services, undefined, 'a node running no pods gets no Services');
  assert.equal(contentDigest(idle), contentDigest(snapshotFor('idle', pods, [], [])), 'and its digest is as before Services existed');
});

test('an endpoint turning unready leaves the backends, and the digest changes so the node is told', () => {
  const pods = [pod('p1', 'a', '10.88.0.5'), pod('p2', 'a', '10.88.0.6')];
  const before = snapshotFor('a', pods, [], [], world([svc('web', {})], pods));
  const down = pods.map((p) => (p.metadata.name === 'p2' ? { ...p, status: { ...p.status!, conditions: [{ type: 'Ready', status: 'False' as const }] } } : p));
  const after = snapshotFor('a', down, [], [], world([svc('web', {})], down));
  assert.deepEqual(after.services?.[0]?.ports[0]?.backends.map((b) => b.ip), ['10.88.0.5']);
  assert.notEqual(contentDigest(before), contentDigest(after));
});
