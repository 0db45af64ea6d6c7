/**
 * Fleet benchmark: one real `drover server` process and N simulated agents (default 1000), to check
 * the product goal "a server for 1,000 agents in ~150 MB".
 *
 * Run: node --import tsx bench/fleet.ts [--agents N] [--workers W] [--heartbeat S] [--settle S] [--idle S]
 *        [--connect-rate PER_SECOND] [--compiled] [--insecure] [--keys K] [--join-concurrency C]
 *        [--timeout S] [--server-node-args="--cpu-prof ..."]
 *      → bench/results/fleet.json (fleet-<N>.json when N is not 1000, -insecure / -compiled suffixes; --out NAME to choose)
 * Quick mode: --agents 100
 *
 * The server runs as a child process exactly as `drover server --disable-agent` (under tsx, or with
 * --compiled from a tsc build in a temp dir, as bin/drover.js would run it). The agents live in W
 * forked worker processes. Each first joins as agent/join.ts does (GET /cacerts checked against the
 * K10 join token, POST /v1/join with a CSR → its certificate; see src/sim/device-join.ts for the key pool
 * and native CSR signing that keep the load generator light), then is one mqtt.js client speaking the
 * contract as agent/connection.ts and agent/reporter.ts do: MQTT over TLS with its client certificate
 * (the default), or with --insecure plain MQTT with username node and the password from its join;
 * clientId drover-agent-<node>, clean:false, last will "offline" (retained), subscription to its own desired + req/+, presence
 * "online" (retained), hello (retained), then status; a status heartbeat every --heartbeat seconds,
 * and a status at once when a new desired state arrives, echoing its generation and reporting every
 * desired pod Running (the simulated runtime starts containers instantly).
 *
 * Phases, each with wall time, server CPU time (utime+stime from /proc) and peak RSS (VmRSS sampled
 * every 250 ms). All agents come from 127.0.0.1, so the server's per-source MQTT connection rate limit
 * (--mqtt-connect-rate/--mqtt-connect-burst, meant for one device per address) is lifted for the run.
 *
 * Phases, each with wall time, server CPU time and peak RSS (VmRSS sampled every 250 ms):
 *   boot       spawn → API /readyz ok, no agents
 *   join       every agent's POST /v1/join answered (--join-concurrency in flight per worker): joins/s, latency
 *   register   first connect → all N nodes Ready (observed through a watch on the API)
 *   idle       after --settle s: --idle s of heartbeats only; RSS, CPU, store writes, MQTT bytes
 *   daemonset  POST a DaemonSet → N pods created, bound and reported Running
 *   idle-pods  the same idle measurement with one Running pod per node
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trustCa } from '../test/helpers/cluster.js';
import { apiClient, type ApiCall } from '../test/helpers/http.js';
import { AGENT_DEFAULTS } from '../agent/config.js';
import { keyPool } from '../src/sim/device-join.js';
import { startSimFleet, type SimFleet } from '../src/sim/fleet.js';
import { freePort, machine, median, numArg, percentile, parseArgs, procChildren, procCpuMs, procMemory, round, sleep, writeResult } from './lib/common.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));


// ───────────────────────────── parent side: server, workers, measurements ─────────────────────────────

interface Ctx {
  apiUrl: string;
  token: string;
  pid: number;
}

function api(ctx: Ctx, method: string, path: string, body?: unknown): ReturnType<ApiCall> {
  return apiClient(ctx.apiUrl, ctx.token)(method, path, body);
}

/** The store revision (every write bumps it): read from the smallest list there is. */
async function storeRevision(ctx: Ctx): Promise<number> {
  const r = await api(ctx, 'GET', '/api/v1/namespaces');
  return Number(r.body?.metadata?.resourceVersion ?? NaN);
}

/** A `?watch=1` stream of the API, one callback per event; close() ends it. */
function watchApi(ctx: Ctx, path: string, onEvent: (type: string, obj: any) => void): { close(): void } {
  const ac = new AbortController();
  void (async () => {
    try {
      const res = await fetch(`${ctx.apiUrl}${path}${path.includes('?') ? '&' : '?'}watch=1`, { headers: { authorization: `Bearer ${ctx.token}` }, signal: ac.signal });
      if (!res.ok || !res.body) throw new Error(`watch ${path}: HTTP ${res.status}`);
      const dec = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const e = JSON.parse(line) as { type: string; object: unknown };
          onEvent(e.type, e.object);
        }
      }
    } catch (err) {
      if (!ac.signal.aborted) console.error(`watch ${path} failed: ${(err as Error).message}`);
    }
  })();
  return { close: () => ac.abort() };
}

