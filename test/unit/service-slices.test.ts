import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import type { Service } from '../../src/api/service.js';
import { parseObject } from '../../src/api/validate.js';
import { desiredSlices } from '../../server/services/slices.js';

function svc(spec: Record<string, unknown>): Service {
  const s = parseObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec }).object as Service;
  s.metadata.uid = 'svc-uid';
  return s;
}

function pod(name: string, o: { node?: string; ip?: string; ready?: boolean; labels?: Record<string, string>; phase?: string; deleting?: boolean; ns?: string; ports?: Array<{ name?: string; containerPort: number; protocol?: string }> } = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: o.ns ?? 'default', uid: `uid-${name}`, labels: o.labels ?? { app: 'web' }, ...(o.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}) },
    spec: { nodeName: o.node ?? 'a', containers: [{ name: 'c', image: 'x', ports: o.ports ?? [{ name: 'http', containerPort: 8080 }] }] },
    status: {
      phase: (o.phase ?? 'Running') as 'Running',
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }],
      ...(o.ip === '' ? {} : { podIP: o.ip ?? `10.88.0.${name.length}` }),
    },
  } as Pod;
}

function node(name: string, ready: 'True' | 'False' | 'Unknown' = 'True'): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { conditions: [{ type: 'Ready', status: ready }] } } as Node;
}

const nodes = [node('a'), node('b')];

test('ready pods matching the selector are ready endpoints with IP, node, targetRef; named targetPort resolved', () => {
  const s = desiredSlices(svc({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] }), [pod('p1', { ip: '10.88.0.2' }), pod('p2', { node: 'b', ip: '10.88.0.3' }), pod('other', { labels: { app: 'db' } })], nodes);
  assert.equal(s.length, 1);
  assert.deepEqual(s[0]!.ports, [{ name: '', protocol: 'TCP', port: 8080 }]);
  assert.deepEqual(s[0]!.endpoints.map((e) => [e.addresses[0], e.nodeName, e.conditions.ready, e.targetRef?.name]), [['10.88.0.2', 'a', true, 'p1'], ['10.88.0.3', 'b', true, 'p2']]);
  assert.equal(s[0]!.metadata.labels?.['kubernetes.io/service-name'], 'web');
  assert.equal(s[0]!.metadata.ownerReferences?.[0]?.uid, 'svc-uid');
});

test('unready pods, terminating pods and pods on a NotReady or Unknown node are listed but not ready', () => {
  const pods = [pod('unready', { ready: false }), pod('going', { deleting: true }), pod('onb', { node: 'b' }), pod('onc', { node: 'c' })];
  const s = desiredSlices(svc({ selector: { app: 'web' }, ports: [{ port: 80 }] }), pods, [node('a'), node('b', 'Unknown')]);
  const cond = Object.fromEntries(s[0]!.endpoints.map((e) => [e.targetRef!.name, e.conditions]));
  assert.deepEqual(cond.unready, { ready: false, serving: false, terminating: false });
  assert.deepEqual(cond.going, { ready: false, serving: true, terminating: true });
  assert.equal(cond.onb!.ready, false, 'a node in Unknown takes its endpoints out of service');
  assert.equal(cond.onc!.ready, false, 'a node the server does not know serves nothing');
  assert.equal(desiredSlices(svc({ selector: { app: 'web' }, ports: [{ port: 80 }] }), [pod('onb', { node: 'b' })], [node('b', 'False')])[0]!.endpoints[0]!.conditions.ready, false);
});

test('finished pods, pods without an address, pods of another namespace and pods lacking the named port are left out', () => {
  const pods = [pod('done', { phase: 'Succeeded' }), pod('failed', { phase: 'Failed' }), pod('noip', { ip: '' }), pod('elsewhere', { ns: 'prod' }), pod('noport', { ports: [{ name: 'metrics', containerPort: 9090 }] })];
  const s = desiredSlices(svc({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] }), pods, nodes);
  assert.equal(s.length, 1);
  assert.deepEqual(s[0]!.endpoints, [], 'an empty slice says the Service has no endpoints');
  assert.deepEqual(desiredSlices(svc({ ports: [{ port: 80 }] }), [pod('p1')], nodes), [], 'no selector: drover manages no slices');
});

test('pods resolving a named port differently are in different slices; slices are capped and names stable', () => {
  const pods = [pod('a1'), pod('a2'), pod('a3'), pod('b1', { ports: [{ name: 'http', containerPort: 9000 }] })];
  const service = svc({ selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] });
  const s = desiredSlices(service, pods, nodes, 2);
  assert.deepEqual(s.map((x) => [x.ports![0]!.port, x.endpoints.length]).sort(), [[8080, 1], [8080, 2], [9000, 1]]);
  assert.deepEqual(desiredSlices(service, [...pods].reverse(), nodes, 2).map((x) => x.metadata.name), s.map((x) => x.metadata.name));
  assert.equal(new Set(s.map((x) => x.metadata.name)).size, 3);
});

test('publishNotReadyAddresses lists unready pods as ready (headless StatefulSet style)', () => {
  const s = desiredSlices(svc({ clusterIP: 'None', selector: { app: 'web' }, publishNotReadyAddresses: true }), [pod('p', { ready: false })], nodes);
  assert.equal(s[0]!.endpoints[0]!.conditions.ready, true);
});
