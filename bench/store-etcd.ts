/**
 * The store on etcd beside the embedded LevelDB store, in one run on the same disk: durable creates/s
 * with 1 and 16 in flight (each acknowledged only once durable: LevelDB fsynced / etcd committed, which
 * for one member is its own fsync, for three a quorum's), and watch latency (create() called → the
 * event reaches a store watch, sequential writes). etcd runs from Debian's /usr/bin/etcd (3.4) in a temp
 * dir, started by the bench; the load average is recorded with every figure (the machine is shared).
 * Beside them, the same-machine ceiling of etcd: plain etcd3 puts of a pod-sized value, 16 in flight.
 * --part api (or all, the default): the same through a real `drover server --disable-agent` process,
 * once on its embedded LevelDB and once with --datastore-endpoint: ConfigMap POSTs over HTTPS with 16
 * in flight (the store path without the scheduler's own writes), POST → event on a `?watch=1` stream,
 * and the server's RSS after them.
 *
 * Run: node --import tsx bench/store-etcd.ts [--part store|api|all] [--runs 3] [--creates 1000] [--members 1|3] [--dir DIR]
 *   → bench/results/store-etcd.json and .md (store-etcd-api.*, store-etcd-3members.* … for a part, more members)
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '../server/store/etcd.js';
import { LevelStore } from '../server/store/level.js';
import type { BackendStore, WatchEvent } from '../server/store/types.js';
import type { ApiObject } from '../src/api/meta.js';
import { startEtcdCluster, type EtcdCluster } from '../test/helpers/etcd.js';
import { freePort, median, numArg, parseArgs, percentile, procMemory, round, writeResult } from './lib/common.js';
import { ServerProc, watchApi } from './lib/fleet-server.js';

const args = parseArgs(process.argv.slice(2));
const RUNS = numArg(args, 'runs', 3);
const CREATES = numArg(args, 'creates', 1000);
const MEMBERS = numArg(args, 'members', 1);
const WATCH_WRITES = numArg(args, 'watch-writes', 200);
const BASE_DIR = args.get('dir') ?? tmpdir();
const PART = args.get('part') ?? 'all';
const COMMAND = `node --import tsx bench/store-etcd.ts --part ${PART} --runs ${RUNS} --creates ${CREATES} --watch-writes ${WATCH_WRITES} --members ${MEMBERS}${args.get('dir') ? ` --dir ${BASE_DIR}` : ''}`;

const load = () => loadavg().map((l) => round(l, 2));

let seq = 0;
const pod = (): ApiObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `p${seq++}`, namespace: 'default', labels: { app: 'bench' } },
  spec: { containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'] }] },
});

/** `total` creates with `inFlight` at once; creates per second. */
async function drive(store: BackendStore, total: number, inFlight: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next++ < total) await store.create(pod());
    }),
  );
  return (total / (performance.now() - t0)) * 1000;
}

/** Sequential creates, each timed from the call to its event at a watch of this store. */
async function watchLatency(store: BackendStore, writes: number): Promise<{ p50Ms: number; p99Ms: number; maxMs: number }> {
  const waiting = new Map<string, { t0: number; done: () => void }>();
  const lat: number[] = [];
  const w = store.watch(store.revision(), (e: WatchEvent) => {
    const wait = waiting.get(e.object.metadata.name);
    if (!wait) return;
    lat.push(performance.now() - wait.t0);
    wait.done();
  });
  try {
    for (let i = 0; i < writes; i++) {
      const obj = pod();
      const seen = new Promise<void>((resolve) => waiting.set(obj.metadata.name, { t0: performance.now(), done: resolve }));
      await store.create(obj);
      await seen;
    }
  } finally {
    w.close();
  }
  return { p50Ms: round(percentile(lat, 50), 2), p99Ms: round(percentile(lat, 99), 2), maxMs: round(Math.max(...lat), 2) };
}

interface Figures {
  backend: string;
  creates: Array<{ inFlight: number; perSecondRuns: number[]; perSecondMedian: number; loadAverage: number[] }>;
  watch: { writes: number; p50Ms: number; p99Ms: number; maxMs: number; loadAverage: number[] };
}

async function measure(backend: string, open: () => Promise<BackendStore>): Promise<Figures> {
  const figures: Figures = { backend, creates: [], watch: { writes: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, loadAverage: [] } };
  for (const inFlight of [1, 16]) {
    const runs: number[] = [];
    // One in flight is fsync-bound and slow: a fifth of the creates tell as much.
    const total = inFlight === 1 ? Math.max(100, Math.round(CREATES / 5)) : CREATES;
    for (let r = 0; r < RUNS; r++) {
      const store = await open();
      try {
        runs.push(round(await drive(store, total, inFlight)));
      } finally {
        await store.close();
      }
    }
    figures.creates.push({ inFlight, perSecondRuns: runs, perSecondMedian: median(runs), loadAverage: load() });
    console.log(`${backend} ${inFlight} in flight: ${median(runs)} creates/s (${runs.join(', ')}) load ${load().join(' ')}`);
  }
  const store = await open();
  try {
    figures.watch = { writes: WATCH_WRITES, ...(await watchLatency(store, WATCH_WRITES)), loadAverage: load() };
  } finally {
    await store.close();
  }
  console.log(`${backend} watch latency p50 ${figures.watch.p50Ms} ms p99 ${figures.watch.p99Ms} ms`);
  return figures;
}

