/**
 * Several servers on one broker, as the broker hands them an agent's reports: every server gets its own
 * copy of presence, hello and status (`every`: memory only), one server of the group the shared copy
 * (`once`: the store writes). Two registries on one store stand for two servers.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Pod } from '../../src/api/pod.js';
import { encode, type payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { NodeLiveness } from '../../server/nodes/liveness.js';
import { CROSSED_REPORTS_MS, NodeRegistry, olderThanApplied, REAPPLY_WINDOW_MS, statusOrder } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello, podReport } from '../fuzz/agent-reports.js';

let dir: string;
let store: LevelStore;
let clock = Date.parse('2026-11-28T07:00:00Z');
const servers: Array<{ registry: NodeRegistry; liveness: NodeLiveness }> = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-registry-servers-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
  for (let i = 0; i < 2; i++) {
    const liveness = new NodeLiveness({ flapThreshold: 2, flapWindowMs: 60_000 });
    const registry = new NodeRegistry({ store, events: new EventRecorder(store, silentLogger), logger: silentLogger, liveness, maxPodsPerNode: 110, now: () => clock });
    servers.push({ registry, liveness });
  }
});
after(async () => {
  for (const s of servers) await s.registry.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** The broker's delivery: every server's own copy first (as Mosquitto sends them), then the shared one to `to`. */
async function deliver(kind: 'hello' | 'presence' | 'status', node: string, payload: unknown, to: number): Promise<void> {
  const t = { kind, node } as const;
  await Promise.all(servers.map((s) => s.registry.handle(t, encode(payload), 'every')));
  await servers[to]!.registry.handle(t, encode(payload), 'once');
}

const status = (node: string, seq: number, ts: number, pods: payloads.PodReport[] = []): payloads.Status => ({
  node, bootId: 'boot-1', seq, observedGeneration: 0, ts: new Date(ts).toISOString(), pods, runtimeHealthy: true, heartbeatSeconds: 600,
});
const presence = (state: 'online' | 'offline'): payloads.Presence => ({ state, bootId: 'boot-1', ts: new Date(clock).toISOString() });

test('a status handled by one server: every server knows the node alive, and the copies every server gets write nothing', async () => {
  await deliver('hello', 'edge-1', agentHello('edge-1', 'boot-1'), 0);
  await deliver('status', 'edge-1', status('edge-1', 1, clock), 0);
  for (const s of servers) assert.equal(s.liveness.heardBeat('edge-1')?.lastHeardMs, clock);
  const rev = store.revision();
  clock += 600_000;
  // A heartbeat reaching only server 1's share: server 0, which leads, hears it all the same.
  await deliver('status', 'edge-1', status('edge-1', 2, clock), 1);
  assert.equal(servers[0]!.liveness.heardBeat('edge-1')?.lastHeardMs, clock, 'the leader did not hear the heartbeat another server handled');
  assert.equal(store.revision(), rev, 'a heartbeat that changes nothing wrote to the store');
  // Only the memory copies (a server that was not given the shared one): no write either.
  clock += 600_000;
  await Promise.all(servers.map((s) => s.registry.handle({ kind: 'status', node: 'edge-1' }, encode(status('edge-1', 3, clock)), 'every')));
  assert.equal(store.revision(), rev);
  assert.equal(servers[1]!.liveness.heardBeat('edge-1')?.lastHeardMs, clock);
});

test('two statuses of one node applied at once by two servers, the newer first: the pod keeps the newer', async () => {
  await deliver('hello', 'edge-2', agentHello('edge-2', 'boot-1'), 1);
  const pod = await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1', namespace: 'default' }, spec: { nodeName: 'edge-2', containers: [{ name: 'main', image: 'busybox' }] } } as Pod);
  const uid = pod.metadata.uid!;
  const older = status('edge-2', 1, clock, [{ ...podReport(uid, 'web-1', 'Running'), phase: 'Pending', containers: [{ name: 'main', image: 'busybox', ready: false, restartCount: 0, state: 'waiting', reason: 'ContainerCreating' }] }]);
  const newer = status('edge-2', 2, clock + 1_000, [podReport(uid, 'web-1', 'Running')]);
  await deliver('status', 'edge-2', newer, 1);
  await deliver('status', 'edge-2', older, 0);
  assert.equal((await store.get('Pod', 'default', 'web-1'))?.status?.phase, 'Running', 'an older report applied over a newer one');
});

test('a status handled before the hello another server is handling: it waits for the Node, then applies', async () => {
  const pending = servers[0]!.registry.handle({ kind: 'status', node: 'edge-3' }, encode(status('edge-3', 1, clock)), 'once');
  await new Promise((r) => setTimeout(r, 150));
  await servers[1]!.registry.handle({ kind: 'hello', node: 'edge-3' }, encode(agentHello('edge-3', 'boot-1')), 'once');
  await pending;
  const ready = (await store.get('Node', '', 'edge-3'))?.status?.conditions?.find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'True');
});

