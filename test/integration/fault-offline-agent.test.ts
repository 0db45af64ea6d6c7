/**
 * Edge autonomy, real faults on three devices at once (each an agent process in its own network
 * namespace with its own podman store):
 * - the agent is killed (SIGKILL) and restarted while the link is down: it brings its workloads back
 *   from the disk cache, its journal of offline events survives the restarts, and on return nothing
 *   is duplicated;
 * - a Deployment is updated while the node is offline: on return the node gets the latest desired
 *   snapshot only (intermediate ones skipped) and the update is applied exactly once;
 * - a half-open link (a TCP proxy that stalls without FIN or RST): keepalive detects it within
 *   1.5 x keepalive, and the agent reconnects once the path works again.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { waitFor } from '../helpers/cluster.js';
import {
  Cleanup,
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
  sampleContainers,
  secs,
  sleep,
  startInProcessServer,
  waitReady,
  type Device,
  type FaultServer,
} from '../helpers/fault.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const KEEPALIVE_S = 5;
/** The broker drops a client silent for 1.5 x keepalive; the rest is for the store write and polling. */
const DETECT_BOUND_MS = KEEPALIVE_S * 1.5 * 1000 + 2_000;

describe('edge autonomy: agent restarts offline, updates while offline, half-open link (netns, real podman)', () => {
  const cleanup = new Cleanup();
  let server: FaultServer;
  let reboot: Device;
  let update: Device;
  let stall: Device;
  let proxyPort = 0;

  before(async () => {
    server = await startInProcessServer(cleanup);
    const s = () => server;
    [reboot, update, stall] = await Promise.all([
      createDevice(cleanup, 'edge-reboot', s, [IMG1]),
      createDevice(cleanup, 'edge-update', s, [IMG1, IMG2]),
      createDevice(cleanup, 'edge-stall', s, []),
    ]);
    // The stalling device reaches the broker only through the userspace proxy.
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: server.mqttPort }, stall.link.hostIp);
    cleanup.add('tcp proxy', () => proxy.close());
    proxyPort = proxy.port;
    stallProxy = proxy;
    reboot.startAgent();
    update.startAgent();
    stall.startAgent({ url: `mqtt://${stall.link.hostIp}:${proxyPort}` });
    await Promise.all(['edge-reboot', 'edge-update', 'edge-stall'].map((n) => waitReady(server.api, n, 'True', 60_000)));
  });
  after(() => cleanup.run());
  let stallProxy: Awaited<ReturnType<typeof startTcpProxy>>;

  const podOf = async (dev: Device, pod: string): Promise<RuntimeContainer[]> => (await dev.containers()).filter((c) => c.labels[LABELS.pod] === pod);
  const phase = async (pod: string) => (await server.api('GET', `/api/v1/namespaces/default/pods/${pod}`)).body?.status?.phase as string | undefined;
  const journal = (dev: Device) => readFile(join(dev.stateDir, 'events.jsonl'), 'utf8').catch(() => '');

  /** SIGKILL and restart of the agent with the link down. */
  async function agentRestartsOffline(): Promise<void> {
    const { api } = server;
    for (const name of ['keep', 'lost']) assert.equal((await api('POST', '/api/v1/namespaces/default/pods', podManifest(name, 'edge-reboot'))).status, 201);
    await waitFor('keep and lost Running', async () => (await phase('keep')) === 'Running' && (await phase('lost')) === 'Running', 60_000, 200);
    const [keep] = await podOf(reboot, 'keep');
    const [lost] = await podOf(reboot, 'lost');
    assert.ok(keep && lost);

    const t0 = Date.now();
    await reboot.link.down();
    await waitReady(api, 'edge-reboot', 'not True', 30_000, 100);
    await reboot.agent!.kill9();
    // While no agent runs, a container disappears (say, wiped by a device reboot).
    await reboot.podman(['rm', '--force', '--time', '0', lost.id]);

    // An agent started with no link works from its disk cache.
    const started = Date.now();
    reboot.startAgent();
    const recreated = await waitFor(
      'lost re-created from the cache, offline',
      async () => {
        const cs = await podOf(reboot, 'lost');
        return cs.length === 1 && cs[0]!.state === 'running' ? cs[0] : undefined;
      },
      60_000,
      200,
    );
    const fromCacheMs = Date.now() - started;
    assert.notEqual(recreated.id, lost.id);
    // Its Created/Started events are in the journal on disk; a second kill must not lose them.
    await waitFor('offline events in the journal file', async () => (await journal(reboot)).includes('"Created container main"'), 10_000, 100);
    await reboot.agent!.kill9();
    reboot.startAgent();
    await sleep(4_000); // the third agent is up, offline, and must leave everything as it is

    const t1 = Date.now();
    await reboot.link.up();
    const readyMs = await waitReady(api, 'edge-reboot', 'True', 90_000, 100);
    const created = await waitFor(
      'offline Created event of lost at the server',
      async () => {
        const e = (await eventsFor(api, 'lost')).find((x) => x.reason === 'Created');
        return e && e.count === 2 ? e : undefined;
      },
      30_000,
      100,
    );
    const eventsMs = Date.now() - t1;
    await waitFor('keep and lost Running again', async () => (await phase('keep')) === 'Running' && (await phase('lost')) === 'Running', 30_000, 100);
    console.log(
      `[agent SIGKILL offline] restarted agent re-created the missing container from its cache in ${secs(fromCacheMs)} with no link; ` +
        `after the link returned: node Ready in ${secs(readyMs)}, journaled events (across two agent restarts) at the server in ${secs(eventsMs)}`,
    );
    const at = Date.parse(created.lastTimestamp);
    assert.ok(at >= t0 && at <= t1, `the Created event (${created.lastTimestamp}) is from the offline period`);
    // No duplicates, and the container that kept running was never touched by the restarted agents.
    await sleep(3_000);
    assert.deepEqual((await podOf(reboot, 'keep')).map((c) => [c.id, c.startedAt, c.state]), [[keep.id, keep.startedAt, 'running']]);
    assert.deepEqual((await podOf(reboot, 'lost')).map((c) => [c.id, c.state]), [[recreated.id, 'running']]);
    assert.equal((await reboot.containers()).length, 2);
    assert.equal((await journal(reboot)).split('\n').filter((l) => l.includes('"event"')).length, 0, 'the journal is empty once delivered');
  }

  /** A Deployment updated (and a pod deleted) while the node is offline. */
  async function updatedWhileOffline(): Promise<void> {
    const { api } = server;
    const REPLICAS = 2;
    assert.equal((await api('POST', DEPLOY, deploymentManifest('upd', 'edge-update', IMG1, REPLICAS))).status, 201);
    assert.equal((await api('POST', '/api/v1/namespaces/default/pods', podManifest('doomed', 'edge-update'))).status, 201);
    await waitFor('upd on :1', () => rolledOut(api, update, 'upd', IMG1, REPLICAS), 90_000, 200);
    await waitFor('doomed Running', async () => (await phase('doomed')) === 'Running', 30_000, 200);
    const oldIds = new Set((await update.containers()).map((c) => c.id));

    await update.link.down();
    await waitReady(api, 'edge-update', 'not True', 30_000, 100);
    // Several desired-state changes while offline: the update (old pods go, new ones wait for the node) and a deletion.
    await editDeployment(api, 'upd', (d) => (d.spec.template.spec.containers[0].image = IMG2));
    assert.equal((await api('DELETE', '/api/v1/namespaces/default/pods/doomed')).status, 200);
    await sleep(5_000);
    const bound = ((await api('GET', '/api/v1/namespaces/default/pods?fieldSelector=spec.nodeName=edge-update')).body.items as unknown[]).length;
    const logsBefore = update.agent!.logs().length;

    const sampler = sampleContainers(update);
    const t1 = Date.now();
    await update.link.up();
    const readyMs = await waitReady(api, 'edge-update', 'True', 90_000, 100);
    const done = await waitFor('upd rolled out to :2 after the node returned', () => rolledOut(api, update, 'upd', IMG2, REPLICAS), 120_000, 200);
    const convergeMs = Date.now() - t1;
    await sleep(3_000);
    const seen = await sampler.stop();
    const received = update.agent!.logs().slice(logsBefore).filter((l) => l.msg === 'new desired state');
    console.log(
      `[update while offline] after the link returned: node Ready in ${secs(readyMs)}, rollout to :2 complete in ${secs(convergeMs)}; ` +
        `snapshots applied after reconnect: ${received.map((l) => `gen ${l.generation} (${l.pods} pods)`).join(', ')}`,
    );
    // The first snapshot after the reconnect is the latest one published while offline: the pods
    // bound to the node then, not any intermediate state.
    assert.ok(received.length >= 1);
    assert.equal(received[0]!.pods, bound, `first snapshot after reconnect has the ${bound} pods bound while offline`);
    for (let i = 1; i < received.length; i++) assert.ok(Number(received[i]!.generation) > Number(received[i - 1]!.generation));

    // Applied exactly once: one container per replica on :2, never a second one, no churn.
    const now = await update.containers();
    assert.deepEqual(now.map((c) => c.image), [IMG2, IMG2]);
    assert.deepEqual(now.map((c) => c.id).sort(), done.containers.map((c) => c.id).sort());
    const newOnes = [...seen.values()].filter((c) => !oldIds.has(c.id));
    assert.deepEqual(newOnes.map((c) => c.image), [IMG2, IMG2], `containers created after the return: ${newOnes.map((c) => c.name).join(', ')}`);
    assert.equal((await podOf(update, 'doomed')).length, 0, 'the pod deleted while offline is gone');
    for (const p of done.pods) {
      const evs = await eventsFor(api, p.metadata.name);
      assert.deepEqual(evs.filter((e) => e.reason === 'Created').map((e) => e.count), [1], `pod ${p.metadata.name}: created once`);
      assert.equal(evs.filter((e) => e.reason === 'Killing').length, 0, `pod ${p.metadata.name}: never stopped`);
    }
  }

  /** A half-open link: bytes stop flowing, no FIN or RST. */
  async function halfOpen(): Promise<void> {
    const { api } = server;
    await sleep(2_000);
    const t0 = Date.now();
    stallProxy.stall();
    const detectMs = await waitReady(api, 'edge-stall', 'not True', 30_000, 50);
    const status = await readyStatus(api, 'edge-stall');
    const early = stall.agent!.logs().find((l) => l.msg.startsWith('connection to server lost') && l.time < t0);
    const agentMs = await waitFor('the agent noticing', async () => stall.agent!.logs().find((l) => l.msg.startsWith('connection to server lost') && l.time >= t0), 15_000, 100).then((l) => l.time - t0);
    await sleep(5_000);
    const t1 = Date.now();
    stallProxy.resume();
    const backMs = await waitReady(api, 'edge-stall', 'True', 90_000, 100);
    console.log(
      `[half-open link] server detection: node ${status} ${secs(detectMs)} after the stall (bound 1.5 x keepalive ${KEEPALIVE_S} s + 2 s = ${secs(DETECT_BOUND_MS)}); ` +
        `agent noticed after ${secs(agentMs)}; node Ready again ${secs(backMs)} after the path resumed (t1 ${t1 - t0} ms after the stall)`,
    );
    assert.equal(early, undefined, 'no disconnect before the stall');
    assert.equal(status, 'Unknown', 'the last will marks the node Unknown');
    assert.ok(detectMs <= DETECT_BOUND_MS, `detected in ${detectMs} ms, bound ${DETECT_BOUND_MS} ms`);
  }

  test('agent SIGKILL offline, Deployment updated offline, half-open link, on three devices at once', { timeout: 230_000 }, async () => {
    const devices = [reboot, update, stall];
    const names = ['agent restarts offline', 'updated while offline', 'half-open link'];
    const results = await Promise.allSettled([agentRestartsOffline(), updatedWhileOffline(), halfOpen()]);
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`${names[i]}: ${(r.reason as Error)?.stack ?? String(r.reason)}\nagent ${devices[i]!.name} output (tail):\n${devices[i]!.agent?.output().slice(-6000)}`] : [],
    );
    assert.equal(failed.length, 0, failed.join('\n\n'));
  });
});
