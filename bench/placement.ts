/**
 * Placement throughput of the server's own pipeline, in one process, no agents: a LevelStore on disk
 * (with the admission wrappers server/run.ts puts around it), the real controllers (Deployment →
 * ReplicaSet → pods) and the real scheduler, N Ready nodes written straight to the store. A Deployment
 * of P replicas is written, and the clock runs until every pod is bound (spec.nodeName set), seen by a
 * store watch. This is the "to bound" part of the placement row (5,000 pods on 1,000 nodes,
 * goal ≥ 5,000/s); bench/scale.ts measures the same end to end with simulated agents.
 *
 * Run: node --import tsx bench/placement.ts [--nodes 1000] [--pods 5000] [--runs 3] [--label NAME] [--no-cache] [--alloc-prof]
 *   --alloc-prof: where the runs allocate, garbage included (bench/lib/alloc-profile.ts), in the results
 *   → bench/results/placement[-NAME].json and .md
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../src/api/node.js';
import { createLogger } from '../src/util/logger.js';
import { withAdmission } from '../server/admission/store.js';
import { allControllers } from '../server/controllers/index.js';
import { ControllerRunner } from '../server/controllers/runner.js';
import { EventRecorder } from '../server/events/recorder.js';
import { Scheduler } from '../server/scheduler/scheduler.js';
import { withServiceAllocation } from '../server/services/allocate.js';
import { LevelStore } from '../server/store/level.js';
import { ObjectCache, withCachedLists } from '../server/cache/object-cache.js';
import { sampleAllocations, type AllocationProfile } from './lib/alloc-profile.js';
import { median, numArg, parseArgs, round, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));
const NODES = numArg(args, 'nodes', 1000);
const PODS = numArg(args, 'pods', 5000);
const RUNS = numArg(args, 'runs', 3);
const LABEL = args.get('label');
/** --no-cache: controllers and scheduler list from LevelDB, as before the object cache (the "before" figure). */
const NO_CACHE = args.has('no-cache');
const ALLOC_PROF = args.has('alloc-prof');

function node(i: number): Node {
  const name = `n-${i}`;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/arch': i % 4 ? 'amd64' : 'arm64', 'kubernetes.io/os': 'linux' } },
    spec: {},
    status: {
      allocatable: { cpu: '4', memory: '8Gi', pods: '110' },
      capacity: { cpu: '4', memory: '8Gi', pods: '110' },
      conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: new Date().toISOString() }],
    },
  } as Node;
}

const deployment = (replicas: number) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'place', namespace: 'default' },
  spec: {
    replicas,
    selector: { matchLabels: { app: 'place' } },
    template: {
      metadata: { labels: { app: 'place' } },
      spec: { containers: [{ name: 'c', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'], resources: { requests: { cpu: '10m', memory: '16Mi' } } }] },
    },
  },
});

async function once(): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'drover-bench-place-'));
  const logger = createLogger({ name: 'bench', level: 'warn' });
  const level = await LevelStore.open({ path: join(dir, 'db'), logger });
  const store = withServiceAllocation(withAdmission(level));
  try {
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } } as never);
    await Promise.all(Array.from({ length: NODES }, (_, i) => store.create(node(i))));
    const events = new EventRecorder(store, logger);
    // As server/run.ts: the scheduler and the controllers list Pods and Nodes from the object cache.
    const cache = NO_CACHE ? undefined : await ObjectCache.start(store, ['Pod', 'Node'], logger);
    const cached = cache ? withCachedLists(store, cache) : store;
    const scheduler = new Scheduler({ store: cached, events, logger });
    const controllers = new ControllerRunner({ store: cached, logger, controllers: allControllers({ store: cached, events, logger, now: Date.now }) });
    await scheduler.start();
    await controllers.start();
    let created = 0;
    let bound = 0;
    let firstBoundMs = 0;
    let createdAllMs = 0;
    const t0 = performance.now();
    const done = new Promise<void>((resolve) => {
      const seen = new Set<string>();
      const w = level.watch(level.revision(), (e) => {
        if (e.object.kind !== 'Pod') return;
        const name = e.object.metadata.name;
        if (e.type === 'ADDED' && ++created === PODS) createdAllMs = performance.now() - t0;
        if ((e.object as { spec?: { nodeName?: string } }).spec?.nodeName && !seen.has(name)) {
          seen.add(name);
          if (++bound === 1) firstBoundMs = performance.now() - t0;
          if (bound === PODS) {
            w.close();
            resolve();
          }
        }
      }, { kinds: ['Pod'] });
    });
    await store.create(deployment(PODS) as never);
    await done;
    const ms = performance.now() - t0;
    await controllers.stop();
    await scheduler.stop();
    cache?.close();
    return { allBoundMs: round(ms), podsPerSecondToBound: round((PODS / ms) * 1000), allCreatedMs: round(createdAllMs), firstBoundMs: round(firstBoundMs) };
  } finally {
    await level.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const loadBefore = loadavg().map((l) => round(l, 2));
const runs: Array<Record<string, number>> = [];
const stopSampling = ALLOC_PROF ? await sampleAllocations() : undefined;
for (let r = 0; r < RUNS; r++) {
  const res = await once();
  runs.push(res);
  console.log(`run ${r + 1}: ${PODS} pods on ${NODES} nodes bound in ${res.allBoundMs} ms (${res.podsPerSecondToBound}/s; all created at ${res.allCreatedMs} ms, first bound at ${res.firstBoundMs} ms)`);
}
const allocations: AllocationProfile | undefined = await stopSampling?.();
const perSecond = median(runs.map((r) => r.podsPerSecondToBound!));
const cmd = `node --import tsx bench/placement.ts ${process.argv.slice(2).join(' ')}`.trim();
const md = [
  `# Placement to bound, server pipeline in one process (bench/placement.ts)`,
  '',
  `Command: \`${cmd}\` — ${new Date().toISOString()}, node ${process.version}, load average before ${loadBefore.join(' ')}, after ${loadavg().map((l) => round(l, 2)).join(' ')}.`,
  '',
  `A Deployment of ${PODS} replicas on ${NODES} Ready nodes: LevelStore on disk with admission, the real controllers and scheduler, no agents; the clock stops when every pod has spec.nodeName (store watch).`,
  '',
  '| run | all created | all bound | pods/s to bound |',
  '|---|---|---|---|',
  ...runs.map((r, i) => `| ${i + 1} | ${r.allCreatedMs} ms | ${r.allBoundMs} ms | ${r.podsPerSecondToBound} |`),
  '',
  `Median: **${perSecond} pods/s to bound** (goal ≥ 5,000/s; kube-scheduler ~100/s, Nomad 1.5–3.7k/s).`,
  ...(allocations
    ? [
        '',
        `Allocated over the ${RUNS} runs (setup included), garbage included: **${allocations.totalMegabytes} MiB**, ${round((allocations.totalMegabytes * 1024) / (RUNS * PODS), 1)} KiB per pod placed. Where (by function, sampled):`,
        '',
        '| MiB | % | function, file:line |',
        '|---|---|---|',
        ...allocations.top.map((a) => `| ${a.megabytes} | ${a.percent} | \`${a.site}\` |`),
      ]
    : []),
].join('\n');
const name = LABEL ? `placement-${LABEL}` : 'placement';
writeResult(name, { command: cmd, nodes: NODES, pods: PODS, runs, podsPerSecondToBoundMedian: perSecond, ...(allocations ? { allocations } : {}) });
writeFileSync(new URL(`./results/${name}.md`, import.meta.url), md + '\n');
console.log(md);
