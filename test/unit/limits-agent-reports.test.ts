/**
 * A device that is authenticated as one node (the broker's ACL lets it publish only on its own topics)
 * trying to say more than it may: status replayed from an earlier boot or sent again, a status 11 minutes
 * old, Events about other nodes' objects, restricted labels in its hello. The reports go through the
 * server's NodeRegistry into a real LevelDB store, as the broker hands them over.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { encode, type payloads } from '../../src/contract/index.js';
import { agentHello as hello, podReport as report } from '../fuzz/agent-reports.js';
import type { NodeRegistry } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { testRegistry } from '../helpers/registry.js';

describe('agent reports: what a node may not say', () => {
  let dir: string;
  let store: LevelStore;
  let registry: NodeRegistry;
  let nowMs = Date.parse('2026-01-01T12:00:00Z');

  const send = (node: string, kind: 'hello' | 'status' | 'events' | 'presence', body: unknown) => registry.handle({ kind, node }, encode(body));
  const podPhase = async (name: string) => (await store.get('Pod', 'default', name))?.status?.phase;
  const status = (node: string, bootId: string, seq: number, pods: payloads.PodReport[], tsMs = nowMs): payloads.Status => ({
    node,
    bootId,
    seq,
    observedGeneration: 0,
    ts: new Date(tsMs).toISOString(),
    pods,
    runtimeHealthy: true,
    heartbeatSeconds: 10,
  });
  const pod = async (name: string, nodeName: string): Promise<string> => {
    const p = await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName, containers: [{ name: 'main', image: 'busybox' }] } } as never);
    return (p as { metadata: { uid: string } }).metadata.uid;
  };
  const events = async () => (await store.list('Event', 'default')).items.map((e) => ({ reason: e.reason, object: `${e.involvedObject.kind}/${e.involvedObject.name}`, message: e.message }));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-limits-reports-'));
    store = await LevelStore.open({ path: join(dir, 'db') });
    registry = testRegistry(store, { now: () => nowMs });
    await send('edge-a', 'hello', hello('edge-a', 'boot-a1'));
    await send('edge-b', 'hello', hello('edge-b', 'boot-b1'));
  });
  after(async () => {
    await registry?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a status replayed from an earlier boot, or with a sequence number already applied, does not move a pod back', async () => {
    const uid = await pod('replayed', 'edge-a');
    // Captured while the pod was failing, in the device's previous boot.
    const oldBootFailed = status('edge-a', 'boot-a0', 999_999, [report(uid, 'replayed', 'Failed')]);
    await send('edge-a', 'status', status('edge-a', 'boot-a1', 10, [report(uid, 'replayed', 'Running')]));
    assert.equal(await podPhase('replayed'), 'Running');

    await send('edge-a', 'status', oldBootFailed);
    assert.equal(await podPhase('replayed'), 'Running', 'a status from boot-a0 is ignored: the node said hello from boot-a1');
    // Same boot, same sequence number (the message sent again), and a lower one (delivered late).
    await send('edge-a', 'status', status('edge-a', 'boot-a1', 10, [report(uid, 'replayed', 'Failed')]));
    await send('edge-a', 'status', status('edge-a', 'boot-a1', 9, [report(uid, 'replayed', 'Failed')]));
    assert.equal(await podPhase('replayed'), 'Running', 'a sequence number not above the last applied is ignored');

    // The next genuine report is applied.
    await send('edge-a', 'status', status('edge-a', 'boot-a1', 11, [report(uid, 'replayed', 'Failed')]));
    assert.equal(await podPhase('replayed'), 'Failed');
  });

  test('a status timestamped 11 minutes before the last applied one is not applied', async () => {
    const uid = await pod('old-news', 'edge-b');
    await send('edge-b', 'status', status('edge-b', 'boot-b1', 100, [report(uid, 'old-news', 'Running')]));
    assert.equal(await podPhase('old-news'), 'Running');
    await send('edge-b', 'status', status('edge-b', 'boot-b1', 101, [report(uid, 'old-news', 'Failed')], nowMs - 11 * 60_000));
    assert.equal(await podPhase('old-news'), 'Running');
    // Within the window, seq decides (clocks of small devices jitter).
    await send('edge-b', 'status', status('edge-b', 'boot-b1', 102, [report(uid, 'old-news', 'Failed')], nowMs - 60_000));
    assert.equal(await podPhase('old-news'), 'Failed');
  });

  test('a new boot announced by hello is followed; then its status applies and the earlier boot is ignored', async () => {
    const uid = await pod('rebooted', 'edge-b');
    await send('edge-b', 'hello', hello('edge-b', 'boot-b2'));
    // The new boot's sequence numbers start low again: that is fine, they count in their own boot.
    await send('edge-b', 'status', status('edge-b', 'boot-b2', 1, [report(uid, 'rebooted', 'Running')]));
    assert.equal(await podPhase('rebooted'), 'Running');
    await send('edge-b', 'status', status('edge-b', 'boot-b1', 5_000, [report(uid, 'rebooted', 'Failed')]));
    assert.equal(await podPhase('rebooted'), 'Running');
    // The last will of boot-b1, arriving late, does not take the node of boot-b2 offline.
    await send('edge-b', 'presence', { state: 'offline', bootId: 'boot-b1', ts: new Date(nowMs).toISOString() } satisfies payloads.Presence);
    const ready = (await store.get('Node', '', 'edge-b'))?.status?.conditions?.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'True');
  });

  test('events about another node, another node\'s pod or any other kind are dropped; own node and own pods recorded', async () => {
    const mine = await pod('mine', 'edge-a');
    const theirs = await pod('theirs', 'edge-b');
    const ev = (reason: string, involved: payloads.AgentEvent['involved']): payloads.AgentEvent => ({ type: 'Warning', reason, message: `${reason} message`, ts: new Date(nowMs).toISOString(), involved });
    await send('edge-a', 'events', {
      node: 'edge-a',
      events: [
        ev('SpoofNode', { kind: 'Node', name: 'edge-b' }),
        ev('SpoofPod', { kind: 'Pod', namespace: 'default', name: 'theirs', uid: theirs }),
        ev('SpoofDeployment', { kind: 'Deployment', namespace: 'default', name: 'web' }),
        ev('SpoofNamespacedNode', { kind: 'Node', namespace: 'kube-system', name: 'edge-a' }),
        ev('SpoofUid', { kind: 'Pod', namespace: 'default', name: 'mine', uid: 'not-its-uid' }),
        ev('OwnNode', { kind: 'Node', name: 'edge-a' }),
        ev('OwnPod', { kind: 'Pod', namespace: 'default', name: 'mine', uid: mine }),
      ],
      dropped: 0,
    } satisfies payloads.Events);
    const got = (await events()).filter((e) => /^(Spoof|Own)/.test(e.reason));
    assert.deepEqual(got.map((e) => `${e.reason} ${e.object}`).sort(), ['OwnNode Node/edge-a', 'OwnPod Pod/mine']);
  });

  test('restricted labels in the hello are not applied, an Event names them, and labels set by the API stay', async () => {
    await store.patch('Node', '', 'edge-a', (n) => {
      n.metadata.labels = { ...n.metadata.labels, 'node-role.kubernetes.io/edge': '', 'node-restriction.drover.io/zone': 'vault' };
      return n;
    });
    await send(
      'edge-a',
      'hello',
      hello('edge-a', 'boot-a1', { 'node-restriction.drover.io/zone': 'payments', 'node-role.kubernetes.io/control-plane': '', 'role': 'payments', 'example.com/sensor': 'temp' }),
    );
    const labels = (await store.get('Node', '', 'edge-a'))!.metadata.labels!;
    assert.equal(labels['node-restriction.drover.io/zone'], 'vault', 'the API-set value is kept, not the agent\'s');
    assert.equal(labels['node-role.kubernetes.io/edge'], '');
    assert.equal(labels['node-role.kubernetes.io/control-plane'], undefined);
    assert.equal(labels.role, 'payments', 'other self-reported labels apply (as Kubernetes NodeRestriction)');
    assert.equal(labels['example.com/sensor'], 'temp');
    const refused = (await events()).find((e) => e.reason === 'RestrictedLabelsRefused' && e.object === 'Node/edge-a');
    assert.ok(refused, 'an Event on the Node');
    assert.match(refused.message, /node-restriction\.drover\.io\/zone/);
    assert.match(refused.message, /node-role\.kubernetes\.io\/control-plane/);
  });

  test('a new Node registered by hello does not get restricted labels either', async () => {
    await send('edge-c', 'hello', hello('edge-c', 'boot-c1', { 'node-restriction.drover.io/trusted': 'true' }));
    const node = await store.get('Node', '', 'edge-c');
    assert.ok(node);
    assert.equal(node.metadata.labels?.['node-restriction.drover.io/trusted'], undefined);
  });
});
