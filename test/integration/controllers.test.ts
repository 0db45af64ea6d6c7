import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { REVISION_ANNOTATION, isControlledBy, rollbackTemplate } from '../../src/api/revisions.js';
import { parseObject } from '../../src/api/validate.js';
import type { Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { isNotFound } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { deploymentController } from '../../server/controllers/deployment.js';
import { replicaSetController } from '../../server/controllers/replicaset.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { Scheduler } from '../../server/scheduler/scheduler.js';
import { LevelStore } from '../../server/store/level.js';
import { isKind, type Watch } from '../../server/store/types.js';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last as T;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * A fake kubelet (stands in for an agent): every pod bound to a node turns Running + Ready, unless
 * its image contains "broken".
 */
function fakeKubelet(store: LevelStore): Watch {
  return store.watch(
    store.revision(),
    (e) => {
      if (e.type === 'DELETED') return;
      if (!isKind(e.object, 'Pod')) return;
      const p = e.object;
      if (!p.spec.nodeName || p.status?.phase !== 'Pending' || p.spec.containers.some((c) => c.image.includes('broken'))) return;
      const ts = new Date().toISOString();
      void store
        .patch('Pod', p.metadata.namespace!, p.metadata.name, (pod) => {
          if (pod.metadata.uid !== p.metadata.uid || pod.status?.phase !== 'Pending') return undefined;
          pod.status = {
            phase: 'Running',
            startTime: ts,
            conditions: [
              { type: 'PodScheduled', status: 'True', lastTransitionTime: ts },
              { type: 'Ready', status: 'True', lastTransitionTime: ts },
            ],
            containerStatuses: pod.spec.containers.map((c) => ({ name: c.name, image: c.image, ready: true, restartCount: 0, state: 'running' as const, startedAt: ts })),
          };
          return pod;
        })
        .catch((err: unknown) => {
          // Deleted (scaled down) before it started: nothing to run.
          if (!isNotFound(err)) throw err;
        });
    },
    { kinds: ['Pod'] },
  );
}


/** A node with room to spare, Ready. */
function readyNode(name: string): Node {
  const alloc = { cpu: '8', memory: '16Gi', pods: '110' };
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name } }, spec: {}, status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: 'True' }] } };
}

interface ControlPlane {
  store: LevelStore;
  stop(): Promise<void>;
}

/**
 * A real store holding the default namespace and `node`, a kubelet stand-in made by `kubelet`, the
 * scheduler and the Deployment + ReplicaSet controllers.
 */
