/**
 * Two real `drover server` processes on one etcd (`--datastore-endpoint`): both serve the API, only the
 * one holding the etcd leader key runs the controllers. The leader frozen past its lease: the other leads,
 * and the thawed one steps down. Then kill -9 of the new leader: the thawed one takes the key within the
 * lease duration plus the retry period, and its controllers act on a change made through its own API (a
 * Deployment scaled after the kill gets its pods).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { freePort, waitFor } from '../helpers/cluster.js';
import { startEtcd } from '../helpers/etcd.js';
import { busyboxDeployment, serverApi } from '../helpers/server-process.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const LEASE = 6;
const RENEW = 4;
const RETRY = 1;
/** The machine is shared and loaded. */
const SLACK_MS = 8_000;

interface ServerProc {
  child: ChildProcess;
  apiUrl: string;
  dataDir: string;
  output(): string;
  exited: Promise<number>;
}

async function spawnServer(endpoint: string): Promise<ServerProc> {
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-leader-servers-'));
  const apiPort = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', 'server', '--insecure', '--data-dir', dataDir, '--api-port', String(apiPort), '--mqtt-port', String(await freePort()), '--disable-agent', '--datastore-endpoint', endpoint,
      '--leader-elect-lease-duration', String(LEASE), '--leader-elect-renew-deadline', String(RENEW), '--leader-elect-retry-period', String(RETRY), '--log-level', 'info'],
    { cwd: REPO, env: { ...process.env, DROVER_CONFIG: join(dataDir, 'cli-config'), DROVER_SERVER_TOKEN: 'test-server-token-0123456789' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<number>((resolve) => child.on('exit', () => resolve(Date.now())));
  return { child, apiUrl: `http://127.0.0.1:${apiPort}`, dataDir, output: () => out, exited };
}

const api = serverApi;

async function podsOf(s: ServerProc, app: string): Promise<number> {
  const r = await api(s, 'GET', `/api/v1/namespaces/default/pods?labelSelector=app%3D${app}`);
  return r.status === 200 ? (r.body.items as unknown[]).length : -1;
}

/**
 * One etcd, two servers on it, which one leads (by the leader key: identities are hostname_pid_random),
 * and a Deployment `web` of 2 made through the follower's API, its pods made by the leader's controllers.
 */
async function twoServersWithWeb(t: TestContext) {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const servers = [await spawnServer(etcd.endpoints[0]!), await spawnServer(etcd.endpoints[0]!)];
  t.after(async () => {
    for (const s of servers) {
      s.child.kill('SIGCONT');
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
      await rm(s.dataDir, { recursive: true, force: true });
    }
  });
  for (const s of servers) {
    await waitFor(`${s.apiUrl} to serve`, async () => (await fetch(`${s.apiUrl}/healthz`).catch(() => undefined))?.status === 200, 60_000, 100).catch((err) => {
      throw new Error(`${(err as Error).message}\n${s.output()}`);
    });
  }
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.after(() => client.close());
  const holderPid = async () => {
    const v = await client.get('/drover/leader').string();
    return v ? Number(v.split('_').at(-2)) : undefined;
  };
  const firstPid = await waitFor('a leader', holderPid, 30_000, 100);
  const leader = servers.find((s) => s.child.pid === firstPid);
  assert.ok(leader, `the leader key names pid ${firstPid}, neither server (${servers.map((s) => s.child.pid).join(', ')})`);
  const other = servers.find((s) => s !== leader)!;
  assert.equal((await api(other, 'POST', '/apis/apps/v1/namespaces/default/deployments', busyboxDeployment('web', 2))).status, 201);
  await waitFor('2 pods of web', async () => (await podsOf(other, 'web')) === 2, 30_000, 200);
  return { leader, other, holderPid };
}

test('two servers on one etcd: the leader frozen (SIGSTOP, a long GC pause) past its lease, the other leads, the thawed one steps down; then kill -9 of the new leader, the thawed one leads within the lease and its controllers act', { timeout: 180_000 }, async (t) => {
  // One pair of servers for both faults: each start of etcd and two servers costs ~15 s of the suite.
  const { leader, other, holderPid } = await twoServersWithWeb(t);
  assert.doesNotMatch(other.output(), /became leader|leader work started/, 'the follower ran leader work');
  assert.match(leader.output(), /leader work started/);

  leader.child.kill('SIGSTOP');
  await waitFor('the other server to hold the leader key', async () => (await holderPid()) === other.child.pid, (LEASE + RETRY) * 1000 + 30_000, 100);
  assert.equal((await api(other, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/web', { spec: { replicas: 3 } })).status, 200);
  await waitFor('3 pods of web', async () => (await podsOf(other, 'web')) === 3, 30_000, 200);

  const before = leader.output().length;
  leader.child.kill('SIGCONT');
  // Thawed, it still believes it leads until its renew deadline timer or its next renewal says otherwise.
  await waitFor('the thawed server to step down', async () => /stopped leading/.test(leader.output().slice(before)), 20_000, 100).catch((err) => {
    throw new Error(`${(err as Error).message}\n${leader.output().slice(before, before + 4000)}`);
  });
  const thawed = leader.output().slice(before);
  t.diagnostic(`thawed: ${thawed.match(/"reason":"[^"]*"/)?.[0] ?? '?'}; fenced writes refused: ${(thawed.match(/NotLeader|no longer leads|does not lead/g) ?? []).length}`);
  assert.equal(await holderPid(), other.child.pid, 'the thawed server took the key back');
  await new Promise((r) => setTimeout(r, 3 * RETRY * 1000));
  assert.equal(await podsOf(other, 'web'), 3);
  assert.equal(await holderPid(), other.child.pid);
  assert.doesNotMatch(leader.output().slice(before), /became leader/);

  // kill -9 of the leader now (the one that took over): the thawed server leads again and acts.
  const sinceThaw = leader.output().length;
  other.child.kill('SIGKILL');
  const killedAt = await other.exited;
  const newLead = await waitFor('the thawed server to hold the leader key', async () => ((await holderPid()) === leader.child.pid ? Date.now() : undefined), (LEASE + RETRY) * 1000 + 30_000, 100);
  const failoverMs = newLead - killedAt;
  t.diagnostic(`failover after kill -9 of the leading server: ${failoverMs} ms (lease ${LEASE} s, retry ${RETRY} s)`);
  assert.ok(failoverMs <= (LEASE + RETRY) * 1000 + SLACK_MS, `the other server led ${failoverMs} ms after the kill`);
  assert.equal((await api(leader, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/web', { spec: { replicas: 4 } })).status, 200);
  await waitFor('4 pods of web, made by the new leader', async () => (await podsOf(leader, 'web')) === 4, 30_000, 200).catch((err) => {
    throw new Error(`${(err as Error).message}\n${leader.output().slice(-4000)}`);
  });
  assert.match(leader.output().slice(sinceThaw), /became leader/);
});
