/**
 * A device joined as one node, over the real TLS broker, tries to write into other objects' history and to
 * replay old status: Events about another node, another node's pod or a Deployment are dropped; a status
 * captured earlier and sent again, or one from an earlier boot, does not move a pod back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { DELIVERY, encode, topics, type payloads } from '../../src/contract/index.js';
import { agentHello as hello, podReport as report } from '../fuzz/agent-reports.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

describe('agents: spoofed events and replayed status over the broker', () => {
  let cluster: TestServer;
  const clients: MqttClient[] = [];

  const join = async (node: string, bootId: string, labels: Record<string, string> = {}) => {
    const o = await cluster.joinNode(node);
    const c = await mqtt.connectAsync(o.url, o);
    clients.push(c);
    await c.publishAsync(topics.hello(node), encode(hello(node, bootId, labels)), DELIVERY.hello);
    await waitFor(`node ${node}`, async () => (await cluster.api('GET', `/api/v1/nodes/${node}`)).status === 200);
    return c;
  };
  const pod = async (name: string, nodeName: string): Promise<string> => {
    const r = await cluster.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName, containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(r.status, 201, r.text);
    return r.body.metadata.uid;
  };
  const status = (node: string, bootId: string, seq: number, pods: payloads.PodReport[], runtimeHealthy = true): Buffer =>
    encode({ node, bootId, seq, observedGeneration: 0, ts: new Date().toISOString(), pods, runtimeHealthy, heartbeatSeconds: 30 } satisfies payloads.Status);
  const phase = async (name: string) => (await cluster.api('GET', `/api/v1/namespaces/default/pods/${name}`)).body?.status?.phase;
  /** A report whose effect shows on the Node: once it shows, everything the node sent before was handled. */
  const flush = async (c: MqttClient, node: string, bootId: string, seq: number) => {
    await c.publishAsync(topics.status(node), status(node, bootId, seq, [], false), DELIVERY.status);
    await waitFor('node RuntimeUnhealthy', async () => (await cluster.api('GET', `/api/v1/nodes/${node}`)).body?.status?.conditions?.find((x: any) => x.type === 'Ready')?.reason === 'RuntimeUnhealthy');
  };

  before(async () => {
    cluster = await startTestServer();
  });
  after(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await cluster?.stop();
  });

  test('events about another node, its pods or a Deployment are dropped; about its own pod recorded', async () => {
    const mallory = await join('mallory', 'boot-m');
    await join('victim', 'boot-v');
    const victimPod = await pod('victim-db', 'victim');
    const ownPod = await pod('mallory-app', 'mallory');
    const ev = (reason: string, involved: payloads.AgentEvent['involved'], seq: number): payloads.AgentEvent => ({ type: 'Warning', reason, message: `${reason}!`, ts: new Date().toISOString(), involved, seq });
    await mallory.publishAsync(
      topics.events('mallory'),
      encode({
        node: 'mallory',
        journal: 'j1',
        events: [
          ev('NodeCompromised', { kind: 'Node', name: 'victim' }, 1),
          ev('Evicted', { kind: 'Pod', namespace: 'default', name: 'victim-db', uid: victimPod }, 2),
          ev('ScalingReplicaSet', { kind: 'Deployment', namespace: 'default', name: 'web' }, 3),
          ev('BackOff', { kind: 'Pod', namespace: 'default', name: 'mallory-app', uid: ownPod }, 4),
        ],
        dropped: 0,
      } satisfies payloads.Events),
      DELIVERY.events,
    );
    const reasons = await waitFor('own pod event', async () => {
      const items = (await cluster.api('GET', '/api/v1/namespaces/default/events')).body.items as any[];
      const mine = items.filter((e) => e.source?.component === 'drover-agent' && e.source?.host === 'mallory');
      return mine.some((e) => e.reason === 'BackOff') ? mine.map((e) => `${e.reason} ${e.involvedObject.kind}/${e.involvedObject.name}`) : undefined;
    });
    assert.deepEqual(reasons, ['BackOff Pod/mallory-app']);
  });

  test('a replayed status (same sequence number, or from an earlier boot) does not move a pod back', async () => {
    const c = await join('edge-r', 'boot-2');
    const uid = await pod('replay-target', 'edge-r');
    // Captured by an attacker (or left in a queue) while the pod was failing: boot-1, or seq 5 of boot-2.
    const oldBoot = status('edge-r', 'boot-1', 1_000_000, [report(uid, 'replay-target', 'Failed')]);
    const captured = status('edge-r', 'boot-2', 5, [report(uid, 'replay-target', 'Failed')]);
    await c.publishAsync(topics.status('edge-r'), status('edge-r', 'boot-2', 5, [report(uid, 'replay-target', 'Running')]), DELIVERY.status);
    await waitFor('Running', async () => (await phase('replay-target')) === 'Running');
    await c.publishAsync(topics.status('edge-r'), captured, DELIVERY.status);
    await c.publishAsync(topics.status('edge-r'), oldBoot, DELIVERY.status);
    await flush(c, 'edge-r', 'boot-2', 6);
    const p = (await cluster.api('GET', '/api/v1/namespaces/default/pods/replay-target')).body;
    // The node is not ready now (its runtime), so the pod shows Unknown; what it last applied is Running.
    assert.notEqual(p.status.phase, 'Failed');
    assert.match(p.status.message ?? '', /last reported phase Running/);
  });

  test('restricted labels in a hello are not applied; the Node gets a Warning naming them', async () => {
    await join('edge-l', 'boot-l', { 'node-restriction.drover.io/zone': 'payments', 'node-role.kubernetes.io/master': '', role: 'sensor' });
    const n = (await cluster.api('GET', '/api/v1/nodes/edge-l')).body;
    assert.equal(n.metadata.labels['node-restriction.drover.io/zone'], undefined);
    assert.equal(n.metadata.labels['node-role.kubernetes.io/master'], undefined);
    assert.equal(n.metadata.labels.role, 'sensor');
    const warning = await waitFor('RestrictedLabelsRefused', async () =>
      ((await cluster.api('GET', '/api/v1/namespaces/default/events')).body.items as any[]).find((e) => e.reason === 'RestrictedLabelsRefused' && e.involvedObject.name === 'edge-l'),
    );
    assert.match(warning.message, /node-restriction\.drover\.io\/zone/);
    assert.match(warning.message, /node-role\.kubernetes\.io\/master/);
  });
});