async function startControlPlane(prefix: string, node: Node, kubelet: (store: LevelStore) => Watch): Promise<ControlPlane> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const store = await LevelStore.open({ path: join(dir, 'store') });
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  await store.create(node);
  const events = new EventRecorder(store, silentLogger);
  const deps = { store, events, logger: silentLogger, now: () => Date.now() };
  const watch = kubelet(store);
  const scheduler = new Scheduler({ store, events, logger: silentLogger, resyncMs: 500 });
  await scheduler.start();
  const runner = new ControllerRunner({ store, logger: silentLogger, controllers: [deploymentController(deps), replicaSetController(deps)], resyncMs: 1000 });
  await runner.start();
  return {
    store,
    async stop() {
      await runner.stop();
      await scheduler.stop();
      watch.close();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('deployment + replicaset controllers on a real store and scheduler', () => {
  let plane: ControlPlane;
  let store: LevelStore;

  before(async () => {
    plane = await startControlPlane('drover-controllers-', readyNode('n1'), fakeKubelet);
    store = plane.store;
  });

  after(() => plane?.stop());

  const getDeploy = async () => (await store.get('Deployment', 'default', 'web'))!;
  const ownedRS = async () => {
    const d = await getDeploy();
    return (await store.list('ReplicaSet', 'default')).items.filter((rs) => isControlledBy(rs, d));
  };
  const podsOf = async (rs?: ReplicaSet) => {
    const all = (await store.list('Pod', 'default')).items;
    return rs ? all.filter((p) => isControlledBy(p, rs)) : all;
  };
  const ready = (p: Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const setSpec = (mutate: (d: Deployment) => void) =>
    store.patch('Deployment', 'default', 'web', (d) => {
      mutate(d);
      return d;
    });
  /** Settled: the RS for the current template has n Ready pods, nothing else exists, status says so. */
  const settled = (n: number, image: string) =>
    waitFor(`${n} ready pods on ${image}`, async () => {
      const d = await getDeploy();
      const pods = await podsOf();
      const ok =
        pods.length === n &&
        pods.every((p) => ready(p) && p.spec.containers[0]!.image === image) &&
        d.status?.availableReplicas === n &&
        d.status?.updatedReplicas === n &&
        d.status?.replicas === n &&
        d.status?.observedGeneration === d.metadata.generation &&
        d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'NewReplicaSetAvailable';
      return ok ? { d, pods } : undefined;
    });

  test('a Deployment of 3 gets one ReplicaSet and 3 Ready pods; status reports 3 available', async () => {
    const manifest = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'default' },
      spec: {
        replicas: 3,
        selector: { matchLabels: { app: 'web' } },
        template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'main', image: 'img:1' }] } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      },
    };
    await store.create(parseObject(manifest).object);
    const { d, pods } = await settled(3, 'img:1');
    const rss = await ownedRS();
    assert.equal(rss.length, 1);
    const rs = rss[0]!;
    assert.match(rs.metadata.name, /^web-[bcdfghjklmnpqrstvwxz2456789]{10}$/);
    assert.equal(rs.metadata.annotations?.[REVISION_ANNOTATION], '1');
    assert.equal(d.metadata.annotations?.[REVISION_ANNOTATION], '1');
    assert.equal(rs.status?.readyReplicas, 3);
    for (const p of pods) {
      assert.match(p.metadata.name, new RegExp(`^${rs.metadata.name}-[a-z0-9]{5}$`));
      assert.equal(p.metadata.labels?.['pod-template-hash'], rs.metadata.labels?.['pod-template-hash']);
      assert.equal(p.spec.nodeName, 'n1');
    }
    assert.equal(d.status?.conditions?.find((c) => c.type === 'Available')?.status, 'True');
    const events = (await store.list('Event', 'default')).items;
    assert.ok(events.some((e) => e.reason === 'ScalingReplicaSet' && e.message === `Scaled up replica set ${rs.metadata.name} to 3`), JSON.stringify(events.map((e) => e.message)));
    assert.ok(events.some((e) => e.reason === 'SuccessfulCreate'));
  });

  test('changing the image rolls to a new ReplicaSet; the old one ends at 0', async () => {
    const [old] = await ownedRS();
    let maxPods = 0;
    let minReady = Infinity;
    const sampler = setInterval(() => {
      void podsOf().then((ps) => {
        maxPods = Math.max(maxPods, ps.length);
        minReady = Math.min(minReady, ps.filter(ready).length);
      });
    }, 5);
    await setSpec((d) => (d.spec.template.spec.containers[0]!.image = 'img:2'));
    const { d } = await settled(3, 'img:2').finally(() => clearInterval(sampler));
    const rss = await ownedRS();
    assert.equal(rss.length, 2);
    const fresh = rss.find((r) => r.metadata.uid !== old!.metadata.uid)!;
    assert.equal(rss.find((r) => r.metadata.uid === old!.metadata.uid)!.spec.replicas, 0);
    assert.equal(fresh.spec.replicas, 3);
    assert.equal(fresh.metadata.annotations?.[REVISION_ANNOTATION], '2');
    assert.equal(d.metadata.annotations?.[REVISION_ANNOTATION], '2');
    assert.ok(maxPods <= 4, `max pods seen ${maxPods}`);
    assert.ok(minReady >= 3, `min ready seen ${minReady}`);
  });

  test('scale to 5, then to 1', async () => {
    await setSpec((d) => (d.spec.replicas = 5));
    await settled(5, 'img:2');
    await setSpec((d) => (d.spec.replicas = 1));
    await settled(1, 'img:2');
  });

  test('a deleted pod is replaced; a Failed pod is replaced', async () => {
    const [p] = await podsOf();
    await store.delete('Pod', 'default', p!.metadata.name);
    const { pods } = await settled(1, 'img:2');
    assert.notEqual(pods[0]!.metadata.name, p!.metadata.name);
    await store.patch('Pod', 'default', pods[0]!.metadata.name, (cur) => ({ ...cur, status: { ...(cur.status as object), phase: 'Failed', conditions: [] } }));
    const after = await settled(1, 'img:2');
    assert.notEqual(after.pods[0]!.metadata.name, pods[0]!.metadata.name);
  });

  test('undo with rollbackTemplate reuses the revision-1 ReplicaSet as revision 3', async () => {
    const d = await getDeploy();
    const template = rollbackTemplate(d, await ownedRS());
    assert.equal(template.spec.containers[0]!.image, 'img:1');
    await setSpec((x) => (x.spec.template = template));
    const res = await settled(1, 'img:1');
    const rss = await ownedRS();
    assert.equal(rss.length, 2, 'no third ReplicaSet');
    const cur = rss.find((r) => r.spec.template.spec.containers[0]!.image === 'img:1')!;
    assert.equal(cur.metadata.annotations?.[REVISION_ANNOTATION], '3');
    assert.equal(res.d.metadata.annotations?.[REVISION_ANNOTATION], '3');
  });

  test('a broken update exceeds its progress deadline; the old pods keep serving', async () => {
    await setSpec((d) => {
      d.spec.replicas = 3;
      d.spec.progressDeadlineSeconds = 1;
    });
    await settled(3, 'img:1');
    await setSpec((d) => (d.spec.template.spec.containers[0]!.image = 'img:broken'));
    const d = await waitFor('ProgressDeadlineExceeded', async () => {
      const x = await getDeploy();
      return x.status?.conditions?.find((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded') ? x : undefined;
    });
    assert.equal(d.status?.conditions?.find((c) => c.type === 'Progressing')?.status, 'False');
    const pods = await podsOf();
    assert.equal(pods.filter((p) => ready(p) && p.spec.containers[0]!.image === 'img:1').length, 3, 'maxUnavailable 0: all old pods serve');
    assert.equal(pods.filter((p) => p.spec.containers[0]!.image === 'img:broken').length, 1, 'one surge pod');
    // The Warning event is recorded right after the status write.
    await waitFor('ProgressDeadlineExceeded event', async () =>
      (await store.list('Event', 'default')).items.some((e) => e.reason === 'ProgressDeadlineExceeded'),
    );
  });

  test('history beyond revisionHistoryLimit is cleaned up', async () => {
    await setSpec((d) => {
      d.spec.revisionHistoryLimit = 1;
      d.spec.template.spec.containers[0]!.image = 'img:4';
    });
    await settled(3, 'img:4');
    await waitFor('history trimmed to 1 old RS', async () => (await ownedRS()).length === 2);
  });

  test('an invalid Deployment in the store gets an InvalidObject Warning and is left alone; fixed, it rolls out', async () => {
    // Written straight into the store, as an object stored before a schema change would be.
    const manifest = parseObject({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'odd', namespace: 'lab' },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'odd' } },
        template: { metadata: { labels: { app: 'odd' } }, spec: { containers: [{ name: 'main', image: 'img:odd' }] } },
      },
    }).object as Deployment;
    const broken = structuredClone(manifest) as unknown as ApiObject & { spec: Record<string, unknown> };
    broken.spec.replicas = 'three';
    const stored = await store.create(broken);
    const warning = await waitFor('an InvalidObject event for lab/odd', async () => {
      const evs = (await store.list('Event', 'lab')).items;
      return evs.find((e) => e.reason === 'InvalidObject' && e.involvedObject.name === 'odd');
    });
    assert.equal(warning.type, 'Warning');
    assert.match(warning.message, /invalid Deployment "lab\/odd": spec\.replicas/);
    const rsOf = async () => (await store.list('ReplicaSet', 'lab')).items.filter((rs) => rs.metadata.ownerReferences?.some((r) => r.uid === stored.metadata.uid));
    assert.equal((await rsOf()).length, 0, 'nothing is built from an invalid Deployment');

    // Fixing it is a change to the object, which brings the controller back.
    await store.update({ ...manifest, metadata: { ...manifest.metadata, resourceVersion: undefined } });
    await waitFor('a ready pod of lab/odd', async () => {
      const pods = (await store.list('Pod', 'lab')).items;
      return pods.length === 1 && pods.every(ready) && pods[0]!.spec.containers[0]!.image === 'img:odd';
    });
    assert.equal((await rsOf()).length, 1);
  });
});

