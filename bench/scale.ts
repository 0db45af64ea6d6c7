/**
 * Scaling curve: one real `drover server` (compiled, as bin/drover.js runs it) and N simulated agents
 * (src/sim: the real join and MQTT contract over TLS, fake runtime) for each N of --sizes. Per size:
 *   - join and register: joins/s, time until every node is Ready;
 *   - idle: server RSS and CPU (% of one core), store writes, MQTT bytes per agent per day;
 *   - placement: a DaemonSet (one pod per node) from POST to every pod reported Running: pods/s end to end;
 *     with --placement-pods P at the size --placement-nodes (default 5,000 pods on 1,000 nodes), a
 *     Deployment of P replicas the same way (the issue's placement row); with --placement-repeat R, placed R
 *     times (deleted in between) and the median run reported, with server CPU per pod, for A/B comparisons;
 *   - mass reconnect: the server process (with its embedded broker) stopped and started again on the
 *     same data dir and ports; per node, the time from the new process's start until its Node is
 *     written Ready by the new process (its first status heard), p50/p99/max, and until every agent
 *     is connected again and has its desired state (converged);
 *   - with --cpu-prof, the server's CPU profile (node --cpu-prof) summed by function: the first bottleneck.
 *
 * Run: node --import tsx bench/scale.ts [--sizes 100,500,1000,2000,5000] [--workers W] [--settle S] [--idle S]
 *        [--heartbeat S] [--keepalive S] [--placement-pods 5000] [--placement-nodes 1000] [--placement-repeat R]
 *        [--idle-after S] [--cpu-prof]
 *        [--server-node-args="--max-semi-space-size=8"] (default: as installed, SERVER_NODE_FLAGS; "" for none)
 *        [--timeout S] [--out NAME]
 *      → bench/results/scale.json and scale.md (or NAME.json/.md)
 * The lead's full curve on a quiet machine: node --import tsx bench/scale.ts --sizes 100,500,1000,2000,5000 --cpu-prof
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINK_PROFILES } from '../agent/config.js';
import { keyPool, type DeviceKeyPem } from '../src/sim/device-join.js';
import { startSimFleet, type SimFleet } from '../src/sim/fleet.js';
import { simNodeName } from '../src/sim/run.js';
import { compileServer, daemonSet, deployment, Monitor, ServerProc, waitUntil, watchApi } from './lib/fleet-server.js';
import { freePort, machine, median, numArg, parseArgs, percentile, round, serverEnv, serverNodeArgs, sleep, writeResult } from './lib/common.js';
import { scrape } from './lib/metrics.js';

interface Opts {
  workers: number;
  settle: number;
  idle: number;
  hb: number;
  keepalive: number;
  reconnectMax: number;
  timeoutMs: number;
  placementPods: number;
  placementRepeat: number;
  /** --idle-after S: after the placements, a quiet window of S seconds and the server's memory then (0: none). */
  idleAfter: number;
  placementNodes: number;
  cpuProf: boolean;
  /** Extra node flags for the server, e.g. --max-semi-space-size=8. */
  nodeArgs: string[];
  entry: string;
  /** --server-binary: the single binary runs the server (as installed) instead of node on the tsc output. */
  binary?: string;
  /** --server-env "K=V K2=V2": environment of the server process only (default SERVER_ENV, as installed). */
  serverEnv: Record<string, string>;
  keys: DeviceKeyPem[];
}

const ready = (obj: any) => obj?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
const load = () => loadavg().map((l) => round(l, 2));

/** Self time per function of a .cpuprofile, top `n`, in ms and % of the sampled time. */
function profileTop(file: string, n = 15): Array<{ fn: string; selfMs: number; percent: number }> {
  const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }>; startTime: number; endTime: number; samples: number[] };
  const perSample = (p.endTime - p.startTime) / 1000 / Math.max(1, p.samples.length);
  const agg = new Map<string, number>();
  let total = 0;
  for (const node of p.nodes) {
    const hits = node.hitCount ?? 0;
    if (!hits) continue;
    const f = node.callFrame;
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/|build\/)/, '$1')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    agg.set(key, (agg.get(key) ?? 0) + hits);
    total += hits;
  }
  return [...agg.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([fn, hits]) => ({ fn, selfMs: Math.round(hits * perSample), percent: round((hits / total) * 100, 1) }));
}

