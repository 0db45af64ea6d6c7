/**
 * A misbehaving (or hostile) MQTT client against the server's embedded broker: malformed, incomplete,
 * mismatched and oversized reports must be refused without creating Nodes or breaking the server, and
 * the broker must refuse clients without the join token.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { CONTRACT_VERSION, DELIVERY, encode, payloads, topics } from '../../src/contract/index.js';
import { MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import { connectRefusal, startTestServer, waitFor, type NodeMqttOptions, type TestServer } from '../helpers/cluster.js';

const NODE = 'edge-x';

function validHello(node: string, extra: Partial<payloads.Hello> = {}): payloads.Hello {
  return {
    agentVersion: '0.0.0-test',
    contractVersion: CONTRACT_VERSION,
    node,
    bootId: 'boot-1234',
    arch: 'arm64',
    os: 'linux',
    osImage: 'Test Linux 1.0',
    kernelVersion: '6.1.0-test',
    hostname: `${node}.lan`,
    cpu: { cores: 4, model: 'Cortex-A72' },
    memoryBytes: 4 * 2 ** 30,
    addresses: ['192.0.2.10'],
    runtime: { name: 'podman', version: '4.9.3' },
    labels: { 'drover.io/test': 'bad-input' },
    images: [],
    ...extra,
  };
}

/** Status sequence numbers only grow (the server ignores one not above the last applied). */
let statusSeq = 0;

function validStatus(node: string): payloads.Status {
  return {
    node,
    bootId: 'boot-1234',
    seq: ++statusSeq,
    observedGeneration: 0,
    ts: new Date().toISOString(),
    pods: [],
    runtimeHealthy: true,
    heartbeatSeconds: 5,
  };
}

