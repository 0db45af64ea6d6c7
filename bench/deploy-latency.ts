/**
 * Deploy latency: how long from `POST pod` to the pod Running in the API, through the whole path
 * (API, store, scheduler, desired-state publisher, MQTT, agent, podman), against a raw
 * `podman run -d` of the same image on the same store, and how long from DELETE to the container gone.
 * Real server (embedded broker), real agent, real podman in a private store; the image is local.
 * The product defaults: the agent joins over HTTPS with the K10 join token (its own key, a CSR, a
 * certificate back) and then speaks MQTT over TLS with that client certificate. `--insecure` runs
 * the same with plain HTTP/MQTT and the node's password from its join, for comparison.
 *
 * Then "blocked": a pod whose container traps TERM and takes 20 s to stop is deleted, and an
 * unrelated pod is created while that stop runs; the new pod's POST → Running is timed (an agent
 * that handles pods one after the other makes it wait for the stop).
 *
 * Run (root, podman installed): node --import tsx bench/deploy-latency.ts [--runs N] [--blocked-runs N] [--insecure] [--out NAME]
 *   → bench/results/NAME.json and NAME.md (default deploy-latency, deploy-latency-insecure with --insecure)
 */
import { createLogger } from '../src/util/logger.js';
import { median, numArg, parseArgs, percentile, round, sleep, writeResult } from './lib/common.js';
import { startLocalCluster } from './lib/local-cluster.js';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';

const args = parseArgs(process.argv.slice(2));
const RUNS = numArg(args, 'runs', 10);
const INSECURE = args.has('insecure');
const BLOCKED_RUNS = numArg(args, 'blocked-runs', 2);
const OUT = args.get('out') ?? (INSECURE ? 'deploy-latency-insecure' : 'deploy-latency');
/** Takes 20 s to stop after TERM (its grace period is longer): a slow graceful shutdown. */
const SLOW_STOP_CMD = ['sh', '-c', "trap 'sleep 20; exit 0' TERM; while true; do sleep 1; done"];
const NODE = 'bench-node';
const CMD = ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"];

const loadBefore = loadavg();

/**
 * The hops of POST → Running, read from the server's and agent's own log lines (debug level, with
 * pino's time in ms): only the few messages that mark a hop are kept.
 */
const MARKS = ['pod scheduled', 'desired state published', 'desired state received', 'new desired state', 'step start', 'step done', 'status reported'];
const marks: Array<{ msg: string; time: number; pod?: string; step?: string }> = [];
const markLogger = createLogger({
  name: 'bench',
  level: 'debug',
  destination: {
    write(line: string) {
      if (!MARKS.some((m) => line.includes(`"msg":"${m}"`))) return;
      const o = JSON.parse(line) as { msg: string; time: number; pod?: string; step?: string };
      marks.push({ msg: o.msg, time: o.time, pod: o.pod, step: o.step });
    },
  },
});
const HOPS = ['API commit (POST → 201)', 'scheduler bind', 'desired state publish', 'MQTT to the agent', 'agent accept + cache write', 'agent reconcile → run starts', 'podman run -d', 'run returned → status reported', 'status → Running seen by an API watch (MQTT, server write, watch)'] as const;

/** One run's hops (ms), from the marks after `t0` (Date.now()) for pod `name`; undefined where a mark is missing. */
function hopsOf(name: string, t0: number, created: number, running: number): Record<string, number | undefined> {
  const after = (t: number | undefined, pred: (m: (typeof marks)[number]) => boolean) => (t === undefined ? undefined : marks.find((m) => m.time >= t && pred(m))?.time);
  const bound = after(t0, (m) => m.msg === 'pod scheduled' && m.pod === `default/${name}`);
  const published = after(bound, (m) => m.msg === 'desired state published');
  const received = after(published, (m) => m.msg === 'desired state received');
  const accepted = after(received, (m) => m.msg === 'new desired state');
  const runStart = after(accepted, (m) => m.msg === 'step start' && !!m.step?.startsWith('run ') && m.step.includes(`-${name}-`));
  const runDone = after(runStart, (m) => m.msg === 'step done' && !!m.step?.startsWith('run ') && m.step.includes(`-${name}-`));
  const reported = after(runDone, (m) => m.msg === 'status reported');
  const points = [t0, created, bound, published, received, accepted, runStart, runDone, reported, running];
  return Object.fromEntries(HOPS.map((h, i) => [h, points[i] !== undefined && points[i + 1] !== undefined ? points[i + 1]! - points[i]! : undefined]));
}