/** POSTs `manifest` to `path` and waits until `want` pods labelled app=`app` are reported Running: the marks of that run. */
async function placement(server: ServerProc, mon: Monitor, name: string, path: string, manifest: unknown, app: string, want: number, timeoutMs: number): Promise<Record<string, unknown>> {
  const pods = new Map<string, { node?: string; phase?: string }>();
  let bound = 0;
  let running = 0;
  const marks: Record<string, number> = {};
  let t0 = 0;
  const rev = await server.revision();
  const w = watchApi(server.apiUrl, server.token, `/api/v1/namespaces/default/pods?labelSelector=app%3D${app}`, (type, obj) => {
    const k = obj?.metadata?.name as string;
    if (type === 'DELETED') pods.delete(k);
    else pods.set(k, { node: obj.spec?.nodeName, phase: obj.status?.phase });
    bound = 0;
    running = 0;
    for (const p of pods.values()) {
      if (p.node) bound++;
      if (p.phase === 'Running') running++;
    }
    if (!t0) return;
    const t = Math.round(performance.now() - t0);
    if (pods.size >= want) marks.allCreatedMs ??= t;
    if (bound >= want) marks.allBoundMs ??= t;
    if (running >= want) marks.allRunningMs ??= t;
  }, rev);
  await sleep(300);
  const ph = mon.begin(name);
  t0 = performance.now();
  const post = await server.api('POST', path, manifest);
  if (post.status !== 201) throw new Error(`POST ${path}: HTTP ${post.status} ${post.text}`);
  await waitUntil(`${want} ${app} pods Running`, () => server.alive() && running >= want, timeoutMs, () => `${pods.size} created, ${bound} bound, ${running} Running after ${Math.round((performance.now() - t0) / 1000)} s`);
  w.close();
  const ms = marks.allRunningMs ?? Math.round(performance.now() - t0);
  return ph.end({ pods: want, ...marks, podsPerSecondToRunning: round(want / (ms / 1000), 1), podsPerSecondToBound: marks.allBoundMs ? round(want / (marks.allBoundMs / 1000), 1) : undefined, loadAverage: load() });
}

