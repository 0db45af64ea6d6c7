/**
 * Liveness rides on the MQTT keepalive, through the real embedded broker: a hand-driven agent that
 * announces a 10-minute heartbeat and a 1 s keepalive stays Ready and unflagged while only its pings
 * arrive; one that goes silent without the broker dropping it (no keepalive in its CONNECT, so aedes
 * never times it out and no last will comes) is flagged late and then NotReady after two keepalives ×
 * the missed-heartbeat count, not after half an hour of missed 10-minute heartbeats.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { CONTRACT_VERSION, DELIVERY, encode, topics, type payloads } from '../../src/contract/index.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

describe('liveness by keepalive', () => {
  let t: TestServer;
  const clients: MqttClient[] = [];
  const node = async (name: string) => (await t.api('GET', `/api/v1/nodes/${name}`)).body;
  const cond = (n: any, type: string) => n?.status?.conditions?.find((x: any) => x.type === type);

  /** Joins `name`, says hello and sends one status announcing heartbeat 600 s and keepalive 1 s. */
  async function agent(name: string, keepalive: number): Promise<MqttClient> {
    const o = await t.joinNode(name);
    const c = await mqtt.connectAsync(o.url, { ...o, keepalive, reschedulePings: false });
    clients.push(c);
    const hello: payloads.Hello = {
      agentVersion: '0.0.0-test', contractVersion: CONTRACT_VERSION, node: name, bootId: 'boot-1', arch: 'arm64', os: 'linux', osImage: 'Test', kernelVersion: '6.1',
      hostname: name, cpu: { cores: 4, model: 'A72' }, memoryBytes: 2 ** 31, addresses: ['192.0.2.7'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
    };
    await c.publishAsync(topics.hello(name), encode(hello), DELIVERY.hello);
    await waitFor(`${name} registered`, async () => (await t.api('GET', `/api/v1/nodes/${name}`)).status === 200);
    const status: payloads.Status = { node: name, bootId: 'boot-1', seq: 1, observedGeneration: 0, ts: new Date().toISOString(), pods: [], runtimeHealthy: true, heartbeatSeconds: 600, keepaliveSeconds: 1 };
    await c.publishAsync(topics.status(name), encode(status), DELIVERY.status);
    await waitFor(`${name} Ready`, async () => cond(await node(name), 'Ready')?.status === 'True');
    return c;
  }

  before(async () => {
    t = await startTestServer();
  });
  after(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => {});
    await t?.stop();
  });

  test('only pings, no status for many liveness periods: Ready, never flagged late', async () => {
    await agent('edge-pinging', 1);
    // Liveness period 2 s (two keepalives): late would be flagged after 3 s, NotReady after 6 s of silence.
    await sleep(8_000);
    const n = await node('edge-pinging');
    assert.equal(cond(n, 'Ready')?.status, 'True');
    assert.notEqual(cond(n, 'HeartbeatLate')?.status, 'True', 'pings count as being heard');
    const events = await t.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=edge-pinging');
    assert.ok(!events.body.items.some((e: any) => e.reason === 'HeartbeatLate'), 'no HeartbeatLate event either');
  });

  test('silent with the link up (no pings reach the server): late, then NotReady, in seconds, not after 30 minutes', async () => {
    // keepalive 0: the client never pings and the broker never times it out, so no last will arrives.
    await agent('edge-silent', 0);
    const late = await waitFor('HeartbeatLate', async () => {
      const n = await node('edge-silent');
      return cond(n, 'HeartbeatLate')?.status === 'True' ? n : undefined;
    }, 15_000);
    assert.match(cond(late, 'HeartbeatLate').message, /no status or ping for \d+s \(expected every 2s\)/);
    const lost = await waitFor('NotReady', async () => {
      const n = await node('edge-silent');
      return cond(n, 'Ready')?.status === 'False' ? n : undefined;
    }, 20_000);
    assert.equal(cond(lost, 'Ready').reason, 'NodeStatusUnknown');
  });
});
