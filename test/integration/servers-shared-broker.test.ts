/**
 * Two real `drover server` processes sharing one etcd and one external Mosquitto (TLS, client
 * certificates, `drover broker acl`, the operators' listener), agents (`drover sim`'s engine) joined
 * through either server's API. What a user would notice if the servers did not share the broker well:
 * - a node's report handled by both servers, or by neither (each status is handled exactly once: the
 *   servers log each report they handle, at debug level, with its sequence number);
 * - nodes turning late, NotReady or Unknown because the leader did not hear reports another server
 *   handled — before, during and after a kill -9 of the leading server;
 * - an operator's MQTT command answered twice;
 * - the other server not taking over: a scale-up after the kill reaches Running.
 * Heartbeats every 2 s: a node silent for the leader 3 s is marked late, 6 s NotReady.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import mqtt from 'mqtt';
import { runSim, SIM_DEFAULTS, type RunningSim } from '../../src/sim/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { freePort, trustCa, waitFor } from '../helpers/cluster.js';
import { startEtcd } from '../helpers/etcd.js';
import { startOperatorMosquitto } from '../helpers/mosquitto.js';
import { busyboxDeployment, leaderKeyPid, serverApi } from '../helpers/server-process.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const LEASE = 6;
const RENEW = 4;
const RETRY = 1;
const HEARTBEAT_S = 2;
const NODES_PER_SERVER = 3;
const OPERATOR = { user: 'ops-alice', password: 'alice-mqtt-password' };

interface Handled {
  node: string;
  kind: string;
  seq?: number;
}

interface ServerProc {
  name: string;
  child: ChildProcess;
  apiUrl: string;
  dataDir: string;
  /** Reports this server handled (its share), from its debug log. */
  handled: Handled[];
  /** Log lines saying another server left the broker. */
  serversGone: string[];
  output(): string;
  exited: Promise<number>;
}

async function spawnServer(name: string, dataDir: string, etcdEndpoint: string, brokerUrl: string): Promise<ServerProc> {
  const apiPort = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', 'server', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--broker-url', brokerUrl, '--disable-agent',
      '--datastore-endpoint', etcdEndpoint, '--leader-elect-lease-duration', String(LEASE), '--leader-elect-renew-deadline', String(RENEW), '--leader-elect-retry-period', String(RETRY), '--log-level', 'debug'],
    { cwd: REPO, env: { ...process.env, DROVER_CONFIG: join(dataDir, 'cli-config'), DROVER_SERVER_TOKEN: 'test-server-token-0123456789' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let partial = '';
  const handled: Handled[] = [];
  const serversGone: string[] = [];
  const keep = (d: Buffer) => {
    const text = d.toString();
    out = (out + text).slice(-40_000);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.includes('another server left the broker')) serversGone.push(line);
      if (!line.includes('agent report handled')) continue;
      const l = JSON.parse(line) as Handled & { again?: boolean };
      // A status applied again after a server left (registry.reapplyHeard) is no second handling by the broker's doing.
      if (l.again) continue;
      handled.push({ node: l.node, kind: l.kind, ...(l.seq === undefined ? {} : { seq: l.seq }) });
    }
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-40_000)));
  const exited = new Promise<number>((resolve) => child.on('exit', () => resolve(Date.now())));
  return { name, child, apiUrl: `https://127.0.0.1:${apiPort}`, dataDir, handled, serversGone, output: () => out, exited };
}

const api = serverApi;
const deployment = busyboxDeployment;

async function runningPods(s: ServerProc, app: string): Promise<number> {
  const r = await api(s, 'GET', `/api/v1/namespaces/default/pods?labelSelector=app%3D${app}`);
  return r.status === 200 ? (r.body.items as Array<{ status?: { phase?: string } }>).filter((p) => p.status?.phase === 'Running').length : -1;
}

interface ApiNode {
  metadata: { name: string };
  status?: { lastHeard?: string; conditions?: Array<{ type: string; status: string; reason?: string }> };
}

/**
 * A node heard this long ago, as a server's API shows it (the last heard time it holds in memory), was not
 * heard by that server: its reports went to the other one. Five heartbeats: far from any scheduling delay.
 */