function markdown(r: any): string {
  const row = (what: string, anchor: string, ours: string, goal: string) => `| ${what} | ${anchor} | ${ours} | ${goal} |`;
  return [
    `# Deploy latency (${r.runs} runs, ${r.mode}), ${new Date().toISOString()}`,
    '',
    `load average (1/5/15 min, start → end): ${r.loadAverage.join(' / ')}; ${r.podmanVersion}`,
    '',
    '| what | raw podman (same run) | drover | goal |',
    '|---|---|---|---|',
    row('POST pod → Running, median', `\`podman run -d\` ${r.rawPodmanRun.medianMs} ms`, `${r.droverCreateToRunning.medianMs} ms (${r.ratioMedian}×)`, '≤ 1.25×'),
    row('POST pod → Running, p90', `${r.rawPodmanRun.p90Ms} ms`, `${r.droverCreateToRunning.p90Ms} ms (${r.ratioP90}×)`, '≤ 1.5× (p99)'),
    row('DELETE → container gone, median', `\`podman rm -f -t 2\` ${r.rawPodmanRemove.medianMs} ms`, `${r.droverDeleteToContainerGone.medianMs} ms`, ''),
    row('new pod → Running while another pod is in a 20 s graceful stop, median (max)', '—', r.newPodBesideGracefulStop ? `${r.newPodBesideGracefulStop.medianMs} ms (${r.newPodBesideGracefulStop.maxMs} ms)` : 'not run', 'never blocked: as above'),
    '',
    '## POST → Running, hop by hop (median ms; log times have 1 ms resolution)',
    '',
    '| hop | median ms |',
    '|---|---|',
    ...Object.entries(r.hopsMedianMs as Record<string, number | null>).map(([h, ms]) => `| ${h} | ${ms ?? 'n/a'} |`),
    '',
  ].join('\n');
}

