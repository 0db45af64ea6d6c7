/**
 * Heartbeats seen from the API, with a hand-driven agent on the real broker: a node one heartbeat and
 * a half late is flagged stale (HeartbeatLate, `Ready,Stale` in `get nodes`) with the time it was last
 * heard; the next status clears the flag; silence for three heartbeats turns it NotReady.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { CONTRACT_VERSION, DELIVERY, encode, topics, type payloads } from '../../src/contract/index.js';
import { nodeStatusText, podStatusText } from '../../src/cli/output.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

const NODE = 'edge-beat';

describe('node heartbeats', () => {
  let t: TestServer;
  let c: MqttClient;
  const node = async () => (await t.api('GET', `/api/v1/nodes/${NODE}`)).body;
  const cond = (n: any, type: string) => n?.status?.conditions?.find((x: any) => x.type === type);
  let podUid = '';
  const podReport = (): payloads.PodReport => ({ uid: podUid, namespace: 'default', name: 'app', phase: 'Running', containers: [{ name: 'main', image: 'busybox', ready: true, restartCount: 0, state: 'running' }] });
  let seq = 0;
  const status = (): Buffer =>
    encode({ node: NODE, bootId: 'boot-1', seq: ++seq, observedGeneration: 0, ts: new Date().toISOString(), pods: podUid ? [podReport()] : [], runtimeHealthy: true, heartbeatSeconds: 1 } satisfies payloads.Status);
  const pod = async () => (await t.api('GET', '/api/v1/namespaces/default/pods/app')).body;

  before(async () => {
    t = await startTestServer();
    const o = await t.joinNode(NODE);
    c = await mqtt.connectAsync(o.url, o);
    const hello: payloads.Hello = {
      agentVersion: '0.0.0-test', contractVersion: CONTRACT_VERSION, node: NODE, bootId: 'boot-1', arch: 'arm64', os: 'linux', osImage: 'Test', kernelVersion: '6.1',
      hostname: NODE, cpu: { cores: 4, model: 'A72' }, memoryBytes: 2 ** 31, addresses: ['192.0.2.7'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
    };
    await c.publishAsync(topics.hello(NODE), encode(hello), DELIVERY.hello);
    await waitFor('node registered', async () => (await t.api('GET', `/api/v1/nodes/${NODE}`)).status === 200);
  });
  after(async () => {
    await c?.endAsync(true).catch(() => {});
    await t?.stop();
  });

  test('late → Ready,Stale (and its pods Running,Stale) with last-heard time; a status clears it; silence → NotReady', async () => {
    const created = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'app' }, spec: { nodeName: NODE, containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(created.status, 201, created.text);
    podUid = created.body.metadata.uid;
    await c.publishAsync(topics.status(NODE), status(), DELIVERY.status);
    await waitFor('pod Running', async () => (await pod())?.status?.phase === 'Running');
    const sentAt = Date.now();
    await waitFor('Ready', async () => cond(await node(), 'Ready')?.status === 'True');
    // Heartbeat 1 s, no more statuses: flagged after 1.5 s (the server looks every second).
    const late = await waitFor('HeartbeatLate', async () => {
      const n = await node();
      return cond(n, 'HeartbeatLate')?.status === 'True' ? n : undefined;
    }, 10_000);
    const flaggedAfter = Date.now() - sentAt;
    console.log(`[heartbeat] flagged stale ${flaggedAfter} ms after the last status (heartbeat 1 s)`);
    assert.equal(cond(late, 'Ready').status, 'True', 'still Ready: late is not lost');
    assert.equal(nodeStatusText(late), 'Ready,Stale');
    assert.match(cond(late, 'HeartbeatLate').message, /no status or ping for \d+s \(expected every 1s\)/);
    assert.ok(Math.abs(Date.parse(late.status.lastHeard) - sentAt) < 1000, `lastHeard ${late.status.lastHeard} is when the status was sent`);
    // The event is recorded just after the condition is written.
    await waitFor('a HeartbeatLate event', async () => {
      const events = await t.api('GET', `/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${NODE}`);
      return events.body.items.some((e: any) => e.reason === 'HeartbeatLate');
    });
    const stalePod = await waitFor('pod flagged', async () => {
      const p = await pod();
      return podStatusText(p) === 'Running,Stale' ? p : undefined;
    });
    assert.match(stalePod.status.conditions.find((x: any) => x.type === 'StatusStale').message, /node edge-beat has not reported for \d+s/);

    await c.publishAsync(topics.status(NODE), status(), DELIVERY.status);
    const fresh = await waitFor('HeartbeatLate cleared', async () => {
      const n = await node();
      return cond(n, 'HeartbeatLate')?.status === 'False' ? n : undefined;
    });
    assert.equal(nodeStatusText(fresh), 'Ready');
    await waitFor('pod unflagged', async () => podStatusText(await pod()) === 'Running');

    // Three heartbeats without a word: NotReady.
    const notReady = await waitFor('NotReady', async () => {
      const n = await node();
      return cond(n, 'Ready')?.status === 'False' ? n : undefined;
    }, 10_000);
    assert.equal(nodeStatusText(notReady), 'NotReady');
    // A command is not sent to a node that cannot run it now (nor queued for later).
    const exec = await t.api('POST', '/api/v1/namespaces/default/pods/app/exec', { command: ['true'] });
    assert.equal(exec.status, 503, exec.text);
    assert.match(exec.text, /node edge-beat is not ready \(NodeStatusUnknown: no heartbeat for \d+s\): cannot exec in pod app/);
  });
  test('a lost node: its pods show Unknown with nothing ready, an opted-in pod is evicted when its toleration expires, a flapping link is LinkDegraded', async () => {
    const name = 'edge-lost';
    const o = await t.joinNode(name);
    const d = await mqtt.connectAsync(o.url, o);
    try {
      const hello: payloads.Hello = {
        agentVersion: '0.0.0-test', contractVersion: CONTRACT_VERSION, node: name, bootId: 'boot-2', arch: 'arm64', os: 'linux', osImage: 'Test', kernelVersion: '6.1',
        hostname: name, cpu: { cores: 4, model: 'A72' }, memoryBytes: 2 ** 31, addresses: ['192.0.2.8'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
      };
      await d.publishAsync(topics.hello(name), encode(hello), DELIVERY.hello);
      await waitFor('node registered', async () => (await t.api('GET', `/api/v1/nodes/${name}`)).status === 200);
      const mk = async (pod: string, tolerationSeconds?: number) => {
        const r = await t.api('POST', '/api/v1/namespaces/default/pods', {
          apiVersion: 'v1', kind: 'Pod', metadata: { name: pod },
          spec: {
            nodeName: name, containers: [{ name: 'main', image: 'busybox' }],
            ...(tolerationSeconds === undefined ? {} : { tolerations: [{ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds }] }),
          },
        });
        assert.equal(r.status, 201, r.text);
        return r.body.metadata.uid as string;
      };
      const uids = { stays: await mk('stays'), leaves: await mk('leaves', 2) };
      const running = (pod: 'stays' | 'leaves'): payloads.PodReport => ({ uid: uids[pod], namespace: 'default', name: pod, phase: 'Running', containers: [{ name: 'main', image: 'busybox', ready: true, restartCount: 0, state: 'running' }] });
      await d.publishAsync(topics.status(name), encode({ node: name, bootId: 'boot-2', seq: 1, observedGeneration: 0, ts: new Date().toISOString(), pods: [running('stays'), running('leaves')], runtimeHealthy: true, heartbeatSeconds: 30 } satisfies payloads.Status), DELIVERY.status);
      const get = async (pod: string) => (await t.api('GET', `/api/v1/namespaces/default/pods/${pod}`)).body;
      await waitFor('pods Running and ready', async () => (await get('stays'))?.status?.containerStatuses?.[0]?.ready === true && (await get('leaves'))?.status?.phase === 'Running');

      const presence = (state: 'online' | 'offline') => d.publishAsync(topics.presence(name), encode({ state, bootId: 'boot-2', ts: new Date().toISOString() } satisfies payloads.Presence), DELIVERY.presence);
      await presence('offline');
      const lost = await waitFor('pod Unknown', async () => {
        const p = await get('stays');
        return p?.status?.phase === 'Unknown' ? p : undefined;
      });
      assert.equal(podStatusText(lost), 'NodeLost');
      assert.deepEqual(lost.status.containerStatuses.map((c: any) => c.ready), [false], 'no container of a lost pod counts as ready');
      assert.equal(lost.status.conditions.find((c: any) => c.type === 'Ready').status, 'False');
      await waitFor('the opted-in pod evicted', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/leaves')).status === 404);
      const events = await t.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=leaves');
      assert.ok(events.body.items.some((e: any) => e.reason === 'TaintManagerEviction'), 'eviction event');
      assert.equal((await get('stays'))?.status?.phase, 'Unknown', 'a pod without the toleration stays bound');

      // Two more disconnects within the window: the link is degraded (shown Ready,Degraded once Ready).
      for (let i = 0; i < 2; i++) {
        await presence('online');
        await presence('offline');
      }
      await presence('online');
      const degraded = await waitFor('LinkDegraded', async () => {
        const n = (await t.api('GET', `/api/v1/nodes/${name}`)).body;
        return cond(n, 'LinkDegraded')?.status === 'True' && cond(n, 'Ready')?.status === 'True' ? n : undefined;
      });
      assert.equal(nodeStatusText(degraded), 'Ready,Degraded');
      assert.match(cond(degraded, 'LinkDegraded').message, /3 disconnects within the window/);
    } finally {
      await d.endAsync(true);
    }
  });
});
