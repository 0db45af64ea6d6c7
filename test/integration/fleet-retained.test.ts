/**
 * The retained fleet summary and node states on a real broker (aedes) from a real LevelDB store: a
 * subscriber that arrives later still gets them at once, a change goes out once (coalesced), a deleted
 * node's state is cleared from the broker.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import type { Node } from '../../src/api/node.js';
import { topics } from '../../src/contract/topics.js';
import { silentLogger } from '../../src/util/logger.js';
import { FleetPublisher, type NodeStatePayload } from '../../server/fleet/publisher.js';
import type { FleetStatus } from '../../server/fleet/summary.js';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../server/mqtt/broker.js';
import { LevelStore } from '../../server/store/level.js';
import { freePort, waitFor } from '../helpers/cluster.js';

let dir: string;
let store: LevelStore;
let broker: EmbeddedBroker;
let publisherClient: mqtt.MqttClient;
let publisher: FleetPublisher;

function node(name: string, ready: 'True' | 'False' | 'Unknown', o: { site?: string; heardAgoMs?: number } = {}): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: o.site ? { site: o.site } : {} },
    spec: {},
    status: { lastHeard: new Date(Date.now() - (o.heardAgoMs ?? 0)).toISOString(), conditions: [{ type: 'Ready', status: ready }] },
  };
}

/** A fresh client that collects what it receives on `filter` (retained messages first). */
async function subscriber(filter: string): Promise<{ messages: Map<string, { payload: string; retain: boolean }[]>; client: mqtt.MqttClient }> {
  const client = await mqtt.connectAsync(broker.url, { clientId: `drover-agent-dash-${Math.random().toString(36).slice(2)}`, protocolVersion: 4, reconnectPeriod: 0 });
  const messages = new Map<string, { payload: string; retain: boolean }[]>();
  client.on('message', (topic, payload, packet) => {
    const list = messages.get(topic) ?? [];
    list.push({ payload: payload.toString(), retain: packet.retain });
    messages.set(topic, list);
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return { messages, client };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-fleet-retained-'));
  store = await LevelStore.open({ path: join(dir, 'store') });
  // Everyone in as the server role (drover's own client ids go to `authenticate`): what is tested here is
  // what the publisher puts on the broker; the operators' view-token door is tested with the real server.
  broker = await startEmbeddedBroker({ plain: { host: '127.0.0.1', port: await freePort() }, authenticate: () => ({ principal: { role: 'server' } }), logger: silentLogger });
  for (const n of [node('edge-1', 'True', { site: 'north' }), node('edge-2', 'True', { site: 'north' }), node('edge-3', 'False', { site: 'south' }), node('quiet', 'True', { heardAgoMs: 3_600_000 })]) await store.create(n);
  publisherClient = await mqtt.connectAsync(broker.url, { clientId: 'drover-server', protocolVersion: 4, reconnectPeriod: 0 });
  publisher = new FleetPublisher({
    store,
    logger: silentLogger,
    version: '0.1.0',
    debounceMs: 300,
    sink: { publish: async (topic, payload, opts) => void (await publisherClient.publishAsync(topic, payload, opts)) },
  });
  await publisher.start();
});

after(async () => {
  await publisher?.stop();
  await publisherClient?.endAsync();
  await broker?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

test('a subscriber arriving later gets the retained summary and every node state at once; a stale node is not Ready-current', async () => {
  const sub = await subscriber(topics.fleetSummary());
  const states = await subscriber(topics.allNodeStates());
  try {
    const summary = await waitFor('retained summary', async () => sub.messages.get(topics.fleetSummary())?.[0]);
    assert.equal(summary.retain, true);
    const s = JSON.parse(summary.payload) as FleetStatus;
    assert.equal(s.nodes.total, 4);
    assert.deepEqual(s.nodes.byState, { ready: 2, degraded: 0, stale: 1, notReady: 1, unknown: 0 });
    assert.deepEqual(s.nodes.bySite.north?.ready, 2);
    await waitFor('4 node states', async () => states.messages.size === 4);
    const quiet = JSON.parse(states.messages.get(topics.nodeState('quiet'))![0]!.payload) as NodeStatePayload;
    assert.equal(quiet.state, 'Ready');
    assert.equal(quiet.stale, true, 'a node silent for an hour is flagged stale');
    const down = JSON.parse(states.messages.get(topics.nodeState('edge-3'))![0]!.payload) as NodeStatePayload;
    assert.deepEqual([down.node, down.state, down.stale], ['edge-3', 'NotReady', false]);
    assert.ok(states.messages.get(topics.nodeState('edge-3'))![0]!.retain);
  } finally {
    await sub.client.endAsync();
    await states.client.endAsync();
  }
});

test('a burst of changes is coalesced into one new summary; a changed node gets a new state; unchanged ones get none', async () => {
  const sub = await subscriber(topics.fleetSummary());
  const states = await subscriber(topics.allNodeStates());
  try {
    await waitFor('retained summary', async () => sub.messages.get(topics.fleetSummary())?.length === 1);
    await waitFor('retained states', async () => states.messages.size === 4);
    // Ten writes in a row: edge-1 goes NotReady and comes back, then goes Unknown.
    for (let i = 0; i < 9; i++) await store.patch('Node', '', 'edge-1', (n) => ({ ...n, status: { ...n.status, conditions: [{ type: 'Ready', status: i % 2 ? 'True' : 'False' }] } }));
    await store.patch('Node', '', 'edge-1', (n) => ({ ...n, status: { ...n.status, conditions: [{ type: 'Ready', status: 'Unknown' }] } }));
    const last = await waitFor('a summary with edge-1 unknown', async () => {
      const all = sub.messages.get(topics.fleetSummary()) ?? [];
      const s = JSON.parse(all[all.length - 1]!.payload) as FleetStatus;
      return s.nodes.byState.unknown === 1 ? all : undefined;
    });
    // The retained one, then at most the debounce's few passes over ten writes, never one per write.
    assert.ok(last.length <= 4, `${last.length - 1} summaries for one burst of 10 writes`);
    const edge1 = await waitFor('edge-1 Unknown', async () => {
      const m = states.messages.get(topics.nodeState('edge-1')) ?? [];
      const p = JSON.parse(m[m.length - 1]!.payload) as NodeStatePayload;
      return p.state === 'Unknown' ? p : undefined;
    });
    assert.equal(edge1.node, 'edge-1');
    assert.equal(states.messages.get(topics.nodeState('edge-2'))!.length, 1, 'edge-2 did not change: only its retained state');
  } finally {
    await sub.client.endAsync();
    await states.client.endAsync();
  }
});

test('a deleted node: its retained state is cleared, so a new dashboard never sees it', async () => {
  await store.delete('Node', '', 'edge-3');
  await waitFor('summary without edge-3', async () => {
    const sub = await subscriber(topics.fleetSummary());
    try {
      const m = await waitFor('retained', async () => sub.messages.get(topics.fleetSummary())?.[0], 5_000);
      return (JSON.parse(m.payload) as FleetStatus).nodes.total === 3;
    } finally {
      await sub.client.endAsync();
    }
  });
  const fresh = await subscriber(topics.allNodeStates());
  try {
    await waitFor('3 retained states', async () => fresh.messages.size === 3);
    // Anything retained arrives right after SUBACK; give a straggler a moment to show.
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual([...fresh.messages.keys()].sort(), [topics.nodeState('edge-1'), topics.nodeState('edge-2'), topics.nodeState('quiet')]);
  } finally {
    await fresh.client.endAsync();
  }
});

test('while the broker does not acknowledge, changes do not queue up passes: one more pass covers them all', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let blocked = 0;
  const sent: string[] = [];
  let passes = 0;
  class CountingPublisher extends FleetPublisher {
    override summary() {
      passes++;
      return super.summary();
    }
  }
  const stuck = new CountingPublisher({
    store,
    logger: silentLogger,
    version: '0.1.0',
    debounceMs: 20,
    sink: {
      publish: async (topic, payload) => {
        if (topic !== topics.fleetSummary()) return;
        blocked++;
        await gate;
        sent.push(payload);
      },
    },
  });
  const started = stuck.start();
  try {
    await waitFor('the first pass to hang on the broker', async () => blocked === 1);
    // Changes spaced beyond the debounce: each one asks for a pass of its own while the first hangs.
    for (let i = 0; i < 20; i++) {
      await store.patch('Node', '', 'edge-2', (n) => ({ ...n, metadata: { ...n.metadata, labels: { ...n.metadata.labels, site: `moved-${i}` } } }));
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.equal(passes, 1, 'nothing ran beside the hung pass');
    release();
    await started;
    await waitFor('the last change published', async () => sent.some((p) => (JSON.parse(p) as FleetStatus).nodes.bySite['moved-19'] !== undefined));
    assert.ok(passes <= 3, `${passes} passes for 20 changes during one hung pass`);
  } finally {
    release();
    await stuck.stop();
  }
});
