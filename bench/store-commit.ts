/**
 * Durable write throughput: synced creates per second with 1, 16 and 64 writes in flight, at two levels.
 *   store  LevelStore on disk (what server/run.ts opens), N concurrent create() calls, each acknowledged
 *          only once durable; beside it raw classic-level (one synced put batch per write, same in
 *          flight) as the same-machine ceiling.
 *   api    POST /api/v1/namespaces/default/pods over HTTPS with 16 and 64 requests in flight against
 *          a real `drover server` process (--disable-agent), the server's CPU measured from /proc.
 * Each figure is run `--runs` times (default 3) and the median is reported with the load average,
 * since the machine is shared. Anchors (issue 13): etcd 3.4 on this machine kind 3.5k creates/s,
 * classic-level synced 10.7k/s.
 *
 * Run: node --import tsx bench/store-commit.ts [--part store|api|all] [--runs 3] [--label after]
 *        [--cpu-prof DIR]  (the server runs with --cpu-prof into DIR, for finding the API's bottleneck)
 *   → bench/results/store-commit-latest.json (store-commit-<label>.json with --label) and the .md beside it;
 *     bench/results/store-commit.md/.json sum up the before/after runs of issue 13 (written by hand from them)
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClassicLevel } from 'classic-level';
import { LevelStore } from '../server/store/level.js';
import { trustCa } from '../test/helpers/cluster.js';
import { freePort, median, numArg, parseArgs, procCpuMs, round, serverEnv, serverNodeArgs, sleep, writeResult } from './lib/common.js';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const args = parseArgs(process.argv.slice(2));
const RUNS = numArg(args, 'runs', 3);
const PART = args.get('part') ?? 'all';
const LABEL = args.get('label');
const CPU_PROF = args.get('cpu-prof');
/** --server-node-args="…": node flags for the server process only (default: as installed, SERVER_NODE_FLAGS; "" for none). */
const SERVER_NODE_ARGS = serverNodeArgs(args);
const SERVER_ENV = serverEnv(args);
const ANCHORS = { etcd34CreatesPerSecond: 3500, classicLevelSyncedCreatesPerSecond: 10700 };

const load = () => loadavg().map((l) => round(l, 2));

const podBody = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app: 'bench' } },
  spec: { containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'] }] },
});

/** Runs `total` calls of `one(i)` with `inFlight` at once; creates per second. */
async function drive(total: number, inFlight: number, one: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < total) await one(next++);
    }),
  );
  return (total / (performance.now() - t0)) * 1000;
}

interface Figure {
  inFlight: number;
  creates: number;
  perSecondRuns: number[];
  perSecondMedian: number;
  loadAverage: number[];
  [extra: string]: unknown;
}

const countFor = (inFlight: number, base: number) => (inFlight === 1 ? Math.max(200, base / 10) : base);

