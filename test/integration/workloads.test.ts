/**
 * DaemonSet, Job and garbage-collector controllers against the real LevelStore, ControllerRunner and
 * Scheduler. A small fake kubelet plays the agents: a bound pod turns Running/Ready, or Succeeded /
 * Failed when its `outcome` label says so.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { parseObject } from '../../src/api/validate.js';
import { isNotFound } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { daemonSetController, REVISION_LABEL } from '../../server/controllers/daemonset.js';
import type { ControllerDeps } from '../../server/controllers/deps.js';
import { garbageCollector } from '../../server/controllers/gc.js';
import { jobController } from '../../server/controllers/job.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { Scheduler } from '../../server/scheduler/scheduler.js';
import { LevelStore } from '../../server/store/level.js';
import { isKind, type Store, type Watch } from '../../server/store/types.js';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const v = await fn();
    if (v) return v;
    last = v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

function mkNode(name: string, labels: Record<string, string> = {}): Node {
  const alloc = { cpu: '4', memory: '8Gi', pods: '110' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...labels } },
    spec: {},
    status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** Plays every agent: pods bound to a node start shortly after, and end as their label says. */
function fakeKubelet(store: Store): Watch {
  const started = new Set<string>();
  const run = async (p: Pod) => {
    await new Promise((r) => setTimeout(r, 20));
    const outcome = p.metadata.labels?.outcome;
    const now = new Date().toISOString();
    await store
      .patch('Pod', p.metadata.namespace ?? 'default', p.metadata.name, (pod) => {
        if (pod.metadata.uid !== p.metadata.uid) return undefined;
        const done = outcome === 'succeed' || outcome === 'fail';
        const exitCode = outcome === 'fail' ? 1 : 0;
        pod.status = {
          ...pod.status,
          phase: outcome === 'succeed' ? 'Succeeded' : outcome === 'fail' ? 'Failed' : 'Running',
          conditions: [...(pod.status?.conditions ?? []).filter((c) => c.type !== 'Ready'), { type: 'Ready', status: done ? 'False' : 'True', lastTransitionTime: now }],
          containerStatuses: pod.spec.containers.map((c) => ({
            name: c.name,
            image: c.image,
            ready: !done,
            restartCount: 0,
            state: done ? ('terminated' as const) : ('running' as const),
            ...(done ? { exitCode } : {}),
          })),
        };
        return pod;
      })
      .catch((err: unknown) => {
        // Deleted before it started (a Job finished, a DaemonSet moved on): nothing to run.
        if (!isNotFound(err)) throw err;
      });
  };
  return store.watch(
    store.revision(),
    (e) => {
      if (e.type === 'DELETED') return;
      if (!isKind(e.object, 'Pod')) return;
      const p = e.object;
      if (!p.spec.nodeName || p.status?.phase !== 'Pending' || started.has(p.metadata.uid!)) return;
      started.add(p.metadata.uid!);
      void run(p);
    },
    { kinds: ['Pod'] },
  );
}

/** As the API stores it: validated, defaults applied. */
function manifest(raw: unknown): ApiObject {
  return parseObject(raw).object;
}

function dsManifest(name: string, image: string, nodeSelector?: Record<string, string>) {
  return manifest({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: 'default' },
    spec: {
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { ...(nodeSelector ? { nodeSelector } : {}), containers: [{ name: 'main', image }] } },
    },
  });
}

function jobManifest(name: string, o: { completions: number; parallelism: number; backoffLimit: number; outcome: 'succeed' | 'fail'; ttl?: number }) {
  return manifest({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: 'default' },
    spec: {
      completions: o.completions,
      parallelism: o.parallelism,
      backoffLimit: o.backoffLimit,
      ...(o.ttl !== undefined ? { ttlSecondsAfterFinished: o.ttl } : {}),
      template: { metadata: { labels: { outcome: o.outcome } }, spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'busybox', command: ['true'] }] } },
    },
  });
}

function ownedBy(p: ApiObject, uid: string | undefined): boolean {
  return (p.metadata.ownerReferences ?? []).some((r) => r.uid === uid);
}

