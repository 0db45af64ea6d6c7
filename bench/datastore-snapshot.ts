/**
 * `drover datastore snapshot save|restore` and `migrate` on a store of N objects (default 10,000:
 * pod-sized Pods and ConfigMaps, 1 % Secrets sealed with a keyring), on both backends, in one run on the
 * same disk: the time of each step and the snapshot's size. etcd is Debian's /usr/bin/etcd (3.4), one
 * member per store, started by the bench in a temp dir. Steps, each through server/store/transfer.ts (what
 * the CLI runs): LevelDB A → save → restore into an empty LevelDB B; → restore into etcd E1; E1 → save →
 * restore into an empty etcd E2; migrate A → E2 --force. Then online: a real `drover server` process
 * on a store like A (its Pods without owners: no garbage collection meanwhile), and `drover datastore
 * snapshot save FILE --server` (GET /drover/v1/snapshot) while a client GETs a namespace back to back:
 * the save's time, the server's RSS sampled through it, and that GET's latency before and during it. The load average is recorded before and after (the machine is shared).
 *
 * Run: node --import tsx bench/datastore-snapshot.ts [--objects 10000] [--dir DIR]
 *   → bench/results/datastore-snapshot.json (datastore-snapshot-N.json for another --objects)
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring, keyringPath } from '../server/secrets/keyring.js';
import { storePath } from '../server/secrets/rotate.js';
import { LevelStore } from '../server/store/level.js';
import { datastoreTools } from '../server/store/transfer.js';
import type { ApiObject } from '../src/api/meta.js';
import { readSnapshotHeader } from '../server/store/snapshot.js';
import { drover } from '../test/helpers/cli.js';
import { startEtcd, type EtcdCluster } from '../test/helpers/etcd.js';
import { freePort, machine, median, numArg, parseArgs, percentile, procMemory, round, sleep, writeResult } from './lib/common.js';
import { ServerProc } from './lib/fleet-server.js';

const args = parseArgs(process.argv.slice(2));
const OBJECTS = numArg(args, 'objects', 10_000);
const BASE_DIR = args.get('dir') ?? tmpdir();
const COMMAND = `node --import tsx bench/datastore-snapshot.ts --objects ${OBJECTS}${args.get('dir') ? ` --dir ${BASE_DIR}` : ''}`;

function object(i: number): ApiObject {
  const ns = `ns-${i % 10}`;
  if (i % 100 === 0) return { apiVersion: 'v1', kind: 'Secret', metadata: { name: `s-${i}`, namespace: ns }, data: { password: Buffer.from(`secret-${i}`).toString('base64') } } as ApiObject;
  if (i % 2 === 0) return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${i}`, namespace: ns, labels: { app: `app-${i % 50}` } }, data: { 'config.yaml': `key: value-${i}\n`.repeat(20) } };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pod-${i}`, namespace: ns, labels: { app: `app-${i % 50}`, tier: 'edge' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `rs-${i % 50}`, uid: `00000000-0000-4000-8000-${String(i % 50).padStart(12, '0')}`, controller: true }] },
    spec: { nodeName: `node-${i % 200}`, containers: [{ name: 'app', image: 'registry.example/app:1.2.3', ports: [{ containerPort: 8080 }], env: [{ name: 'MODE', value: 'edge' }], resources: { requests: { cpu: '50m', memory: '32Mi' } } }] },
    status: { phase: 'Running', podIP: `10.42.${(i >> 8) & 255}.${i & 255}` },
  } as ApiObject;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const began = performance.now();
  const value = await fn();
  return { ms: round(performance.now() - began, 0), value };
}

/** GET `path` back to back until `stop()`: each call's latency in ms. */
function getLoop(server: ServerProc, path: string): { stop(): Promise<number[]> } {
  const ms: number[] = [];
  let going = true;
  const loop = (async () => {
    while (going) {
      const began = performance.now();
      const r = await server.api('GET', path);
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text.slice(0, 200)}`);
      ms.push(performance.now() - began);
    }
  })();
  return {
    async stop() {
      going = false;
      await loop;
      return ms;
    },
  };
}

const latency = (ms: number[]) => ({ calls: ms.length, medianMs: round(median(ms), 1), p99Ms: round(percentile(ms, 99), 1), maxMs: round(Math.max(...ms), 1) });

/**
 * `snapshot save --server` against a real server process on `dataDir` (its store already holding the
 * objects), with a GET loop beside it: the save's time, the server's RSS sampled every 20 ms, the GET's
 * latency for 3 s before and through the save.
 */
async function onlineSave(dataDir: string, file: string): Promise<Record<string, unknown> & { saveAloneMs: number }> {
  const clientConfig = join(dataDir, '..', 'client-config');
  writeFileSync(clientConfig, '{}\n', { mode: 0o600 });
  const server = new ServerProc({ nodeArgs: [], dataDir, apiPort: await freePort(), mqttPort: await freePort(), insecure: false, clientConfig });
  server.start();
  try {
    await server.ready();
    const path = '/api/v1/namespaces/default';
    // Warm: the first calls pay for TLS sessions and JIT.
    await getLoop(server, path).stop();
    // The first snapshot the server serves, downloaded alone (no file, no check): its route and the
    // store's pages read cold, as a nightly backup finds them.
    const downloadBegan = performance.now();
    const res = await fetch(`${server.apiUrl}/drover/v1/snapshot`, { headers: { authorization: `Bearer ${server.token}` } });
    let downloaded = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) downloaded += chunk.length;
    const firstDownloadOnlyMs = round(performance.now() - downloadBegan, 0);
    const env = { DROVER_SERVER: server.apiUrl, DROVER_TOKEN: server.token, DROVER_CONFIG: clientConfig };
    const idle = getLoop(server, path);
    await sleep(3000);
    const before = latency(await idle.stop());
    const rss: number[] = [];
    const rssBefore = procMemory(server.pid)!.rssMiB;
    const sampler = setInterval(() => {
      const m = procMemory(server.pid);
      if (m) rss.push(m.rssMiB);
    }, 20);
    const revisionBefore = await server.revision();
    const busy = getLoop(server, path);
    const began = performance.now();
    const run = await drover(env, ['datastore', 'snapshot', 'save', file, '--server']);
    const saveWithGetLoopMs = round(performance.now() - began, 0);
    const during = latency(await busy.stop());
    clearInterval(sampler);
    const revisionAfter = await server.revision();
    if (run.code !== 0) throw new Error(`online save failed: ${run.stderr}`);
    const header = await readSnapshotHeader(file);
    // A second save with nothing beside it in this process (the GET loop shares the CLI's event loop).
    const aloneBegan = performance.now();
    const alone = await drover(env, ['datastore', 'snapshot', 'save', file, '--server']);
    const saveAloneMs = round(performance.now() - aloneBegan, 0);
    if (alone.code !== 0) throw new Error(`online save failed: ${alone.stderr}`);
    return {
      firstDownloadOnlyMs,
      downloadedBytes: downloaded,
      /** The CLI's whole save: download, file, the check of every object, rename. */
      saveWithGetLoopMs,
      saveAloneMs,
      objects: header.objects,
      kinds: header.kinds,
      /** Writes the server made meanwhile (its controllers: expected 0 here). */
      serverWritesDuringSave: revisionAfter - revisionBefore,
      snapshotBytes: statSync(file).size,
      serverRssMiB: { before: round(rssBefore, 1), peakDuring: round(Math.max(...rss), 1), samples: rss.length },
      getNamespaceLatency: { before, duringSave: during },
    };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(BASE_DIR, 'drover-bench-snap-'));
  const etcds: EtcdCluster[] = [];
  const loadBefore = machine().loadAverage;
  try {
    const a = join(dir, 'a');
    const keyring = await Keyring.loadOrCreate(a);
    const store = await LevelStore.open({ path: storePath(a), secrets: keyring });
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
    const populate = await timed(async () => {
      for (let i = 1; i < OBJECTS; i += 64) await Promise.all(Array.from({ length: Math.min(64, OBJECTS - i) }, (_, k) => store.create(object(i + k))));
    });
    await store.close();
    const tools = datastoreTools();
    const withKeyring = (d: string) => {
      mkdirSync(join(d, 'secrets'), { recursive: true, mode: 0o700 });
      copyFileSync(keyringPath(a), keyringPath(d));
      return d;
    };

    const fileL = join(dir, 'leveldb.snap');
    const saveLevel = await timed(() => tools.saveSnapshot(fileL, { dataDir: a }));
    const restoreLevel = await timed(() => tools.restoreSnapshot(fileL, { dataDir: withKeyring(join(dir, 'b')) }, { force: false }));

    const e1 = await startEtcd();
    etcds.push(e1);
    const restoreEtcd = await timed(() => tools.restoreSnapshot(fileL, { datastoreEndpoint: e1.endpoints[0], dataDir: a }, { force: false }));
    const fileE = join(dir, 'etcd.snap');
    const saveEtcd = await timed(() => tools.saveSnapshot(fileE, { datastoreEndpoint: e1.endpoints[0] }));
    const e2 = await startEtcd();
    etcds.push(e2);
    const restoreEtcd2 = await timed(() => tools.restoreSnapshot(fileE, { datastoreEndpoint: e2.endpoints[0], dataDir: a }, { force: false }));
    const migrate = await timed(() => tools.migrate(a, { datastoreEndpoint: e2.endpoints[0] }, { force: true }));
    // The online save gets a data dir of its own: the same objects without the Pods' ownerReferences,
    // whose ReplicaSets do not exist, so the server's garbage collector would delete thousands of Pods
    // during the measurement. Its own writes are a GET loop beside the save, and nothing else.
    const o = join(dir, 'online');
    {
      const online = await LevelStore.open({ path: storePath(o), secrets: await Keyring.loadOrCreate(o) });
      await online.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
      const ownerless = (i: number): ApiObject => {
        const { ownerReferences: _none, ...metadata } = object(i).metadata;
        return { ...object(i), metadata };
      };
      for (let i = 1; i < OBJECTS; i += 64) await Promise.all(Array.from({ length: Math.min(64, OBJECTS - i) }, (_, k) => online.create(ownerless(i + k))));
      await online.close();
    }
    const online = await onlineSave(o, join(dir, 'online.snap'));

    const result = {
      command: COMMAND,
      objects: saveLevel.value.objects,
      kinds: saveLevel.value.kinds,
      sealedSecrets: saveLevel.value.sealedSecrets,
      populateLevelMs: populate.ms,
      leveldb: { saveMs: saveLevel.ms, snapshotBytes: statSync(fileL).size, restoreIntoEmptyLevelMs: restoreLevel.ms, restoreIntoEmptyEtcdMs: restoreEtcd.ms },
      etcd: { saveMs: saveEtcd.ms, snapshotBytes: statSync(fileE).size, restoreIntoEmptyEtcdMs: restoreEtcd2.ms },
      migrateLevelToEtcdForceMs: migrate.ms,
      /** `snapshot save --server` from a running `drover server` process on LevelDB A, a GET loop beside it. */
      leveldbOnline: { ...online, offlineSaveMsSameRun: saveLevel.ms, onlineOverOfflineSave: round((online.saveAloneMs as number) / saveLevel.ms, 2) },
      etcdRevisions: restoreEtcd2.value.revisions,
      /** The bench process holds the objects between read and write (as the CLI does): its peak RSS. */
      peakRssMiB: round(process.resourceUsage().maxRSS / 1024, 0),
      loadAverageBefore: loadBefore,
      loadAverageAfter: machine().loadAverage,
      note: 'leveldbOnline: the server is a child process (tsx), the CLI runs in the bench process; saveMs includes the CLI\'s check of the whole downloaded file before it is renamed into place; one etcd member per store on this machine\'s disk; times include opening the stores and, for restores, reading and checking the whole file and opening every Secret with the keyring; leveldb.restoreIntoEmptyEtcdMs is the run\'s first etcd step and also pays for loading the etcd client (gRPC, its protocol definitions) in this process',
    };
    console.log(JSON.stringify(result, null, 2));
    console.log(`→ ${writeResult(OBJECTS === 10_000 ? 'datastore-snapshot' : `datastore-snapshot-${OBJECTS}`, result)}`);
  } finally {
    for (const e of etcds) await e.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
