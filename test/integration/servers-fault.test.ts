/**
 * Past one server, with real faults: a 3-member etcd cluster, two `drover server` processes on it and on
 * one external Mosquitto (TLS, client certificates), two devices whose agents run real podman in their own
 * network namespaces and reach the broker and the servers over veth links. Each server reaches etcd and the
 * broker through partition proxies of its own, so one server can be cut off while the other is not.
 * In order, on the same cluster:
 * - kill -9 of the etcd member that leads the raft group while writes go on through both servers: writes
 *   keep being acknowledged (the longest gap is printed), no server loses its leadership, pods stay Running
 *   and no container is restarted;
 * - the leading server cut off from etcd and the broker (both directions, bytes held as a network holds
 *   them, delivered when the cut heals): it stops leading within its renew deadline, the other leads once
 *   the lease is gone, the two leadership intervals (from the servers' own logs) never overlap, the old
 *   leader does not lead again after the heal, and every write acknowledged meanwhile is there;
 * - kill -9 of the leading server during a rolling update, writes going on through both servers: the other
 *   leads within the lease duration and a few seconds, the rollout finishes with the new image running on
 *   both devices, and every write either server acknowledged is readable afterwards.
 * Short election timings (6 s lease, 4 s renew deadline, 1 s retry), as leader-servers.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { trustCa, waitFor } from '../helpers/cluster.js';
import { etcdLeader, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import {
  AGENT_START_MS,
  allowHostNetwork,
  Cleanup,
  createDevice,
  DEPLOY,
  deploymentManifest,
  editDeployment,
  IMG1,
  IMG2,
  podReady,
  podsOf,
  rolledOut,
  secs,
  sleep,
  waitReady,
  type Device,
} from '../helpers/fault.js';
import { LeadershipLog } from '../helpers/leader.js';
import { startOperatorMosquitto } from '../helpers/mosquitto.js';
import { leaderKeyPid } from '../helpers/server-process.js';
import { spawnServerOnEtcd, startPartitionProxy, type PartitionProxy, type ServerOnEtcd } from '../helpers/servers.js';

const TIMINGS = { leaseDurationSeconds: 6, renewDeadlineSeconds: 4, retryPeriodSeconds: 1 };
const LEASE_MS = TIMINGS.leaseDurationSeconds * 1000;
const RENEW_MS = TIMINGS.renewDeadlineSeconds * 1000;
const RETRY_MS = TIMINGS.retryPeriodSeconds * 1000;
/** The machine is shared and loaded: what a "few seconds" may stretch to before it is a bug. */
const SLACK_MS = 10_000;
const REPLICAS = 4;
const APP = 'fleet';
/** Pods of the burst Deployment (leader writes in flight when its leader is cut off). */
const BURST = 60;
/** What a fenced write refused, or a leader's component stopped mid-write, logs. */
const REFUSED = /no longer leads|does not lead|NotLeader|stopped leading:/;

/** fault.ts's Deployment (maxSurge 1, maxUnavailable 1, host network) unpinned: spread over both devices. */
function fleetManifest(image: string): unknown {
  const d = deploymentManifest(APP, '', image, REPLICAS) as { spec: { template: { spec: { nodeSelector?: unknown } } } };
  delete d.spec.template.spec.nodeSelector;
  return d;
}

/**
 * A Deployment of `replicas` pods no node can take (a hostname no device has): creating its ReplicaSet and
 * pods, and marking them unschedulable, is a burst of leader writes and nothing for podman to do.
 */
const burstManifest = (replicas: number) => deploymentManifest('burst', 'no-such-device', IMG1, replicas);

/**
 * The write log etcd keeps: every create and delete of the objects under `prefixes` (keys relative to
 * /drover/registry/), watched from the test's own client, which no proxy cuts.
 */
async function watchRegistry(etcd: EtcdCluster, prefixes: string[]) {
  const client = new Etcd3({ hosts: etcd.endpoints });
  const created: string[] = [];
  const deleted: string[] = [];
  const watchers = await Promise.all(
    prefixes.map(async (prefix) => {
      const w = await client.watch().prefix(`/drover/registry/${prefix}`).create();
      w.on('put', (kv) => {
        if (kv.create_revision === kv.mod_revision) created.push(kv.key.toString());
      });
      w.on('delete', (kv) => deleted.push(kv.key.toString()));
      return w;
    }),
  );
  return {
    created,
    deleted,
    async close() {
      for (const w of watchers) await w.cancel();
      client.close();
    },
  };
}

