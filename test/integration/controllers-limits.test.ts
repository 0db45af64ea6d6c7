/**
 * `replicas` at the cap (10,000) as an attacker or a typo would set it: the ReplicaSet controller must
 * stop at the next step when the Deployment is deleted or scaled down, and the controllers must let the
 * server stop at once whatever they are doing (SIGTERM within 10 s). Real LevelDB store, the real runner
 * with the Deployment and ReplicaSet controllers.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { parseObject } from '../../src/api/validate.js';
import { MAX_REPLICAS, countsAbove, type Deployment } from '../../src/api/workloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { deploymentController } from '../../server/controllers/deployment.js';
import { garbageCollector } from '../../server/controllers/gc.js';
import { replicaSetController } from '../../server/controllers/replicaset.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { LevelStore } from '../../server/store/level.js';
import { waitFor } from '../helpers/cluster.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

function deployment(name: string, replicas: number): Deployment {
  return parseObject({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'main', image: 'busybox' }] } },
    },
  }).object as Deployment;
}

describe('controllers under replicas at the cap', () => {
  let dir: string;
  let store: LevelStore;
  let runner: ControllerRunner | undefined;

  const start = async (maxReplicas?: number) => {
    const events = new EventRecorder(store, silentLogger);
    const deps = { store, events, logger: silentLogger, now: () => Date.now(), maxReplicas };
    runner = new ControllerRunner({ store, logger: silentLogger, controllers: [deploymentController(deps), replicaSetController(deps), garbageCollector(deps)], resyncMs: 500 });
    await runner.start();
  };
  const pods = async () => (await store.list('Pod', 'default')).items.length;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-ctl-limits-'));
    store = await LevelStore.open({ path: join(dir, 'db') });
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  });
  afterEach(async () => {
    await runner?.stop();
    runner = undefined;
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('deleting the Deployment stops the ReplicaSet controller at its next step', async () => {
    await start();
    await store.create(deployment('huge', MAX_REPLICAS));
    await waitFor('pods being created', async () => (await pods()) >= 50);
    await store.delete('Deployment', 'default', 'huge');
    const atDelete = await pods();
    // Time for hundreds more creations if it went on (and for several resyncs of the ReplicaSet).
    await settle(1500);
    const later = await pods();
    assert.ok(later - atDelete <= 2, `no pods created after the Deployment was deleted (${atDelete} → ${later})`);
    assert.ok(later < MAX_REPLICAS);
  });

  test('scaling down in the middle of a 10,000-pod scale-up converges to the new count without finishing the old one', async () => {
    await start();
    await store.create(deployment('scaled', MAX_REPLICAS));
    await waitFor('pods being created', async () => (await pods()) >= 50);
    await store.patch('Deployment', 'default', 'scaled', (d) => {
      d.spec.replicas = 3;
      return d;
    });
    const active = async () => (await store.list('Pod', 'default')).items.filter((p) => !p.metadata.deletionTimestamp).length;
    const n = await waitFor('3 pods', async () => ((await active()) === 3 ? 3 : undefined), 60_000);
    assert.equal(n, 3);
  });

  test('stopping the controllers while a 10,000-pod scale-up runs returns at once and writes nothing after', async () => {
    await start();
    await store.create(deployment('busy', MAX_REPLICAS));
    await waitFor('pods being created', async () => (await pods()) >= 50);
    const t0 = Date.now();
    const stopped = runner!.stop();
    const inTime = await Promise.race([stopped.then(() => true), settle(10_000).then(() => false)]);
    const ms = Date.now() - t0;
    runner = undefined;
    assert.ok(inTime, 'the runner stops within the 10 s a SIGTERM allows');
    console.log(`controllers stopped ${ms} ms after stop() during a 10,000-replica scale-up`);
    const atStop = await pods();
    await settle(500);
    assert.equal(await pods(), atStop, 'no pod written after stop() returned');
  });

  test('stopping while the garbage collector deletes the pods of a deleted 10,000-replica Deployment returns at once', async () => {
    await start();
    await store.create(deployment('collected', MAX_REPLICAS));
    await waitFor('many pods', async () => (await pods()) >= 600, 60_000);
    await store.delete('Deployment', 'default', 'collected');
    const atDelete = await pods();
    await waitFor('collection under way', async () => (await pods()) < atDelete - 20, 30_000, 10);
    const t0 = Date.now();
    const inTime = await Promise.race([runner!.stop().then(() => true), settle(10_000).then(() => false)]);
    runner = undefined;
    assert.ok(inTime, 'the runner stops within the 10 s a SIGTERM allows');
    console.log(`controllers stopped ${Date.now() - t0} ms after stop() during garbage collection`);
    const atStop = await pods();
    await settle(500);
    assert.equal(await pods(), atStop, 'no pod deleted after stop() returned');
  });

  test('a ReplicaSet above the server\'s --max-replicas runs only that many pods, with a Warning naming the limit', async () => {
    await start(20);
    await store.create(deployment('capped', 50));
    await waitFor('20 pods', async () => (await pods()) === 20);
    await settle(700);
    assert.equal(await pods(), 20, 'and no more');
    const warning = (await store.list('Event', 'default')).items.find((e) => e.reason === 'ReplicasCapped');
    assert.ok(warning);
    assert.match(warning.message, /limit of 20/);
  });

  test('countsAbove names each count field above a server cap (for the admission 422)', () => {
    const job = { kind: 'Job', spec: { completions: 500, parallelism: 50 } };
    assert.deepEqual(countsAbove(job, 100), [{ field: 'spec.completions', message: "must be at most 100 (the server's --max-replicas)" }]);
    assert.deepEqual(countsAbove({ kind: 'Deployment', spec: { replicas: 100 } }, 100), []);
    assert.deepEqual(countsAbove({ kind: 'ReplicaSet', spec: { replicas: 101 } }, 100).map((c) => c.field), ['spec.replicas']);
  });
});
