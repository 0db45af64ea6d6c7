/**
 * `drover server` with its local agent (one process, as on a single machine) at idle on real podman, with 0
 * and then --pods pods: its RSS and PSS beside dockerd + containerd on the same machine kind (ANCHORS.md:
 * 136 MiB idle, 165 MiB with 50 tasks; the issue's goal is ≤ 0.7× of those). Plain node on the tsc output
 * (as bin/drover.js). The `podman events` child the agent keeps is reported apart (dockerd's figure has no
 * such helper; containerd's shims are also apart in the anchor).
 *
 * Run (root, podman): npx tsx bench/agent-footprint-local.ts [--idle 60] [--settle 20] [--pods 50] [--out NAME]
 *   → bench/results/agent-footprint-local.json and .md
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trustCa } from '../test/helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../test/helpers/podman.js';
import { podmanEventsPid } from './agent-footprint-procs.js';
import { freePort, machine, numArg, parseArgs, procCpuMs, procMemory, round, serverEnv, serverNodeArgs, sleep, writeResult } from './lib/common.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const args = parseArgs(process.argv.slice(2));
const IDLE_S = numArg(args, 'idle', 60);
const SETTLE_S = numArg(args, 'settle', 20);
/** Node flags of the server process: as installed unless --server-node-args says otherwise ("" for none). */
const SERVER_ARGS = serverNodeArgs(args);
const SERVER_ENV = serverEnv(args);
const PODS = numArg(args, 'pods', 50);
const OUT = args.get('out') ?? 'agent-footprint-local';
/** dockerd + containerd RSS idle / with 50 tasks, same machine kind (shared/design/ANCHORS.md). */
const ANCHOR_MIB = { idle: 136, loaded: 165 };