test('a goodbye: every server stops timing the node and counts the disconnect; the one handling it writes Unknown and, flapping, LinkDegraded', async () => {
  for (let i = 0; i < 2; i++) {
    await deliver('presence', 'edge-1', presence('offline'), i);
    for (const s of servers) assert.equal(s.liveness.isOffline('edge-1'), true);
    await deliver('presence', 'edge-1', presence('online'), 1 - i);
    clock += 1_000;
    await deliver('status', 'edge-1', status('edge-1', 10 + i, clock), i);
  }
  await deliver('presence', 'edge-1', presence('offline'), 1);
  const node = await store.get('Node', '', 'edge-1');
  assert.equal(node?.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'Unknown');
  assert.equal(node?.status?.conditions?.find((c) => c.type === 'LinkDegraded')?.status, 'True', 'the disconnects heard by two servers were not counted together');
  for (const s of servers) assert.equal(s.liveness.flaps.isDegraded('edge-1'), true);
});

test('a link the leader found stable again: one disconnect later, handled by another server, does not mark it degraded', async () => {
  // A whole window without a disconnect; the leader (server 0) marks the link stable, on its own tracker.
  clock += 61_000;
  await deliver('presence', 'edge-1', presence('online'), 0);
  await deliver('status', 'edge-1', status('edge-1', 20, clock), 0);
  servers[0]!.liveness.flaps.stable('edge-1');
  await store.patch('Node', '', 'edge-1', (n) => {
    n.status!.conditions = n.status!.conditions!.map((c) => (c.type === 'LinkDegraded' ? { ...c, status: 'False', reason: 'LinkStable' } : c));
    return n;
  });
  await deliver('presence', 'edge-1', presence('offline'), 1);
  const node = await store.get('Node', '', 'edge-1');
  assert.equal(node?.status?.conditions?.find((c) => c.type === 'LinkDegraded')?.status, 'False', 'one disconnect after a stable window marked the link degraded again');
});

test('a status the broker handed a server that died before handling it: the leader applies it again from its own copy; nodes gone or late since are left alone', async () => {
  await deliver('hello', 'edge-4', agentHello('edge-4', 'boot-1'), 0);
  await deliver('hello', 'edge-5', agentHello('edge-5', 'boot-1'), 0);
  const pods: Record<string, string> = {};
  for (const node of ['edge-4', 'edge-5']) {
    const p = await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `app-${node}`, namespace: 'default' }, spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }] } } as Pod);
    pods[node] = p.metadata.uid!;
  }
  const phase = async (node: string) => (await store.get('Pod', 'default', `app-${node}`))?.status?.phase;
  // Both pods start: every server hears it, server 1 is given both shares and dies without handling them.
  for (const node of ['edge-4', 'edge-5']) {
    await Promise.all(servers.map((s) => s.registry.handle({ kind: 'status', node }, encode(status(node, 1, clock, [podReport(pods[node]!, `app-${node}`, 'Running')])), 'every')));
  }
  // A heartbeat of edge-4 handled by server 0 (no pod reports); edge-5 says goodbye.
  clock += 1_000;
  await deliver('status', 'edge-4', status('edge-4', 2, clock), 0);
  await deliver('presence', 'edge-5', { ...presence('offline') }, 0);
  assert.equal(await phase('edge-4'), undefined);
  assert.equal(await servers[0]!.registry.reapplyHeard(), 1);
  assert.equal(await phase('edge-4'), 'Running', 'the status the dead server took with it was not applied again');
  assert.equal(await phase('edge-5'), undefined, 'a node that said goodbye got its last status applied again');
  // Once more changes nothing; after the window, nothing is looked at again.
  const rev = store.revision();
  await servers[0]!.registry.reapplyHeard();
  assert.equal(store.revision(), rev);
  clock += REAPPLY_WINDOW_MS + 1;
  assert.equal(await servers[0]!.registry.reapplyHeard(), 0);
});

test('statusOrder and olderThanApplied: replays, clocks stepped back, reports crossed between servers', () => {
  const last = { bootId: 'b', seq: 5, tsMs: Date.parse('2026-11-28T07:00:00Z') };
  assert.equal(statusOrder(last, { bootId: 'b', seq: 5, ts: '2026-11-28T07:00:00Z' }), 'replay');
  assert.equal(statusOrder(last, { bootId: 'b', seq: 6, ts: '2026-11-28T06:00:00Z' }), 'stale');
  assert.equal(statusOrder(last, { bootId: 'c', seq: 1, ts: '2026-11-28T06:00:00Z' }), 'fresh');
  assert.equal(olderThanApplied('2026-11-28T07:00:05Z', '2026-11-28T07:00:04Z'), true);
  assert.equal(olderThanApplied('2026-11-28T07:00:05Z', '2026-11-28T07:00:06Z'), false);
  assert.equal(olderThanApplied(undefined, '2026-11-28T07:00:06Z'), false);
  // A board booting with its clock hours behind: applied, as one server would.
  assert.equal(olderThanApplied('2026-11-28T07:00:05Z', new Date(Date.parse('2026-11-28T07:00:05Z') - CROSSED_REPORTS_MS - 1).toISOString()), false);
});