const NOT_HEARD_MS = 5 * HEARTBEAT_S * 1000;

/** Nodes not Ready, marked late, or not heard lately, as a server's API shows them: `name: Ready=… HeartbeatLate=… heard …s ago`. */
async function unwellNodes(s: ServerProc): Promise<string[] | undefined> {
  const r = await api(s, 'GET', '/api/v1/nodes').catch(() => undefined);
  if (r?.status !== 200) return undefined;
  const out: string[] = [];
  for (const n of r.body.items as ApiNode[]) {
    const c = (type: string) => n.status?.conditions?.find((x) => x.type === type);
    const heardAgoMs = Date.now() - Date.parse(n.status?.lastHeard ?? '');
    if (c('Ready')?.status !== 'True' || c('HeartbeatLate')?.status === 'True' || !(heardAgoMs <= NOT_HEARD_MS)) {
      out.push(`${n.metadata.name}: Ready=${c('Ready')?.status}(${c('Ready')?.reason}) HeartbeatLate=${c('HeartbeatLate')?.status} heard ${Math.round(heardAgoMs / 1000)}s ago`);
    }
  }
  return out;
}

/**
 * The servers and the operator's broker. One PKI and token set: Mosquitto trusts the CA made in A's data dir; A, the
 * first server on the etcd, makes it the cluster's, and B takes it from there with the server token (DROVER_SERVER_TOKEN).
 */
async function twoServersOneBroker(t: TestContext) {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const dirA = await mkdtemp(join(tmpdir(), 'drover-shared-broker-a-'));
  const dirB = await mkdtemp(join(tmpdir(), 'drover-shared-broker-b-'));
  const broker = await startOperatorMosquitto(dirA, { [OPERATOR.user]: OPERATOR.password });
  t.after(() => broker.stop());
  const servers: ServerProc[] = [];
  t.after(async () => {
    for (const s of servers) {
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
    }
    for (const d of [dirA, dirB]) await rm(d, { recursive: true, force: true });
  });
  const up = async (s: ServerProc) =>
    waitFor(`${s.name} to serve`, async () => (await fetch(`${s.apiUrl}/healthz`).catch(() => undefined))?.status === 200, 60_000, 100).catch((err) => {
      throw new Error(`${(err as Error).message}\n${s.output().slice(-4000)}`);
    });
  await trustCa(await readFile(join(dirA, 'tls', 'ca.crt'), 'utf8'));
  servers.push(await spawnServer('server-a', dirA, etcd.endpoints[0]!, broker.url));
  await up(servers[0]!);
  servers.push(await spawnServer('server-b', dirB, etcd.endpoints[0]!, broker.url));
  await up(servers[1]!);

  const holderPid = leaderKeyPid(t, etcd.endpoints);
  const firstPid = await waitFor('a leader', holderPid, 30_000, 100);
  const leader = servers.find((s) => s.child.pid === firstPid)!;
  assert.ok(leader, `the leader key names pid ${firstPid}, neither server`);
  return { servers, leader, other: servers.find((s) => s !== leader)!, holderPid, broker, dirA };
}

/** Reports handled twice, and statuses missing between the first and last one handled, per node. */
function handledOnce(servers: ServerProc[], kind: string): { twice: string[]; gaps: string[]; perServer: number[] } {
  const seqs = new Map<string, number[]>();
  for (const s of servers) for (const h of s.handled) if (h.kind === kind) seqs.set(h.node, [...(seqs.get(h.node) ?? []), h.seq ?? -1]);
  const twice: string[] = [];
  const gaps: string[] = [];
  for (const [node, list] of seqs) {
    const sorted = [...list].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i] === sorted[i - 1]) twice.push(`${node}#${sorted[i]}`);
      else if (sorted[i]! > sorted[i - 1]! + 1) gaps.push(`${node}#${sorted[i - 1]! + 1}..${sorted[i]! - 1}`);
    }
  }
  return { twice, gaps, perServer: servers.map((s) => s.handled.filter((h) => h.kind === kind).length) };
}

