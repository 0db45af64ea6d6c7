/**
 * Deleting a Node clears what the broker keeps for it: its retained desired state (which carries the
 * data of the Secrets its pods use) and its retained hello and presence. Against a real Mosquitto,
 * where a fresh subscriber gets whatever is retained: after the delete, it gets nothing for the node.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { CONTRACT_VERSION, DELIVERY, encode, topics, type payloads } from '../../src/contract/index.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

const NODE = 'edge-gone';
const SENTINEL = 'test/retained-sentinel';

describe('deleting a node', () => {
  let broker: Mosquitto;
  let t: TestServer;

  /**
   * Every retained message on the node's topics, as a new subscriber sees them. Mosquitto answers
   * one SUBSCRIBE at a time, so once the retained sentinel of a second SUBSCRIBE arrives, the first
   * one's retained messages (if any) have arrived too.
   */
  const retained = async (): Promise<Map<string, string>> => {
    const c = await mqtt.connectAsync(broker.url, { clientId: `probe-${Date.now()}`, protocolVersion: 4, reconnectPeriod: 0, clean: true });
    try {
      const seen = new Map<string, string>();
      const done = new Promise<void>((resolve) =>
        c.on('message', (topic, payload) => {
          if (topic === SENTINEL) resolve();
          else seen.set(topic, payload.toString('utf8'));
        }),
      );
      await c.subscribeAsync([topics.desired(NODE), topics.hello(NODE), topics.presence(NODE)], { qos: 1 });
      await c.subscribeAsync(SENTINEL, { qos: 1 });
      await done;
      return seen;
    } finally {
      await c.endAsync(true);
    }
  };

  before(async () => {
    broker = await startMosquitto();
    t = await startTestServer({ brokerUrl: broker.url });
    const admin = await mqtt.connectAsync(broker.url, { clientId: 'sentinel', protocolVersion: 4, reconnectPeriod: 0 });
    await admin.publishAsync(SENTINEL, 'here', { qos: 1, retain: true });
    await admin.endAsync();
  });
  after(async () => {
    await t?.stop();
    await broker?.stop();
  });

  test('leaves no retained desired state (with Secret data), hello or presence for it on the broker', async () => {
    const agent = await mqtt.connectAsync(broker.url, { clientId: `drover-agent-${NODE}`, protocolVersion: 4, reconnectPeriod: 0 });
    const hello: payloads.Hello = {
      agentVersion: '0.0.0-test', contractVersion: CONTRACT_VERSION, node: NODE, bootId: 'boot-1', arch: 'arm64', os: 'linux', osImage: 'Test', kernelVersion: '6.1',
      hostname: NODE, cpu: { cores: 2, model: 'A53' }, memoryBytes: 2 ** 30, addresses: ['192.0.2.9'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
    };
    await agent.publishAsync(topics.hello(NODE), encode(hello), DELIVERY.hello);
    await agent.publishAsync(topics.presence(NODE), encode({ state: 'online', bootId: 'boot-1', ts: new Date().toISOString() } satisfies payloads.Presence), DELIVERY.presence);
    await waitFor('node registered', async () => (await t.api('GET', `/api/v1/nodes/${NODE}`)).status === 200);
    const status: payloads.Status = { node: NODE, bootId: 'boot-1', seq: 1, observedGeneration: 0, ts: new Date().toISOString(), pods: [], runtimeHealthy: true, heartbeatSeconds: 30, usage: { cpuMilli: 250, memoryBytes: 2 ** 28 } };
    await agent.publishAsync(topics.status(NODE), encode(status), DELIVERY.status);
    const topNodes = async () => ((await t.api('GET', '/apis/metrics.k8s.io/v1beta1/nodes')).body?.items ?? []).map((n: any) => n.metadata.name);
    await waitFor('node in top nodes', async () => (await topNodes()).includes(NODE));
    const secret = await t.api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 's3cret-value' } });
    assert.equal(secret.status, 201, secret.text);
    const pod = await t.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'app' },
      spec: { nodeName: NODE, containers: [{ name: 'main', image: 'busybox', env: [{ name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }] },
    });
    assert.equal(pod.status, 201, pod.text);
    // The probe sees retained messages when there are some (so its empty answer below means something).
    const before = await waitFor('retained desired state with the Secret', async () => {
      const r = await retained();
      return r.get(topics.desired(NODE))?.includes('"app"') && r.has(topics.hello(NODE)) ? r : undefined;
    });
    assert.ok(before.has(topics.presence(NODE)));
    await agent.endAsync();

    const del = await t.api('DELETE', `/api/v1/nodes/${NODE}`);
    assert.equal(del.status, 200, del.text);
    const left = await waitFor('nothing retained for the node', async () => {
      const r = await retained();
      return r.size === 0 ? r : undefined;
    });
    assert.deepEqual([...left.keys()], []);
    await waitFor('node gone from top nodes', async () => !(await topNodes()).includes(NODE));
  });
});
