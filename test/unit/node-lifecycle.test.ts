import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { decideLifecycle, dueEvictions, lifecycleTaints, podMarks, TAINT_NOT_READY, TAINT_UNREACHABLE, type LifecyclePolicy } from '../../server/nodes/lifecycle.js';
import { FlapTracker, NodeLiveness } from '../../server/nodes/liveness.js';
import type { Condition } from '../../src/api/meta.js';
import { lostPodStatus, podStatusFromReport } from '../../server/nodes/pod-status.js';

const T0 = '2026-01-01T00:00:00.000Z';
const ms0 = Date.parse(T0);

test('lifecycle taints follow the Ready condition and keep their time', () => {
  const unreachable = lifecycleTaints({ type: 'Ready', status: 'Unknown' }, [{ key: 'site', value: 'a', effect: 'NoSchedule' }], T0);
  assert.deepEqual(unreachable, [{ key: 'site', value: 'a', effect: 'NoSchedule' }, { key: TAINT_UNREACHABLE, effect: 'NoExecute', timeAdded: T0 }]);
  assert.deepEqual(lifecycleTaints({ type: 'Ready', status: 'Unknown' }, unreachable, '2026-01-01T01:00:00Z')[1], { key: TAINT_UNREACHABLE, effect: 'NoExecute', timeAdded: T0 });
  assert.equal(lifecycleTaints({ type: 'Ready', status: 'False' }, unreachable, T0)[1]!.key, TAINT_NOT_READY);
  assert.deepEqual(lifecycleTaints({ type: 'Ready', status: 'True' }, unreachable, T0), [{ key: 'site', value: 'a', effect: 'NoSchedule' }]);
});

const node: Node = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1' }, spec: { taints: [{ key: TAINT_UNREACHABLE, effect: 'NoExecute', timeAdded: T0 }] } };
const pod = (name: string, tolerationSeconds?: number, key = TAINT_UNREACHABLE): Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', uid: name },
  spec: {
    nodeName: 'edge-1',
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 10,
    containers: [{ name: 'c', image: 'i' }],
    tolerations: tolerationSeconds === undefined ? undefined : [{ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds }],
  },
  status: { phase: 'Unknown' },
});

test('edge policy: pods without an eviction toleration stay on an unreachable node', () => {
  assert.deepEqual(dueEvictions(node, [pod('stay')], ms0 + 365 * 86400_000), { due: [], nextAtMs: undefined });
});

test('a pod that opted in is evicted once its tolerationSeconds have passed', () => {
  const pods = [pod('fast', 30), pod('slow', 300), pod('other-taint', 1, TAINT_NOT_READY)];
  const early = dueEvictions(node, pods, ms0 + 10_000);
  assert.deepEqual(early.due, []);
  assert.equal(early.nextAtMs, ms0 + 30_000);
  assert.deepEqual(dueEvictions(node, pods, ms0 + 31_000).due.map((p) => p.metadata.name), ['fast']);
  assert.deepEqual(dueEvictions(node, pods, ms0 + 301_000).due.map((p) => p.metadata.name), ['fast', 'slow']);
});

test('flapping: degraded after N disconnects in the window, once', () => {
  const f = new FlapTracker(3, 60_000);
  assert.equal(f.disconnect('n', 0), false);
  assert.equal(f.disconnect('n', 10_000), false);
  assert.equal(f.disconnect('n', 20_000), true);
  assert.equal(f.isDegraded('n'), true);
  assert.equal(f.disconnect('n', 30_000), false, 'already degraded: no second transition');
  assert.equal(f.lastDisconnectMs('n'), 30_000);
  const g = new FlapTracker(3, 60_000);
  g.disconnect('m', 0);
  g.disconnect('m', 50_000);
  assert.equal(g.disconnect('m', 120_000), false, 'drops spread wider than the window do not count');
  const h = new FlapTracker(3, 60_000);
  h.assumeDegraded('k');
  for (const t of [0, 1, 2]) assert.equal(h.disconnect('k', t), false, 'marked degraded by an earlier server: no new transition');
});

const policy: LifecyclePolicy = { missedHeartbeats: 3, lateFactor: 1.5, flapWindowMs: 60_000 };
const withConds = (...conditions: Condition[]): Node => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'edge-1' }, spec: {}, status: { conditions } });
const READY: Condition = { type: 'Ready', status: 'True', reason: 'AgentReady', lastTransitionTime: T0 };
const beat = { lastHeardMs: ms0, periodMs: 10_000, bootId: 'b' };

test('silence: late after a heartbeat and a half, NotReady after three, each decided once; next look when due', () => {
  const fresh = decideLifecycle({ node: withConds(READY), beat, lastDisconnectMs: undefined, nowMs: ms0 + 5_000, policy });
  assert.deepEqual(fresh, { nextAtMs: ms0 + 15_001 });
  const late = decideLifecycle({ node: withConds(READY), beat, lastDisconnectMs: undefined, nowMs: ms0 + 16_000, policy });
  assert.deepEqual(late, { late: { set: true, lastHeardMs: ms0, periodMs: 10_000 }, nextAtMs: ms0 + 30_001 });
  const marked = withConds(READY, { type: 'HeartbeatLate', status: 'True' });
  assert.deepEqual(decideLifecycle({ node: marked, beat, lastDisconnectMs: undefined, nowMs: ms0 + 20_000, policy }), { nextAtMs: ms0 + 30_001 }, 'marked already: nothing to write');
  const lost = decideLifecycle({ node: marked, beat, lastDisconnectMs: undefined, nowMs: ms0 + 31_000, policy });
  assert.deepEqual(lost.notReady, { type: 'Ready', status: 'False', reason: 'NodeStatusUnknown', message: 'no heartbeat for 31s' });
  assert.equal(lost.nextAtMs, undefined, 'nothing more falls due until it is heard again');
  const judged = withConds({ type: 'Ready', status: 'False', reason: 'NodeStatusUnknown' }, { type: 'HeartbeatLate', status: 'True' });
  assert.deepEqual(decideLifecycle({ node: judged, beat, lastDisconnectMs: undefined, nowMs: ms0 + 99_000, policy }), {});
  const heardAgain = decideLifecycle({ node: marked, beat: { ...beat, lastHeardMs: ms0 + 20_000 }, lastDisconnectMs: undefined, nowMs: ms0 + 21_000, policy });
  assert.deepEqual(heardAgain.late, { set: false });
  assert.equal(decideLifecycle({ node: withConds({ type: 'Ready', status: 'Unknown' }), beat: undefined, lastDisconnectMs: undefined, nowMs: ms0 + 999_000, policy }).notReady, undefined, 'offline: no heartbeat to time');
});