describe('mqtt: bad input from agents', () => {
  let cluster: TestServer;
  let client: MqttClient;
  const extraClients: MqttClient[] = [];

  const nodeNames = async (): Promise<string[]> => {
    const r = await cluster.api('GET', '/api/v1/nodes');
    assert.equal(r.status, 200, r.text);
    return r.body.items.map((n: any) => n.metadata.name).sort();
  };

  /** The server is alive: the API answers and its own MQTT link is still connected. */
  const assertHealthy = async () => {
    const h = await fetch(`${cluster.apiUrl}/healthz`);
    assert.equal(h.status, 200);
    await waitFor('readyz', async () => (await fetch(`${cluster.apiUrl}/readyz`)).status === 200, 10_000);
  };

  /**
   * Publishes a valid hello for `node` and waits for its Node: the server handles one client's messages
   * in order, so every report published before it has been dealt with by then.
   */
  const sentinel = async (node: string) => {
    const c = await as(node);
    await c.publishAsync(topics.hello(node), encode(validHello(node)), DELIVERY.hello);
    await waitFor(`node ${node}`, async () => (await cluster.api('GET', `/api/v1/nodes/${node}`)).status === 200, 10_000, 25);
    // Give any stray async handler of the earlier messages a moment to (wrongly) land.
    await new Promise((r) => setTimeout(r, 200));
  };

  /** A client authenticated as the agent of `node` (the broker lets it speak only for that node). */
  const as = async (node: string) => {
    const o = await joined(node);
    const c = await mqtt.connectAsync(o.url, o);
    extraClients.push(c);
    return c;
  };
  /** Each node joins once (a second join of a name is refused): its certificate is kept for reconnects. */
  const credentials = new Map<string, NodeMqttOptions>();
  const joined = async (node: string) => {
    if (!credentials.has(node)) credentials.set(node, await cluster.joinNode(node));
    return credentials.get(node)!;
  };

  before(async () => {
    cluster = await startTestServer();
    const o = await joined(NODE);
    client = await mqtt.connectAsync(o.url, o);
  });

  after(async () => {
    for (const c of [client, ...extraClients]) await c?.endAsync(true).catch(() => {});
    await cluster?.stop();
  });

  test('malformed, incomplete, mismatched hellos and a status from an unknown node create nothing', async () => {
    // (a) not JSON
    await client.publishAsync(topics.hello(NODE), Buffer.from('{"agentVersion": "1", "node": "edge-x",'), DELIVERY.hello);
    // (b) a required field missing
    const { arch: _arch, ...noArch } = validHello(NODE);
    await client.publishAsync(topics.hello(NODE), encode(noArch), DELIVERY.hello);
    // wrong types are as bad as missing fields
    await client.publishAsync(topics.hello(NODE), encode({ ...validHello(NODE), cpu: { cores: 'four', model: 'x' } }), DELIVERY.hello);
    // JSON, but not an object
    await client.publishAsync(topics.hello(NODE), Buffer.from('null'), DELIVERY.hello);
    // (c) the payload names another node than the topic
    await client.publishAsync(topics.hello(NODE), encode(validHello('edge-y')), DELIVERY.hello);
    // (d) a status report from a node that never said hello
    const ghost = await as('ghost');
    await ghost.publishAsync(topics.status('ghost'), encode(validStatus('ghost')), DELIVERY.status);
    // and garbage on the other report topics
    await ghost.publishAsync(topics.status('ghost'), Buffer.from('\u0000\u0001binary'), DELIVERY.status);
    await ghost.publishAsync(topics.presence('ghost'), Buffer.from('[]'), DELIVERY.presence);
    await ghost.publishAsync(topics.events('ghost'), Buffer.from('{"node":"ghost","events":[{}]}'), DELIVERY.events);

    await sentinel('sentinel-a');
    assert.deepEqual(await nodeNames(), ['sentinel-a'], 'no Node from any bad report');
    await assertHealthy();

    // A valid hello after all that registers the node with labels derived from the hello.
    const hello = validHello(NODE);
    await client.publishAsync(topics.hello(NODE), encode(hello), DELIVERY.hello);
    const node = await waitFor(`node ${NODE}`, async () => {
      const r = await cluster.api('GET', `/api/v1/nodes/${NODE}`);
      return r.status === 200 ? r.body : undefined;
    }, 10_000, 25);
    assert.equal(node.metadata.labels['kubernetes.io/arch'], hello.arch);
    assert.equal(node.metadata.labels['kubernetes.io/os'], hello.os);
    assert.equal(node.metadata.labels['kubernetes.io/hostname'], NODE);
    assert.equal(node.metadata.labels['drover.io/hostname'], hello.hostname);
    assert.equal(node.metadata.labels['drover.io/test'], 'bad-input');
    assert.equal(node.status.capacity.cpu, '4');
    assert.equal(node.status.nodeInfo.containerRuntimeVersion, 'podman://4.9.3');
    assert.equal(node.status.conditions.find((c: any) => c.type === 'Ready')?.status, 'True');
    assert.deepEqual(await nodeNames(), [NODE, 'sentinel-a']);

    // A status from the now-known node is accepted (and changes nothing it should not).
    await client.publishAsync(topics.status(NODE), encode(validStatus(NODE)), DELIVERY.status);
    await assertHealthy();
  });

  test('the broker refuses the join token as a password, foreign client ids and wildcard names, and accepts a joined node', async () => {
    const z = await joined('edge-z');
    const refused = (opts: mqtt.IClientOptions) => connectRefusal(z.url, opts);
    // The old way in: the join token as the password of a node, no certificate: TLS refuses it.
    assert.ok(await refused({ username: 'edge-z', password: cluster.joinToken, clientId: 'drover-agent-edge-z', ca: z.ca }));
    // A node certificate does not make its holder the server's client, nor another node, nor a wildcard.
    for (const clientId of ['drover-server', 'drover-agent-anon', 'drover-agent-+', 'drover-agent-#', 'drover-agent-a/b']) {
      assert.equal(await refused({ ...z, clientId, username: clientId.replace('drover-agent-', '') }), '4', clientId);
    }
    const ok = await mqtt.connectAsync(z.url, z);
    extraClients.push(ok);
    assert.equal(ok.connected, true);
    await ok.endAsync();
    // The refused attempts did not disturb the server's own link.
    await assertHealthy();
  });

  test('an agent can neither speak for another node nor read its desired state', async () => {
    const intruder = await as('intruder');
    // Subscribing to another node's desired state is refused per filter (SUBACK 128).
    await assert.rejects(intruder.subscribeAsync(topics.desired(NODE), { qos: 1 }), /Subscribe error/);
    // Publishing as another node is refused: the broker drops the sender, and no Node appears.
    await Promise.race([intruder.publishAsync(topics.hello('victim'), encode(validHello('victim')), DELIVERY.hello).catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
    await sentinel('sentinel-c');
    assert.ok(!(await nodeNames()).includes('victim'));
    await assertHealthy();
  });

  test('the registered node has a retained desired state (generation > 0, no pods)', async () => {
    // Only a client of the node itself may read it (the broker's per-node ACL).
    const o = await joined(NODE);
    const sub = await mqtt.connectAsync(o.url, o);
    extraClients.push(sub);
    const got = new Promise<{ payload: Buffer; retain: boolean }>((resolve) => {
      sub.on('message', (topic, payload, packet) => {
        if (topic === topics.desired(NODE) && payload.length > 0) resolve({ payload, retain: packet.retain });
      });
    });
    await sub.subscribeAsync(topics.desired(NODE), { qos: 1 });
    const msg = await Promise.race([got, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no retained desired state within 10 s')), 10_000).unref())]);
    assert.equal(msg.retain, true, 'delivered as a retained message');
    const d = payloads.desired.parse(JSON.parse(msg.payload.toString('utf8')));
    assert.equal(d.node, NODE);
    assert.ok(d.generation > 0, `generation ${d.generation} > 0`);
    assert.deepEqual(d.pods, []);
    await sub.endAsync();
  });

  test('an oversized payload is rejected without breaking the server', async () => {
    // A hello that would be valid but for its size: only the size limit can refuse it.
    const base = validHello('edge-big');
    const overhead = encode({ ...base, labels: { ...base.labels, pad: '' } }).length;
    const big = encode({ ...base, labels: { ...base.labels, pad: 'x'.repeat(MAX_PAYLOAD_BYTES + 1 - overhead) } });
    assert.equal(big.length, MAX_PAYLOAD_BYTES + 1);
    // The broker may accept it (and the server refuse it) or drop the sender; either way, no Node.
    // The broker drops a sender of an oversized message, so its PUBACK may never come: don't wait long.
    const settle = (p: Promise<unknown>) => Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, 1000))]);
    await settle(client.publishAsync(topics.hello('edge-big'), big, DELIVERY.hello));
    await settle(client.publishAsync(topics.status(NODE), Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x7b), DELIVERY.status));

    if (!client.connected) {
      client.end(true);
      const o = await joined(NODE);
      client = await mqtt.connectAsync(o.url, o);
    }
    await sentinel('sentinel-b');
    const names = await nodeNames();
    assert.ok(!names.includes('edge-big'), `no Node from the oversized hello (nodes: ${names})`);
    await assertHealthy();

    // The server still registers nodes and serves the API afterwards.
    const node = await cluster.api('GET', `/api/v1/nodes/${NODE}`);
    assert.equal(node.status, 200);
    assert.equal(node.body.status.conditions.find((c: any) => c.type === 'Ready')?.status, 'True');
  });

  test('a status report older than one already applied (delivered out of order) does not move pods back', async () => {
    const node = 'edge-order';
    const c = await as(node);
    await c.publishAsync(topics.hello(node), encode(validHello(node)), DELIVERY.hello);
    await waitFor(`node ${node}`, async () => (await cluster.api('GET', `/api/v1/nodes/${node}`)).status === 200, 10_000, 25);
    const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'ordered' },
      spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }] },
    });
    assert.equal(created.status, 201, created.text);
    const report = (phase: 'Running' | 'Failed'): payloads.PodReport => ({
      uid: created.body.metadata.uid,
      namespace: 'default',
      name: 'ordered',
      phase,
      containers: [{ name: 'main', image: 'busybox', ready: phase === 'Running', restartCount: 0, state: phase === 'Running' ? 'running' : 'terminated' }],
    });
    const t0 = Date.now();
    const status = (tsMs: number, pods: payloads.PodReport[], runtimeHealthy = true) => encode({ ...validStatus(node), ts: new Date(tsMs).toISOString(), pods, runtimeHealthy });
    // Made first (a lower sequence number), delivered second.
    const older = status(t0 - 5_000, [report('Failed')]);
    await c.publishAsync(topics.status(node), status(t0, [report('Running')]), DELIVERY.status);
    await waitFor('pod Running', async () => (await cluster.api('GET', '/api/v1/namespaces/default/pods/ordered')).body?.status?.phase === 'Running', 10_000, 25);
    // The older report, then a newer one whose effect is visible on the Node: once the Node shows it,
    // the older one has been handled too (one node's reports are handled in order).
    await c.publishAsync(topics.status(node), older, DELIVERY.status);
    await c.publishAsync(topics.status(node), status(t0 + 1_000, [], false), DELIVERY.status);
    await waitFor('node RuntimeUnhealthy', async () => {
      const n = await cluster.api('GET', `/api/v1/nodes/${node}`);
      return n.body?.status?.conditions?.find((x: any) => x.type === 'Ready')?.reason === 'RuntimeUnhealthy';
    }, 10_000, 25);
    // The node is not ready now (its runtime), so the lifecycle controller shows the pod Unknown; its
    // last applied report is still the newest one, Running, not the out-of-order Failed (a Failed pod
    // would stay Failed).
    const pod = await waitFor('pod Unknown', async () => {
      const p = await cluster.api('GET', '/api/v1/namespaces/default/pods/ordered');
      return p.body?.status?.phase === 'Unknown' || p.body?.status?.phase === 'Failed' ? p : undefined;
    }, 10_000, 25);
    assert.equal(pod.body.status.phase, 'Unknown');
    assert.match(pod.body.status.message, /last reported phase Running/);
  });

  test('an event batch delivered twice (QoS 1 resend, or resent after a reconnect) is recorded once', async () => {
    const node = 'edge-dup';
    const c = await as(node);
    await c.publishAsync(topics.hello(node), encode(validHello(node)), DELIVERY.hello);
    await waitFor(`node ${node}`, async () => (await cluster.api('GET', `/api/v1/nodes/${node}`)).status === 200, 10_000, 25);
    const ev = (seq: number, reason: string): payloads.AgentEvent => ({
      type: 'Normal', reason, message: `${reason} on ${node}`, ts: new Date().toISOString(), involved: { kind: 'Node', name: node }, seq,
    });
    const batch = (events: payloads.AgentEvent[], journal = 'run-1'): Buffer => encode({ node, journal, events, dropped: 0 });
    await c.publishAsync(topics.events(node), batch([ev(1, 'DupA'), ev(2, 'DupB')]), DELIVERY.events);
    // The same batch again, then one that overlaps it (the agent re-took its unacknowledged events).
    await c.publishAsync(topics.events(node), batch([ev(1, 'DupA'), ev(2, 'DupB')]), DELIVERY.events);
    await c.publishAsync(topics.events(node), batch([ev(2, 'DupB'), ev(3, 'DupC')]), DELIVERY.events);
    // A new agent run numbers its journal anew: its events count even with lower positions.
    await c.publishAsync(topics.events(node), batch([ev(1, 'DupA')], 'run-2'), DELIVERY.events);
    const counts = async (): Promise<Record<string, number>> => {
      const r = await cluster.api('GET', '/api/v1/namespaces/default/events');
      const out: Record<string, number> = {};
      for (const e of r.body.items) if (e.involvedObject?.name === node && /^Dup/.test(e.reason)) out[e.reason] = e.count;
      return out;
    };
    const seen = await waitFor('DupC and the second run recorded', async () => {
      const n = await counts();
      return n.DupC === 1 && n.DupA === 2 ? n : undefined;
    }, 10_000, 25);
    assert.deepEqual(seen, { DupA: 2, DupB: 1, DupC: 1 });
  });
});