describe('rollover while the only node is offline (real store, scheduler, deployment + replicaset controllers)', () => {
  let plane: ControlPlane;
  let store: LevelStore;
  /** While false the node's kubelet is cut off: it starts nothing. */
  let online = true;
  /** Images whose containers the kubelet started, in order. */
  const started: string[] = [];

  const setNodeReady = (ready: boolean) =>
    store.patch('Node', '', 'edge', (n) => {
      n.status = { ...n.status, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date().toISOString() }] };
      return n;
    });
  const setPodReady = (p: Pod, ready: boolean) =>
    store.patch('Pod', 'default', p.metadata.name, (cur) => {
      if (cur.metadata.uid !== p.metadata.uid) return undefined;
      const ts = new Date().toISOString();
      cur.status = { ...cur.status, phase: cur.status?.phase ?? 'Running', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: ts }] };
      return cur;
    });
  const pods = async () => (await store.list('Pod', 'default')).items;
  const image = (o: { spec: { containers: Array<{ image: string }> } }) => o.spec.containers[0]!.image;
  const rsOf = async (img: string) => (await store.list('ReplicaSet', 'default')).items.find((rs) => image(rs.spec.template) === img);
  const setImage = (img: string) =>
    store.patch('Deployment', 'default', 'app', (d) => {
      d.spec.template.spec.containers[0]!.image = img;
      return d;
    });

  /** Starts bound Pending pods while online; records each image it starts. */
  const kubelet = (s: LevelStore): Watch =>
    s.watch(
      s.revision(),
      (e) => {
        if (e.type === 'DELETED' || !isKind(e.object, 'Pod')) return;
        const p = e.object;
        if (!online || !p.spec.nodeName || p.status?.phase !== 'Pending') return;
        void s
          .patch('Pod', 'default', p.metadata.name, (cur) => {
            if (cur.metadata.uid !== p.metadata.uid || cur.status?.phase !== 'Pending') return undefined;
            started.push(image(cur));
            const ts = new Date().toISOString();
            cur.status = { phase: 'Running', startTime: ts, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }] };
            return cur;
          })
          .catch((err: unknown) => {
            if (!isNotFound(err)) throw err;
          });
      },
      { kinds: ['Pod'] },
    );

  before(async () => {
    plane = await startControlPlane('drover-rollover-', readyNode('edge'), kubelet);
    store = plane.store;
  });

  after(() => plane?.stop());

  test('revision 2 (Pending while offline) is removed when revision 3 arrives; the returning node starts only revision 3', async () => {
    // 2 replicas, the default strategy (25%: maxSurge 1, maxUnavailable 0), as in the field report.
    await store.create(
      parseObject({
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'app', namespace: 'default' },
        spec: { replicas: 2, selector: { matchLabels: { app: 'app' } }, template: { metadata: { labels: { app: 'app' } }, spec: { containers: [{ name: 'main', image: 'img:1' }] } } },
      }).object,
    );
    await waitFor('2 running pods of revision 1', async () => {
      const ps = await pods();
      return ps.length === 2 && ps.every((p) => p.status?.phase === 'Running');
    });

    // The link goes down: the node turns NotReady and its pods lose Ready (as the node lifecycle does).
    online = false;
    await setNodeReady(false);
    for (const p of await pods()) await setPodReady(p, false);

    await setImage('img:2');
    await waitFor('a Pending pod of revision 2', async () => (await pods()).some((p) => image(p) === 'img:2' && !p.spec.nodeName));
    await setImage('img:3');
    await waitFor('revision 2 scaled to 0 with its pod gone, revision 3 surging', async () => {
      const [r2, r3, ps] = [await rsOf('img:2'), await rsOf('img:3'), await pods()];
      return r2?.spec.replicas === 0 && r3?.spec.replicas === 1 && !ps.some((p) => image(p) === 'img:2');
    });
    assert.deepEqual((await pods()).filter((p) => image(p) === 'img:1').length, 2, 'revision 1 keeps its pods while nothing newer is available');

    // The link is back: the node is Ready, revision 1's containers report Ready again.
    online = true;
    for (const p of await pods()) if (image(p) === 'img:1') await setPodReady(p, true);
    await setNodeReady(true);
    await waitFor('2 running pods of revision 3 and nothing else', async () => {
      const ps = await pods();
      return ps.length === 2 && ps.every((p) => image(p) === 'img:3' && p.status?.phase === 'Running');
    }, 30_000);
    assert.deepEqual(started, ['img:1', 'img:1', 'img:3', 'img:3'], 'containers started, in order');
  });
});