const cluster = await startLocalCluster({ node: NODE, insecure: INSECURE, logger: markLogger });
try {
  const { sb, image, podman, api, until, joinToReadyMs } = cluster;
  const watchFor = cluster.watchPod;

  // Raw podman: run -d until the container is running, then rm -f. Measured in turn with drover's
  // runs below (one raw, one drover), so both see the same load from the rest of the machine.
  const raw: number[] = [];
  const rawRemove: number[] = [];
  const rawOnce = async (i: number) => {
    const t0 = performance.now();
    const { stdout } = await podman(['run', '-d', '--name', `raw-${i}`, image, ...CMD]);
    raw.push(performance.now() - t0);
    const t1 = performance.now();
    await podman(['rm', '-f', '-t', '2', stdout.trim()]);
    rawRemove.push(performance.now() - t1);
  };

  const deploy: number[] = [];
  const remove: number[] = [];
  const hops: Array<Record<string, number | undefined>> = [];
  for (let i = 0; i < RUNS; i++) {
    await rawOnce(i);
    const name = `bench-${i}`;
    const running = await watchFor(name, (p) => p?.status?.phase === 'Running');
    const t0 = performance.now();
    const wall0 = Date.now();
    const r = await api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { terminationGracePeriodSeconds: 2, containers: [{ name: 'main', image, command: CMD }] } });
    if (r.status !== 201) throw new Error(`create ${name}: ${r.status}`);
    const wallCreated = Date.now();
    const tRunning = await running.seen;
    deploy.push(tRunning - t0);
    hops.push(hopsOf(name, wall0, wallCreated, wall0 + (tRunning - t0)));
    const t1 = performance.now();
    await api('DELETE', `/api/v1/namespaces/default/pods/${name}`);
    await until(`${name} container gone`, async () => (await sb.runtime.list({ 'drover.io/pod': name })).length === 0);
    remove.push(performance.now() - t1);
  }

  // A pod in a 20 s graceful stop, and an unrelated pod created while it stops.
  const blocked: number[] = [];
  for (let i = 0; i < BLOCKED_RUNS; i++) {
    const slow = `slow-${i}`;
    const name = `beside-${i}`;
    const r0 = await api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: slow }, spec: { terminationGracePeriodSeconds: 30, containers: [{ name: 'main', image, command: SLOW_STOP_CMD }] } });
    if (r0.status !== 201) throw new Error(`create ${slow}: ${r0.status}`);
    await until(`${slow} Running`, async () => (await api('GET', `/api/v1/namespaces/default/pods/${slow}`)).body?.status?.phase === 'Running');
    await api('DELETE', `/api/v1/namespaces/default/pods/${slow}`);
    // The agent has begun the stop once the container is stopping (or the pod is gone from the API).
    await until(`${slow} stopping`, async () => (await sb.runtime.list({ 'drover.io/pod': slow })).some((c) => c.state !== 'running') || (await api('GET', `/api/v1/namespaces/default/pods/${slow}`)).status === 404, 10_000).catch(() => undefined);
    await sleep(500);
    const running = await watchFor(name, (p) => p?.status?.phase === 'Running');
    const t0 = performance.now();
    const r = await api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { terminationGracePeriodSeconds: 2, containers: [{ name: 'main', image, command: CMD }] } });
    if (r.status !== 201) throw new Error(`create ${name}: ${r.status}`);
    blocked.push((await running.seen) - t0);
    await api('DELETE', `/api/v1/namespaces/default/pods/${name}`);
    await until(`${slow} and ${name} gone`, async () => (await sb.runtime.list({ 'drover.io/pod': slow })).length === 0 && (await sb.runtime.list({ 'drover.io/pod': name })).length === 0, 60_000);
  }
  await cluster.close();

  const stats = (xs: number[]) => ({ medianMs: round(median(xs)), p90Ms: round(percentile(xs, 90)), minMs: round(Math.min(...xs)), maxMs: round(Math.max(...xs)) });
  const result = {
    runs: RUNS,
    mode: INSECURE ? 'insecure (plain HTTP API, plain MQTT, node password)' : 'TLS (HTTPS API, MQTT over TLS, node client certificate)',
    apiUrl: cluster.apiUrl.replace(/:\d+$/, ''),
    mqttUrl: cluster.mqttUrl.replace(/:\d+$/, ''),
    agentStartToNodeReadyMs: round(joinToReadyMs),
    podmanVersion: (await podman(['--version'])).stdout.trim(),
    rawPodmanRun: stats(raw),
    droverCreateToRunning: stats(deploy),
    overheadMedianMs: round(median(deploy) - median(raw)),
    rawPodmanRemove: stats(rawRemove),
    droverDeleteToContainerGone: stats(remove),
    ratioMedian: round(median(deploy) / median(raw), 2),
    ratioP90: round(percentile(deploy, 90) / percentile(raw, 90), 2),
    newPodBesideGracefulStop: blocked.length ? stats(blocked) : undefined,
    hopsMedianMs: Object.fromEntries(HOPS.map((h) => {
      const xs = hops.map((x) => x[h]).filter((x): x is number => x !== undefined);
      return [h, xs.length ? round(median(xs)) : null];
    })),
    loadAverage: loadBefore.map((l, i) => `${round(l, 2)} → ${round(loadavg()[i]!, 2)}`),
  };
  console.log(JSON.stringify(result, null, 2));
  const file = writeResult(OUT, result);
  await writeFile(file.replace(/\.json$/, '.md'), markdown(result));
  console.log(`wrote ${file}`);
} catch (err) {
  await cluster.close().catch(() => undefined);
  throw err;
}
