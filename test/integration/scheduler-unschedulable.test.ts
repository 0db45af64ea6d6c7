/**
 * Pods that fit nowhere wait for room instead of being decided again on every change (kube-scheduler's
 * unschedulable pods), on a real LevelDB store: a few hundred pods created with no node are each found
 * unschedulable about once, not once per pod created after them; and each thing that can make room
 * still places them at once, long before the periodic retry: a node added, a bound pod deleted, a pod
 * bound that a required pod affinity asks for.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { silentLogger } from '../../src/util/logger.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { Scheduler } from '../../server/scheduler/scheduler.js';
import { LevelStore } from '../../server/store/level.js';
import { waitFor as waitUntil } from '../helpers/cluster.js';

/** Long enough that nothing in these tests is placed by the periodic retry. */
const RESYNC_MS = 120_000;

/** Polled every 25 ms: the placements here take tens of milliseconds. */
const waitFor = <T>(what: string, fn: () => Promise<T | undefined | false>) => waitUntil(what, fn, 15_000, 25);

function node(name: string, pods = '110'): Node {
  const alloc = { cpu: '8', memory: '16Gi', pods };
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } }, spec: {}, status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: 'True' }] } };
}

/** A pod as a client sends it (the store fills in nothing the scheduler reads). */
function pod(name: string, extra: Pick<Pod['spec'], 'affinity'> = {}, labels: Record<string, string> = { app: 'web' }): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels }, spec: { containers: [{ name: 'main', image: 'busybox' }], ...extra }, status: { phase: 'Pending' } } as Pod;
}

const scheduledReason = (p: Pod | undefined) => p?.status?.conditions?.find((c) => c.type === 'PodScheduled');

describe('scheduler: pods that fit nowhere wait for room', () => {
  let dir: string;
  let store: LevelStore;
  let scheduler: Scheduler;
  const attempts = { scheduled: 0, unschedulable: 0 };
  const get = (name: string) => store.get('Pod', 'default', name) as Promise<Pod | undefined>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-sched-wait-'));
    store = await LevelStore.open({ path: join(dir, 'store') });
    scheduler = new Scheduler({ store, events: new EventRecorder(store, silentLogger), logger: silentLogger, resyncMs: RESYNC_MS, metrics: { attempt: (r) => void attempts[r]++ } });
    await scheduler.start();
  });
  // Each test starts from an empty fleet, whatever the one before left.
  afterEach(async () => {
    for (const p of (await store.list('Pod')).items) await store.delete('Pod', 'default', p.metadata.name);
    for (const n of (await store.list('Node')).items) await store.delete('Node', '', n.metadata.name);
  });
  after(async () => {
    await scheduler?.stop();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('300 pods with no node: each decided about once; a node added places all of them at once', async () => {
    const N = 300;
    for (let i = 0; i < N; i++) await store.create(pod(`p${i}`));
    await waitFor('every pod marked unschedulable', async () => {
      const { items } = await store.list('Pod');
      return items.filter((p) => scheduledReason(p)?.status === 'False').length === N;
    });
    // Created one after the other, each arrival used to re-decide every pod already waiting (~N²/2).
    assert.ok(attempts.unschedulable <= 2 * N, `${attempts.unschedulable} unschedulable decisions for ${N} pods`);
    const before = attempts.unschedulable;

    const t0 = Date.now();
    await store.create(node('n1', '1000'));
    await waitFor('every pod bound to n1', async () => (await store.list('Pod')).items.every((p) => p.spec.nodeName === 'n1'));
    assert.ok(Date.now() - t0 < RESYNC_MS / 10, 'placed on the node event, not by the periodic retry');
    assert.equal(attempts.scheduled, N);
    assert.equal(attempts.unschedulable, before, 'no pod was found unschedulable again');
  });

  test('a bound pod deleted makes room: the pod waiting for that room is placed at once', async () => {
    await store.create(node('tiny', '1'));
    await store.create(pod('first'));
    await waitFor('first bound', async () => (await get('first'))?.spec.nodeName === 'tiny');
    await store.create(pod('second'));
    await waitFor('second unschedulable (too many pods)', async () => scheduledReason(await get('second'))?.message?.includes('Too many pods'));
    await store.delete('Pod', 'default', 'first');
    await waitFor('second bound once first is gone', async () => (await get('second'))?.spec.nodeName === 'tiny');
  });

  test('a pod that requires another beside it is placed once that one is bound', async () => {
    await store.create(node('host-a'));
    const wantsDb = pod('cache', {
      affinity: { podAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'db' } }, topologyKey: 'kubernetes.io/hostname' }] } },
    });
    await store.create(wantsDb);
    await waitFor('cache unschedulable (no db yet)', async () => scheduledReason(await get('cache'))?.status === 'False');
    await store.create(pod('db', {}, { app: 'db' }));
    await waitFor('db bound', async () => (await get('db'))?.spec.nodeName === 'host-a');
    await waitFor('cache bound beside db', async () => (await get('cache'))?.spec.nodeName === 'host-a');
  });

  test('a waiting pod changed by its owner (a toleration added) is tried again at once', async () => {
    const tainted = node('tainted');
    tainted.spec = { taints: [{ key: 'dedicated', value: 'edge', effect: 'NoSchedule' }] };
    await store.create(tainted);
    await store.create(pod('picky'));
    await waitFor('picky unschedulable (taint)', async () => scheduledReason(await get('picky'))?.message?.includes('untolerated taint'));
    await store.patch('Pod', 'default', 'picky', (p) => {
      p.spec.tolerations = [{ key: 'dedicated', operator: 'Equal', value: 'edge', effect: 'NoSchedule' }];
      return p;
    });
    await waitFor('picky bound once it tolerates the taint', async () => (await get('picky'))?.spec.nodeName === 'tainted');
  });
});

