/**
 * The desired-state publisher at fleet size, in process: a LevelDB store with --nodes Nodes, one pod each
 * (half of them referencing a ConfigMap and a Secret), a Service with its EndpointSlice, and a sink that
 * only counts. Measures the first pass (every node) and then --changes single-pod changes one after the
 * other (a label patch: the pod's node gets a new snapshot), each until its publish: milliseconds and
 * process CPU per change. Before the per-node index every pass listed every pod, ConfigMap, Secret,
 * Service, EndpointSlice and Node.
 *
 * Run: npx tsx bench/link-publisher.ts [--nodes 1000] [--changes 200] [--tree DIR] [--out NAME]
 *   --tree: take server/desired/publisher.ts and server/store/level.ts from another checkout (a before
 *   run: `git archive COMMIT | tar -x -C DIR`, node_modules linked) → bench/results/link-publisher.json
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../src/util/logger.js';
import { machine, numArg, parseArgs, round, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));
const NODES = numArg(args, 'nodes', 1000);
const CHANGES = numArg(args, 'changes', 200);
const TREE = resolve(args.get('tree') ?? fileURLToPath(new URL('..', import.meta.url)));
const OUT = args.get('out') ?? 'link-publisher';

const { DesiredPublisher } = (await import(join(TREE, 'server/desired/publisher.ts'))) as typeof import('../server/desired/publisher.js');
const { LevelStore } = (await import(join(TREE, 'server/store/level.ts'))) as typeof import('../server/store/level.js');

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const dir = await mkdtemp(join(tmpdir(), 'drover-link-publisher-'));
const store = await LevelStore.open({ path: join(dir, 'db') });
try {
  const node = (i: number) => `edge-${String(i).padStart(5, '0')}`;
  await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'default' }, data: { a: '1' } } as never);
  await store.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'sec', namespace: 'default' }, type: 'Opaque', data: { k: Buffer.from('v').toString('base64') } } as never);
  await store.create({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.43.0.10', selector: { app: 'web' }, ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }] } } as never);
  await store.create({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', ports: [{ port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: ['10.88.0.5'], nodeName: node(0), conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'web-0', namespace: 'default' } }] } as never);
  for (let i = 0; i < NODES; i++) {
    await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: node(i) }, spec: {}, status: { addresses: [{ type: 'InternalIP', address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }] } } as never);
    const env = i % 2 === 0 ? [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'a' } } }, { name: 'K', valueFrom: { secretKeyRef: { name: 'sec', key: 'k' } } }] : [];
    await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `web-${i}`, namespace: 'default', labels: { app: 'web' } }, spec: { nodeName: node(i), containers: [{ name: 'main', image: 'registry.example/web:1', env, ports: [{ containerPort: 8080, hostPort: 8080 }] }] } } as never);
  }
  let published = 0;
  let waiter: (() => void) | undefined;
  const sink = {
    publishDesired: async () => {
      published++;
      waiter?.();
    },
    clearRetained: async () => {},
  };
  const publisher = new DesiredPublisher({ store, sink, logger: silentLogger, debounceMs: 0 });
  const c0 = cpuMs();
  const t0 = performance.now();
  await publisher.start();
  const firstPass = { ms: round(performance.now() - t0, 1), cpuMs: round(cpuMs() - c0, 1), published };
  console.log(`first pass: ${JSON.stringify(firstPass)}`);

  const perChange: number[] = [];
  const c1 = cpuMs();
  for (let k = 0; k < CHANGES; k++) {
    const i = (k * 7919) % NODES;
    const before = published;
    const done = new Promise<void>((r) => (waiter = () => published > before && r()));
    const t = performance.now();
    await store.patch('Pod', 'default', `web-${i}`, (p) => ({ ...p, metadata: { ...p.metadata, labels: { ...p.metadata.labels, rev: String(k) } } }));
    await done;
    perChange.push(performance.now() - t);
  }
  const cpuPerChange = (cpuMs() - c1) / CHANGES;
  perChange.sort((a, b) => a - b);
  const changes = { count: CHANGES, medianMs: round(perChange[Math.floor(CHANGES / 2)]!, 2), p90Ms: round(perChange[Math.floor(CHANGES * 0.9)]!, 2), cpuMsPerChange: round(cpuPerChange, 2), publishedPerChange: round((published - firstPass.published) / CHANGES, 2) };
  console.log(`single-pod changes: ${JSON.stringify(changes)}`);
  await publisher.stop();
  console.log(`wrote ${writeResult(OUT, { command: `npx tsx bench/link-publisher.ts ${process.argv.slice(2).join(' ')}`.trim(), tree: TREE, nodes: NODES, loadAverage: machine().loadAverage, firstPass, changes })}`);
} finally {
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
