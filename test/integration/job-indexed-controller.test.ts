/**
 * An Indexed Job through the real LevelStore, ControllerRunner, Scheduler and Job controller; a small
 * fake kubelet plays the agent: the first pod of index 1 fails, every other pod succeeds. The Job must
 * retry index 1 only, and complete with every index done once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Pod } from '../../src/api/pod.js';
import { parseObject } from '../../src/api/validate.js';
import { JOB_COMPLETION_INDEX } from '../../src/api/workloads.js';
import { isNotFound } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import type { ControllerDeps } from '../../server/controllers/deps.js';
import { jobController } from '../../server/controllers/job.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { Scheduler } from '../../server/scheduler/scheduler.js';
import { LevelStore } from '../../server/store/level.js';
import { isKind, type Watch } from '../../server/store/types.js';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let dir: string;
let store: LevelStore;
let runner: ControllerRunner;
let scheduler: Scheduler;
let kubelet: Watch;
/** Pods the fake kubelet saw, in order: their index and the env value their first container got. */
const ran: Array<{ index: string | undefined; env: string | undefined; hostname: string | undefined; outcome: 'Succeeded' | 'Failed' }> = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-job-indexed-'));
  store = await LevelStore.open({ path: join(dir, 'store') });
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
  const alloc = { cpu: '4', memory: '8Gi', pods: '110' };
  await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' }, spec: {}, status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: 'True' }] } });
  const started = new Set<string>();
  kubelet = store.watch(
    store.revision(),
    (e) => {
      if (e.type === 'DELETED' || !isKind(e.object, 'Pod')) return;
      const p = e.object as Pod;
      if (!p.spec.nodeName || p.status?.phase !== 'Pending' || started.has(p.metadata.uid!)) return;
      started.add(p.metadata.uid!);
      const index = p.metadata.annotations?.[JOB_COMPLETION_INDEX];
      const outcome = index === '1' && !ran.some((r) => r.index === '1') ? 'Failed' : 'Succeeded';
      ran.push({ index, env: p.spec.containers[0]!.env?.find((v) => v.name === 'JOB_COMPLETION_INDEX')?.value, hostname: p.spec.hostname, outcome });
      void store
        .patch('Pod', 'default', p.metadata.name, (pod) => {
          const now = new Date().toISOString();
          pod.status = { phase: outcome, containerStatuses: [{ name: 'main', image: 'busybox', ready: false, restartCount: 0, state: 'terminated', exitCode: outcome === 'Failed' ? 1 : 0, finishedAt: now }] };
          return pod;
        })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    },
    { kinds: ['Pod'] },
  );
  const events = new EventRecorder(store, silentLogger);
  const deps: ControllerDeps = { store, events, logger: silentLogger, now: Date.now, jobBackoffBaseMs: 100, gcSweepMs: 300 };
  scheduler = new Scheduler({ store, events, logger: silentLogger, resyncMs: 1000 });
  await scheduler.start();
  runner = new ControllerRunner({ store, logger: silentLogger, controllers: [jobController(deps)], resyncMs: 1000 });
  await runner.start();
});

after(async () => {
  await runner?.stop();
  await scheduler?.stop();
  kubelet?.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

test('Indexed Job, 3 completions, parallelism 2, index 1 fails once: retried, Complete with completedIndexes 0-2', async () => {
  const job = parseObject({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'shard', namespace: 'default' },
    spec: { completionMode: 'Indexed', completions: 3, parallelism: 2, backoffLimit: 2, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox', command: ['true'] }] } } },
  }).object;
  await store.create(job);
  const done = await waitFor('Job Complete', async () => {
    const j = await store.get('Job', 'default', 'shard');
    return (j?.status as any)?.conditions?.some((c: any) => c.type === 'Complete' && c.status === 'True') ? j : undefined;
  });
  const st = done.status as any;
  assert.equal(st.completedIndexes, '0-2');
  assert.equal(st.succeeded, 3);
  assert.equal(st.failed, 1);
  // Four pods: one per index, and a second for index 1 after its failure; never a second success of one index.
  assert.deepEqual(ran.map((r) => `${r.index}:${r.outcome}`).sort(), ['0:Succeeded', '1:Failed', '1:Succeeded', '2:Succeeded']);
  assert.ok(ran.every((r) => r.env === r.index && r.hostname === `shard-${r.index}`), JSON.stringify(ran));
  const pods = (await store.list('Pod', 'default')).items as Pod[];
  assert.equal(pods.length, 4);
  for (const p of pods) {
    const i = p.metadata.annotations?.[JOB_COMPLETION_INDEX];
    assert.match(p.metadata.name, new RegExp(`^shard-${i}-[a-z0-9]{5}$`));
    assert.equal(p.metadata.labels?.[JOB_COMPLETION_INDEX], i);
  }
});
