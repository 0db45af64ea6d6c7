/**
 * Idle fleet, real server and broker: agents that keep sending heartbeats which change nothing cost the
 * store nothing (the store's revision does not move), while their reports are still heard (the usage
 * each heartbeat carries is served by the metrics API, from memory). A node whose link drops turns
 * not Ready (the broker publishes its last will) and that is written.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { CONTRACT_VERSION, DELIVERY, encode, topics, type payloads } from '../../src/contract/index.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

const NODES = ['idle-a', 'idle-b', 'idle-c', 'idle-d'];
const HEARTBEATS = 20;

describe('an idle fleet', () => {
  let t: TestServer;
  const clients = new Map<string, MqttClient>();
  const seqs = new Map<string, number>();
  const revision = async () => Number((await t.api('GET', '/api/v1/namespaces')).body?.metadata?.resourceVersion ?? NaN);
  const ready = async (node: string) => (await t.api('GET', `/api/v1/nodes/${node}`)).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status;
  const status = (node: string, cpuMilli: number, runtimeHealthy = true): Buffer => {
    const seq = (seqs.get(node) ?? 0) + 1;
    seqs.set(node, seq);
    return encode({ node, bootId: `boot-${node}`, seq, observedGeneration: 0, ts: new Date().toISOString(), pods: [], usage: { cpuMilli, memoryBytes: 2 ** 20 }, runtimeHealthy, ...(runtimeHealthy ? {} : { runtimeMessage: 'podman: cannot connect' }), heartbeatSeconds: 30 } satisfies payloads.Status);
  };
  const cpuOf = async (): Promise<Map<string, string>> => {
    const r = await t.api('GET', '/apis/metrics.k8s.io/v1beta1/nodes');
    return new Map((r.body?.items ?? []).map((m: any) => [m.metadata.name, m.usage.cpu]));
  };

  before(async () => {
    t = await startTestServer();
    for (const node of NODES) {
      const o = await t.joinNode(node);
      const offline = encode({ state: 'offline', bootId: `boot-${node}`, ts: new Date().toISOString() } satisfies payloads.Presence);
      const c = await mqtt.connectAsync(o.url, { ...o, clean: false, will: { topic: topics.presence(node), payload: offline, ...DELIVERY.presence } });
      clients.set(node, c);
      const hello: payloads.Hello = {
        agentVersion: '0.0.0-test', contractVersion: CONTRACT_VERSION, node, bootId: `boot-${node}`, arch: 'arm64', os: 'linux', osImage: 'Test', kernelVersion: '6.1',
        hostname: node, cpu: { cores: 4, model: 'A72' }, memoryBytes: 2 ** 31, addresses: ['192.0.2.7'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
      };
      await c.publishAsync(topics.hello(node), encode(hello), DELIVERY.hello);
      await c.publishAsync(topics.presence(node), encode({ state: 'online', bootId: `boot-${node}`, ts: new Date().toISOString() } satisfies payloads.Presence), DELIVERY.presence);
      await c.publishAsync(topics.status(node), status(node, 1), DELIVERY.status);
    }
    for (const node of NODES) await waitFor(`${node} Ready`, async () => (await ready(node)) === 'True');
  });
  after(async () => {
    for (const c of clients.values()) await c.endAsync(true).catch(() => {});
    await t?.stop();
  });

  test('heartbeats that change nothing write nothing, and are still heard', async () => {
    // The first status of each node wrote its Ready condition: wait until those writes are in.
    const settled = await waitFor('metrics of every node', async () => {
      const r = await t.api('GET', '/apis/metrics.k8s.io/v1beta1/nodes');
      return r.body?.items?.length === NODES.length ? true : undefined;
    });
    assert.ok(settled);
    const before = await revision();
    for (let i = 2; i <= HEARTBEATS + 1; i++) {
      for (const node of NODES) await clients.get(node)!.publishAsync(topics.status(node), status(node, i), DELIVERY.status);
    }
    // Each node's reports are handled in order: once its last heartbeat's usage is served, all of them were handled.
    await waitFor('every last heartbeat heard', async () => {
      const r = await t.api('GET', '/apis/metrics.k8s.io/v1beta1/nodes');
      const cpu = new Map<string, string>((r.body?.items ?? []).map((m: any) => [m.metadata.name, m.usage.cpu]));
      return NODES.every((n) => cpu.get(n) === `${HEARTBEATS + 1}m`) ? true : undefined;
    });
    const afterBeats = await revision();
    assert.equal(afterBeats - before, 0, `${NODES.length * HEARTBEATS} heartbeats that changed nothing made ${afterBeats - before} store writes`);
    for (const node of NODES) assert.equal(await ready(node), 'True');
  });

  test('a node whose runtime stays down is written when it turns NotReady, not on every report after', async () => {
    const node = NODES[1]!;
    const c = clients.get(node)!;
    await c.publishAsync(topics.status(node), status(node, 100, false), DELIVERY.status);
    await waitFor(`${node} NotReady`, async () => ((await ready(node)) === 'False' ? true : undefined));
    await waitFor('its report heard', async () => ((await cpuOf()).get(node) === '100m' ? true : undefined));
    const before = await revision();
    for (let i = 101; i <= 110; i++) await c.publishAsync(topics.status(node), status(node, i, false), DELIVERY.status);
    await waitFor('the last report heard', async () => ((await cpuOf()).get(node) === '110m' ? true : undefined));
    assert.equal((await revision()) - before, 0, 'reports that change nothing about a NotReady node write nothing');
    await c.publishAsync(topics.status(node), status(node, 111), DELIVERY.status);
    await waitFor(`${node} Ready again`, async () => ((await ready(node)) === 'True' ? true : undefined));
  });

  test('a node whose link drops turns not Ready; the others stay Ready', async () => {
    const gone = NODES[0]!;
    // Cut without DISCONNECT, as a device losing power: the broker publishes its last will.
    clients.get(gone)!.stream.destroy();
    await waitFor(`${gone} not Ready`, async () => ((await ready(gone)) === 'Unknown' ? true : undefined), 30_000);
    for (const node of NODES.slice(1)) assert.equal(await ready(node), 'True');
  });
});