interface ApiFigures {
  backend: string;
  posts: number;
  postsPerSecondRuns: number[];
  postsPerSecondMedian: number;
  watch: { writes: number; p50Ms: number; p99Ms: number };
  serverRssMiB: number | undefined;
  loadAverage: number[];
}

/** A real server process on `serverArgs`' datastore: POSTs/s with 16 in flight, POST → watch event, RSS. */
async function measureApi(backend: string, serverArgs: string[]): Promise<ApiFigures> {
  const dataDir = join(dir, `server-${backend.replace(/\W+/g, '-')}`);
  const server = new ServerProc({ nodeArgs: [], dataDir, apiPort: await freePort(), mqttPort: await freePort(), insecure: false, serverArgs, clientConfig: join(dir, 'client-config.json') });
  server.start();
  try {
    await server.ready();
    const post = async (name: string) => {
      const r = await fetch(`${server.apiUrl}/api/v1/namespaces/default/configmaps`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, labels: { app: 'bench' } }, data: { config: 'x'.repeat(300) } }),
      });
      if (r.status !== 201) throw new Error(`POST ${name}: ${r.status} ${await r.text()}`);
      await r.arrayBuffer().catch(() => undefined);
    };
    const runs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < CREATES) await post(`r${r}-${next++}`);
      }));
      runs.push(round((CREATES / (performance.now() - t0)) * 1000));
    }
    const waiting = new Map<string, { t0: number; done: () => void }>();
    const lat: number[] = [];
    const w = watchApi(server.apiUrl, server.token, '/api/v1/namespaces/default/configmaps', (type, obj: { metadata: { name: string } }) => {
      const wait = type === 'ADDED' ? waiting.get(obj.metadata.name) : undefined;
      if (!wait) return;
      lat.push(performance.now() - wait.t0);
      wait.done();
    }, await server.revision());
    try {
      for (let i = 0; i < WATCH_WRITES; i++) {
        const name = `w${i}`;
        const seen = new Promise<void>((resolve) => waiting.set(name, { t0: performance.now(), done: resolve }));
        await post(name);
        await seen;
      }
    } finally {
      w.close();
    }
    const figures: ApiFigures = {
      backend,
      posts: CREATES,
      postsPerSecondRuns: runs,
      postsPerSecondMedian: median(runs),
      watch: { writes: WATCH_WRITES, p50Ms: round(percentile(lat, 50), 2), p99Ms: round(percentile(lat, 99), 2) },
      serverRssMiB: round(procMemory(server.pid)?.rssMiB ?? NaN, 1),
      loadAverage: load(),
    };
    console.log(`API on ${backend}: ${figures.postsPerSecondMedian} POSTs/s (${runs.join(', ')}), watch p50 ${figures.watch.p50Ms} ms, server RSS ${figures.serverRssMiB} MiB`);
    return figures;
  } finally {
    await server.stop();
  }
}

async function storeFigures(cluster: EtcdCluster): Promise<void> {
  results.push(await measure('LevelStore', () => LevelStore.open({ path: join(dir, `level-${levelDirs++}`) })));
  let prefixes = 0;
  const raw = new Etcd3({ hosts: cluster.endpoints });
  const value = Buffer.from(JSON.stringify(pod()));
  const rawRuns: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < CREATES) await raw.kv.put({ key: Buffer.from(`/bench-raw/${r}/${next++}`), value });
    }));
    rawRuns.push(round((CREATES / (performance.now() - t0)) * 1000));
  }
  raw.close();
  rawPut16 = { perSecondRuns: rawRuns, perSecondMedian: median(rawRuns), loadAverage: load() };
  console.log(`raw etcd3 put, 16 in flight: ${median(rawRuns)}/s (${rawRuns.join(', ')})`);
  results.push(await measure(`EtcdStore (${MEMBERS} member${MEMBERS > 1 ? 's' : ''})`, () => EtcdStore.open({ endpoints: cluster.endpoints, prefix: `/bench-${prefixes++}/`, compactKeep: 1_000_000 })));
}