/** Deletes a Deployment and waits until the server holds none of its pods (the store's list, not the agents). */
async function removeDeployment(server: ServerProc, app: string, timeoutMs: number): Promise<void> {
  const del = await server.api('DELETE', `/apis/apps/v1/namespaces/default/deployments/${app}`);
  if (del.status !== 200 && del.status !== 202) throw new Error(`DELETE deployment ${app}: HTTP ${del.status} ${del.text}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await server.api('GET', `/api/v1/namespaces/default/pods?labelSelector=app%3D${app}`);
    const left = (r.body?.items as unknown[] | undefined)?.length;
    if (left === 0) break;
    if (!server.alive() || Date.now() > deadline) throw new Error(`${app}: ${left ?? '?'} pods left after the delete (server ${server.alive() ? 'alive' : 'gone'})`);
    await sleep(1000);
  }
  // The deletions' Events and status writes settle before the next run is timed.
  await sleep(3000);
}

async function oneSize(n: number, o: Opts): Promise<Record<string, unknown>> {
  const tmp = mkdtempSync(join(tmpdir(), `drover-scale-${n}-`));
  const profDir = join(tmp, 'prof');
  const server = new ServerProc({
    entry: o.entry,
    binary: o.binary,
    env: o.serverEnv,
    nodeArgs: [...o.nodeArgs, ...(o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])],
    dataDir: join(tmp, 'data'),
    apiPort: await freePort(),
    mqttPort: await freePort(),
    insecure: false,
    clientConfig: join(tmp, 'client-config.json'),
  });
  const mon = new Monitor(() => server.pid);
  const out: Record<string, unknown> = { agents: n, machineAtStart: machine() };
  let fleet: SimFleet | undefined;
  try {
    server.start();
    await server.ready();
    const names = Array.from({ length: n }, (_, i) => ({ name: simNodeName('scale', i), index: i }));
    fleet = await startSimFleet(Math.min(o.workers, n), names, {
      apiUrl: server.apiUrl,
      joinToken: server.joinToken,
      keys: o.keys,
      insecure: false,
      joinConcurrency: 8,
      heartbeatSeconds: o.hb,
      keepaliveSeconds: o.keepalive,
      eventBatchSeconds: 0,
      reconnectMaxMs: o.reconnectMax * 1000,
      podsPerNode: 0,
      podStartMs: 0,
      connectPerSecond: 0,
    });
    const f = fleet;
    // ── join + register
    const jn = mon.begin('join');
    const joins = await f.join();
    out.join = jn.end({ joined: joins.ok, failed: joins.failed, joinsPerSecond: round(joins.ok / (jn.elapsedMs() / 1000), 1), latencyMedianMs: median(joins.latenciesMs) });
    if (joins.ok < n) throw new Error(`${joins.failed} of ${n} joins failed: ${joins.errorSamples.join('; ')}`);
    const readyNodes = new Set<string>();
    const nodesWatch = watchApi(server.apiUrl, server.token, '/api/v1/nodes', (_t, obj) => {
      if (ready(obj)) readyNodes.add(obj.metadata.name);
      else readyNodes.delete(obj.metadata.name);
    });
    const reg = mon.begin('register');
    await f.connect();
    await waitUntil(`${n} nodes Ready`, () => server.alive() && readyNodes.size >= n, o.timeoutMs, () => `${f.connected} connected, ${readyNodes.size} Ready`);
    nodesWatch.close();
    out.register = reg.end({ allReadyMs: Math.round(reg.elapsedMs()) });
    console.log(`[${n}] joined at ${(out.join as any).joinsPerSecond}/s, all Ready in ${(out.register as any).allReadyMs} ms`);

    // ── idle
    await sleep(o.settle * 1000);
    const rev0 = await server.revision();
    const s0 = await f.stats();
    const idle = mon.begin('idle');
    await sleep(o.idle * 1000);
    const s1 = await f.stats();
    const rev1 = await server.revision();
    const bytes = s1.bytesIn - s0.bytesIn + (s1.bytesOut - s0.bytesOut);
    // V8's own figures at the end of the quiet window, to tell heap from native memory (TLS, sockets) in the RSS.
    const pm = await scrape(`${server.apiUrl}/metrics`, server.token);
    const mib = (v: number) => round(v / 1048576, 1);
    const heap = { heapUsedMiB: mib(pm.value('nodejs_heap_size_used_bytes')), heapTotalMiB: mib(pm.value('nodejs_heap_size_total_bytes')), externalMiB: mib(pm.value('nodejs_external_memory_bytes')) };
    out.idle = idle.end({ ...heap, storeWritesPerMinute: round(((rev1 - rev0) / o.idle) * 60, 1), mqttBytesPerAgentPerDay: Math.round((bytes / n / o.idle) * 86_400), agentsConnected: s1.connectedNow, loadAverage: load() });
    console.log(`[${n}] idle: RSS ${(out.idle as any).rssEndMiB} MiB, CPU ${(out.idle as any).serverCpuPercentOfOneCore}% of a core, ${(out.idle as any).mqttBytesPerAgentPerDay} B/agent/day`);

    // ── placement: one pod per node
    out.placementDaemonSet = await placement(server, mon, 'placement-ds', '/apis/apps/v1/namespaces/default/daemonsets', daemonSet('scale-ds'), 'scale-ds', n, o.timeoutMs);
    console.log(`[${n}] DaemonSet: ${n} pods Running in ${(out.placementDaemonSet as any).allRunningMs} ms (${(out.placementDaemonSet as any).podsPerSecondToRunning} pods/s; bound at ${(out.placementDaemonSet as any).podsPerSecondToBound}/s)`);
    if (o.placementPods > 0 && n === o.placementNodes) {
      // With --placement-repeat R: the Deployment placed R times (deleted, every pod gone, placed again), and the
      // median run reported: one run's spread (±10 %) hides a change of a few percent.
      const runs: Array<Record<string, any>> = [];
      for (let r = 0; r < o.placementRepeat; r++) {
        if (r > 0) await removeDeployment(server, 'scale-deploy', o.timeoutMs);
        const run = await placement(server, mon, 'placement-deploy', '/apis/apps/v1/namespaces/default/deployments', deployment('scale-deploy', o.placementPods), 'scale-deploy', o.placementPods, o.timeoutMs);
        runs.push({ ...run, serverCpuMsPerPod: round((run.serverCpuMs as number) / o.placementPods, 3) });
        console.log(`[${n}] Deployment${o.placementRepeat > 1 ? ` (run ${r + 1} of ${o.placementRepeat})` : ''}: ${o.placementPods} pods Running in ${run.allRunningMs} ms (${run.podsPerSecondToRunning} pods/s; bound at ${run.podsPerSecondToBound}/s; server CPU ${runs.at(-1)!.serverCpuMsPerPod} ms per pod)`);
      }
      const byRate = [...runs].sort((a, b) => a.podsPerSecondToRunning - b.podsPerSecondToRunning);
      out.placementDeployment = byRate[(byRate.length - 1) >> 1];
      if (runs.length > 1) {
        out.placementDeploymentRuns = runs;
        out.placementDeploymentMedian = { podsPerSecondToRunning: round(median(runs.map((x) => x.podsPerSecondToRunning)), 1), podsPerSecondToBound: round(median(runs.map((x) => x.podsPerSecondToBound)), 1), serverCpuMsPerPod: round(median(runs.map((x) => x.serverCpuMsPerPod)), 3) };
        console.log(`[${n}] Deployment, median of ${runs.length}: ${JSON.stringify(out.placementDeploymentMedian)}`);
      }
    }
    await sleep(o.settle * 1000);
    out.rssWithPodsMiB = round(mon.sample() ?? NaN, 1);
    if (o.idleAfter > 0) {
      // The issue's row is a fleet idle *with its pods*: after the placements' burst, a quiet window as long as
      // --idle-after, then the server's RSS and V8's heap (a young generation grown by the burst shows here).
      await sleep(o.idleAfter * 1000);
      const pm2 = await scrape(`${server.apiUrl}/metrics`, server.token);
      out.idleWithPods = { afterSeconds: o.idleAfter, rssMiB: round(mon.sample() ?? NaN, 1), heapUsedMiB: mib(pm2.value('nodejs_heap_size_used_bytes')), heapTotalMiB: mib(pm2.value('nodejs_heap_size_total_bytes')) };
      console.log(`[${n}] idle with pods, ${o.idleAfter} s after the placements: RSS ${(out.idleWithPods as any).rssMiB} MiB (heap ${(out.idleWithPods as any).heapUsedMiB} / ${(out.idleWithPods as any).heapTotalMiB} MiB)`);
    }

    // ── mass reconnect: the server (and its embedded broker) restarts on the same data dir and ports
    const before = await f.stats();
    const rev = await server.revision();
    const tStop = performance.now();
    await server.stop();
    const stoppedMs = Math.round(performance.now() - tStop);
    const tStart = performance.now();
    const back = new Map<string, number>();
    // Agents connected (their CONNACK, counted by the simulator) every 250 ms from the start: the shape of the reconnect.
    const connectedCurve: Array<[number, number]> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const t = Math.round(performance.now() - tStart);
        connectedCurve.push([t, (await f.stats()).connectedNow]);
        await sleep(250);
      }
    })();
    server.start();
    await server.ready();
    const apiReadyMs = Math.round(performance.now() - tStart);
    // The restarted process's own timing of its start phases (/metrics), to name the slow one.
    const startPhases = Object.fromEntries((await scrape(`${server.apiUrl}/metrics`, server.token)).series('drover_server_start_phase_seconds').map((x) => [x.labels.phase, Math.round(x.value * 1000)]));
    // Node writes since the last revision of the old process: a node's first status heard by the new one writes it Ready.
    const w = watchApi(server.apiUrl, server.token, '/api/v1/nodes', (_t, obj) => {
      const name = obj?.metadata?.name as string;
      if (ready(obj) && !back.has(name)) back.set(name, Math.round(performance.now() - tStart));
    }, rev);
    let converged = false;
    let convergedMs = 0;
    await waitUntil(`${n} nodes back after the restart`, () => server.alive() && back.size >= n, o.timeoutMs, () => `${back.size} Ready again after ${Math.round((performance.now() - tStart) / 1000)} s`);
    const allReadyMs = Math.round(performance.now() - tStart);
    while (!converged && performance.now() - tStart < o.timeoutMs) {
      const s = await f.stats();
      converged = s.connectedNow >= n && s.desiredReceived - before.desiredReceived >= n && s.podsRunning >= before.podsRunning;
      convergedMs = Math.round(performance.now() - tStart);
      if (!converged) await sleep(200);
    }
    w.close();
    sampling = false;
    await sampler;
    const handshakes = Object.fromEntries((await scrape(`${server.apiUrl}/metrics`, server.token)).series('drover_mqtt_tls_handshakes_total').map((x) => [x.labels.resumed === 'true' ? 'resumed' : 'full', x.value]));
    const after = await f.stats();
    const times = [...back.values()];
    const agentSide = after.reconnectMs.slice(before.reconnectMs.length);
    const attempts = after.reconnectAttempts.slice(before.reconnectAttempts.length);
    const lastAttempt = after.reconnectLastAttemptMs.slice(before.reconnectLastAttemptMs.length);
    // Nodes Ready again per second after the start: where the tail comes from (backoff steps, a busy server).
    const readyPerSecond: Record<string, number> = {};
    for (const t of times) readyPerSecond[Math.floor(t / 1000)] = (readyPerSecond[Math.floor(t / 1000)] ?? 0) + 1;
    out.massReconnect = {
      stopMs: stoppedMs,
      apiReadyAfterStartMs: apiReadyMs,
      startPhasesMs: startPhases,
      nodeReadyAfterStartMs: { p50: percentile(times, 50), p99: percentile(times, 99), max: Math.max(...times) },
      allNodesReadyAfterStartMs: allReadyMs,
      convergedAfterStartMs: converged ? convergedMs : undefined,
      converged,
      agentReconnectMs: agentSide.length ? { p50: percentile(agentSide, 50), p99: percentile(agentSide, 99), max: Math.max(...agentSide), count: agentSide.length } : undefined,
      agentReconnectAttempts: attempts.length ? { p50: percentile(attempts, 50), p99: percentile(attempts, 99), max: Math.max(...attempts) } : undefined,
      nodesReadyPerSecond: readyPerSecond,
      tlsHandshakes: handshakes,
      agentsConnectedCurve: connectedCurve.filter((_, i) => i % 2 === 0),
      agentLastAttemptToConnackMs: lastAttempt.length ? { p50: percentile(lastAttempt, 50), p90: percentile(lastAttempt, 90), p99: percentile(lastAttempt, 99), max: Math.max(...lastAttempt) } : undefined,
      agentErrors: { count: after.errors - before.errors, kinds: Object.fromEntries(Object.entries(after.errorKinds).map(([k, v]) => [k, v - (before.errorKinds[k] ?? 0)]).filter(([, v]) => (v as number) > 0)) },
      goal: n === 2000 ? { p99UnderMs: 10_000, met: percentile(times, 99) < 10_000 } : undefined,
      loadAverage: load(),
    };
    console.log(`[${n}] restart: start phases (ms) ${JSON.stringify(startPhases)}`);
    console.log(`[${n}] restart: agents connected (ms after start: count) ${connectedCurve.filter((_, i) => i % 2 === 0).map(([t, c]) => `${t}:${c}`).join(' ')}`);
    console.log(`[${n}] restart: TLS handshakes of the restarted server ${JSON.stringify(handshakes)}`);
    console.log(`[${n}] restart: nodes Ready per second after start ${JSON.stringify(readyPerSecond)}; attempts per reconnect p50 ${percentile(attempts, 50)} / max ${Math.max(0, ...attempts)}; the attempt that connected: start → CONNACK p50 ${percentile(lastAttempt, 50)} / p99 ${percentile(lastAttempt, 99)} ms; agent errors ${after.errors - before.errors}`);
    console.log(`[${n}] restart: API ready ${apiReadyMs} ms after start; nodes Ready again p50 ${percentile(times, 50)} / p99 ${percentile(times, 99)} / max ${Math.max(...times)} ms; converged ${converged ? `${convergedMs} ms` : 'NOT'}`);
    out.serverLogCounts = Object.fromEntries([...server.warnCounts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10));
  } catch (err) {
    out.error = (err as Error).message;
    console.error(`[${n}] failed: ${out.error}`);
  } finally {
    mon.stop();
    await fleet?.stop();
    await server.stop();
    if (o.cpuProf) {
      const files = readdirSync(profDir, { withFileTypes: true }).filter((d) => d.name.endsWith('.cpuprofile')).map((d) => join(profDir, d.name)).sort();
      out.cpuProfileTop = files.map((file, i) => ({ process: i === 0 ? 'first server process (join … placement)' : 'restarted server process (mass reconnect)', top: profileTop(file) }));
      // Kept outside the repository (a profile is megabytes): open them in Chrome DevTools or speedscope.
      const keep = join(tmpdir(), 'drover-scale-profiles');
      mkdirSync(keep, { recursive: true });
      files.forEach((file, i) => writeFileSync(join(keep, `scale-${n}-${i === 0 ? 'run' : 'restart'}.cpuprofile`), readFileSync(file)));
      out.cpuProfiles = keep;
    }
    rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}

export function markdown(cmd: string, res: Array<Record<string, any>>, meta: Record<string, unknown>): string {
  const f = (v: unknown, unit = '') => (v === undefined || v === null || Number.isNaN(v) ? '—' : `${typeof v === 'number' ? v.toLocaleString('en-US') : v}${unit}`);
  const s = (ms: unknown) => (typeof ms === 'number' ? `${(ms / 1000).toFixed(1)} s` : '—');
  const lines = [
    '# Scaling curve (bench/scale.ts)',
    '',
    `Command: \`${cmd}\``,
    '',
    `${meta.date}, node ${meta.node}, ${JSON.stringify(meta.machine)}. Server ${meta.serverBinary ? `the single binary ${meta.serverBinary}` : 'compiled (tsc)'}${(meta.serverNodeArgs as string[] | undefined)?.length ? ` with ${(meta.serverNodeArgs as string[]).join(' ')}` : ''}, TLS everywhere (HTTPS join, MQTT with client certificates); heartbeat ${meta.heartbeatSeconds} s, keepalive ${meta.keepaliveSeconds} s; agents simulated by src/sim in ${meta.workers} worker processes on the same machine (their CPU competes with the server's).`,
    '',
    '| agents | joins/s | all Ready | idle RSS | idle CPU (% core) | store writes/min | MQTT B/agent/day | RSS after placement | DaemonSet → Running | restart: API ready / nodes Ready p50 / p99 / max | p99 after API ready | converged | load avg (idle) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of res) {
    const mr = r.massReconnect;
    lines.push(
      `| ${f(r.agents)} | ${f(r.join?.joinsPerSecond)} | ${s(r.register?.allReadyMs)} | ${f(r.idle?.rssEndMiB, ' MiB')} | ${f(r.idle?.serverCpuPercentOfOneCore)} | ${f(r.idle?.storeWritesPerMinute)} | ${f(r.idle?.mqttBytesPerAgentPerDay)} | ${f(r.rssWithPodsMiB, ' MiB')} | ${s(r.placementDaemonSet?.allRunningMs)} (${f(r.placementDaemonSet?.podsPerSecondToRunning)} pods/s) | ${mr ? `${s(mr.apiReadyAfterStartMs)} / ${s(mr.nodeReadyAfterStartMs.p50)} / ${s(mr.nodeReadyAfterStartMs.p99)} / ${s(mr.nodeReadyAfterStartMs.max)}` : '—'} | ${mr ? s(mr.nodeReadyAfterStartMs.p99 - mr.apiReadyAfterStartMs) : '—'} | ${s(mr?.convergedAfterStartMs)} | ${r.idle?.loadAverage?.join(' ') ?? '—'} |${r.error ? ` failed: ${r.error}` : ''}`,
    );
  }
  const dep = res.find((r) => r.placementDeployment);
  if (dep) {
    const d = dep.placementDeployment;
    lines.push('', `Placement row: ${f(d.pods)} pods on ${f(dep.agents)} nodes (a Deployment), POST → all Running ${s(d.allRunningMs)}: **${f(d.podsPerSecondToRunning)} pods/s end to end** (all bound at ${s(d.allBoundMs)}: ${f(d.podsPerSecondToBound)}/s; goal ≥ 5,000/s to bound; kube-scheduler ~100/s, Nomad 1.5–3.7k/s). Load average ${d.loadAverage?.join(' ')}.`);
    const runs = dep.placementDeploymentRuns as Array<Record<string, any>> | undefined;
    if (runs) lines.push('', `The Deployment placed ${runs.length} times (deleted in between), the median run above; each run's pods/s to Running (server CPU per pod): ${runs.map((x) => `${f(x.podsPerSecondToRunning)} (${x.serverCpuMsPerPod} ms)`).join(', ')}.`);
  }
  lines.push('', 'RSS after placement: after the DaemonSet (one pod per node), and at the placement size also the Deployment (there: 6 pods per node).');
  lines.push('', 'Restart: the server process (API, store, embedded broker) stopped with SIGTERM and started again on the same data dir and ports; times from the new process\'s start: "nodes Ready" is each Node written Ready by the new process (its first status heard), "converged" is every agent connected with a desired state from the new process and its pods still reported Running. Goal: p99 < 10 s at 2,000 agents.');
  for (const r of res) {
    if (!r.cpuProfileTop) continue;
    lines.push('', `Server CPU profile at ${f(r.agents)} agents (self time, top 8):`);
    for (const p of r.cpuProfileTop) lines.push(`- ${p.process}: ${p.top.slice(0, 8).map((t: any) => `${t.fn} ${t.percent}%`).join('; ')}`);
  }
  return lines.join('\n') + '\n';
}