/** Pss of /proc/PID/smaps_rollup in MiB: shared pages (node's code) split among the processes mapping them. */
function pssMiB(pid: number): number | undefined {
  try {
    const kb = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

const stats = (xs: number[]) => (xs.length ? { avg: round(xs.reduce((a, b) => a + b, 0) / xs.length, 1), max: round(Math.max(...xs), 1) } : undefined);

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'drover-footprint-local-'));
  let sb: PodmanSandbox | undefined;
  let server: ChildProcess | undefined;
  const tail: string[] = [];
  const cleanup = async () => {
    if (server && server.exitCode === null) {
      const gone = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      const t = setTimeout(() => server!.kill('SIGKILL'), 30_000);
      await gone;
      clearTimeout(t);
    }
    await sb?.cleanup();
    await rm(tmp, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));
  try {
    console.log(`server + local agent footprint: idle ${IDLE_S} s per phase, ${PODS} pods; machine ${JSON.stringify(machine())}`);
    sb = await podmanSandbox();
    mkdirSync(sb.runroot, { recursive: true, mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=64m', 'tmpfs', sb.runroot]);
    const image = await buildTestImage(sb);
    const build = join(tmp, 'build');
    execFileSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json'), '--outDir', build, '--sourceMap', 'false'], { stdio: 'inherit', cwd: REPO });
    copyFileSync(join(REPO, 'package.json'), join(build, 'package.json'));
    symlinkSync(join(REPO, 'node_modules'), join(build, 'node_modules'));
    const dataDir = join(tmp, 'server');
    const apiPort = await freePort();
    const mqttPort = await freePort();
    server = spawn(
      process.execPath,
      [...SERVER_ARGS, join(build, 'src/main.js'), 'server', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort),
        '--node-name', 'local', '--state-dir', join(tmp, 'agent'), '--runtime', 'podman', '--podman-root', sb.root, '--podman-runroot', sb.runroot],
      { cwd: REPO, env: { ...process.env, ...SERVER_ENV, ...sb.env, DROVER_CONFIG: join(tmp, 'client-config.json') }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    for (const s of [server.stdout!, server.stderr!]) s.on('data', (b: Buffer) => tail.push(...b.toString().split('\n').filter(Boolean).map((l) => l.slice(0, 300))) && tail.splice(0, Math.max(0, tail.length - 30)));
    const pid = server.pid!;
    const apiUrl = `https://127.0.0.1:${apiPort}`;
    const waitFor = async (what: string, fn: () => Promise<boolean> | boolean, ms = 180_000) => {
      const deadline = Date.now() + ms;
      while (!(await fn())) {
        if (server!.exitCode !== null) throw new Error(`server exited: ${tail.join('\n')}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(500);
      }
    };
    await waitFor('server CA', () => existsSync(join(dataDir, 'tls', 'ca.crt')) && existsSync(join(dataDir, 'admin-token')));
    await trustCa(readFileSync(join(dataDir, 'tls', 'ca.crt'), 'utf8'));
    const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(apiUrl + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, body: (await r.json().catch(() => undefined)) as any };
    };
    await waitFor('node local Ready', async () => (await api('GET', '/api/v1/nodes/local').catch(() => ({ body: undefined }))).body?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') === true);

    const phase = async (name: string, pods: number) => {
      await sleep(SETTLE_S * 1000);
      const rss: number[] = [];
      const pss: number[] = [];
      const evRss: number[] = [];
      const cpu0 = procCpuMs(pid);
      const load = loadavg()[0]!;
      const t0 = performance.now();
      while (performance.now() - t0 < IDLE_S * 1000) {
        const m = procMemory(pid);
        if (m) rss.push(m.rssMiB);
        const p = pssMiB(pid);
        if (p !== undefined) pss.push(p);
        const ev = podmanEventsPid(pid);
        const e = ev ? procMemory(ev) : undefined;
        if (e) evRss.push(e.rssMiB);
        await sleep(2000);
      }
      const cpu = round(((procCpuMs(pid) - cpu0) / (performance.now() - t0)) * 100, 2);
      const r = { pods, loadAverage1mAtStart: round(load, 2), rssMiB: stats(rss), pssMiB: stats(pss), podmanEventsRssMiB: stats(evRss), cpuPercentOfOneCore: cpu };
      console.log(`${name}: ${JSON.stringify(r)}`);
      return r;
    };
    const phases: Record<string, Awaited<ReturnType<typeof phase>>> = {};
    phases['idle-0'] = await phase('idle-0', 0);
    const CMD = ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 5; done"];
    for (let i = 0; i < PODS; i++) {
      const r = await api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: `fp-${i}` }, spec: { nodeName: 'local', terminationGracePeriodSeconds: 2, containers: [{ name: 'main', image, command: CMD }] } });
      if (r.status !== 201) throw new Error(`create fp-${i}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
    }
    await waitFor(`${PODS} pods Running`, async () => ((await api('GET', '/api/v1/namespaces/default/pods')).body?.items ?? []).filter((p: any) => p.status?.phase === 'Running').length === PODS, 600_000);
    phases[`idle-${PODS}`] = await phase(`idle-${PODS}`, PODS);
    const result = { command: `npx tsx bench/agent-footprint-local.ts ${process.argv.slice(2).join(' ')}`.trim(), mode: `plain ${Object.entries(SERVER_ENV).map(([k, v]) => `${k}=${v} `).join('')}node ${SERVER_ARGS.join(' ')} on the tsc output (as bin/drover.js): \`drover server\` with its local agent in the same process`, anchorMiB: ANCHOR_MIB, phases };
    console.log(`wrote ${writeResult(OUT, result)}`);
    const idle = phases['idle-0']!;
    const loaded = phases[`idle-${PODS}`]!;
    const ratio = (v: number | undefined, a: number) => (v === undefined ? '?' : `${round(v / a, 2)}×`);
    writeFileSync(
      new URL(`results/${OUT}.md`, import.meta.url),
      [
        '# drover server + local agent at idle, real podman',
        '',
        `${new Date().toISOString()}, node ${process.version}; \`${result.command}\` (${IDLE_S} s per window after ${SETTLE_S} s settle; TLS). Raw: ${OUT}.json.`,
        '',
        '| window | RSS avg (max) | PSS avg | vs dockerd+containerd (ANCHORS) | goal | CPU | podman events child RSS | load |',
        '|---|---|---|---|---|---|---|---|',
        `| 0 pods | ${idle.rssMiB?.avg} (${idle.rssMiB?.max}) MiB | ${idle.pssMiB?.avg} MiB | ${ratio(idle.rssMiB?.avg, ANCHOR_MIB.idle)} of ${ANCHOR_MIB.idle} MiB | ≤ 0.7× | ${idle.cpuPercentOfOneCore} % | ${idle.podmanEventsRssMiB?.avg} MiB | ${idle.loadAverage1mAtStart} |`,
        `| ${PODS} pods | ${loaded.rssMiB?.avg} (${loaded.rssMiB?.max}) MiB | ${loaded.pssMiB?.avg} MiB | ${ratio(loaded.rssMiB?.avg, ANCHOR_MIB.loaded)} of ${ANCHOR_MIB.loaded} MiB (50 tasks) | ≤ 0.7× | ${loaded.cpuPercentOfOneCore} % | ${loaded.podmanEventsRssMiB?.avg} MiB | ${loaded.loadAverage1mAtStart} |`,
        '',
      ].join('\n'),
    );
  } finally {
    await cleanup();
  }
}

await main();