const dir = mkdtempSync(join(BASE_DIR, 'drover-bench-store-etcd-'));
const loadBefore = load();
let levelDirs = 0;
const results: Figures[] = [];
let rawPut16: { perSecondRuns: number[]; perSecondMedian: number; loadAverage: number[] } | undefined;
const apiResults: ApiFigures[] = [];
const cluster = await startEtcdCluster(MEMBERS);
try {
  if (PART === 'store' || PART === 'all') await storeFigures(cluster);
  if (PART === 'api' || PART === 'all') {
    apiResults.push(await measureApi('LevelDB', []));
    apiResults.push(await measureApi(`etcd (${MEMBERS} member${MEMBERS > 1 ? 's' : ''})`, ['--datastore-endpoint', cluster.endpoints.join(',')]));
  }
} finally {
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}

const [level, etcd] = results as [Figures | undefined, Figures | undefined];
const ratio = (i: number) => (level && etcd ? round(etcd.creates[i]!.perSecondMedian / level.creates[i]!.perSecondMedian, 2) : undefined);
const [apiLevel, apiEtcd] = apiResults as [ApiFigures | undefined, ApiFigures | undefined];
const result = {
  command: COMMAND,
  runs: RUNS,
  creates: CREATES,
  etcdMembers: MEMBERS,
  dataOn: BASE_DIR,
  loadAverageBefore: loadBefore,
  loadAverageAfter: load(),
  results,
  rawEtcdPut16: rawPut16,
  etcdToLevel: level && etcd ? { creates1: ratio(0), creates16: ratio(1), watchP50: round(etcd.watch.p50Ms / level.watch.p50Ms, 2) } : undefined,
  api: apiResults,
  apiEtcdToLevel: apiLevel && apiEtcd ? { posts16: round(apiEtcd.postsPerSecondMedian / apiLevel.postsPerSecondMedian, 2), watchP50: round(apiEtcd.watch.p50Ms / apiLevel.watch.p50Ms, 2) } : undefined,
};
const file = writeResult(`store-etcd${PART === 'all' ? '' : `-${PART}`}${MEMBERS === 1 ? '' : `-${MEMBERS}members`}`, result);
const md = [
  `# Store on etcd beside LevelDB (same run, same disk), median of ${RUNS} runs`,
  '',
  `Command: \`${COMMAND}\` — load average before ${loadBefore.join(' / ')}, after ${result.loadAverageAfter.join(' / ')} (1/5/15 min; 2 shared cores).`,
  '',
];
if (apiResults.length > 0) {
  md.push(
    `## Through the API (a real \`drover server\` process; ConfigMap POSTs over HTTPS, ${CREATES} a run)`,
    '',
    '| datastore | POSTs/s, 16 in flight | POST → watch event p50 / p99 (ms) | server RSS after (MiB) | load avg (1 min) |',
    '|---|---|---|---|---|',
    ...apiResults.map((f) => `| ${f.backend} | ${f.postsPerSecondMedian} (${f.postsPerSecondRuns.join(', ')}) | ${f.watch.p50Ms} / ${f.watch.p99Ms} | ${f.serverRssMiB ?? '?'} | ${f.loadAverage[0]} |`),
    '',
    ...(result.apiEtcdToLevel ? [`etcd ÷ LevelDB through the API: POSTs ${result.apiEtcdToLevel.posts16}x, watch p50 ${result.apiEtcdToLevel.watchP50}x.`, ''] : []),
  );
}
if (level && etcd) md.push(
  '## The store alone (in process)',
  '',
  '| store | creates/s, 1 in flight | creates/s, 16 in flight | watch latency p50 / p99 (ms) | load avg at the end of each |',
  '|---|---|---|---|---|',
  ...results.map((f) => `| ${f.backend} | ${f.creates[0]!.perSecondMedian} (${f.creates[0]!.perSecondRuns.join(', ')}) | ${f.creates[1]!.perSecondMedian} (${f.creates[1]!.perSecondRuns.join(', ')}) | ${f.watch.p50Ms} / ${f.watch.p99Ms} | ${[f.creates[0]!.loadAverage[0], f.creates[1]!.loadAverage[0], f.watch.loadAverage[0]].join(' / ')} |`),
  '',
  `Raw etcd3 puts of a pod-sized value, 16 in flight, same etcd: ${rawPut16?.perSecondMedian}/s (${rawPut16?.perSecondRuns.join(', ')}): the ceiling EtcdStore's creates (one transaction each) are measured against.`,
  '',
  `etcd ÷ LevelDB: creates ${result.etcdToLevel?.creates1}x (1 in flight), ${result.etcdToLevel?.creates16}x (16 in flight); watch p50 ${result.etcdToLevel?.watchP50}x.`,
  'Watch latency is create() called → event at a watch of the same store: LevelStore publishes at its group commit, before the write is acknowledged; etcd sends the event on the watch stream after the commit.',
);
writeFileSync(file.replace(/\.json$/, '.md'), md.join('\n') + '\n');
console.log(`wrote ${file}`);