/** `--markdown FILE.json`: only rewrite FILE.md from a result written before. */
function rewriteMarkdown(file: string): void {
  const body = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
  writeFileSync(file.replace(/\.json$/, '.md'), markdown(body.command, body.results, body));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const md = args.get('markdown');
  if (md) return rewriteMarkdown(md);
  const sizes = (args.get('sizes') ?? '100,500,1000').split(',').map(Number).filter((x) => x > 0);
  const outName = args.get('out') ?? 'scale';
  const tmp = mkdtempSync(join(tmpdir(), 'drover-scale-build-'));
  console.log(`scale bench: sizes ${sizes.join(', ')}; machine ${JSON.stringify(machine())}`);
  const o: Opts = {
    workers: numArg(args, 'workers', 2),
    settle: numArg(args, 'settle', 20),
    idle: numArg(args, 'idle', 60),
    // The agent's own defaults (the default link profile), unless said otherwise.
    hb: numArg(args, 'heartbeat', LINK_PROFILES.default.heartbeatSeconds),
    keepalive: numArg(args, 'keepalive', LINK_PROFILES.default.keepaliveSeconds),
    // The agents' reconnect back-off cap: after the restart the last agent's next attempt is up to this far off.
    reconnectMax: numArg(args, 'reconnect-max', LINK_PROFILES.default.reconnectMaxSeconds),
    timeoutMs: numArg(args, 'timeout', 1200) * 1000,
    placementPods: numArg(args, 'placement-pods', 5000),
    placementRepeat: Math.max(1, numArg(args, 'placement-repeat', 1)),
    idleAfter: numArg(args, 'idle-after', 0),
    placementNodes: numArg(args, 'placement-nodes', 1000),
    cpuProf: args.has('cpu-prof'),
    nodeArgs: serverNodeArgs(args),
    entry: compileServer(join(tmp, 'build')),
    binary: args.get('server-binary'),
    serverEnv: serverEnv(args),
    keys: await keyPool(numArg(args, 'keys', 50)),
  };
  const results: Array<Record<string, unknown>> = [];
  const cmd = `node --import tsx bench/scale.ts ${process.argv.slice(2).join(' ')}`.trim();
  const meta = { heartbeatSeconds: o.hb, keepaliveSeconds: o.keepalive, reconnectMaxSeconds: o.reconnectMax, workers: o.workers, serverNodeArgs: o.nodeArgs, serverBinary: o.binary, serverEnv: o.serverEnv, command: cmd };
  try {
    for (const n of sizes) {
      results.push(await oneSize(n, o));
      // Written after every size: a long curve that dies later keeps what it measured.
      const file = writeResult(outName, { ...meta, results });
      const body = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      writeFileSync(file.replace(/\.json$/, '.md'), markdown(cmd, results as Array<Record<string, any>>, body));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`wrote bench/results/${outName}.json and .md`);
  if (results.some((r) => r.error)) process.exitCode = 1;
}

void main();