/**
 * The test's own linearizable reads of etcd every 200 ms, past every proxy: the longest one says whether
 * etcd itself was slow when a server was (a leader missing its renew deadline, an API stalling).
 */
function probeEtcd(etcd: EtcdCluster) {
  const client = new Etcd3({ hosts: etcd.endpoints });
  let on = true;
  let longest = { ms: 0, at: 0 };
  const loop = (async () => {
    while (on) {
      const t0 = Date.now();
      await client.get('/drover/leader').string().catch(() => undefined);
      if (Date.now() - t0 > longest.ms) longest = { ms: Date.now() - t0, at: t0 };
      await sleep(200);
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      client.close();
      return longest;
    },
  };
}

interface Ack {
  name: string;
  server: string;
  at: number;
}

/**
 * ConfigMaps created through every server in `servers`, one loop per server (a server that hangs or is
 * gone does not hold up the other), until stop(). Acknowledged: a 201. A call unanswered after 15 s
 * counts as failed (it may or may not have been made: never counted as acknowledged).
 */
function startWriter(servers: ServerOnEtcd[], prefix: string) {
  const acked: Ack[] = [];
  const failures: Array<{ server: string; at: number; why: string }> = [];
  let on = true;
  const loops = servers.map(async (s) => {
    for (let i = 0; on; i++) {
      const name = `${prefix}-${s.name}-${i}`;
      const r = await Promise.race([
        s.api('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { i: String(i) } }),
        sleep(15_000).then(() => ({ status: 0, text: 'no answer within 15 s' })),
      ]).catch((err: Error) => ({ status: 0, text: err.message }));
      if (r.status === 201) acked.push({ name, server: s.name, at: Date.now() });
      else {
        failures.push({ server: s.name, at: Date.now(), why: `${r.status} ${r.text.slice(0, 160)}` });
        await sleep(100);
      }
    }
  });
  return {
    acked,
    failures,
    async stop() {
      on = false;
      await Promise.all(loops);
    },
  };
}

/** The longest time between two acknowledgements (of any server, or of `server`) within [from, to]. */
function longestGap(acked: Ack[], from: number, to: number, server?: string): { ms: number; at: number } {
  const times = [from, ...acked.filter((a) => !server || a.server === server).map((a) => a.at).filter((t) => t >= from && t <= to).sort((a, b) => a - b), to];
  let best = { ms: 0, at: from };
  for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! > best.ms) best = { ms: times[i]! - times[i - 1]!, at: times[i - 1]! };
  return best;
}

/** Every acknowledged ConfigMap that `server` cannot read back. */
async function missing(server: ServerOnEtcd, acked: Ack[]): Promise<string[]> {
  const names = new Set(((await server.api('GET', '/api/v1/namespaces/default/configmaps')).body?.items ?? []).map((c: { metadata: { name: string } }) => c.metadata.name));
  return acked.map((a) => a.name).filter((n) => !names.has(n));
}

describe('several servers on a 3-member etcd with real faults (etcd member kill -9, leader cut off, leader kill -9 mid-rollout; netns agents, real podman)', () => {
  const cleanup = new Cleanup();
  const leadership = new LeadershipLog();
  let etcd: EtcdCluster;
  const servers: ServerOnEtcd[] = [];
  /** Each server's proxies to the etcd members and to the broker: its links to the rest of the cluster. */
  const links = new Map<string, PartitionProxy[]>();
  let devices: Device[] = [];
  let holderPid: () => Promise<number | undefined>;
  let fleetContainers: () => Promise<RuntimeContainer[]>;

  /** The server holding the leader key now, and the other one. */
  async function leaderAndOther(): Promise<{ leader: ServerOnEtcd; other: ServerOnEtcd }> {
    const pid = await waitFor('a leader', holderPid, 30_000, 100);
    const leader = servers.find((s) => s.child.pid === pid);
    assert.ok(leader, `the leader key names pid ${pid}, no server of this test`);
    return { leader, other: servers.find((s) => s !== leader)! };
  }

  /** Pods of the fleet not Running and Ready, as `server` shows them. */
  async function unwellPods(server: ServerOnEtcd): Promise<string[]> {
    const pods = await podsOf(server.api, APP);
    return pods.filter((p) => p.status?.phase !== 'Running' || !podReady(p)).map((p) => `${p.metadata.name}: ${p.status?.phase}`);
  }

  /** On failure: the tails of every server's and agent's output. */
  function withTails(err: unknown): Error {
    const tails = [
      ...servers.map((s) => `${s.name} warnings and errors (last 30):\n${s.kept.slice(-30).map((k) => k.line.slice(0, 500)).join('\n')}\n${s.name} output (tail):\n${s.output().slice(-3000)}`),
      ...devices.map((d) => `agent ${d.name} output (tail):\n${d.agent?.output().slice(-2000) ?? '(not started)'}`),
    ];
    return new Error(`${(err as Error)?.stack ?? String(err)}\n\n${tails.join('\n\n')}`, { cause: err });
  }

  before(async () => {
    try {
      etcd = await startEtcdCluster(3);
      cleanup.add('etcd cluster', () => etcd.stop());
      const dirs = [await mkdtemp(join(tmpdir(), 'drover-servers-fault-a-')), await mkdtemp(join(tmpdir(), 'drover-servers-fault-b-'))];
      for (const d of dirs) cleanup.add(`data dir ${d}`, () => rm(d, { recursive: true, force: true }));
      // Mosquitto trusts the CA made in A's data dir; A, the first server on the etcd, makes it the cluster's.
      const broker = await startOperatorMosquitto(dirs[0]!, {});
      cleanup.add('mosquitto', () => broker.stop());
      await trustCa(await readFile(join(dirs[0]!, 'tls', 'ca.crt'), 'utf8'));
      // The devices reach the broker through the host end of their links (Mosquitto listens on loopback only).
      const deviceBroker = await startPartitionProxy({ host: '127.0.0.1', port: broker.port }, '0.0.0.0');
      cleanup.add('broker proxy of the devices', () => deviceBroker.close());
      for (const [i, name] of ['server-a', 'server-b'].entries()) {
        const toEtcd = await Promise.all(etcd.members.map((m) => startPartitionProxy({ host: '127.0.0.1', port: Number(new URL(m.endpoint).port) })));
        const toBroker = await startPartitionProxy({ host: '127.0.0.1', port: broker.port });
        links.set(name, [...toEtcd, toBroker]);
        for (const p of [...toEtcd, toBroker]) cleanup.add(`proxy of ${name}`, () => p.close());
        const s = await spawnServerOnEtcd({
          name,
          dataDir: dirs[i]!,
          endpoints: toEtcd.map((p) => `http://127.0.0.1:${p.port}`),
          brokerUrl: `mqtts://127.0.0.1:${toBroker.port}`,
          timings: TIMINGS,
          leadership,
          apiHost: '0.0.0.0',
          keep: /"level":(40|50|60)/,
        });
        servers.push(s);
        cleanup.add(`${name} process`, () => s.kill9());
      }
      holderPid = leaderKeyPid({ after: (fn: () => unknown) => cleanup.add('etcd client', fn) } as unknown as TestContext, etcd.endpoints);
      await leaderAndOther();
      await allowHostNetwork(servers[0]!.api);

      // One device joins through each server (one join token for the cluster).
      const joinToken = (await readFile(join(dirs[0]!, 'join-token'), 'utf8')).trim();
      devices = await Promise.all(
        servers.map((s, i) => createDevice(cleanup, `srvfault-d${i + 1}`, () => ({ mqttPort: deviceBroker.port, apiPort: s.apiPort, joinToken }), [IMG1, IMG2])),
      );
      for (const d of devices) d.startAgent({ url: `mqtts://${d.link.hostIp}:${deviceBroker.port}` });
      await Promise.all(devices.map((d) => waitReady(servers[0]!.api, d.name, 'True', AGENT_START_MS)));
      fleetContainers = async () => (await Promise.all(devices.map((d) => d.containers()))).flat().filter((c) => c.labels[LABELS.pod]?.startsWith(`${APP}-`));

      assert.equal((await servers[1]!.api('POST', DEPLOY, fleetManifest(IMG1))).status, 201);
      await waitFor(`${APP} on :1`, () => rolledOut(servers[0]!.api, devices, APP, IMG1, REPLICAS), 120_000, 200);
      const spread = new Set((await podsOf(servers[0]!.api, APP)).map((p) => p.spec.nodeName));
      assert.equal(spread.size, 2, 'the pods run on both devices');
    } catch (err) {
      throw withTails(err);
    }
  }, { timeout: 600_000 });

  const t0 = Date.now();
  /** Who led when, from the servers' logs, in seconds since the cluster started. */
  const terms = () => leadership.intervals.map((i) => `${i.who} ${((i.start - t0) / 1000).toFixed(1)}-${i.end === undefined ? 'now' : ((i.end - t0) / 1000).toFixed(1)}${i.reason ? ` (${i.reason})` : ''}`).join('; ');

  afterEach((t) => {
    if ('diagnostic' in t) t.diagnostic(`leadership so far: ${terms()}`);
  });
  after(() => cleanup.run());

  test('kill -9 of the etcd raft leader while writes go on through both servers: writes keep being acknowledged, leadership stays, pods stay Running', { timeout: 180_000 }, async (t) => {
    try {
      const { leader } = await leaderAndOther();
      const termsBefore = leadership.intervals.length;
      const before = (await fleetContainers()).map((c) => `${c.id}@${c.startedAt}`).sort();
      const member = await waitFor('the etcd raft leader', () => etcdLeader(etcd), 20_000, 200);
      const writer = startWriter(servers, 'm');
      const unwell = new Set<string>();
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          for (const s of servers) for (const u of await unwellPods(s).catch((err: Error) => [`${s.name}: list failed: ${err.message}`])) unwell.add(`${s.name} ${u}`);
          await sleep(250);
        }
      })();
      await waitFor('writes acknowledged through both servers', async () => servers.every((s) => writer.acked.some((a) => a.server === s.name)), 30_000, 50);
      const killedAt = Date.now();
      await member.kill();
      // Long enough for a new raft leader, every client's failover, and a lease renewal or two.
      await sleep(LEASE_MS + 2 * RETRY_MS);
      const endAt = Date.now();
      await writer.stop();
      watching = false;
      await watcher;

      const gap = longestGap(writer.acked, killedAt, endAt);
      const perServer = servers.map((s) => `${s.name} ${secs(longestGap(writer.acked, killedAt, endAt, s.name).ms)}`);
      const failedAfter = writer.failures.filter((f) => f.at >= killedAt);
      t.diagnostic(`etcd member ${member.name} (raft leader) kill -9: ${writer.acked.filter((a) => a.at >= killedAt).length} writes acknowledged in the ${secs(endAt - killedAt)} after it, ${failedAfter.length} failed; longest gap between acknowledgements ${secs(gap.ms)} (from +${secs(gap.at - killedAt)}; per server: ${perServer.join(', ')})`);
      assert.deepEqual(await missing(leader, writer.acked), [], 'acknowledged writes lost');
      for (const s of servers) assert.ok(writer.acked.some((a) => a.server === s.name && a.at > killedAt + gap.ms), `no write through ${s.name} acknowledged after the kill's blip`);
      // No interruption: a gap the length of a lease would have cost the leader its term.
      assert.ok(gap.ms < LEASE_MS, `writes stopped for ${secs(gap.ms)} after an etcd member died; failures: ${JSON.stringify(failedAfter.slice(0, 5))}`);
      assert.equal(leadership.intervals.length, termsBefore, `leadership changed: ${JSON.stringify(leadership.intervals)}`);
      assert.equal(await holderPid(), leader.child.pid);
      assert.deepEqual([...unwell], [], 'pods not Running or not Ready while an etcd member was down');
      assert.deepEqual((await fleetContainers()).map((c) => `${c.id}@${c.startedAt}`).sort(), before, 'containers restarted');

      await member.start();
    } catch (err) {
      throw withTails(err);
    }
  });

  test('the leading server cut off from etcd and the broker: it stops within its renew deadline, the other leads after the lease, never two at once; healed, it follows', { timeout: 180_000 }, async (t) => {
    try {
      const { leader, other } = await leaderAndOther();
      assert.ok(leader.alive() && other.alive());
      const writer = startWriter(servers, 'p');
      await waitFor('writes acknowledged through both servers', async () => servers.every((s) => writer.acked.some((a) => a.server === s.name)), 30_000, 50);
      // The leader cut off in the middle of a burst of its own writes: some are on their way when the cut
      // comes, and arrive (held) after the other server took over; the fence must refuse them, or etcd's log
      // shows pods made twice (more created than the Deployment asks, and the extra deleted again).
      const log = await watchRegistry(etcd, ['Pod/default/burst-', 'ReplicaSet/default/burst-']);
      const podsCreated = () => log.created.filter((k) => k.includes('/Pod/')).length;
      assert.equal((await other.api('POST', DEPLOY, burstManifest(BURST))).status, 201);
      await waitFor('the leader making the pods of burst', async () => podsCreated() > 0, 30_000, 5);
      const refusedBefore = leader.kept.length;
      const cutAt = Date.now();
      for (const p of links.get(leader.name)!) p.cut();
      const podsAtCut = podsCreated();

      await leadership.until(`${leader.name} to stop leading`, () => leadership.open(leader.name) === undefined, RENEW_MS + SLACK_MS);
      const stopped = leadership.intervals.filter((i) => i.who === leader.name).at(-1)!;
      await leadership.until(`${other.name} to lead`, () => leadership.open(other.name) !== undefined, LEASE_MS + RETRY_MS + SLACK_MS + 20_000);
      const took = leadership.open(other.name)!;
      assert.equal(await holderPid(), other.child.pid, 'the leader key is not the new leader\'s');
      // Held a little longer: the cut-off server keeps trying, and its held bytes pile up.
      await sleep(3 * RETRY_MS);
      const healAt = Date.now();
      for (const p of links.get(leader.name)!) p.heal();
      await waitFor(`writes through ${leader.name} acknowledged again after the heal`, async () => writer.acked.some((a) => a.server === leader.name && a.at > healAt), 60_000, 100);
      // A few retry periods with both servers on etcd: the healed one must not take the key back.
      await sleep(4 * RETRY_MS);
      await waitFor(`${BURST} pods of burst, made by the new leader`, async () => podsCreated() >= BURST, 60_000, 100);
      // Time for any held write of the old leader to land, and for the new leader to see and undo extra pods.
      await sleep(4 * RETRY_MS);
      const endAt = Date.now();
      await writer.stop();
      await log.close();

      const warned = leader.kept.slice(refusedBefore);
      const refused = warned.filter((k) => REFUSED.test(k.line));
      t.diagnostic(`burst: ${podsAtCut} of ${BURST} pods made when the leader was cut off; etcd's log: ${podsCreated()} pods created, ${log.deleted.length} deleted, ${log.created.length - podsCreated()} ReplicaSet(s) created`);
      for (const r of warned) t.diagnostic(`${leader.name} +${secs(r.time - cutAt)}: ${r.line.slice(0, 400)}`);
      t.diagnostic(
        `leader ${leader.name} cut off: it stopped leading ${secs(stopped.end! - cutAt)} after the cut (renew deadline ${secs(RENEW_MS)}; "${stopped.reason}"), ` +
          `${other.name} led ${secs(took.start - cutAt)} after the cut (lease ${secs(LEASE_MS)}), ${secs(took.start - stopped.end!)} after the old leader stopped; ` +
          `healed after ${secs(healAt - cutAt)}; ${leader.name} log lines of refused or stopped leader writes: ${refused.length}`,
      );
      t.diagnostic(`writes during the cut: through ${other.name} longest gap ${secs(longestGap(writer.acked, cutAt, endAt, other.name).ms)}; through ${leader.name} ${writer.failures.filter((f) => f.server === leader.name && f.at >= cutAt).length} failed (${writer.failures.find((f) => f.server === leader.name && f.at >= cutAt)?.why ?? '-'})`);
      leadership.assertNoOverlap();
      assert.ok(stopped.end! < took.start, 'the new leader started before the old one stopped');
      // Healed, the old leader follows: it may lead again only once the other's term has ended by itself
      // (on this loaded machine a 4 s renew deadline is sometimes missed without any fault), never beside it.
      const tookBack = leadership.intervals.find((i) => i.who === leader.name && i.start > cutAt);
      if (tookBack) t.diagnostic(`${other.name}'s term ended on its own (${took.reason}) after ${secs(took.end! - took.start)}; ${leader.name} led again ${secs(tookBack.start - took.end!)} later`);
      assert.ok(!tookBack || (took.end !== undefined && took.end < tookBack.start), `${leader.name} led again beside ${other.name}: ${terms()}`);
      assert.deepEqual(await missing(other, writer.acked), [], 'acknowledged writes lost');
      assert.deepEqual(await unwellPods(other), [], 'pods not Running after the cut');
      assert.equal(podsCreated(), BURST, `pods of burst created in etcd: ${podsCreated()} for ${BURST} replicas (a leader's write made twice, by two leaders)`);
      assert.deepEqual(log.deleted, [], 'pods or ReplicaSets of burst deleted: made twice, then undone');
      assert.equal(log.created.length - podsCreated(), 1, 'ReplicaSets of burst created');
      assert.ok([200, 202].includes((await other.api('DELETE', `${DEPLOY}/burst`)).status), 'burst deleted');
    } catch (err) {
      throw withTails(err);
    }
  });

  test('kill -9 of the leading server during a rolling update: the other leads within the lease, the rollout finishes on both devices, no acknowledged write is lost', { timeout: 300_000 }, async (t) => {
    try {
      let { leader, other } = await leaderAndOther();
      assert.ok(leader.alive() && other.alive());
      await editDeployment(other.api, APP, (d) => (d.spec.template.spec.containers[0].image = IMG2));
      const startedAt = Date.now();
      const probe = probeEtcd(etcd);
      const writer = startWriter(servers, 'k');
      await waitFor('the rollout under way and writes acknowledged through both servers', async () =>
        servers.every((s) => writer.acked.some((a) => a.server === s.name)) && (await podsOf(other.api, APP)).some((p) => p.spec.containers[0]!.image === IMG2 && podReady(p)), 120_000, 50);
      const midway = (await fleetContainers()).filter((c) => c.image === IMG2).length;
      // The leader of now, by the key and by its own log (the load may have moved it since the test began).
      ({ leader, other } = await waitFor('a leader by its key and its log', async () => {
        const now = await leaderAndOther();
        return leadership.open(now.leader.name) ? now : undefined;
      }, LEASE_MS + RETRY_MS + SLACK_MS + 20_000, 50));
      const killedAt = await leader.kill9();
      const lastTerm = leadership.intervals.filter((i) => i.who === leader.name).at(-1)!;
      if (lastTerm.reason !== 'process exited') t.diagnostic(`${leader.name}'s term had ended on its own ${secs(killedAt - lastTerm.end!)} before the kill (${lastTerm.reason})`);
      const ledAt = await waitFor(`${other.name} to hold the leader key`, async () => ((await holderPid()) === other.child.pid ? Date.now() : undefined), LEASE_MS + RETRY_MS + SLACK_MS + 20_000, 100);
      const done = await waitFor(`${APP} rolled out to :2 after the kill`, () => rolledOut(other.api, devices, APP, IMG2, REPLICAS), 180_000, 200);
      const doneAt = Date.now();
      await writer.stop();
      const etcdSlowest = await probe.stop();

      const failover = ledAt - killedAt;
      t.diagnostic(`leader ${leader.name} kill -9 mid-rollout (${midway} of ${REPLICAS} containers on :2): ${other.name} led ${secs(failover)} after (lease ${secs(LEASE_MS)}, retry ${secs(RETRY_MS)}); rollout complete ${secs(doneAt - killedAt)} after the kill, ${secs(doneAt - startedAt)} after it began`);
      t.diagnostic(`writes: ${writer.acked.length} acknowledged (${writer.acked.filter((a) => a.at > killedAt).length} after the kill, through ${other.name}); longest gap through ${other.name} ${secs(longestGap(writer.acked, killedAt, doneAt, other.name).ms)} (from +${secs(longestGap(writer.acked, killedAt, doneAt, other.name).at - killedAt)}); the test's slowest read of etcd meanwhile ${secs(etcdSlowest.ms)} (at +${secs(etcdSlowest.at - killedAt)})`);
      assert.ok(failover <= LEASE_MS + RETRY_MS + SLACK_MS, `the other server led ${secs(failover)} after the kill`);
      assert.deepEqual(await missing(other, writer.acked), [], `acknowledged writes lost (${writer.acked.length} acknowledged)`);
      assert.deepEqual(new Set(done.containers.map((c) => c.labels[LABELS.node])), new Set(devices.map((d) => d.name)), 'the new image runs on both devices');
      leadership.assertNoOverlap();
    } catch (err) {
      throw withTails(err);
    }
  });
});
