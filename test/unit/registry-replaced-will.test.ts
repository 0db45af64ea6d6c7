/**
 * A reconnect replaces an agent's connection; the broker publishes the old connection's last will
 * ("offline"), which can reach the registry after the new connection's hello and status (seen at 2 of
 * 500 simulated nodes under load). The node turns Unknown; the new connection's next MQTT ping shows
 * the agent is connected, and brings it back at once instead of at the next heartbeat (10 minutes by
 * default). A node that really left sends no ping and stays Unknown.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encode, type payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { NodeLiveness } from '../../server/nodes/liveness.js';
import { NodeRegistry } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello } from '../fuzz/agent-reports.js';

let dir: string;
let store: LevelStore;
let registry: NodeRegistry;
let clock = Date.parse('2026-11-28T07:00:00Z');
const liveness = new NodeLiveness({ flapThreshold: 5, flapWindowMs: 60_000 });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-registry-will-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
  registry = new NodeRegistry({
    store,
    events: new EventRecorder(store, silentLogger),
    logger: silentLogger,
    liveness,
    maxPodsPerNode: 110,
    now: () => clock,
  });
});
after(async () => {
  await registry.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const presence = (state: 'online' | 'offline'): payloads.Presence => ({ state, bootId: 'boot-1', ts: new Date().toISOString() });
const ready = async (node: string) => (await store.get('Node', '', node))?.status?.conditions?.find((c) => c.type === 'Ready');

const status = (seq: number): payloads.Status => ({ node: 'edge-1', bootId: 'boot-1', seq, observedGeneration: 0, ts: new Date(clock).toISOString(), pods: [], runtimeHealthy: true, heartbeatSeconds: 600, keepaliveSeconds: 15 });

test('a late will of a replaced connection: Unknown until the next ping, then Ready again and timed from it', async () => {
  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode(agentHello('edge-1', 'boot-1')));
  await registry.handle({ kind: 'presence', node: 'edge-1' }, encode(presence('online')));
  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status(1)));
  assert.equal((await ready('edge-1'))?.status, 'True');
  const period = liveness.beat('edge-1')?.periodMs;
  assert.ok(period);

  // The old connection's will, after the new one's reports.
  await registry.handle({ kind: 'presence', node: 'edge-1' }, encode(presence('offline')));
  assert.equal((await ready('edge-1'))?.status, 'Unknown');
  assert.equal(liveness.beat('edge-1'), undefined, 'nothing to time after a goodbye');

  clock += 15_000;
  await registry.pinged('edge-1');
  const r = await ready('edge-1');
  assert.equal(r?.status, 'True');
  assert.equal(r?.message, 'agent connected');
  assert.deepEqual(liveness.beat('edge-1'), { lastHeardMs: clock, periodMs: period, bootId: 'boot-1' });

  // Later pings only move the last heard time.
  clock += 15_000;
  await registry.pinged('edge-1');
  assert.equal(liveness.beat('edge-1')?.lastHeardMs, clock);
});

test('a node that really left sends no ping and stays Unknown; a ping from a node never heard does nothing', async () => {
  await registry.handle({ kind: 'presence', node: 'edge-1' }, encode(presence('offline')));
  clock += 60_000;
  assert.equal((await ready('edge-1'))?.status, 'Unknown');
  await registry.pinged('edge-9');
  assert.equal(await store.get('Node', '', 'edge-9'), undefined);
  assert.equal(liveness.beat('edge-9'), undefined);
});
