/**
 * The garbage collector knows from its watch which owners are alive: a pod change whose owners it saw
 * created reads nothing from the store, and a pod whose owner is gone is still collected. Real LevelDB
 * store, the real runner, the collector alone (no ReplicaSet controller: the test writes the pods).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Pod } from '../../src/api/pod.js';
import { parseObject } from '../../src/api/validate.js';
import type { ReplicaSet } from '../../src/api/workloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { garbageCollector } from '../../server/controllers/gc.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { LevelStore } from '../../server/store/level.js';
import type { Store } from '../../server/store/types.js';
import { waitFor } from '../helpers/cluster.js';

let dir: string;
let store: LevelStore;
let runner: ControllerRunner;
let collector: ReturnType<typeof garbageCollector>;
const gets: string[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-gc-owners-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
  // The collector's reads, counted.
  const counted = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'get') return (kind: string, ns: string, name: string) => (gets.push(`${kind} ${ns}/${name}`), target.get(kind, ns, name));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Store;
  const deps = { store: counted, events: new EventRecorder(store, silentLogger), logger: silentLogger, now: () => Date.now() };
  collector = garbageCollector(deps);
  runner = new ControllerRunner({ store, logger: silentLogger, controllers: [collector], resyncMs: 3600_000 });
  await runner.start();
});
after(async () => {
  await runner.stop();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

function replicaSet(name: string): ReplicaSet {
  return parseObject({
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name, namespace: 'default' },
    spec: { replicas: 0, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } },
  }).object as ReplicaSet;
}

const pod = (name: string, owner: { name: string; uid: string }): Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app: owner.name }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: owner.name, uid: owner.uid, controller: true }] },
  spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 10, containers: [{ name: 'c', image: 'busybox' }] },
});

test('pods of an owner seen alive are looked at without a read; once the owner goes, they go', async () => {
  const rs = await store.create(replicaSet('web'));
  const owner = { name: 'web', uid: rs.metadata.uid! };
  await settle(300); // the first pass's sweep is done
  gets.length = 0;
  for (let i = 0; i < 20; i++) await store.create(pod(`web-${i}`, owner));
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 20; i++) await store.patch('Pod', 'default', `web-${i}`, (p) => ({ ...p, status: { phase: 'Running', message: `round ${round}` } }));
  }
  await settle(300);
  assert.deepEqual(gets, [], '80 pod changes, no read');
  await store.delete('ReplicaSet', 'default', 'web');
  await waitFor('the pods collected', async () => (await store.list('Pod', 'default')).items.length === 0, 10_000, 50);
});

test('a pod naming an owner never seen (gone, or made before the server started) is read and collected', async () => {
  gets.length = 0;
  await store.create(pod('stray', { name: 'old', uid: 'uid-of-a-deleted-rs' }));
  await waitFor('the stray pod collected', async () => !(await store.get('Pod', 'default', 'stray')), 10_000, 50);
  assert.ok(gets.includes('Pod default/stray') && gets.includes('ReplicaSet default/old'), gets.join(', '));
  // An owner of that name made afresh has another uid: its pods are its own, and stay.
  const rs = await store.create(replicaSet('old'));
  await store.create(pod('kept', { name: 'old', uid: rs.metadata.uid! }));
  await settle(300);
  assert.ok(await store.get('Pod', 'default', 'kept'));
});

test('a pod copied to another namespace, still naming the owner by uid, is collected (owners are looked for in the pod\'s namespace)', async () => {
  const rs = await store.create(replicaSet('api'));
  const owner = { name: 'api', uid: rs.metadata.uid! };
  await store.create(pod('api-0', owner));
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' }, status: { phase: 'Active' } });
  const copy = pod('api-copy', owner);
  copy.metadata.namespace = 'other';
  await store.create(copy);
  await waitFor('the copy collected', async () => !(await store.get('Pod', 'other', 'api-copy')), 10_000, 50);
  assert.ok(await store.get('Pod', 'default', 'api-0'), 'the pod in the owner\'s namespace stays');
});

test('after its watch restarts (a deletion may have been missed) the collector reads again', async () => {
  const rs = await store.create(replicaSet('jobs'));
  const owner = { name: 'jobs', uid: rs.metadata.uid! };
  await store.create(pod('jobs-0', owner));
  await settle(300);
  gets.length = 0;
  collector.watchRestarted!();
  await store.patch('Pod', 'default', 'jobs-0', (p) => ({ ...p, status: { phase: 'Running' } }));
  await waitFor('the pod and its owner read', async () => gets.includes('Pod default/jobs-0') && gets.includes('ReplicaSet default/jobs'), 10_000, 50);
});
