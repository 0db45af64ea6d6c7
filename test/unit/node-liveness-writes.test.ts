import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Condition } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import { withLiveLastHeard, withLiveNodes } from '../../server/nodes/live-view.js';
import { NodeLiveness } from '../../server/nodes/liveness.js';
import { readyWriteNeeded } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';

const T0 = '2026-01-01T00:00:00.000Z';
const ms0 = Date.parse(T0);

function node(conditions: Condition[], lastHeard: string | undefined = T0): Node {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1' }, spec: {}, status: { conditions, ...(lastHeard ? { lastHeard } : {}) } };
}
const READY: Condition = { type: 'Ready', status: 'True', reason: 'AgentReady', lastHeartbeatTime: T0, lastTransitionTime: T0 };
const UNHEALTHY: Condition = { type: 'Ready', status: 'False', reason: 'RuntimeUnhealthy' };
const LATE: Condition = { type: 'HeartbeatLate', status: 'True', reason: 'NoRecentStatus' };

test('a heartbeat of a Ready node this process heard before writes nothing', () => {
  assert.equal(readyWriteNeeded(node([READY]), true, true), false);
  // However long ago the stored time is: it is no longer rewritten to stay fresh.
  assert.equal(readyWriteNeeded(node([READY], '2020-01-01T00:00:00Z'), true, true), false);
});

test('a status that changes what a reader sees writes the Node', () => {
  assert.equal(readyWriteNeeded(node([READY]), true, false), true, 'first status heard by this process (after a server start)');
  assert.equal(readyWriteNeeded(node([READY, LATE]), true, true), true, 'marked late: the write lets the lifecycle controller clear it');
  assert.equal(readyWriteNeeded(node([{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown' }]), true, true), true, 'not Ready → Ready');
  assert.equal(readyWriteNeeded(node([READY]), false, true), true, 'runtime went unhealthy');
  assert.equal(readyWriteNeeded(node([UNHEALTHY]), true, true), true, 'runtime healthy again');
  assert.equal(readyWriteNeeded(node([]), true, true), true, 'no Ready condition yet');
});

test('a node whose runtime stays unhealthy is not rewritten on every report', () => {
  assert.equal(readyWriteNeeded(node([UNHEALTHY]), false, true), false);
});

test('reads show the last heard time from memory when it is newer than the stored one', () => {
  const beat = { lastHeardMs: ms0 + 90_000, periodMs: 30_000, bootId: 'b' };
  const stored = node([READY, { type: 'MemoryPressure', status: 'False' }]);
  const live = withLiveLastHeard(stored, beat);
  const heard = new Date(ms0 + 90_000).toISOString();
  assert.equal(live.status?.lastHeard, heard);
  assert.equal(live.status?.conditions?.[0]?.lastHeartbeatTime, heard);
  assert.equal(live.status?.conditions?.[0]?.lastTransitionTime, T0, 'the transition time is the stored one');
  assert.deepEqual(live.status?.conditions?.[1], { type: 'MemoryPressure', status: 'False' });
  assert.equal(stored.status?.lastHeard, T0, 'the stored object is not touched');
  assert.equal(stored.status?.conditions?.[0]?.lastHeartbeatTime, T0);
});

test('reads keep the stored time when memory has nothing newer, or the node is not Ready', () => {
  const stored = node([READY]);
  assert.equal(withLiveLastHeard(stored, undefined), stored, 'not heard in this process');
  assert.equal(withLiveLastHeard(stored, { lastHeardMs: ms0 - 1, periodMs: 30_000, bootId: 'b' }), stored, 'older than stored');
  const offline = node([{ type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown' }]);
  assert.equal(withLiveLastHeard(offline, { lastHeardMs: ms0 + 60_000, periodMs: 30_000, bootId: 'b' }), offline, 'an offline node shows when it was last heard as stored');
  const never = node([READY], undefined);
  assert.equal(withLiveLastHeard(never, { lastHeardMs: ms0, periodMs: 30_000, bootId: 'b' }).status?.lastHeard, T0, 'no stored time: memory says');
});

test('a ping moves the last heard time of a node already heard, and only of that one', () => {
  const l = new NodeLiveness({ flapThreshold: 3, flapWindowMs: 60_000 });
  l.touch('edge-1', ms0);
  assert.equal(l.beat('edge-1'), undefined, 'never heard in this process: a ping alone does not start timing it');
  l.heard('edge-1', { lastHeardMs: ms0, periodMs: 3_600_000, bootId: 'b' });
  l.touch('edge-1', ms0 + 15_000);
  assert.deepEqual(l.beat('edge-1'), { lastHeardMs: ms0 + 15_000, periodMs: 3_600_000, bootId: 'b' });
  l.touch('edge-1', ms0 + 5_000);
  assert.equal(l.beat('edge-1')?.lastHeardMs, ms0 + 15_000, 'never moved back');
  l.wentOffline('edge-1', ms0 + 20_000);
  l.touch('edge-1', ms0 + 25_000);
  assert.equal(l.beat('edge-1'), undefined, 'gone offline (last will): a late ping does not bring it back');
});

test('the live view of the store: Node reads carry the time heard in memory; other kinds, writes and the store itself are untouched', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-live-view-'));
  const store = await LevelStore.open({ path: join(dir, 'db') });
  try {
    await store.create(node([READY]));
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'edge' }, status: { phase: 'Active' } });
    const liveness = new NodeLiveness({ flapThreshold: 3, flapWindowMs: 60_000 });
    const view = withLiveNodes(store, liveness);
    assert.equal((await view.get('Node', '', 'edge-1'))?.status?.lastHeard, T0, 'nothing heard in memory yet');
    liveness.heard('edge-1', { lastHeardMs: ms0 + 45_000, periodMs: 30_000, bootId: 'b' });
    const heard = new Date(ms0 + 45_000).toISOString();
    assert.equal((await view.get('Node', '', 'edge-1'))?.status?.lastHeard, heard);
    assert.equal((await view.list('Node')).items[0]?.status?.lastHeard, heard);
    assert.equal((await store.get('Node', '', 'edge-1'))?.status?.lastHeard, T0, 'the store keeps the time of the last change');
    assert.equal((await view.get('Namespace', '', 'edge'))?.metadata.name, 'edge');
    const rev = store.revision();
    assert.equal(view.revision(), rev, 'methods reach the store itself');
    await view.patch('Node', '', 'edge-1', (n) => ({ ...n, metadata: { ...n.metadata, labels: { site: 'a' } } }));
    assert.equal(store.revision(), rev + 1, 'a write through the view is one store write');
    assert.equal((await store.get('Node', '', 'edge-1'))?.metadata.labels?.site, 'a');
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