describe('workload controllers (LevelStore + runner + scheduler + fake kubelet)', () => {
  let dir: string;
  let store: LevelStore;
  let runner: ControllerRunner;
  let scheduler: Scheduler;
  let kubelet: Watch;
  let orphanRsName: string;

  const pods = async (filter: (p: Pod) => boolean = () => true) => (await store.list('Pod', 'default')).items.filter(filter);
  const get = (kind: string, name: string) => store.get(kind, 'default', name);
  const eventReasons = async (name: string) => (await store.list('Event', 'default')).items.filter((e: any) => e.involvedObject.name === name).map((e: any) => e.reason as string);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-workloads-'));
    store = await LevelStore.open({ path: join(dir, 'store') });
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
    // Orphans left from "before a restart": their owners are already gone, no event will mention them.
    const orphanRs = await store.create(
      manifest({
        apiVersion: 'apps/v1',
        kind: 'ReplicaSet',
        metadata: { name: 'web-old', namespace: 'default', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: 'gone-uid', controller: true }] },
        spec: { replicas: 0, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'x' }] } } },
      }),
    );
    orphanRsName = orphanRs.metadata.name;
    await store.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'orphan-pod', namespace: 'default', ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'gone', uid: 'gone-job-uid', controller: true }] },
      spec: { containers: [{ name: 'c', image: 'x' }] },
      status: { phase: 'Pending' },
    });
    await store.create(mkNode('n1', { role: 'edge' }));

    const events = new EventRecorder(store, silentLogger);
    const deps: ControllerDeps = { store, events, logger: silentLogger, now: Date.now, jobBackoffBaseMs: 300, gcSweepMs: 300 };
    kubelet = fakeKubelet(store);
    scheduler = new Scheduler({ store, events, logger: silentLogger, resyncMs: 1000 });
    await scheduler.start();
    runner = new ControllerRunner({
      store,
      logger: silentLogger,
      controllers: [daemonSetController(deps), jobController(deps), garbageCollector(deps)],
      resyncMs: 1000,
    });
    await runner.start();
  });

  after(async () => {
    await runner?.stop();
    await scheduler?.stop();
    kubelet?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('garbage collector removes objects orphaned while it was not running', async () => {
    const t0 = Date.now();
    await waitFor('orphans collected', async () => !(await get('ReplicaSet', orphanRsName)) && !(await get('Pod', 'orphan-pod')));
    console.log(`orphans collected in ${Date.now() - t0} ms`);
  });

  test('DaemonSet: one pod per matching node, new nodes get one, mismatching nodes lose it, template change rolls', async () => {
    const t0 = Date.now();
    const ds = await store.create(dsManifest('agent', 'busybox:1', { role: 'edge' }));
    await store.create(mkNode('n-core', { role: 'core' }));
    const first = await waitFor('pod on n1 Ready', async () => {
      const ps = await pods((p) => ownedBy(p, ds.metadata.uid));
      return ps.length === 1 && ps[0]!.status?.phase === 'Running' ? ps : undefined;
    });
    console.log(`DaemonSet pod on n1 running in ${Date.now() - t0} ms`);
    assert.equal(first[0]!.spec.nodeName, 'n1');
    assert.match(first[0]!.metadata.name, /^agent-[a-z0-9]{5}$/);
    assert.ok(first[0]!.metadata.labels?.[REVISION_LABEL]);

    const t1 = Date.now();
    await store.create(mkNode('n2', { role: 'edge' }));
    await waitFor('pods on n1 and n2, status 2/2', async () => {
      const ps = await pods((p) => ownedBy(p, ds.metadata.uid));
      const st = (await get('DaemonSet', 'agent'))?.status as Record<string, number> | undefined;
      return ps.map((p) => p.spec.nodeName).sort().join() === 'n1,n2' && st?.numberReady === 2 && st.desiredNumberScheduled === 2 && st.numberAvailable === 2;
    });
    console.log(`new node got its DaemonSet pod (Ready, status updated) in ${Date.now() - t1} ms`);

    // n2 stops matching: its pod goes.
    await store.patch('Node', '', 'n2', (n) => {
      n.metadata.labels = { ...n.metadata.labels, role: 'core' };
      return n;
    });
    await waitFor('pod on n2 removed', async () => (await pods((p) => ownedBy(p, ds.metadata.uid))).map((p) => p.spec.nodeName).join() === 'n1');
    await store.patch('Node', '', 'n2', (n) => {
      n.metadata.labels = { ...n.metadata.labels, role: 'edge' };
      return n;
    });
    await waitFor('pod back on n2', async () => (await pods((p) => ownedBy(p, ds.metadata.uid) && p.status?.phase === 'Running')).length === 2);

    // Rolling update to a new image: every pod replaced, never both gone at once (maxUnavailable 1).
    const t2 = Date.now();
    const oldNames = new Set((await pods((p) => ownedBy(p, ds.metadata.uid))).map((p) => p.metadata.name));
    await store.patch('DaemonSet', 'default', 'agent', (o) => {
      (o.spec as any).template.spec.containers[0].image = 'busybox:2';
      return o;
    });
    let minRunning = 2;
    await waitFor('rolled to busybox:2', async () => {
      const ps = await pods((p) => ownedBy(p, ds.metadata.uid));
      minRunning = Math.min(minRunning, ps.filter((p) => p.status?.phase === 'Running').length);
      const st = (await get('DaemonSet', 'agent'))?.status as Record<string, number> | undefined;
      return ps.length === 2 && ps.every((p) => !oldNames.has(p.metadata.name) && p.spec.containers[0]!.image === 'busybox:2' && p.status?.phase === 'Running') && st?.updatedNumberScheduled === 2 && st.numberAvailable === 2 && st.observedGeneration === 2;
    });
    console.log(`rolling update of 2 daemon pods in ${Date.now() - t2} ms (min running during update: ${minRunning})`);
    assert.ok(minRunning >= 1, `both pods were down at once`);

    const evs = await eventReasons('agent');
    assert.ok(evs.includes('SuccessfulCreate') && evs.includes('SuccessfulDelete'), String(evs));

    // Deleting the DaemonSet: the garbage collector removes its pods.
    const t3 = Date.now();
    await store.delete('DaemonSet', 'default', 'agent');
    await waitFor('daemon pods collected', async () => (await pods((p) => ownedBy(p, ds.metadata.uid))).length === 0);
    console.log(`DaemonSet deletion cascaded to its pods in ${Date.now() - t3} ms`);
  });

  test('Job: completions 3, parallelism 2 → Complete; finished pods are kept', async () => {
    const t0 = Date.now();
    const job = await store.create(jobManifest('ok', { completions: 3, parallelism: 2, backoffLimit: 1, outcome: 'succeed' }));
    const done = await waitFor('job ok Complete', async () => {
      const j = await get('Job', 'ok');
      return (j?.status as any)?.conditions?.some((c: any) => c.type === 'Complete' && c.status === 'True') ? j : undefined;
    });
    console.log(`Job (3 completions, parallelism 2) complete in ${Date.now() - t0} ms`);
    const st = done.status as any;
    assert.equal(st.succeeded, 3);
    assert.equal(st.active, 0);
    assert.ok(st.completionTime && st.startTime);
    const ps = await pods((p) => ownedBy(p, job.metadata.uid));
    assert.equal(ps.length, 3);
    assert.ok(ps.every((p) => p.status?.phase === 'Succeeded' && p.metadata.labels?.['job-name'] === 'ok' && p.metadata.labels?.['controller-uid'] === job.metadata.uid));
    await waitFor('events SuccessfulCreate and Completed', async () => {
      const evs = await eventReasons('ok');
      return evs.includes('SuccessfulCreate') && evs.includes('Completed');
    });
  });

  test('Job: failing pods, restartPolicy Never, backoffLimit 2 → 3 failed pods, Failed/BackoffLimitExceeded', async () => {
    const t0 = Date.now();
    const job = await store.create(jobManifest('bad', { completions: 1, parallelism: 1, backoffLimit: 2, outcome: 'fail' }));
    const failed = await waitFor('job bad Failed', async () => {
      const j = await get('Job', 'bad');
      return (j?.status as any)?.conditions?.some((c: any) => c.type === 'Failed' && c.status === 'True') ? j : undefined;
    });
    console.log(`failing Job gave up after backoffLimit in ${Date.now() - t0} ms`);
    const cond = (failed.status as any).conditions.find((c: any) => c.type === 'Failed');
    assert.equal(cond.reason, 'BackoffLimitExceeded');
    assert.equal((failed.status as any).failed, 3);
    // No more pods are started after that.
    await new Promise((r) => setTimeout(r, 300));
    const ps = await pods((p) => ownedBy(p, job.metadata.uid));
    assert.equal(ps.length, 3);
    assert.ok(ps.every((p) => p.status?.phase === 'Failed'));
    await waitFor('event BackoffLimitExceeded', async () => (await eventReasons('bad')).includes('BackoffLimitExceeded'));
  });

  test('Job ttlSecondsAfterFinished 0: the Job is deleted once complete, and its pods with it', async () => {
    const t0 = Date.now();
    const job = await store.create(jobManifest('ttl', { completions: 1, parallelism: 1, backoffLimit: 0, outcome: 'succeed', ttl: 0 }));
    await waitFor('job ttl gone with its pods', async () => !(await get('Job', 'ttl')) && (await pods((p) => ownedBy(p, job.metadata.uid))).length === 0);
    console.log(`ttl Job done, deleted and collected in ${Date.now() - t0} ms`);
  });

  test('garbage collector cascades Deployment → ReplicaSet → Pod', async () => {
    const dep = await store.create(
      manifest({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web', namespace: 'default' },
        spec: { replicas: 0, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'x' }] } } },
      }),
    );
    const rs = await store.create(
      manifest({
        apiVersion: 'apps/v1',
        kind: 'ReplicaSet',
        metadata: { name: 'web-1', namespace: 'default', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: dep.metadata.uid!, controller: true }] },
        spec: { replicas: 0, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'x' }] } } },
      }),
    );
    await store.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web-1-abcde', namespace: 'default', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-1', uid: rs.metadata.uid!, controller: true }] },
      spec: { containers: [{ name: 'c', image: 'x' }] },
      status: { phase: 'Pending' },
    });
    // A pod whose owner lives on is left alone; so is one owned by an unknown kind.
    await store.create({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'foreign', namespace: 'default', ownerReferences: [{ apiVersion: 'example.com/v1', kind: 'Widget', name: 'w', uid: 'w-uid' }] },
      spec: { containers: [{ name: 'c', image: 'x' }] },
      status: { phase: 'Pending' },
    });
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(await get('ReplicaSet', 'web-1'));
    assert.ok(await get('Pod', 'web-1-abcde'));

    const t0 = Date.now();
    await store.delete('Deployment', 'default', 'web');
    await waitFor('cascade', async () => !(await get('ReplicaSet', 'web-1')) && !(await get('Pod', 'web-1-abcde')));
    console.log(`Deployment → ReplicaSet → Pod cascade in ${Date.now() - t0} ms`);
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(await get('Pod', 'foreign'), 'a pod owned by an unknown kind must not be collected');
  });
});