test('a node back online (Ready=True written after its old heartbeat) is not sent back to NotReady by that old heartbeat', () => {
  // Judged NotReady by silence, then its hello / presence-online wrote Ready=True and lastHeard: the
  // stale in-memory heartbeat must not overturn it before the first status report arrives.
  const back: Node = { ...withConds(READY), status: { conditions: [READY], lastHeard: new Date(ms0 + 60_000).toISOString() } };
  const d = decideLifecycle({ node: back, beat, lastDisconnectMs: undefined, nowMs: ms0 + 61_000, policy });
  assert.equal(d.notReady, undefined);
  assert.equal(d.late, undefined);
  assert.equal(d.nextAtMs, ms0 + 75_001, 'timed from when it came back');
  // An Unknown node (its last will arrived) is not turned NotReady by the timer either.
  const gone = decideLifecycle({ node: withConds({ type: 'Ready', status: 'Unknown', reason: 'NodeOffline' }), beat, lastDisconnectMs: undefined, nowMs: ms0 + 99_000, policy });
  assert.equal(gone.notReady, undefined);
});

test('liveness: a node that said goodbye gets no assumed grace heartbeat until it is heard again', () => {
  const l = new NodeLiveness({ flapThreshold: 3, flapWindowMs: 60_000 });
  assert.ok(l.assume('a', beat), 'after a server restart a Ready node gets one grace period');
  l.wentOffline('a', ms0);
  assert.equal(l.assume('a', beat), undefined, 'offline: nothing to time');
  l.heard('a', beat);
  assert.deepEqual(l.beat('a'), beat);
});

test('a degraded link is stable again after a whole window without a disconnect, also when an earlier server marked it', () => {
  const degraded = withConds(READY, { type: 'LinkDegraded', status: 'True', lastTransitionTime: T0 });
  assert.deepEqual(decideLifecycle({ node: degraded, beat: undefined, lastDisconnectMs: ms0 + 30_000, nowMs: ms0 + 80_000, policy }), { nextAtMs: ms0 + 90_001 });
  assert.equal(decideLifecycle({ node: degraded, beat: undefined, lastDisconnectMs: ms0 + 30_000, nowMs: ms0 + 91_000, policy }).linkStable, true);
  assert.equal(decideLifecycle({ node: degraded, beat: undefined, lastDisconnectMs: undefined, nowMs: ms0 + 61_000, policy }).linkStable, true, 'counted from the mark');
});

test('pod marks change exactly when the node turns lost or stale, or back', () => {
  const ok = podMarks(withConds(READY));
  assert.equal(ok.lost, undefined);
  assert.equal(ok.stale, undefined);
  const stale = podMarks(withConds(READY, { type: 'HeartbeatLate', status: 'True', lastTransitionTime: T0 }));
  assert.equal(stale.stale?.type, 'HeartbeatLate');
  assert.notEqual(stale.key, ok.key);
  const lost = podMarks(withConds({ type: 'Ready', status: 'Unknown', lastTransitionTime: T0 }, { type: 'HeartbeatLate', status: 'True', lastTransitionTime: T0 }));
  assert.equal(lost.lost?.status, 'Unknown');
  assert.notEqual(lost.key, stale.key);
  assert.equal(podMarks(withConds(READY, { type: 'HeartbeatLate', status: 'False', lastTransitionTime: T0 })).key, ok.key, 'a cleared mark is no mark');
});

test('a pod of a lost node is ready in nothing it says; the next report of its node restores it', () => {
  const report = { uid: 'u', namespace: 'default', name: 'web', phase: 'Running' as const, containers: [{ name: 'web', image: 'i', ready: true, restartCount: 0, state: 'running' as const }] };
  const running = podStatusFromReport(undefined, report, '192.0.2.7', T0);
  const lost = lostPodStatus(running, 'edge-1', { type: 'Ready', status: 'Unknown', reason: 'NodeStatusUnknown', message: 'agent went offline' });
  assert.equal(lost.phase, 'Unknown');
  assert.equal(lost.reason, 'NodeLost');
  assert.equal(lost.message, 'node edge-1 is unreachable (agent went offline); last reported phase Running');
  assert.deepEqual(lost.containerStatuses?.map((c) => c.ready), [false]);
  assert.deepEqual(lost.conditions?.filter((c) => c.status === 'False').map((c) => c.type), ['ContainersReady', 'Ready']);
  assert.equal(lost.hostIP, '192.0.2.7', 'what is still true is kept');
  const back = podStatusFromReport(lost, report, '192.0.2.7', '2026-01-01T00:01:00.000Z');
  assert.equal(back.phase, 'Running');
  assert.equal(back.reason, undefined);
  assert.deepEqual(back.containerStatuses?.map((c) => c.ready), [true]);
  assert.equal(back.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
});
