/**
 * Two real `drover server` processes on one etcd, each with its own data dir and embedded broker, given
 * one server token: they are one cluster to a user. A token made through A works on B; a node joined
 * through A is known on B (approved there, it connects to B's broker; revoked through A, B cuts it and
 * refuses it); A's CA verifies B's API; a Secret written through A reads back through B. A third server
 * with another token, or none, does not start. (What etcd holds in the clear: cluster-identity.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import mqtt from 'mqtt';
import { topics } from '../../src/contract/index.js';
import { apiClient } from '../helpers/http.js';
import { connectRefusal, freePort, joinNode, trustCa, waitFor } from '../helpers/cluster.js';
import { startEtcd } from '../helpers/etcd.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SERVER_TOKEN = 'shared-identity-test-token-0123456789';

interface ServerProc {
  child: ChildProcess;
  apiUrl: string;
  mqttUrl: string;
  dataDir: string;
  output(): string;
  exited: Promise<number | null>;
}

async function spawnServer(t: TestContext, endpoint: string, token: string | undefined): Promise<ServerProc> {
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-shared-identity-'));
  const [apiPort, mqttPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = { ...process.env, DROVER_CONFIG: join(dataDir, 'cli-config') };
  delete env.DROVER_SERVER_TOKEN;
  if (token !== undefined) env.DROVER_SERVER_TOKEN = token;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', 'server', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort),
      '--disable-agent', '--require-approval', '--datastore-endpoint', endpoint, '--leader-elect-lease-duration', '6', '--leader-elect-renew-deadline', '4', '--leader-elect-retry-period', '1', '--log-level', 'info'],
    { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const s = { child, apiUrl: `https://127.0.0.1:${apiPort}`, mqttUrl: `mqtts://127.0.0.1:${mqttPort}`, dataDir, output: () => out, exited };
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await rm(dataDir, { recursive: true, force: true });
  });
  return s;
}

async function serving(s: ServerProc): Promise<void> {
  const ca = await waitFor(`${s.dataDir}/tls/ca.crt`, async () => readFile(join(s.dataDir, 'tls', 'ca.crt'), 'utf8').catch(() => undefined), 60_000, 100).catch((err) => {
    throw new Error(`${(err as Error).message}\n${s.output()}`);
  });
  await trustCa(ca);
  await waitFor(`${s.apiUrl} to serve`, async () => (await fetch(`${s.apiUrl}/healthz`).catch(() => undefined))?.status === 200, 60_000, 100).catch((err) => {
    throw new Error(`${(err as Error).message}\n${s.output()}`);
  });
}

/** GET `url` trusting `ca` only (not the test process's trust store): what a kubeconfig with that CA does. */
function getWithCa(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, rejectUnauthorized: true }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
    req.end();
  });
}

