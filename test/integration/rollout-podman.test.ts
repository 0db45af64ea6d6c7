import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { REVISION_ANNOTATION, rollbackTemplate } from '../../src/api/revisions.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMG1 = 'localhost/drover-test:1';
const IMG2 = 'localhost/drover-test:2';
const SERVE = "trap 'exit 0' TERM; while true; do sleep 1; done";
const DEPLOY = '/apis/apps/v1/namespaces/default/deployments';
const REPLICAS = 3;
const MAX_UNAVAILABLE = 1;

function manifest(image: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: {
      replicas: REPLICAS,
      selector: { matchLabels: { app: 'web' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: MAX_UNAVAILABLE } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          terminationGracePeriodSeconds: 5,
          containers: [{ name: 'main', image, command: ['sh', '-c', SERVE], resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
        },
      },
    },
  };
}

interface ApiPod {
  metadata: { name: string; labels?: Record<string, string> };
  spec: { containers: Array<{ image: string; command?: string[] }> };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}

const isReady = (p: ApiPod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

describe('Deployment rolling update on a real agent and podman', () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb, IMG1);
    await buildTestImage(sb, IMG2);
    cluster = await startTestServer();
    await cluster.addAgent({ node: 'edge-1', runtime: sb.runtime });
    await waitFor('node edge-1 Ready', async () => {
      const r = await cluster.api('GET', '/api/v1/nodes/edge-1');
      return r.body?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True');
    });
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
  });

  const pods = async (): Promise<ApiPod[]> => {
    const r = await cluster.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dweb');
    assert.equal(r.status, 200, r.text);
    return r.body.items;
  };
  const getDeploy = async (): Promise<Deployment> => (await cluster.api('GET', `${DEPLOY}/web`)).body;
  const replicaSets = async (): Promise<ReplicaSet[]> => (await cluster.api('GET', '/apis/apps/v1/namespaces/default/replicasets')).body.items;

  /** GET, change, PUT; a concurrent status write (409) is retried on a fresh read. */
  async function edit(mutate: (d: Deployment) => void): Promise<Deployment> {
    for (let i = 0; i < 10; i++) {
      const d = await getDeploy();
      mutate(d);
      const r = await cluster.api('PUT', `${DEPLOY}/web`, d);
      if (r.status === 200) return r.body;
      assert.equal(r.status, 409, r.text);
    }
    throw new Error('PUT kept conflicting');
  }

  /** Counts Ready pods through the API every ~100 ms until stopped. */
  function sampleReady(): { stop(): Promise<{ min: number; samples: number }> } {
    let min = Infinity;
    let samples = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        const n = (await pods()).filter(isReady).length;
        min = Math.min(min, n);
        samples++;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    return {
      async stop() {
        running = false;
        await loop;
        return { min, samples };
      },
    };
  }

  /** Rolled out: every pod is Ready on `image`, the status says complete. */
  const rolledOut = (image: string, what: string) =>
    waitFor(
      what,
      async () => {
        const [d, ps] = [await getDeploy(), await pods()];
        const done =
          ps.length === REPLICAS &&
          ps.every((p) => isReady(p) && p.spec.containers[0]!.image === image) &&
          d.status?.observedGeneration === d.metadata.generation &&
          d.status?.updatedReplicas === REPLICAS &&
          d.status?.availableReplicas === REPLICAS &&
          d.status?.replicas === REPLICAS &&
          d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'NewReplicaSetAvailable';
        return done ? { d, ps } : undefined;
      },
      45_000,
      100,
    );

  const containersOn = (image: string) =>
    waitFor(
      `exactly ${REPLICAS} running drover containers from ${image}`,
      async () => {
        const cs = await sb.runtime.list({ [LABELS.managed]: 'true' });
        return cs.length === REPLICAS && cs.every((c) => c.state === 'running' && c.image === image) ? cs : undefined;
      },
      30_000,
      200,
    );

  test('create, roll to :2 without dropping below replicas - maxUnavailable, undo to :1, stall on a broken update', async () => {
    const t0 = Date.now();
    const created = await cluster.api('POST', DEPLOY, manifest(IMG1));
    assert.equal(created.status, 201, created.text);
    await rolledOut(IMG1, '3 ready pods on :1');
    console.log(`initial rollout: 3 pods Ready in ${Date.now() - t0} ms`);
    await containersOn(IMG1);

    // Rolling update to :2.
    const floor = REPLICAS - MAX_UNAVAILABLE;
    let sampler = sampleReady();
    const t1 = Date.now();
    await edit((d) => (d.spec.template.spec.containers[0]!.image = IMG2));
    const rolled = await rolledOut(IMG2, 'all pods on :2');
    const rollMs = Date.now() - t1;
    let seen = await sampler.stop();
    console.log(`rolling update :1 -> :2: ${rollMs} ms, min Ready observed ${seen.min} over ${seen.samples} samples (floor ${floor})`);
    assert.ok(seen.min >= floor, `Ready pods dropped to ${seen.min} (< ${floor})`);
    assert.equal(rolled.d.metadata.annotations?.[REVISION_ANNOTATION], '2');
    const cs = await containersOn(IMG2);
    assert.equal(cs.length, REPLICAS);
    const rss = await replicaSets();
    assert.equal(rss.length, 2);
    assert.deepEqual(rss.map((rs) => [rs.spec.template.spec.containers[0]!.image, rs.spec.replicas]).sort(), [[IMG1, 0], [IMG2, 3]]);
    const events = (await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=web')).body.items as Array<{ reason: string; message: string }>;
    assert.ok(events.some((e) => e.reason === 'ScalingReplicaSet' && /^Scaled down replica set web-\w+ to 0$/.test(e.message)), JSON.stringify(events.map((e) => e.message)));

    // Undo: the previous revision's template goes back into the Deployment.
    sampler = sampleReady();
    const t2 = Date.now();
    const template = rollbackTemplate(await getDeploy(), await replicaSets());
    assert.equal(template.spec.containers[0]!.image, IMG1);
    await edit((d) => (d.spec.template = template));
    const undone = await rolledOut(IMG1, 'undo: all pods back on :1');
    const undoMs = Date.now() - t2;
    seen = await sampler.stop();
    console.log(`undo :2 -> :1: ${undoMs} ms, min Ready observed ${seen.min} over ${seen.samples} samples`);
    assert.ok(seen.min >= floor, `Ready pods dropped to ${seen.min} during undo`);
    assert.equal(undone.d.metadata.annotations?.[REVISION_ANNOTATION], '3');
    assert.equal((await replicaSets()).length, 2, 'undo reuses the old ReplicaSet');
    await containersOn(IMG1);

    // A broken update: the new pods never become available; after the deadline the rollout is reported
    // stuck while the old pods keep serving. minReadySeconds as a careful user sets it: with no
    // readiness probe a container that exits at once may be reported running (Ready) for an instant
    // (as when kubelet's relist catches it running), and with minReadySeconds 0 that instant counts
    // as available, so the controller would scale down one more old pod (CI saw Available=False).
    const t3 = Date.now();
    await edit((d) => {
      d.spec.progressDeadlineSeconds = 10;
      d.spec.minReadySeconds = 2;
      d.spec.template.spec.containers[0]!.command = ['sh', '-c', 'exit 1'];
    });
    const stuck = await waitFor(
      'Progressing=False ProgressDeadlineExceeded',
      async () => {
        const d = await getDeploy();
        const c = d.status?.conditions?.find((x) => x.type === 'Progressing');
        return c?.status === 'False' && c.reason === 'ProgressDeadlineExceeded' ? d : undefined;
      },
      40_000,
      200,
    );
    console.log(`broken update: ProgressDeadlineExceeded reported ${Date.now() - t3} ms after the update (deadline 10 s)`);
    assert.equal(stuck.status?.conditions?.find((c) => c.type === 'Available')?.status, 'True');
    const ps = await pods();
    const serving = ps.filter((p) => isReady(p) && p.spec.containers[0]!.command?.join(' ') === `sh -c ${SERVE}`);
    console.log(`broken update: ${serving.length} old pods Ready, ${ps.length - serving.length} new pods not Ready`);
    assert.ok(serving.length >= floor, `only ${serving.length} old pods still Ready`);
    assert.ok(ps.filter((p) => p.spec.containers[0]!.command?.join(' ') === 'sh -c exit 1').every((p) => !isReady(p)));
    console.log(`total scenario time: ${Date.now() - t0} ms`);
  });
});