/** Samples the server's RSS every 250 ms into whichever phase is open. */
class Monitor {
  private timer: NodeJS.Timeout;
  private phase: PhaseRec | undefined;
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 250);
    this.timer.unref();
  }
  sample(): number | undefined {
    const m = procMemory(this.pid);
    if (m && this.phase) this.phase.sample(m.rssMiB);
    return m?.rssMiB;
  }
  begin(name: string): PhaseRec {
    this.phase = new PhaseRec(name, this.pid);
    this.sample();
    return this.phase;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

class PhaseRec {
  readonly t0 = performance.now();
  readonly cpu0: number;
  private peak = 0;
  private min = Infinity;
  private sum = 0;
  private n = 0;
  constructor(readonly name: string, private readonly pid: number) {
    this.cpu0 = procCpuMs(pid);
  }
  sample(rss: number): void {
    this.peak = Math.max(this.peak, rss);
    this.min = Math.min(this.min, rss);
    this.sum += rss;
    this.n++;
  }
  elapsedMs(): number {
    return performance.now() - this.t0;
  }
  end(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const ms = this.elapsedMs();
    const mem = procMemory(this.pid);
    if (mem) this.sample(mem.rssMiB);
    const cpuMs = procCpuMs(this.pid) - this.cpu0;
    return {
      wallMs: Math.round(ms),
      serverCpuMs: Math.round(cpuMs),
      serverCpuPercentOfOneCore: round((cpuMs / ms) * 100, 1),
      rssEndMiB: round(mem?.rssMiB ?? NaN, 1),
      rssPeakMiB: round(this.peak, 1),
      rssMinMiB: round(this.min, 1),
      rssAvgMiB: round(this.sum / Math.max(1, this.n), 1),
      ...extra,
    };
  }
}


async function waitUntil(what: string, cond: () => boolean, timeoutMs: number, progress?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastLog = Date.now();
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${progress ? ` (${progress()})` : ''}`);
    if (progress && Date.now() - lastLog > 10_000) {
      console.log(`  … ${what}: ${progress()}`);
      lastLog = Date.now();
    }
    await sleep(20);
  }
}

/** Times a few API list calls (what `drover get nodes` / `get pods -A` cost at this fleet size). */
async function listTimings(ctx: Ctx): Promise<Record<string, number>> {
  const time = async (path: string) => {
    const ms: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const res = await fetch(ctx.apiUrl + path, { headers: { authorization: `Bearer ${ctx.token}` } });
      bytes = (await res.arrayBuffer()).byteLength;
      ms.push(performance.now() - t);
    }
    return { ms: round(median(ms), 1), bytes };
  };
  const nodes = await time('/api/v1/nodes');
  const pods = await time('/api/v1/pods');
  return { listNodesMs: nodes.ms, listNodesBytes: nodes.bytes, listPodsMs: pods.ms, listPodsBytes: pods.bytes };
}

/** An idle window: heartbeats only. Server RSS/CPU, store writes and MQTT bytes per agent. */
async function idleWindow(name: string, ctx: Ctx, mon: Monitor, workers: SimFleet, n: number, seconds: number, hb: number): Promise<Record<string, unknown>> {
  const rev0 = await storeRevision(ctx);
  const s0 = await workers.stats();
  const ph = mon.begin(name);
  await sleep(seconds * 1000);
  const s1 = await workers.stats();
  const rev1 = await storeRevision(ctx);
  const heartbeats = s1.heartbeatsSent - s0.heartbeatsSent;
  const bytes = s1.bytesIn - s0.bytesIn + (s1.bytesOut - s0.bytesOut);
  const res = ph.end({
    storeWrites: rev1 - rev0 - 0,
    storeWritesPerMinute: round(((rev1 - rev0) / seconds) * 60, 1),
    heartbeats,
    statusMessages: s1.statusSent - s0.statusSent,
    agentsConnected: s1.connectedNow,
    mqttBytesPerAgentPerHeartbeatPeriod: round(bytes / n / (seconds / hb), 0),
    mqttBytesUpPerAgentPerHeartbeatPeriod: round((s1.bytesOut - s0.bytesOut) / n / (seconds / hb), 0),
    mqttBytesDownPerAgentPerHeartbeatPeriod: round((s1.bytesIn - s0.bytesIn) / n / (seconds / hb), 0),
    // MQTT bytes as the agents' TLS sockets count them (plaintext: no TLS records, no IP/TCP headers).
    bytesPerAgentPerDay: round((bytes / n / seconds) * 86_400, 0),
    loadAverage: loadavg().map((l) => round(l, 2)),
    workerCpuMs: Math.round(s1.cpuMs - s0.cpuMs),
    ...(await listTimings(ctx)),
  });
  return res;
}

function daemonSet(name: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: 'default' },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: 'collector',
              image: 'localhost/busybox:latest',
              command: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 5; done"],
              resources: { requests: { cpu: '50m', memory: '16Mi' }, limits: { memory: '32Mi' } },
            },
          ],
        },
      },
    },
  };
}

/** Builds the server with tsc into `dir` (outside the repo), runnable as plain node like bin/drover.js. */
function compileServer(dir: string): string {
  execFileSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json'), '--outDir', dir, '--sourceMap', 'false'], { stdio: 'inherit', cwd: REPO });
  copyFileSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return join(dir, 'src/main.js');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const n = numArg(args, 'agents', 1000);
  const workerCount = Math.max(1, Math.min(n, numArg(args, 'workers', 2)));
  const hb = numArg(args, 'heartbeat', 30);
  const keepalive = numArg(args, 'keepalive', 15);
  const settle = numArg(args, 'settle', n >= 500 ? 30 : 10);
  const idle = numArg(args, 'idle', n >= 500 ? 65 : 35);
  const timeoutMs = numArg(args, 'timeout', 900) * 1000;
  const connectRate = numArg(args, 'connect-rate', 0);
  const compiled = args.has('compiled');
  const insecure = args.has('insecure');
  const keyCount = Math.max(1, Math.min(n, numArg(args, 'keys', 50)));
  const joinConcurrency = numArg(args, 'join-concurrency', 8);
  // Extra node flags for the server process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (space-separated).
  const nodeArgs = (args.get('server-node-args') ?? '').split(' ').filter(Boolean);
  const suffix = `${insecure ? '-insecure' : ''}${compiled ? '-compiled' : ''}`;
  const outName = args.get('out') ?? (n === 1000 ? `fleet${suffix}` : `fleet-${n}${suffix}`);

  console.log(`fleet bench: ${n} simulated agents in ${workerCount} worker process(es), heartbeat ${hb}s, server ${compiled ? 'compiled (tsc)' : 'under tsx'}, ${insecure ? '--insecure (plain MQTT, node passwords)' : 'TLS (client certificates)'}; machine ${JSON.stringify(machine())}`);
  // Before the server starts, so its CPU readings do not include the load generator's key making.
  const tKeys = performance.now();
  const keys = await keyPool(keyCount);
  const keysMs = Math.round(performance.now() - tKeys);
  console.log(`keys: ${keyCount} RSA 2048 key pairs in ${keysMs} ms (${round(keysMs / keyCount, 1)} ms each on this machine)`);
  const tmp = mkdtempSync(join(tmpdir(), 'drover-fleet-'));
  const dataDir = join(tmp, 'data');
  const apiPort = await freePort();
  const mqttPort = await freePort();
  const entry = compiled ? compileServer(join(tmp, 'build')) : undefined;
  const serverArgs = ['server', '--disable-agent', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--log-level', 'warn',
    // One source address for the whole simulated fleet: lift the per-address connect rate meant for one device each.
    '--mqtt-connect-rate', '100000', '--mqtt-connect-burst', '100000', ...(insecure ? ['--insecure'] : [])];
  const t0 = performance.now();
  const server = spawn(process.execPath, [...nodeArgs, ...(entry ? [entry] : ['--import', 'tsx', 'src/main.ts']), ...serverArgs], {
    cwd: REPO,
    env: { ...process.env, DROVER_CONFIG: join(tmp, 'client-config.json') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logLines: string[] = [];
  const warnCounts = new Map<string, number>();
  const onLog = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      let msg = line;
      try {
        const j = JSON.parse(line) as { msg?: string };
        msg = j.msg ?? line;
      } catch {
        // not pino JSON (the startup banner)
      }
      if (line.startsWith('{')) warnCounts.set(msg, (warnCounts.get(msg) ?? 0) + 1);
      if (logLines.length < 30 && line.startsWith('{')) logLines.push(line.slice(0, 400));
    }
  };
  server.stdout!.on('data', onLog);
  server.stderr!.on('data', onLog);
  let serverExit: string | undefined;
  server.on('exit', (code, sig) => {
    serverExit = `server exited (code ${code}, signal ${sig})`;
  });

  const ctx: Ctx = { apiUrl: `${insecure ? 'http' : 'https'}://127.0.0.1:${apiPort}`, token: '', pid: server.pid! };
  const mon = new Monitor(ctx.pid);
  let workers: SimFleet | undefined;
  const result: Record<string, unknown> = {
    agents: n,
    workers: workerCount,
    heartbeatSeconds: hb,
    keepaliveSeconds: keepalive,
    connectRatePerSecond: connectRate || 'all at once',
    security: insecure ? '--insecure: plain HTTP join, plain MQTT with each node\'s password' : 'TLS: HTTPS join (K10 token, CSR), MQTT over TLS with each node\'s client certificate',
    keyPool: { keys: keyCount, rsaBits: 2048, generateMs: keysMs, note: 'node i uses key i % keys (device-side cost kept out of the server measurements); CSRs signed natively before the join phase' },
    joinConcurrencyPerWorker: joinConcurrency,
    serverMode: compiled ? 'compiled (tsc output, plain node)' : 'node --import tsx src/main.ts',
    phases: {} as Record<string, unknown>,
  };
  const phases = result.phases as Record<string, unknown>;
  const alive = () => {
    if (serverExit) throw new Error(serverExit);
    return true;
  };
  try {
    // ── boot
    const boot = mon.begin('boot');
    await waitUntil('join-token and admin-token', () => alive() && existsSync(join(dataDir, 'join-token')) && existsSync(join(dataDir, 'admin-token')), 60_000);
    // The API's certificate is signed by the cluster CA the server just made: trust it for this process's fetch.
    if (!insecure) await trustCa(readFileSync(join(dataDir, 'tls', 'ca.crt'), 'utf8'));
    let ready = false;
    while (!ready) {
      alive();
      ready = await fetch(`${ctx.apiUrl}/readyz`).then((r) => r.ok, () => false);
      if (!ready) await sleep(50);
    }
    ctx.token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const joinToken = readFileSync(join(dataDir, 'join-token'), 'utf8').trim();
    phases.boot = boot.end();
    console.log(`boot: API ready in ${Math.round(performance.now() - t0)} ms, RSS ${round(procMemory(ctx.pid)!.rssMiB, 1)} MiB`);

    // ── join: every agent trades the join token and its CSR for a certificate (and, --insecure, a password)
    const names = Array.from({ length: n }, (_, i) => ({ name: `edge-${String(i).padStart(4, '0')}`, index: i }));
    workers = await startSimFleet(workerCount, names, { apiUrl: ctx.apiUrl, joinToken, keys, insecure, joinConcurrency, heartbeatSeconds: hb, keepaliveSeconds: keepalive, eventBatchSeconds: 0, reconnectMaxMs: AGENT_DEFAULTS.reconnectMaxSeconds * 1000, podsPerNode: 0, podStartMs: 0, connectPerSecond: connectRate });
    const jn = mon.begin('join');
    const joinStart = Date.now();
    const joins = await workers.join();
    const joinMs = jn.elapsedMs();
    // Joins per second in each tenth of the fleet: whether a join gets slower as more nodes have joined.
    const doneAt = [...joins.doneAt].sort((a, b) => a - b);
    const tenth = Math.max(1, Math.floor(doneAt.length / 10));
    const ratePerTenth: number[] = [];
    for (let k = 0; k + tenth <= doneAt.length; k += tenth) ratePerTenth.push(round(tenth / (Math.max(1, doneAt[k + tenth - 1]! - (k === 0 ? joinStart : doneAt[k - 1]!)) / 1000), 1));
    phases.join = jn.end({
      joined: joins.ok,
      failed: joins.failed,
      joinsPerSecond: round(joins.ok / (joinMs / 1000), 1),
      latencyMedianMs: median(joins.latenciesMs),
      latencyP90Ms: percentile(joins.latenciesMs, 90),
      latencyMaxMs: Math.max(...joins.latenciesMs),
      inFlight: joinConcurrency * workerCount,
      joinsPerSecondByTenth: ratePerTenth,
      errorSamples: joins.errorSamples,
    });
    console.log(`join: ${joins.ok} joined, ${joins.failed} failed in ${Math.round(joinMs)} ms (${(phases.join as any).joinsPerSecond}/s, median ${(phases.join as any).latencyMedianMs} ms with ${joinConcurrency * workerCount} in flight); server CPU ${(phases.join as any).serverCpuPercentOfOneCore}% of a core, RSS ${(phases.join as any).rssEndMiB} MiB`);
    if (joins.ok < n) throw new Error(`${joins.failed} of ${n} joins failed: ${joins.errorSamples.join('; ')}`);

    // ── register
    const want = new Set(names.map((x) => x.name));
    const readyNodes = new Set<string>();
    const nodesWatch = watchApi(ctx, '/api/v1/nodes', (_type, obj) => {
      const name = obj?.metadata?.name as string;
      if (!want.has(name)) return;
      const ok = obj.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
      if (ok) readyNodes.add(name);
      else readyNodes.delete(name);
    });
    const reg = mon.begin('register');
    let allConnectedMs: number | undefined;
    let halfReadyMs: number | undefined;
    await workers.connect((total) => {
      if (total >= n && allConnectedMs === undefined) allConnectedMs = reg.elapsedMs();
    });
    const w = workers;
    await waitUntil(
      `${n} nodes Ready`,
      () => {
        alive();
        if (halfReadyMs === undefined && readyNodes.size >= n / 2) halfReadyMs = reg.elapsedMs();
        return readyNodes.size >= n;
      },
      timeoutMs,
      () => `${w.connected} connected, ${readyNodes.size} Ready after ${Math.round(reg.elapsedMs() / 1000)} s, RSS ${round(mon.sample() ?? NaN, 1)} MiB`,
    );
    const regStats = await workers.stats();
    phases.register = reg.end({
      allConnectedMs: allConnectedMs === undefined ? undefined : Math.round(allConnectedMs),
      halfReadyMs: halfReadyMs === undefined ? undefined : Math.round(halfReadyMs),
      allReadyMs: Math.round(reg.elapsedMs()),
      connects: regStats.connects,
      closes: regStats.closes,
      errors: regStats.errors,
      workerCpuMs: Math.round(regStats.cpuMs),
      workerRssMiB: round(regStats.rssMiB, 1),
    });
    nodesWatch.close();
    console.log(`register: all ${n} connected in ${Math.round(allConnectedMs ?? NaN)} ms, all Ready in ${(phases.register as any).allReadyMs} ms; server CPU ${(phases.register as any).serverCpuMs} ms, peak RSS ${(phases.register as any).rssPeakMiB} MiB`);

    // ── idle, no pods
    console.log(`settling ${settle} s, then ${idle} s idle window …`);
    await sleep(settle * 1000);
    phases.idle = await idleWindow('idle', ctx, mon, workers, n, idle, hb);
    console.log(`idle (${n} agents, no pods): RSS ${(phases.idle as any).rssEndMiB} MiB (min ${(phases.idle as any).rssMinMiB}, max ${(phases.idle as any).rssPeakMiB}), CPU ${(phases.idle as any).serverCpuPercentOfOneCore}% of a core, ${(phases.idle as any).storeWritesPerMinute} store writes/min, ${(phases.idle as any).mqttBytesPerAgentPerHeartbeatPeriod} MQTT bytes/agent/heartbeat`);

    // ── daemonset
    const dsName = 'fleet-ds';
    const pods = new Map<string, { node?: string; phase?: string }>();
    let created = 0;
    let bound = 0;
    let running = 0;
    const recount = () => {
      created = pods.size;
      bound = 0;
      running = 0;
      for (const p of pods.values()) {
        if (p.node) bound++;
        if (p.phase === 'Running') running++;
      }
    };
    const marks: Record<string, number> = {};
    let ds: PhaseRec | undefined;
    const podsWatch = watchApi(ctx, `/api/v1/namespaces/default/pods?labelSelector=app%3D${dsName}`, (type, obj) => {
      const name = obj?.metadata?.name as string;
      if (type === 'DELETED') pods.delete(name);
      else pods.set(name, { node: obj.spec?.nodeName, phase: obj.status?.phase });
      recount();
      if (!ds) return;
      const t = Math.round(ds.elapsedMs());
      if (created >= 1) marks.firstPodCreatedMs ??= t;
      if (running >= 1) marks.firstPodRunningMs ??= t;
      if (created >= n) marks.allCreatedMs ??= t;
      if (bound >= n) marks.allBoundMs ??= t;
      if (running >= n / 2) marks.halfRunningMs ??= t;
      if (running >= n) marks.allRunningMs ??= t;
    });
    await sleep(300);
    ds = mon.begin('daemonset');
    const post = await api(ctx, 'POST', '/apis/apps/v1/namespaces/default/daemonsets', daemonSet(dsName));
    if (post.status !== 201) throw new Error(`POST daemonset: HTTP ${post.status} ${post.text}`);
    marks.postMs = Math.round(ds.elapsedMs());
    const dsRec = ds;
    await waitUntil(`${n} daemon pods Running`, () => alive() && running >= n, timeoutMs, () => `${created} created, ${bound} bound, ${running} Running after ${Math.round(dsRec.elapsedMs() / 1000)} s, RSS ${round(mon.sample() ?? NaN, 1)} MiB`);
    const dsStats = await workers.stats();
    const dsObj = await api(ctx, 'GET', `/apis/apps/v1/namespaces/default/daemonsets/${dsName}`);
    phases.daemonset = dsRec.end({ ...marks, agentsReportingPods: dsStats.podsRunning, dsStatus: dsObj.body?.status });
    podsWatch.close();
    console.log(`daemonset: ${n} pods created in ${marks.allCreatedMs} ms, bound in ${marks.allBoundMs} ms, Running in ${marks.allRunningMs} ms; server CPU ${(phases.daemonset as any).serverCpuMs} ms, peak RSS ${(phases.daemonset as any).rssPeakMiB} MiB`);

    // ── idle with one pod per node
    await sleep(settle * 1000);
    phases.idleWithPods = await idleWindow('idle-pods', ctx, mon, workers, n, idle, hb);
    console.log(`idle (${n} agents, 1 pod each): RSS ${(phases.idleWithPods as any).rssEndMiB} MiB (max ${(phases.idleWithPods as any).rssPeakMiB}), CPU ${(phases.idleWithPods as any).serverCpuPercentOfOneCore}% of a core, ${(phases.idleWithPods as any).storeWritesPerMinute} store writes/min, ${(phases.idleWithPods as any).mqttBytesPerAgentPerHeartbeatPeriod} MQTT bytes/agent/heartbeat`);

    const final = await workers.stats();
    const mem = procMemory(ctx.pid)!;
    result.payloadBytes = final.sizes;
    result.serverVmHWMMiB = round(mem.hwmMiB, 1);
    result.serverChildren = procChildren(ctx.pid);
    result.storeRevision = await storeRevision(ctx);
    result.agentTotals = { connects: final.connects, closes: final.closes, errors: final.errors, errorSamples: final.errorSamples, statusSent: final.statusSent, desiredReceived: final.desiredReceived, desiredRejected: final.desiredRejected, workerCpuMs: Math.round(final.cpuMs), workerRssMiB: round(final.rssMiB, 1) };
    result.goal = { targetMiB: 150, idleRssMiB: (phases.idle as any).rssEndMiB, idleWithPodsRssMiB: (phases.idleWithPods as any).rssEndMiB, peakRssMiB: result.serverVmHWMMiB, met: (phases.idleWithPods as any).rssEndMiB <= 150 };
    result.ok = true;
  } catch (err) {
    result.ok = false;
    result.error = (err as Error).message;
    console.error(`fleet bench failed: ${(err as Error).message}`);
    const m = procMemory(ctx.pid);
    if (m) result.serverAtFailure = { rssMiB: round(m.rssMiB, 1), hwmMiB: round(m.hwmMiB, 1), cpuMs: procCpuMs(ctx.pid) };
    if (workers) result.agentTotalsAtFailure = await Promise.race([workers.stats(), sleep(3000).then(() => undefined)]);
  } finally {
    result.serverLogCounts = Object.fromEntries([...warnCounts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20));
    result.serverLogSamples = logLines.slice(0, 10);
    mon.stop();
    await workers?.stop();
    if (server.exitCode === null) {
      server.kill('SIGTERM');
      await Promise.race([new Promise((r) => server.once('exit', r)), sleep(15_000).then(() => server.kill('SIGKILL'))]);
    }
    rmSync(tmp, { recursive: true, force: true });
  }
  const file = writeResult(outName, result);
  console.log(`wrote ${file}`);
  if (!result.ok) process.exitCode = 1;
}

void main();
