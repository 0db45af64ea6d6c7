/**
 * Edge autonomy over bad links, with real faults: two agents as separate processes, each in its own
 * network namespace with its own podman store, joined to a server whose broker they reach over a
 * veth link. Both 60 s scenarios run at the same time on different links:
 * - link cut for 60 s: the node turns Unknown (last will), its workloads keep running untouched, the
 *   events of the offline period (a container killed and restarted by the agent) arrive on return;
 * - 30 % packet loss both ways for 60 s: a rolling update still converges, without duplicates.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { waitFor } from '../helpers/cluster.js';
import {
  AGENT_START_MS,
  Cleanup,
  containersCreated,
  createDevice,
  DEPLOY,
  deploymentManifest,
  editDeployment,
  eventsFor,
  IMG1,
  IMG2,
  podManifest,
  readyStatus,
  rolledOut,
  secs,
  sleep,
  startInProcessServer,
  waitReady,
  type Device,
  type FaultServer,
} from '../helpers/fault.js';

const FAULT_MS = 60_000;
const KEEPALIVE_S = 5;

describe('edge autonomy: link cut and packet loss (netns, real podman)', () => {
  const cleanup = new Cleanup();
  let server: FaultServer;
  let outage: Device;
  let lossy: Device;

  before(async () => {
    server = await startInProcessServer(cleanup);
    const s = () => server;
    [outage, lossy] = await Promise.all([createDevice(cleanup, 'edge-outage', s, [IMG1]), createDevice(cleanup, 'edge-lossy', s, [IMG1, IMG2])]);
    outage.startAgent();
    lossy.startAgent();
    await Promise.all([waitReady(server.api, 'edge-outage', 'True', AGENT_START_MS), waitReady(server.api, 'edge-lossy', 'True', AGENT_START_MS)]);
  });
  after(() => cleanup.run());

  const podOf = async (dev: Device, pod: string): Promise<RuntimeContainer[]> => (await dev.containers()).filter((c) => c.labels[LABELS.pod] === pod);
  const phase = async (pod: string) => (await server.api('GET', `/api/v1/namespaces/default/pods/${pod}`)).body?.status?.phase as string | undefined;

  /** Link down 60 s: Unknown, workloads untouched, offline events delivered on return. */
  async function linkCut(): Promise<void> {
    const api = server.api;
    for (const name of ['steady', 'victim']) assert.equal((await api('POST', '/api/v1/namespaces/default/pods', podManifest(name, 'edge-outage'))).status, 201);
    await waitFor('steady and victim Running', async () => (await phase('steady')) === 'Running' && (await phase('victim')) === 'Running', 60_000, 200);
    const [steady] = await podOf(outage, 'steady');
    const [victim] = await podOf(outage, 'victim');
    assert.ok(steady && victim);

    assert.ok((await outage.link.established(server.mqttPort)) >= 1, 'the agent holds a connection to the broker before the cut');
    const t0 = Date.now();
    await outage.link.down();
    // The agent notices on its own (keepalive) and drops the dead connection: no longer established
    // in the device's kernel, while its reconnect attempts stay in SYN-SENT.
    const [detectMs, agentNoticedMs] = await Promise.all([
      waitReady(api, 'edge-outage', 'not True', 30_000, 50),
      waitFor('the agent dropping its dead connection', async () => (await outage.link.established(server.mqttPort)) === 0, 30_000, 100).then(() => Date.now() - t0),
    ]);
    assert.equal(await readyStatus(api, 'edge-outage'), 'Unknown', 'a silent link is detected by the broker keepalive and the last will: Unknown');
    await waitFor('pods of the lost node shown Unknown', async () => (await phase('steady')) === 'Unknown', 30_000, 100);
    console.log(`[link cut] server detection (Ready -> Unknown): ${secs(detectMs)} after the cut (keepalive ${KEEPALIVE_S} s, broker limit 1.5x = ${KEEPALIVE_S * 1.5} s)`);

    // Offline: kill a container; the agent restarts it on its own and journals that.
    const killedAt = Date.now();
    await outage.podman(['kill', victim.id]);
    const restarted = await waitFor(
      'victim restarted by the agent while offline',
      async () => {
        const [c] = await podOf(outage, 'victim');
        return c?.state === 'running' && c.startedAt !== victim.startedAt ? c : undefined;
      },
      40_000,
      200,
    );
    console.log(`[link cut] offline: killed container restarted by the agent after ${secs(Date.now() - killedAt)} (crash back-off 10 s)`);
    assert.equal(restarted.id, victim.id, 'restarted in place, not re-created');
    const backoffs = (await eventsFor(api, 'victim')).filter((e) => e.reason === 'BackOff');
    assert.equal(backoffs.length, 0, 'no event can arrive over a cut link');

    await sleep(Math.max(0, t0 + FAULT_MS - Date.now()));
    const t1 = Date.now();
    await outage.link.up();
    const [readyMs, reconnectMs] = await Promise.all([
      waitReady(api, 'edge-outage', 'True', 90_000, 100),
      waitFor('the agent connected again', async () => (await outage.link.established(server.mqttPort)) >= 1, 90_000, 100).then(() => Date.now() - t1),
    ]);
    const journaled = await waitFor(
      'the offline events at the server',
      async () => {
        const evs = await eventsFor(api, 'victim');
        const backoff = evs.find((e) => e.reason === 'BackOff');
        const started = evs.find((e) => e.reason === 'Started');
        return backoff && started && started.count >= 2 ? { backoff, started } : undefined;
      },
      60_000,
      100,
    );
    const eventsMs = Date.now() - t1;
    await waitFor('pods Running again', async () => (await phase('steady')) === 'Running' && (await phase('victim')) === 'Running', 60_000, 100);
    const convergedMs = Date.now() - t1;
    console.log(
      `[link cut] agent dropped its dead connection ${secs(agentNoticedMs)} after the cut; after the link came back: agent connected in ${secs(reconnectMs)}, node Ready in ${secs(readyMs)}, ` +
        `offline events at the server in ${secs(eventsMs)}, pods Running in ${secs(convergedMs)}`,
    );

    // The offline period's events carry their own times, inside the outage.
    for (const e of [journaled.backoff, journaled.started]) {
      const at = Date.parse(e.lastTimestamp);
      assert.ok(at >= t0 && at <= t1, `${e.reason} at ${e.lastTimestamp} is inside the outage`);
      assert.equal(e.source?.host, 'edge-outage');
    }
    // Nothing healthy was touched: same container, same start, no other container.
    const steadyNow = await podOf(outage, 'steady');
    assert.deepEqual(steadyNow.map((c) => [c.id, c.startedAt, c.state]), [[steady.id, steady.startedAt, 'running']]);
    const victimNow = await podOf(outage, 'victim');
    assert.deepEqual(victimNow.map((c) => [c.id, c.state]), [[victim.id, 'running']]);
  }

  /** 30 % loss both ways for 60 s while a Deployment rolls from :1 to :2. */
  async function packetLoss(): Promise<void> {
    const api = server.api;
    const REPLICAS = 3;
    assert.equal((await api('POST', DEPLOY, deploymentManifest('lossy', 'edge-lossy', IMG1, REPLICAS))).status, 201);
    await waitFor('lossy on :1', () => rolledOut(api, lossy, 'lossy', IMG1, REPLICAS), 90_000, 200);

    const t0 = Date.now();
    await lossy.link.loss(0.3);
    await editDeployment(api, 'lossy', (d) => (d.spec.template.spec.containers[0].image = IMG2));
    const done = await waitFor('lossy rolled out to :2 under 30% loss', () => rolledOut(api, lossy, 'lossy', IMG2, REPLICAS), 180_000, 250);
    const convergeMs = Date.now() - t0;
    await sleep(Math.max(0, t0 + FAULT_MS - Date.now()));
    // Read before the rules go: a rule that never matched (wrong interface, failed insert) drops nothing.
    const dropped = await lossy.link.lossDropped();
    await lossy.link.clearLoss();
    const offline = (await eventsFor(api, 'edge-lossy')).filter((e) => e.reason === 'NodeNotReady').reduce((n, e) => n + e.count, 0);
    console.log(
      `[30% loss] rolling update :1 -> :2 (${REPLICAS} replicas) converged in ${secs(convergeMs)} under loss; ` +
        `packets dropped: ${dropped.toHost} device -> host, ${dropped.toDevice} host -> device; node turned not Ready ${offline} times`,
    );
    assert.ok(dropped.toHost > 0, 'the loss rule on the host side dropped packets from the device');
    assert.ok(dropped.toDevice > 0, 'the loss rule in the device namespace dropped packets from the host');

    // Still rolled out after the loss ended, with the same containers.
    const after = await waitFor('lossy still on :2', () => rolledOut(api, lossy, 'lossy', IMG2, REPLICAS), 60_000, 250);
    assert.deepEqual(after.containers.map((c) => c.id).sort(), done.containers.map((c) => c.id).sort());
    // Exactly one container was ever created per new replica: no duplicates, no churn.
    const created = await containersCreated(lossy, t0);
    assert.deepEqual(created.map((c) => c.id).sort(), after.containers.map((c) => c.id).sort(), `containers created under loss: ${created.map((c) => c.name).join(', ')}`);
    for (const p of done.pods) {
      const createdEvents = (await eventsFor(api, p.metadata.name)).filter((e) => e.reason === 'Created');
      // More than 1 with one container created means an event batch delivered twice (QoS 1 resent
      // after a lost PUBACK) was recorded twice.
      assert.deepEqual(createdEvents.map((e) => e.count), [1], `pod ${p.metadata.name}: one Created event`);
    }
  }

  test('link cut for 60 s and 30% packet loss for 60 s, on two devices at once', { timeout: 300_000 }, async () => {
    const results = await Promise.allSettled([linkCut(), packetLoss()]);
    const devices = [outage, lossy];
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`${['link cut', 'packet loss'][i]}: ${(r.reason as Error)?.stack ?? String(r.reason)}\nagent ${devices[i]!.name} output (tail):\n${devices[i]!.agent?.output().slice(-6000)}`] : [],
    );
    assert.equal(failed.length, 0, failed.join('\n\n'));
  });
});
