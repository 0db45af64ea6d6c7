/**
 * `drover fleet status` at fleet scale: latency and payload size of GET /drover/v1/fleet/status (the
 * real route on the real HTTP API over a LevelDB store), the pure summary alone, a retained-summary
 * pass of the publisher, and `get nodes` listed whole vs in chunks of 500, for 2,000 and 10,000 nodes.
 * Run: node --import tsx bench/fleet-status.ts [--nodes 2000,10000]
 *   → writes bench/results/fleet-status.json and bench/results/fleet-status.md
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../src/api/node.js';
import type { Pod } from '../src/api/pod.js';
import { silentLogger } from '../src/util/logger.js';
import { runProgram } from '../src/program.js';
import { ApiServer } from '../server/api/server.js';
import { FleetPublisher } from '../server/fleet/publisher.js';
import { fleetRoutes } from '../server/fleet/routes.js';
import { fleetStatus } from '../server/fleet/summary.js';
import { LevelStore } from '../server/store/level.js';

const TOKEN = 'bench-admin-token';
const RUNS = 10;
const sizes = (process.argv.includes('--nodes') ? process.argv[process.argv.indexOf('--nodes') + 1]! : '2000,10000').split(',').map(Number);

function node(i: number, now: number): Node {
  const r = i % 100;
  const ready = r < 3 ? 'Unknown' : r < 6 ? 'False' : 'True';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `edge-${String(i).padStart(5, '0')}`, labels: { site: `site-${i % 40}`, 'kubernetes.io/arch': ['amd64', 'arm64', 'arm'][i % 3]! } },
    spec: {},
    status: {
      lastHeard: new Date(now - (r < 9 ? 3_600_000 : 10_000)).toISOString(),
      conditions: [{ type: 'Ready', status: ready }, ...(r === 10 ? [{ type: 'LinkDegraded', status: 'True' as const }] : [])],
      capacity: { cpu: '4', memory: '4000000000', pods: '110' },
      nodeInfo: { architecture: ['amd64', 'arm64', 'arm'][i % 3]!, operatingSystem: 'linux', osImage: 'Debian 12', kernelVersion: '6.1', containerRuntimeVersion: 'podman://4.3.1', agentVersion: i % 50 ? '0.1.0' : '0.0.9', contractVersion: 1, bootID: `b${i}` },
    },
  };
}

function pod(j: number, nodes: number): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: `app-${j}`, namespace: ['default', 'edge', 'metrics'][j % 3]! }, spec: { nodeName: `edge-${String(j % nodes).padStart(5, '0')}`, containers: [{ name: 'c', image: 'localhost/app:1' }] }, status: { phase: ['Running', 'Pending', 'Running', 'Failed'][j % 4] } } as unknown as Pod;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timeIt(f: () => Promise<unknown> | unknown, runs = RUNS): Promise<number> {
  await f();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  return Math.round(median(ms) * 10) / 10;
}

async function get(url: string): Promise<{ bytes: number; body: any }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${text.slice(0, 200)}`);
  return { bytes: Buffer.byteLength(text), body: JSON.parse(text) };
}

const results: Array<Record<string, number>> = [];
for (const n of sizes) {
  const dir = await mkdtemp(join(tmpdir(), 'drover-bench-fleet-'));
  const store = await LevelStore.open({ path: join(dir, 'store') });
  const now = Date.now();
  const pods = n;
  await Promise.all(Array.from({ length: n }, (_, i) => store.create(node(i, now))));
  await Promise.all(Array.from({ length: pods }, (_, j) => store.create(pod(j, n))));
  const api = new ApiServer({ store, logger: silentLogger, adminToken: TOKEN, extraRoutes: fleetRoutes({ store, version: '0.1.0', startedAt: now }), logs: async () => '', ready: () => true });
  const { url } = await api.listen('127.0.0.1', 0);

  const lists = { nodes: (await store.list('Node')).items, pods: (await store.list('Pod')).items };
  const pureMs = await timeIt(() => fleetStatus({ ...lists, deployments: [], daemonSets: [], nowMs: Date.now(), serverVersion: '0.1.0' }));
  const status = await get(`${url}/drover/v1/fleet/status`);
  const httpMs = await timeIt(() => get(`${url}/drover/v1/fleet/status`));
  const all = await get(`${url}/drover/v1/fleet/status?nodes=all`);
  const allMs = await timeIt(() => get(`${url}/drover/v1/fleet/status?nodes=all`), 3);
  const filteredMs = await timeIt(() => get(`${url}/drover/v1/fleet/status?site=site-1&state=ready`));
  const wholeList = await get(`${url}/api/v1/nodes`);
  const wholeListMs = await timeIt(() => get(`${url}/api/v1/nodes`), 3);
  const chunkedMs = await timeIt(async () => {
    let token: string | undefined;
    do {
      const page: { body: { metadata?: { continue?: string } } } = await get(`${url}/api/v1/nodes?limit=500${token ? `&continue=${token}` : ''}`);
      token = page.body.metadata?.continue;
    } while (token);
  }, 3);
  const firstPageMs = await timeIt(() => get(`${url}/api/v1/nodes?limit=500`));
  // The CLI end to end (in this process: no start-up of node itself), its table and its JSON.
  let screen = '';
  const cli = (args: string[]) => async () => {
    screen = '';
    const code = await runProgram(args, { stdout: (x) => void (screen += x), stderr: (x) => void (screen += x), env: { DROVER_SERVER: url, DROVER_TOKEN: TOKEN, DROVER_CONFIG: join(dir, 'no-config') } });
    if (code) throw new Error(`drover ${args.join(' ')}: exit ${code}: ${screen}`);
  };
  const cliTableMs = await timeIt(cli(['fleet', 'status']));
  const screenLines = screen.split('\n').length - 1;
  const cliJsonMs = await timeIt(cli(['fleet', 'status', '-o', 'json']));
  const cliGetNodesMs = await timeIt(cli(['get', 'nodes']), 3);
  let published = 0;
  const publisher = new FleetPublisher({ store, logger: silentLogger, version: '0.1.0', sink: { publish: async (_t, payload) => void (published += payload.length > 1000 ? 1 : 0) } });
  const t0 = performance.now();
  await publisher.start();
  const firstPassMs = Math.round(performance.now() - t0);
  const passMs = await timeIt(() => publisher.summary());
  await publisher.stop();

  const r = {
    nodes: n, pods, pureMs, httpMs, payloadBytes: status.bytes, allNodesMs: allMs, allNodesBytes: all.bytes, filteredMs,
    nodeListBytes: wholeList.bytes, wholeListMs, chunkedListMs: chunkedMs, firstPageMs, publisherStartMs: firstPassMs, publisherSummaryMs: passMs,
    cliTableMs, screenLines, cliJsonMs, cliGetNodesMs,
  };
  results.push(r);
  console.log(JSON.stringify(r));
  await api.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

const machine = `${cpus().length} x ${cpus()[0]?.model ?? '?'}, node ${process.version}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end (other jobs share the machine)`;
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/fleet-status.json', import.meta.url), JSON.stringify({ date: new Date().toISOString(), machine, runs: RUNS, results }, null, 2) + '\n');
const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
const md = [
  '# fleet status at fleet scale',
  '',
  `${new Date().toISOString()}, ${machine}; \`node --import tsx bench/fleet-status.ts\`. Median of ${RUNS} runs (3 for the large ones) after one warm-up; one server process over LevelDB, plain HTTP on loopback; as many pods as nodes.`,
  '',
  '| nodes | `drover fleet status` (table) | its lines | `-o json` | GET fleet/status | its payload | summary alone | ?nodes=all | its payload | filtered (site+state) |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.nodes} | ${r.cliTableMs} ms | ${r.screenLines} | ${r.cliJsonMs} ms | ${r.httpMs} ms | ${kb(r.payloadBytes!)} | ${r.pureMs} ms | ${r.allNodesMs} ms | ${kb(r.allNodesBytes!)} | ${r.filteredMs} ms |`),
  '',
  '| nodes | `drover get nodes` (chunks of 500) | GET nodes whole | its payload | all chunks of 500 | first chunk | publisher start (summary + every node state, no-op sink) | publisher summary pass |',
  '|---|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.nodes} | ${r.cliGetNodesMs} ms | ${r.wholeListMs} ms | ${kb(r.nodeListBytes!)} | ${r.chunkedListMs} ms | ${r.firstPageMs} ms | ${r.publisherStartMs} ms | ${r.publisherSummaryMs} ms |`),
  '',
  'Each page of a chunked list reads the whole collection from the store and cuts its page (server/api/paging.ts): the first page comes quickly, all pages together cost about one store read per page. The payload of fleet status does not grow with the fleet (counts, at most 50 nodes listed); `?nodes=all` does.',
  '',
].join('\n');
writeFileSync(new URL('./results/fleet-status.md', import.meta.url), md);