test('two servers on one etcd with one server token are one cluster: tokens, nodes, CA, Secrets; another token or none does not start', { timeout: 180_000 }, async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const endpoint = etcd.endpoints[0]!;
  const a = await spawnServer(t, endpoint, SERVER_TOKEN);
  await serving(a);
  const b = await spawnServer(t, endpoint, SERVER_TOKEN);
  await serving(b);

  // One CA: A's verifies B's API certificate; B issued its own serving certificate from it.
  const caA = await readFile(join(a.dataDir, 'tls', 'ca.crt'), 'utf8');
  assert.equal(await getWithCa(`${b.apiUrl}/healthz`, caA), 200);
  assert.notEqual(await readFile(join(b.dataDir, 'tls', 'server.crt'), 'utf8'), await readFile(join(a.dataDir, 'tls', 'server.crt'), 'utf8'));
  for (const f of ['tls/ca.key', 'secrets/keys.json', 'admin-token', 'join-token']) {
    assert.equal((await stat(join(b.dataDir, f))).mode & 0o777, 0o600, `${f} is 0600`);
  }
  const adminToken = (await readFile(join(a.dataDir, 'admin-token'), 'utf8')).trim();
  assert.equal((await readFile(join(b.dataDir, 'admin-token'), 'utf8')).trim(), adminToken, 'one admin token');
  const joinToken = (await readFile(join(a.dataDir, 'join-token'), 'utf8')).trim();
  assert.equal((await readFile(join(b.dataDir, 'join-token'), 'utf8')).trim(), joinToken, 'one default join token');
  const onA = apiClient(a.apiUrl, adminToken);
  const onB = apiClient(b.apiUrl, adminToken);

  // A token made through A works on B as soon as B's watch has it; revoked through B, A refuses it.
  const made = await onA('POST', '/drover/v1/tokens', { type: 'api', role: 'view' });
  assert.equal(made.status, 201, made.text);
  const madeAt = Date.now();
  const viewerOnB = apiClient(b.apiUrl, made.body.token);
  const worksAt = await waitFor('the token made on A to work on B', async () => ((await viewerOnB('GET', '/api/v1/namespaces')).status === 200 ? Date.now() : undefined), 10_000, 10);
  t.diagnostic(`an API token created through A was accepted by B ${worksAt - madeAt} ms after A answered`);
  assert.equal((await onB('DELETE', `/drover/v1/tokens/${made.body.id}`)).status, 200);
  await waitFor('A to refuse the token revoked through B', async () => (await apiClient(a.apiUrl, made.body.token)('GET', '/api/v1/namespaces')).status === 401, 10_000, 10);

  // A Secret written through A reads back through B (one keyring).
  assert.equal((await onA('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 'hunter2-shared' } })).status, 201);
  const secret = await onB('GET', '/api/v1/namespaces/default/secrets/db');
  assert.equal(secret.status, 200, secret.text);
  assert.equal(Buffer.from(secret.body.data.password, 'base64').toString(), 'hunter2-shared');

  // A node joined through A: pending on B's broker too, approved through B it connects there, revoked through A B cuts and refuses it.
  const node = await joinNode(a.apiUrl, joinToken, 'edge-1', b.mqttUrl);
  await waitFor('B to know edge-1', async () => (await onB('GET', '/drover/v1/nodes/edge-1')).body?.state === 'pending');
  assert.equal(await connectRefusal(b.mqttUrl, node), '5', 'pending on B');
  assert.equal((await onB('POST', '/drover/v1/nodes/edge-1/approve', {})).status, 200);
  const c = await waitFor('edge-1 let into B once approved', async () => mqtt.connectAsync(b.mqttUrl, node).catch(() => undefined), 10_000, 50);
  await c.subscribeAsync(topics.desired('edge-1'), { qos: 0 });
  const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
  assert.equal((await onA('POST', '/drover/v1/nodes/edge-1/revoke', {})).status, 200);
  const revokedAt = Date.now();
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error(`B kept edge-1's session after the revoke through A\n${b.output().slice(-3000)}`)), 10_000))]);
  t.diagnostic(`B cut the session of a node revoked through A ${Date.now() - revokedAt} ms after A answered (0: before)`);
  c.end(true);
  assert.equal(await connectRefusal(b.mqttUrl, node), '5', 'revoked on B');

  // Another token: refused, naming etcd; nothing of the cluster's written into its data dir. No token: the flag named.
  const wrong = await spawnServer(t, endpoint, 'not-the-cluster-token-0123456789');
  assert.equal(await wrong.exited, 1, wrong.output());
  assert.match(wrong.output(), new RegExp(`error: the server token does not open the cluster's bootstrap data in etcd at ${endpoint.replace(/[.]/g, '\\.')}\\n`));
  await assert.rejects(stat(join(wrong.dataDir, 'tls', 'ca.key')), { code: 'ENOENT' });
  const none = await spawnServer(t, endpoint, undefined);
  assert.equal(await none.exited, 1, none.output());
  assert.match(none.output(), /error: this server joins the cluster in etcd at \S+, which needs the cluster's server token: --server-token-file FILE \(mode 0600\) or DROVER_SERVER_TOKEN/);
});