test('two servers, one etcd, one Mosquitto: each report and command handled once, nodes stay Ready through a kill -9 of the leader, the other scales', { timeout: 240_000 }, async (t) => {
  const { servers, leader, other, holderPid, broker, dirA } = await twoServersOneBroker(t);
  for (const s of servers) {
    assert.match(s.output(), /"sharedSubscriptions":true/, `${s.name} is not in shared-subscription mode`);
  }
  const ids = servers.map((s) => s.output().match(/"mqttClientId":"([^"]+)"/)?.[1]);
  assert.ok(ids[0] && ids[1] && ids[0] !== ids[1] && ids.every((id) => id!.startsWith('drover-server-')), `client ids ${ids.join(', ')}`);

  // Agents join through either server's API (each server's join token: here one token set).
  const sims: RunningSim[] = [];
  t.after(async () => {
    for (const s of sims) await s.stop();
  });
  for (const [i, s] of servers.entries()) {
    const joinToken = (await readFile(join(s.dataDir, 'join-token'), 'utf8')).trim();
    sims.push(await runSim({ ...SIM_DEFAULTS, server: s.apiUrl, joinToken, nodes: NODES_PER_SERVER, workers: 0, prefix: `shared${i}`, heartbeatSeconds: HEARTBEAT_S, keepaliveSeconds: 5, reportSeconds: 0 }, silentLogger));
  }
  assert.deepEqual(sims.map((s) => s.nodes.length), [NODES_PER_SERVER, NODES_PER_SERVER]);
  await waitFor(`${2 * NODES_PER_SERVER} nodes Ready`, async () => {
    const r = await api(other, 'GET', '/api/v1/nodes');
    return r.status === 200 && (r.body.items as ApiNode[]).length === 2 * NODES_PER_SERVER && (await unwellNodes(other))?.length === 0;
  }, 30_000, 200);

  // From here on, every node must stay Ready and on time, as any server shows it, until the end.
  const unwell = new Set<string>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const s of servers) {
        if (s.child.exitCode !== null || s.child.signalCode !== null) continue;
        for (const u of (await unwellNodes(s).catch(() => undefined)) ?? []) unwell.add(`${s.name} ${u}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  t.after(async () => {
    watching = false;
    await watcher;
  });

  assert.equal((await api(other, 'POST', '/apis/apps/v1/namespaces/default/deployments', deployment('web', 6))).status, 201);
  await waitFor('6 pods of web Running', async () => (await runningPods(other, 'web')) === 6, 30_000, 200).catch((err) => {
    throw new Error(`${(err as Error).message}\n${leader.output().slice(-3000)}`);
  });

  // A node's answer goes to the server that asked (a plain subscription on every server): logs through either API.
  const pods = (await api(other, 'GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb')).body.items as Array<{ metadata: { name: string } }>;
  for (const s of servers) {
    for (const p of pods.slice(0, 2)) {
      const r = await fetch(`${s.apiUrl}/api/v1/namespaces/default/pods/${p.metadata.name}/log`, { headers: { authorization: `Bearer ${(await readFile(join(s.dataDir, 'admin-token'), 'utf8')).trim()}` } });
      assert.equal(r.status, 200, `logs of ${p.metadata.name} through ${s.name}: ${r.status} ${await r.clone().text()}`);
      assert.match(await r.text(), /simulated agent: no logs/);
    }
  }

  // An operator's commands through the operators' listener: each answered once.
  const token = (await readFile(join(dirA, 'admin-token'), 'utf8')).trim();
  const op = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.operatorPort}`, {
    clientId: OPERATOR.user, username: OPERATOR.user, password: OPERATOR.password, ca: await readFile(join(dirA, 'tls', 'ca.crt'), 'utf8'), rejectUnauthorized: true, protocolVersion: 5, reconnectPeriod: 0,
  });
  t.after(() => op.endAsync(true));
  const replies: Array<{ transaction: string; ok: boolean; data?: any; error?: unknown }> = [];
  op.on('message', (_t, payload) => replies.push(JSON.parse(payload.toString())));
  await op.subscribeAsync(`drover/v1/cmd/+/response/${OPERATOR.user}`, { qos: 1 });
  // Sent back to back, as a script does: answered once each, one at a time and in order (the scale before the read).
  const commands: Array<{ verb: string; body: Record<string, unknown> }> = [
    ...Array.from({ length: 4 }, (_v, i) => ({ verb: 'get', body: { transaction: `nodes-${i}`, kind: 'nodes' } })),
    { verb: 'scale', body: { transaction: 'scale-web', kind: 'deployment', name: 'web', replicas: 7 } },
    { verb: 'get', body: { transaction: 'get-web', kind: 'deployments', name: 'web' } },
  ];
  for (const c of commands) {
    const replyTopic = `drover/v1/cmd/${c.verb}/response/${OPERATOR.user}`;
    await op.publishAsync(`drover/v1/cmd/${c.verb}`, JSON.stringify({ ...c.body, token }), { qos: 1, properties: { responseTopic: replyTopic } });
  }
  await waitFor(`${commands.length} replies`, async () => replies.length >= commands.length, 20_000, 50);
  // A second answer would come from the other server as fast as the first did.
  await new Promise((r) => setTimeout(r, 2_000));
  assert.deepEqual(replies.map((r) => r.transaction), commands.map((c) => c.body.transaction), 'commands answered twice, not at all, or out of order');
  assert.ok(replies.every((r) => r.ok), JSON.stringify(replies.filter((r) => !r.ok)));
  assert.equal(replies.at(-1)?.data?.spec?.replicas, 7, 'the read after the scale did not see it');
  await waitFor('7 pods of web Running', async () => (await runningPods(other, 'web')) === 7, 30_000, 200);

  // A status being handled on one server while the other already logged the next one leaves a gap for a moment.
  const before = await waitFor('no status missing', async () => {
    const h = handledOnce(servers, 'status');
    return h.gaps.length === 0 || h.twice.length > 0 ? h : undefined;
  }, 15_000, 200).catch(() => handledOnce(servers, 'status'));
  t.diagnostic(`statuses handled before the kill: ${before.perServer.join(' + ')} (server-a + server-b)`);
  assert.deepEqual(before.twice, [], 'statuses handled by both servers');
  assert.deepEqual(before.gaps, [], 'statuses handled by neither server');
  assert.ok(before.perServer.every((n) => n > 0), `one server handled no status: ${before.perServer.join(' + ')}`);
  assert.deepEqual([...unwell], [], 'nodes late, not Ready or not heard by a server before the kill');

  leader.child.kill('SIGKILL');
  const killedAt = await leader.exited;
  const ledAt = await waitFor('the other server to hold the leader key', async () => ((await holderPid()) === other.child.pid ? Date.now() : undefined), (LEASE + RETRY) * 1000 + 30_000, 100);
  assert.equal((await api(other, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/web', { spec: { replicas: 9 } })).status, 200);
  const runningAt = await waitFor('9 pods of web Running, made by the new leader', async () => ((await runningPods(other, 'web')) === 9 ? Date.now() : undefined), 60_000, 100).catch((err) => {
    throw new Error(`${(err as Error).message}\n${other.output().slice(-4000)}`);
  });
  // Two heartbeats more: a node the new leader had not heard would be marked late by now.
  await new Promise((r) => setTimeout(r, 3 * HEARTBEAT_S * 1000));
  watching = false;
  await watcher;
  t.diagnostic(`kill -9 of the leading server → the other leads: ${ledAt - killedAt} ms; → a scale-up 7 → 9 Running: ${runningAt - killedAt} ms (lease ${LEASE} s, retry ${RETRY} s)`);
  t.diagnostic(`nodes late, not Ready or not heard by a server at any time: ${unwell.size}`);
  assert.deepEqual([...unwell], [], 'nodes turned late, NotReady or Unknown, or a server did not hear them');

  const after = handledOnce([other], 'status');
  assert.deepEqual(after.twice, [], 'statuses handled twice by the remaining server');
  assert.doesNotMatch(other.output(), /took over the server's session/);
  // The broker told the survivor (the dead server's last will): it applies again what the dead one may have taken with it.
  assert.equal(other.serversGone.length, 1, 'the other server was not told the leader had left the broker');
});
