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
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiClient } from '../test/helpers/http.js';
import { AGENT_DEFAULTS } from '../agent/config.js';
import { keyPool } from '../src/sim/device-join.js';
import { startSimFleet, type SimFleet } from '../src/sim/fleet.js';
import { compileServer, daemonSet, Monitor, ServerProc, type PhaseRec, watchApi, waitUntil } from './lib/fleet-server.js';
import { freePort, machine, median, numArg, percentile, parseArgs, procChildren, procCpuMs, procMemory, round, sleep, writeResult } from './lib/common.js';



interface Ctx {
  apiUrl: string;
  token: string;
  pid: number;
}

async function storeRevision(ctx: Ctx): Promise<number> {
  const r = await apiClient(ctx.apiUrl, ctx.token)('GET', '/api/v1/namespaces');
  return Number(r.body?.metadata?.resourceVersion ?? NaN);
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
  const t0 = performance.now();
  const server = new ServerProc({ entry, nodeArgs, dataDir, apiPort, mqttPort, insecure, clientConfig: join(tmp, 'client-config.json') });
  server.start();
  const ctx: Ctx = { apiUrl: server.apiUrl, token: '', pid: server.pid };
  const mon = new Monitor(() => server.pid);
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
  const alive = () => server.alive();
  try {
    // ── boot
    const boot = mon.begin('boot');
    await server.ready();
    ctx.token = server.token;
    const joinToken = server.joinToken;
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
    const nodesWatch = watchApi(ctx.apiUrl, ctx.token, '/api/v1/nodes', (_type, obj) => {
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
    const podsWatch = watchApi(ctx.apiUrl, ctx.token, `/api/v1/namespaces/default/pods?labelSelector=app%3D${dsName}`, (type, obj) => {
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
    const post = await server.api('POST', '/apis/apps/v1/namespaces/default/daemonsets', daemonSet(dsName));
    if (post.status !== 201) throw new Error(`POST daemonset: HTTP ${post.status} ${post.text}`);
    marks.postMs = Math.round(ds.elapsedMs());
    const dsRec = ds;
    await waitUntil(`${n} daemon pods Running`, () => alive() && running >= n, timeoutMs, () => `${created} created, ${bound} bound, ${running} Running after ${Math.round(dsRec.elapsedMs() / 1000)} s, RSS ${round(mon.sample() ?? NaN, 1)} MiB`);
    const dsStats = await workers.stats();
    const dsObj = await server.api('GET', `/apis/apps/v1/namespaces/default/daemonsets/${dsName}`);
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
    result.serverLogCounts = Object.fromEntries([...server.warnCounts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20));
    result.serverLogSamples = server.logLines.slice(0, 10);
    mon.stop();
    await workers?.stop();
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  const file = writeResult(outName, result);
  console.log(`wrote ${file}`);
  if (!result.ok) process.exitCode = 1;
}

void main();
