/**
 * Edge autonomy, real faults on three devices at once (each an agent process in its own network
 * namespace with its own podman store):
 * - the agent is killed (SIGKILL) and restarted while the link is down: it brings its workloads back
 *   from the disk cache, its journal of offline events survives the restarts, and on return nothing
 *   is duplicated;
 * - a Deployment rolled over twice while the node is offline (new image, then new env): on return the
 *   node runs the newest revision only, one container created per replica, never one of the
 *   intermediate revision;
 * - a half-open link (a TCP proxy that stalls without FIN or RST): keepalive detects it within
 *   1.5 x keepalive, and the agent reconnects once the path works again.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { POD_TEMPLATE_HASH, REVISION_ANNOTATION } from '../../src/api/revisions.js';
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
  podsOf,
  readyStatus,
  rolledOut,
  secs,
  sleep,
  startInProcessServer,
  waitReady,
  type Device,
  type FaultServer,
} from '../helpers/fault.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const KEEPALIVE_S = 5;
/** The broker drops a client silent for 1.5 x keepalive; the rest is for the store write and polling (printed, not asserted). */
interface ReplicaSetView {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Array<{ name: string }> };
}

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
    await Promise.all(['edge-reboot', 'edge-update', 'edge-stall'].map((n) => waitReady(server.api, n, 'True', AGENT_START_MS)));
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
      AGENT_START_MS,
      200,
    );
    const fromCacheMs = Date.now() - started;
    assert.notEqual(recreated.id, lost.id);
    // Its Created/Started events are in the journal on disk; a second kill must not lose them.
    await waitFor('offline events in the journal file', async () => (await journal(reboot)).includes('"Created container main"'), 30_000, 100);
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
      60_000,
      100,
    );
    const eventsMs = Date.now() - t1;
    await waitFor('keep and lost Running again', async () => (await phase('keep')) === 'Running' && (await phase('lost')) === 'Running', 60_000, 100);
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

  /** The ReplicaSet of `deploy` at `revision`, once the controller made it. */
  const replicaSetAt = async (deploy: string, revision: number): Promise<ReplicaSetView | undefined> => {
    const items = (await server.api('GET', '/apis/apps/v1/namespaces/default/replicasets')).body.items as ReplicaSetView[];
    return items.find((rs) => rs.metadata.ownerReferences?.some((o) => o.name === deploy) && rs.metadata.annotations?.[REVISION_ANNOTATION] === String(revision));
  };

  /**
   * Two rollouts while the node is offline (and a pod deleted): `set image` (revision 2, whose pods
   * wait for the node), then an env change (revision 3). The node that returns runs revision 3 only:
   * podman creates one container per replica, of revision 3, never one of revision 2.
   */
  async function updatedWhileOffline(): Promise<void> {
    const { api } = server;
    const REPLICAS = 2;
    assert.equal((await api('POST', DEPLOY, deploymentManifest('upd', 'edge-update', IMG1, REPLICAS))).status, 201);
    assert.equal((await api('POST', '/api/v1/namespaces/default/pods', podManifest('doomed', 'edge-update'))).status, 201);
    await waitFor('upd on :1', () => rolledOut(api, update, 'upd', IMG1, REPLICAS), 90_000, 200);
    await waitFor('doomed Running', async () => (await phase('doomed')) === 'Running', 30_000, 200);

    const cutAt = Date.now();
    await update.link.down();
    await waitReady(api, 'edge-update', 'not True', 30_000, 100);
    // Revision 2: its pods are made and wait for the node.
    await editDeployment(api, 'upd', (d) => (d.spec.template.spec.containers[0].image = IMG2));
    await waitFor(
      'revision 2 has pods waiting for the node',
      async () => {
        const rs2 = await replicaSetAt('upd', 2);
        return rs2 && (await podsOf(api, 'upd')).some((p) => p.metadata.labels?.[POD_TEMPLATE_HASH] === rs2.metadata.labels?.[POD_TEMPLATE_HASH]);
      },
      30_000,
      100,
    );
    assert.equal((await api('DELETE', '/api/v1/namespaces/default/pods/doomed')).status, 200);
    // Revision 3 on top, before the node is back; the controller has seen it once the Deployment's
    // observedGeneration catches up.
    const edited = await editDeployment(api, 'upd', (d) => (d.spec.template.spec.containers[0].env = [{ name: 'REVISION', value: '3' }]));
    await waitFor(
      'the controller saw revision 3',
      async () => {
        const d = (await api('GET', `${DEPLOY}/upd`)).body;
        return d.status?.observedGeneration >= edited.metadata.generation && (await replicaSetAt('upd', 3));
      },
      30_000,
      100,
    );
    const rs3 = (await replicaSetAt('upd', 3))!;
    const rev3Pod = (pod: string) => pod.startsWith(`${rs3.metadata.name}-`);

    const t1 = Date.now();
    await update.link.up();
    const readyMs = await waitReady(api, 'edge-update', 'True', 90_000, 100);
    const done = await waitFor('upd rolled out to revision 3 after the node returned', () => rolledOut(api, update, 'upd', IMG2, REPLICAS), 120_000, 200);
    const convergeMs = Date.now() - t1;
    // A window for anything still churning to show up before the count.
    await sleep(3_000);
    const created = await containersCreated(update, cutAt);
    console.log(
      `[update while offline] after the link returned: node Ready in ${secs(readyMs)}, rollout to revision 3 complete in ${secs(convergeMs)}; ` +
        `containers created since the cut: ${created.map((c) => c.pod).join(', ') || 'none'}`,
    );

    // The user's outcome: the pods are revision 3, each run by one container created once; no
    // container of revision 2 (or any other) was ever created for them.
    assert.deepEqual(
      done.pods.map((p) => p.metadata.labels?.[POD_TEMPLATE_HASH]),
      done.pods.map(() => rs3.metadata.labels?.[POD_TEMPLATE_HASH]),
      'the pods are of revision 3',
    );
    assert.deepEqual(created.filter((c) => !rev3Pod(c.pod)).map((c) => c.pod), [], 'no container of another revision was created after the cut');
    assert.equal(created.length, REPLICAS, `one container created per replica (created: ${created.map((c) => c.name).join(', ')})`);
    const now = await update.containers();
    assert.deepEqual(now.map((c) => c.id).sort(), created.map((c) => c.id).sort(), 'the containers created are the ones running');
    assert.ok(now.every((c) => c.state === 'running' && c.image === IMG2 && rev3Pod(c.labels[LABELS.pod]!)));
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
    // The agent's one connection through the proxy, open since before the stall.
    const [conn, ...others] = await waitFor('one open connection through the proxy', async () => {
      const open = stallProxy.connections().filter((c) => c.clientClosedAt === undefined);
      return open.length === 1 ? open : undefined;
    }, 30_000, 100);
    assert.equal(others.length, 0);
    const t0 = Date.now();
    stallProxy.stall();
    // The server side (broker keepalive, last will) and the agent side (its keepalive closes the
    // connection it hears nothing on) notice independently.
    const [detectMs, agentMs] = await Promise.all([
      waitReady(api, 'edge-stall', 'not True', 30_000, 50),
      waitFor('the agent closing the stalled connection', async () => stallProxy.connections().find((c) => c.openedAt === conn!.openedAt && c.clientClosedAt !== undefined), 30_000, 100).then((c) => c.clientClosedAt! - t0),
    ]);
    const status = await readyStatus(api, 'edge-stall');
    await sleep(5_000);
    const t1 = Date.now();
    stallProxy.resume();
    const backMs = await waitReady(api, 'edge-stall', 'True', 90_000, 100);
    console.log(
      `[half-open link] server detection: node ${status} ${secs(detectMs)} after the stall (expected within 1.5 x keepalive ${KEEPALIVE_S} s + 2 s = ${secs(DETECT_BOUND_MS)}); ` +
        `agent closed the stalled connection after ${secs(agentMs)}; node Ready again ${secs(backMs)} after the path resumed (t1 ${t1 - t0} ms after the stall)`,
    );
    // Unknown is the last will, which only the broker's keepalive check publishes for a silent
    // client; missed heartbeats would have made it False.
    assert.equal(status, 'Unknown', 'the last will marks the node Unknown');
  }

  test('agent SIGKILL offline, Deployment updated offline, half-open link, on three devices at once', { timeout: 300_000 }, async () => {
    const devices = [reboot, update, stall];
    const names = ['agent restarts offline', 'updated while offline', 'half-open link'];
    const results = await Promise.allSettled([agentRestartsOffline(), updatedWhileOffline(), halfOpen()]);
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`${names[i]}: ${(r.reason as Error)?.stack ?? String(r.reason)}\nagent ${devices[i]!.name} output (tail):\n${devices[i]!.agent?.output().slice(-6000)}`] : [],
    );
    assert.equal(failed.length, 0, failed.join('\n\n'));
  });
});
