/**
 * The real `drover server` process, killed with SIGKILL while Pods are being created through the API:
 * every create the API acknowledged (201) must be there after a restart on the same data dir.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { apiClient, freePort, trustCa, waitFor } from '../helpers/cluster.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const TOTAL = 300;
const IN_FLIGHT = 8;
const ACKS_BEFORE_KILL = 150;
const NAMESPACES = ['default', 'durable'] as const;

interface ServerProc {
  child: ChildProcess;
  apiUrl: string;
  /** The CA the server makes at first start (its API is HTTPS). */
  caFile: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnServer(dataDir: string, apiPort: number, mqttPort: number, configPath: string): ServerProc {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', 'server', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--disable-agent', '--log-level', 'warn'],
    { cwd: REPO, env: { ...process.env, DROVER_CONFIG: configPath }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, apiUrl: `https://127.0.0.1:${apiPort}`, caFile: join(dataDir, 'tls', 'ca.crt'), output: () => out, exited };
}

async function waitHealthy(s: ServerProc, timeoutMs = 30_000): Promise<void> {
  let exited = false;
  void s.exited.then(() => (exited = true));
  await waitFor(
    `${s.apiUrl}/healthz`,
    async () => {
      if (exited) throw new Error(`server exited before it was healthy:\n${s.output()}`);
      await trustCa(await readFile(s.caFile, 'utf8'));
      const r = await fetch(`${s.apiUrl}/healthz`);
      return r.status === 200;
    },
    timeoutMs,
    25,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\nserver output:\n${s.output()}`);
  });
}

async function stopServer(s: ServerProc | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 5_000);
  await s.exited;
  clearTimeout(t);
}

const pod = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels: { app: 'durability' } },
  spec: { containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'] }] },
});

/** Pino JSON lines at error level or above, and any warning or worse that mentions the store. */
function storeProblems(output: string): string[] {
  const bad: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { level?: number; msg?: string; err?: string };
    try {
      rec = JSON.parse(line);
    } catch {
      // A line that only starts like JSON (a wrapped stack, a partial write at kill): not a log record.
      continue;
    }
    const text = `${rec.msg ?? ''} ${rec.err ?? ''}`;
    if ((rec.level ?? 0) >= 50 || ((rec.level ?? 0) >= 40 && /store|level|compact|watch|revision/i.test(text))) bad.push(line);
  }
  return bad;
}

test('drover server: every acknowledged create survives SIGKILL and restart', { timeout: 120_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-server-durability-'));
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'client-config');
  let current: ServerProc | undefined;
  t.after(async () => {
    await stopServer(current);
    await rm(dir, { recursive: true, force: true });
  });

  const apiPort = await freePort();
  const mqttPort = await freePort();
  const first = spawnServer(dataDir, apiPort, mqttPort, configPath);
  current = first;
  await waitHealthy(first);
  const token = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
  assert.ok(token.length > 0, 'admin token written');
  const call = apiClient(first.apiUrl, token);

  const ns = await call('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'durable' } });
  assert.equal(ns.status, 201, ns.text);

  const attempted = new Map<string, string>(); // name -> namespace
  const acked: Array<{ ns: string; name: string }> = [];
  let next = 0;
  let killed = false;
  let failedBeforeKill = 0;
  let killAt = 0;
  const started = performance.now();

  const worker = async () => {
    while (!killed && next < TOTAL) {
      const i = next++;
      const namespace = NAMESPACES[i % NAMESPACES.length]!;
      const name = `p-${String(i).padStart(4, '0')}`;
      attempted.set(name, namespace);
      try {
        const r = await call('POST', `/api/v1/namespaces/${namespace}/pods`, pod(name));
        if (r.status === 201) {
          acked.push({ ns: namespace, name });
          if (!killed && acked.length >= ACKS_BEFORE_KILL) {
            killed = true;
            killAt = performance.now();
            // No shutdown path: whatever was acknowledged must already be on disk.
            first.child.kill('SIGKILL');
          }
        } else if (!killed) {
          failedBeforeKill++;
          throw new Error(`create ${namespace}/${name}: ${r.status} ${r.text}`);
        }
      } catch (err) {
        if (!killed) throw err;
        // In flight when the server died: neither acknowledged nor required to survive.
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  assert.equal(failedBeforeKill, 0);
  assert.ok(killed, `the server was killed (acked ${acked.length})`);
  const exit = await first.exited;
  assert.equal(exit.signal, 'SIGKILL');
  const createsPerSec = Math.round((acked.length / (killAt - started)) * 1000);

  // Restart on the same data dir and the same ports.
  const restartAt = performance.now();
  const second = spawnServer(dataDir, apiPort, mqttPort, configPath);
  current = second;
  await waitHealthy(second);
  const restartMs = Math.round(performance.now() - restartAt);
  const call2 = apiClient(second.apiUrl, token);

  console.log(
    `server durability: ${acked.length} creates acknowledged (${attempted.size} attempted, ${IN_FLIGHT} in flight) at ~${createsPerSec} creates/s through the API before SIGKILL; restart-to-healthy ${restartMs} ms`,
  );

  const present = new Map<string, Set<string>>();
  for (const namespace of NAMESPACES) {
    const r = await call2('GET', `/api/v1/namespaces/${namespace}/pods`);
    assert.equal(r.status, 200, r.text);
    present.set(namespace, new Set(r.body.items.map((p: any) => p.metadata.name)));
  }
  const missing = acked.filter((a) => !present.get(a.ns)!.has(a.name)).map((a) => `${a.ns}/${a.name}`);
  assert.deepEqual(missing, [], `acknowledged pods missing after SIGKILL + restart`);
  for (const [namespace, names] of present) {
    for (const name of names) assert.equal(attempted.get(name), namespace, `pod ${namespace}/${name} was never created by the test`);
  }

  // resourceVersions are unique across every object the server holds.
  const all = await call2('GET', '/api/v1/pods');
  assert.equal(all.status, 200, all.text);
  const nss = await call2('GET', '/api/v1/namespaces');
  assert.equal(nss.status, 200, nss.text);
  const rvs = [...all.body.items, ...nss.body.items].map((o: any) => o.metadata.resourceVersion as string);
  assert.equal(new Set(rvs).size, rvs.length, 'resourceVersions are unique');
  const maxRv = Math.max(...rvs.map(Number));
  assert.ok(Number(all.body.metadata.resourceVersion) >= maxRv, 'list revision covers its items');

  const created = await call2('POST', '/api/v1/namespaces/durable/pods', pod('after-restart'));
  assert.equal(created.status, 201, created.text);
  assert.ok(Number(created.body.metadata.resourceVersion) > maxRv, `new resourceVersion ${created.body.metadata.resourceVersion} > ${maxRv}`);
  const got = await call2('GET', '/api/v1/namespaces/durable/pods/after-restart');
  assert.equal(got.status, 200, got.text);

  assert.deepEqual(storeProblems(first.output()), [], 'no store error before the kill');
  assert.deepEqual(storeProblems(second.output()), [], 'no store error after the restart');
});

test('drover server: a second server on a data dir in use exits 1 and says so', { timeout: 60_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-server-lock-'));
  const dataDir = join(dir, 'data');
  let first: ServerProc | undefined;
  t.after(async () => {
    await stopServer(first);
    await rm(dir, { recursive: true, force: true });
  });
  first = spawnServer(dataDir, await freePort(), await freePort(), join(dir, 'config-1'));
  await waitHealthy(first);

  // Different ports, so only the data dir can be the conflict.
  const second = spawnServer(dataDir, await freePort(), await freePort(), join(dir, 'config-2'));
  const exit = await Promise.race([
    second.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`second server still running:\n${second.output()}`)), 30_000).unref()),
  ]).catch(async (err) => {
    await stopServer(second);
    throw err;
  });
  assert.equal(exit.code, 1, second.output());
  assert.match(second.output(), /^error: .*data dir .* is in use/m);

  // The first server is unaffected.
  const r = await fetch(`${first.apiUrl}/healthz`);
  assert.equal(r.status, 200);
});
