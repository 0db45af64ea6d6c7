/**
 * External broker mode as the README sets it up: a real Mosquitto over TLS with drover's CA and
 * server certificate, client certificates required, the CN as username, and the ACL file
 * `drover broker acl` prints. The server and a real agent work through it; a node holding its own
 * valid certificate still cannot read another node's desired state (its Secrets), by name or by
 * wildcard, while it receives its own.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { CONTRACT_VERSION, DELIVERY, encode, topics, type payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { drover, ok } from '../helpers/cli.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

const pod = (name: string, node: string) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }] } });

describe('identity: external Mosquitto with TLS and the generated ACL', () => {
  let dataDir: string;
  let mosq: Mosquitto;
  let t: TestServer;
  let spy: MqttClient | undefined;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'drover-mosq-server-'));
    // The CA and server certificate drover makes at first start, made first here so Mosquitto can use them.
    const tls = join(dataDir, 'tls');
    await loadOrCreatePki({ dir: tls, sans: serverSans(['127.0.0.1']), logger: silentLogger });
    const acl = ok(await drover({}, ['broker', 'acl']), 'drover broker acl').stdout;
    const aclFile = join(dataDir, 'acl.conf');
    await writeFile(aclFile, acl);
    mosq = await startMosquitto({ tls: { cafile: join(tls, 'ca.crt'), certfile: join(tls, 'server.crt'), keyfile: join(tls, 'server.key'), aclFile } });
    t = await startTestServer({ dataDir, brokerUrl: mosq.url });
  });
  after(async () => {
    spy?.end(true);
    await t?.stop();
    await mosq?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("node A's certificate reads its own desired state through Mosquitto, never node B's", async () => {
    await t.addAgent({ node: 'edge-b', runtime: new FakeRuntime() });
    await waitFor('edge-b Ready through Mosquitto', async () => (await t.api('GET', '/api/v1/nodes/edge-b')).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True');

    const a = await t.joinNode('edge-a');
    assert.equal(a.url, mosq.url, 'the server advertises the external broker');
    spy = await mqtt.connectAsync(a.url, { ...a, clientId: 'edge-a-spy' });
    const seen: string[] = [];
    const podsOfA: string[] = [];
    spy.on('message', (topic, payload) => {
      if (!payload.length) return;
      seen.push(topic);
      if (topic === topics.desired('edge-a')) podsOfA.push(...(JSON.parse(payload.toString()) as { pods: Array<{ name: string }> }).pods.map((p) => p.name));
    });
    // Mosquitto grants MQTT 3.1.1 subscriptions and filters each message by the ACL.
    await spy.subscribeAsync(['drover/v1/nodes/+/desired', topics.desired('edge-b'), topics.desired('edge-a')], { qos: 1 });

    // A registers (a Node gets a desired state only once it exists).
    const hello: payloads.Hello = {
      agentVersion: '0.0.0-test', contractVersion: CONTRACT_VERSION, node: 'edge-a', bootId: 'boot-a', arch: 'arm64', os: 'linux', osImage: 'Test', kernelVersion: '6.1',
      hostname: 'edge-a', cpu: { cores: 4, model: 'A72' }, memoryBytes: 2 ** 31, addresses: ['192.0.2.9'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
    };
    await spy.publishAsync(topics.hello('edge-a'), encode(hello), DELIVERY.hello);
    await waitFor('edge-a registered through Mosquitto', async () => (await t.api('GET', '/api/v1/nodes/edge-a')).status === 200);

    // B's pod first, then A's: delivered in the order the server published them, had B's been allowed.
    assert.equal((await t.api('POST', '/api/v1/namespaces/default/pods', pod('pb', 'edge-b'))).status, 201);
    await waitFor('pb Running on edge-b', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/pb')).body?.status?.phase === 'Running');
    assert.equal((await t.api('POST', '/api/v1/namespaces/default/pods', pod('pa', 'edge-a'))).status, 201);
    await waitFor("edge-a's own desired state with its pod", async () => podsOfA.includes('pa'));
    assert.deepEqual([...new Set(seen)], [topics.desired('edge-a')], `seen: ${seen.join(', ')}`);
  });
});