async function storeLevel(): Promise<{ store: Figure[]; rawClassicLevel: Figure[] }> {
  const store: Figure[] = [];
  const raw: Figure[] = [];
  for (const inFlight of [1, 16, 64]) {
    const creates = countFor(inFlight, 5000);
    const runs: number[] = [];
    const rawRuns: number[] = [];
    const loadBefore = load();
    for (let r = 0; r < RUNS; r++) {
      const dir = mkdtempSync(join(tmpdir(), 'drover-bench-store-'));
      try {
        const s = await LevelStore.open({ path: join(dir, 'db') });
        runs.push(await drive(creates, inFlight, async (i) => void (await s.create(podBody(`p${i}`)))));
        await s.close();
        const db = new ClassicLevel<string, unknown>(join(dir, 'raw'), { valueEncoding: 'json' });
        await db.open();
        rawRuns.push(await drive(creates, inFlight, (i) => db.batch([{ type: 'put', key: `/registry/Pod/default/p${i}`, value: podBody(`p${i}`) }], { sync: true })));
        await db.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    store.push({ inFlight, creates, perSecondRuns: runs.map((x) => round(x)), perSecondMedian: round(median(runs)), loadAverage: loadBefore });
    raw.push({ inFlight, creates, perSecondRuns: rawRuns.map((x) => round(x)), perSecondMedian: round(median(rawRuns)), loadAverage: loadBefore });
    console.log(`store ${inFlight} in flight: ${round(median(runs))} creates/s (runs ${runs.map((x) => round(x)).join(', ')}); raw classic-level ${round(median(rawRuns))}/s; load ${loadBefore.join(' ')}`);
  }
  return { store, rawClassicLevel: raw };
}

async function apiLevel(): Promise<{ api: Figure[]; serverSide: Record<string, number>; server: Record<string, unknown> }> {
  const tmp = mkdtempSync(join(tmpdir(), 'drover-bench-api-'));
  const dataDir = join(tmp, 'data');
  const apiPort = await freePort();
  const mqttPort = await freePort();
  const nodeArgs = [...SERVER_NODE_ARGS, ...(CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF] : [])];
  const server = spawn(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', 'src/main.ts', 'server', '--disable-agent', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--log-level', 'warn'],
    { cwd: REPO, env: { ...process.env, ...SERVER_ENV, DROVER_CONFIG: join(tmp, 'client-config.json') }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => server.on('exit', () => resolve()));
  const apiUrl = `https://127.0.0.1:${apiPort}`;
  try {
    const deadline = Date.now() + 60_000;
    while (!existsSync(join(dataDir, 'admin-token')) || !existsSync(join(dataDir, 'tls', 'ca.crt'))) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start:\n${out}`);
      await sleep(50);
    }
    await trustCa(readFileSync(join(dataDir, 'tls', 'ca.crt'), 'utf8'));
    while (!(await fetch(`${apiUrl}/readyz`).then((r) => r.ok, () => false))) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`server not ready:\n${out}`);
      await sleep(50);
    }
    const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    let seq = 0;
    let socketErrors = 0;
    const post = async () => {
      const name = `b${seq++}`;
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await fetch(`${apiUrl}/api/v1/namespaces/default/pods`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify(podBody(name)),
          });
          const text = await r.text();
          // 409 after a dropped connection: the first attempt was created.
          if (r.status === 201 || (attempt > 0 && r.status === 409)) return;
          throw new Error(`POST ${name}: ${r.status} ${text.slice(0, 300)}`);
        } catch (err) {
          // A kept-alive socket the server closed as the request went out (seen at load 15 on 2 cores).
          if (attempt >= 2 || !/fetch failed|socket/i.test(String(err))) throw err;
          socketErrors++;
        }
      }
    };
    await drive(300, 16, post); // warm-up: JIT, TLS sessions, connection pool
    const api: Figure[] = [];
    for (const inFlight of [16, 64]) {
      const creates = 3000;
      const runs: number[] = [];
      const cpu: number[] = [];
      const cpuPerCreate: number[] = [];
      const clientCpu: number[] = [];
      const loadBefore = load();
      for (let r = 0; r < RUNS; r++) {
        const c0 = procCpuMs(server.pid!);
        const client0 = process.cpuUsage();
        const t0 = performance.now();
        runs.push(await drive(creates, inFlight, post));
        const used = procCpuMs(server.pid!) - c0;
        const clientUsed = process.cpuUsage(client0);
        cpu.push((used / (performance.now() - t0)) * 100);
        clientCpu.push(((clientUsed.user + clientUsed.system) / 1000 / (performance.now() - t0)) * 100);
        cpuPerCreate.push(used / creates);
      }
      // Server CPU per create does not depend on how much of the shared machine the server got.
      api.push({ inFlight, creates, perSecondRuns: runs.map((x) => round(x)), perSecondMedian: round(median(runs)), loadAverage: loadBefore, serverCpuPercentOfOneCore: round(median(cpu)), serverCpuMsPerCreate: round(median(cpuPerCreate), 2), clientCpuPercentOfOneCore: round(median(clientCpu)) });
      console.log(`api ${inFlight} in flight: ${round(median(runs))} creates/s (runs ${runs.map((x) => round(x)).join(', ')}); server CPU ${round(median(cpu))}% of a core, ${round(median(cpuPerCreate), 2)} ms per create; client CPU ${round(median(clientCpu))}% of a core; load ${loadBefore.join(' ')}`);
    }
    const metrics = await fetch(`${apiUrl}/metrics`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.text());
    const sum = (name: string, filter = '') =>
      metrics
        .split('\n')
        .filter((l) => l.startsWith(name) && l.includes(filter))
        .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const commits = sum('drover_store_commit_duration_seconds_count');
    const postCount = sum('drover_apiserver_request_duration_seconds_count', 'verb="create",resource="pods"');
    const where = {
      groupCommits: commits,
      commitMeanMs: round((sum('drover_store_commit_duration_seconds_sum') / commits) * 1000, 2),
      writesPerCommitMean: round(sum('drover_store_commit_batch_writes_sum') / commits, 2),
      storeWrites: sum('drover_store_write_duration_seconds_count'),
      storeCreates: sum('drover_store_write_duration_seconds_count', 'operation="create"'),
      storeUpdates: sum('drover_store_write_duration_seconds_count', 'operation="update"') + sum('drover_store_write_duration_seconds_count', 'operation="patch"'),
      storeWriteMeanMs: round((sum('drover_store_write_duration_seconds_sum') / sum('drover_store_write_duration_seconds_count')) * 1000, 2),
      podPosts: postCount,
      podPostMeanMs: round((sum('drover_apiserver_request_duration_seconds_sum', 'verb="create",resource="pods"') / postCount) * 1000, 2),
    };
    console.log(`server side, all runs: ${JSON.stringify(where)}`);
    return { api, serverSide: where, server: { socketErrorsRetried: socketErrors, mode: `${Object.entries(SERVER_ENV).map(([k, v]) => `${k}=${v} `).join('')}node ${SERVER_NODE_ARGS.join(' ')} --import tsx src/main.ts server --disable-agent (HTTPS API, TLS, no nodes: pods stay Pending)`, cpuProfileDir: CPU_PROF } };
  } finally {
    // SIGTERM so --cpu-prof writes its profile on the way out.
    server.kill('SIGTERM');
    const t = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    rmSync(tmp, { recursive: true, force: true });
  }
}

const result: Record<string, unknown> = { label: LABEL, runs: RUNS, anchors: ANCHORS };
if (PART === 'store' || PART === 'all') Object.assign(result, await storeLevel());
if (PART === 'api' || PART === 'all') Object.assign(result, await apiLevel());

const name = `store-commit-${LABEL ?? 'latest'}`;
const file = writeResult(name, result);
const md: string[] = [`# Durable creates/s (${LABEL ?? 'current'}), median of ${RUNS} runs`, '', '| level | in flight | creates/s | runs | load avg (1/5/15 min) | anchor |', '|---|---|---|---|---|---|'];
const anchor = `etcd 3.4: ${ANCHORS.etcd34CreatesPerSecond}/s; classic-level synced: ${ANCHORS.classicLevelSyncedCreatesPerSecond}/s`;
for (const [level, figs] of [['LevelStore', result.store], ['raw classic-level (same run)', result.rawClassicLevel], ['API (HTTPS POST)', result.api]] as const) {
  for (const f of (figs as Figure[] | undefined) ?? []) md.push(`| ${level} | ${f.inFlight} | ${f.perSecondMedian} | ${f.perSecondRuns.join(', ')} | ${f.loadAverage.join(' / ')} | ${anchor} |`);
}
writeFileSync(file.replace(/\.json$/, '.md'), md.join('\n') + '\n');
console.log(`wrote ${file}`);