test('a node added while a pass is still writing its "no room" notes places every pod at once (no note outlives the event)', async () => {
  // 900 pods waiting before the scheduler starts: its first pass writes their notes 256 at a time, and the
  // node lands between two chunks.
  const dir = await mkdtemp(join(tmpdir(), 'drover-sched-race-'));
  const store = await LevelStore.open({ path: join(dir, 'store') });
  const N = 900;
  await Promise.all(Array.from({ length: N }, (_, i) => store.create(pod(`r${i}`))));
  let added = false;
  const w = store.watch(
    store.revision(),
    (e) => {
      if (added || e.object.kind !== 'Pod' || scheduledReason(e.object as Pod)?.status !== 'False') return;
      added = true;
      void store.create(node('late', '1000'));
    },
    { kinds: ['Pod'] },
  );
  const scheduler = new Scheduler({ store, events: new EventRecorder(store, silentLogger), logger: silentLogger, resyncMs: RESYNC_MS });
  try {
    await scheduler.start();
    await waitFor('every pod bound to the late node', async () => (await store.list('Pod')).items.filter((p) => p.spec.nodeName === 'late').length === N);
  } finally {
    w.close();
    await scheduler.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a pod deleted while a pass reads the pod list is not brought back from that list to take room from the next pod', async () => {
  // The list the pass reads is older than the delete the watch has already delivered (a list read while the
  // delete committed; a list cache behind the watch). The deleted pod must not become a waiting pod again:
  // placed on every later pass, it held the only slot of n1 and the next pod was found unschedulable.
  const dir = await mkdtemp(join(tmpdir(), 'drover-sched-gone-'));
  const store = await LevelStore.open({ path: join(dir, 'store') });
  let duringList: (() => Promise<void>) | undefined;
  const lagging = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'list') {
        return async (kind: string, namespace?: string) => {
          const listed = await target.list(kind, namespace);
          if (kind === 'Pod' && duringList) {
            const hook = duringList;
            duringList = undefined;
            await hook();
          }
          return listed;
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const scheduler = new Scheduler({ store: lagging, events: new EventRecorder(store, silentLogger), logger: silentLogger, resyncMs: RESYNC_MS });
  try {
    await store.create(node('n1', '1'));
    await store.create(pod('gone'));
    duringList = async () => void (await store.delete('Pod', 'default', 'gone'));
    await scheduler.start();
    await waitFor('gone deleted during the first pass', async () => duringList === undefined && (await store.get('Pod', 'default', 'gone')) === undefined);
    await store.create(pod('next'));
    await waitFor('next bound to n1', async () => ((await store.get('Pod', 'default', 'next')) as Pod | undefined)?.spec.nodeName === 'n1');
  } finally {
    await scheduler.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
