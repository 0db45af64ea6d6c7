/**
 * The rollout controllers with the image gate on a real store (issue 15, pre-pull): reconciles are driven
 * one by one (no runner, no timers), pods are bound and made Ready by hand as the scheduler and an agent
 * would, and a node's loaded images are set in Node.status.imageDigests as the agent's report would.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { isControlledBy } from '../../src/api/revisions.js';
import { parseObject } from '../../src/api/validate.js';
import type { DaemonSet, Deployment } from '../../src/api/workloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { daemonSetController } from '../../server/controllers/daemonset.js';
import type { ControllerDeps } from '../../server/controllers/deps.js';
import { deploymentController } from '../../server/controllers/deployment.js';
import { IMAGE_FETCH_FAILED, IMAGE_GATE_RECHECK_MS } from '../../server/controllers/image-gate.js';
import { replicaSetController } from '../../server/controllers/replicaset.js';
import type { Controller } from '../../server/controllers/runner.js';
import { PREFETCH_ANNOTATION, type ImageCatalog, type ServedImage } from '../../server/desired/image-catalog.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { LevelStore } from '../../server/store/level.js';

const APP2: ServedImage = { digest: `sha256:${'a'.repeat(64)}`, size: 48_000_000, names: ['localhost/app:2'] };
/** What the server's image store would answer: it serves localhost/app:2, nothing else. */
const catalog: ImageCatalog = { byName: (ref) => (APP2.names.includes(ref) ? APP2 : undefined), onChange: () => () => undefined };
const NS = 'default';

function mkNode(name: string): Node {
  const alloc = { cpu: '8', memory: '16Gi', pods: '110' };
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } }, spec: {}, status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: 'True' }] } };
}

let store: LevelStore;
let dir: string;
let deps: ControllerDeps;
const signal = new AbortController().signal;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-image-gate-'));
  store = await LevelStore.open({ path: join(dir, 'store') });
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS }, status: { phase: 'Active' } });
  const events = new EventRecorder(store, silentLogger);
  deps = { store, events, logger: silentLogger, now: () => Date.now(), images: catalog };
});

after(async () => {
  await deps?.events.drain();
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The agent's report: the archives loaded and the transfers under way or failed. */
async function report(node: string, o: { digests?: string[]; transfers?: NonNullable<Node['status']>['imageTransfers'] }): Promise<void> {
  await store.patch('Node', '', node, (n) => {
    n.status = { ...n.status, imageDigests: o.digests ?? [], ...(o.transfers ? { imageTransfers: o.transfers } : { imageTransfers: [] }) };
    return n;
  });
}

/** What the agent does with a bound pod: runs it (Ready) if its node has every served image it uses. */
async function kubelet(): Promise<void> {
  const nodes = new Map((await store.list('Node')).items.map((n) => [n.metadata.name, n]));
  for (const p of (await store.list('Pod', NS)).items) {
    if (!p.spec.nodeName || p.status?.phase !== 'Pending') continue;
    const have = nodes.get(p.spec.nodeName)?.status?.imageDigests ?? [];
    if (p.spec.containers.some((c) => catalog.byName(c.image) && !have.includes(catalog.byName(c.image)!.digest))) continue;
    await setReady(p);
  }
}

async function setReady(p: Pod): Promise<void> {
  const ts = new Date().toISOString();
  await store.patch('Pod', NS, p.metadata.name, (cur) => {
    cur.status = { phase: 'Running', startTime: ts, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }] };
    return cur;
  });
}

/** The scheduler's spread, simply: an unbound pod goes to the node running fewest pods (name breaks ties). */
async function bind(nodes: string[]): Promise<void> {
  const pods = (await store.list('Pod', NS)).items;
  const count = new Map(nodes.map((n) => [n, pods.filter((p) => p.spec.nodeName === n).length]));
  for (const p of pods) {
    if (p.spec.nodeName) continue;
    const node = [...nodes].sort((a, b) => count.get(a)! - count.get(b)! || (a < b ? -1 : 1))[0]!;
    count.set(node, count.get(node)! + 1);
    await store.patch('Pod', NS, p.metadata.name, (cur) => {
      cur.spec.nodeName = node;
      return cur;
    });
  }
}

const podsOf = async (owner?: { metadata: { uid?: string } }) => (await store.list('Pod', NS)).items.filter((p) => !owner || (p.metadata.ownerReferences ?? []).some((r) => r.uid === owner.metadata.uid));
const key = (name: string) => `${NS}/${name}`;
const nodeKeys = (c: Controller, n: Node) => c.watches.find((w) => w.kind === 'Node')!.keys(n, 'MODIFIED');

describe('DaemonSet rolling update to a served image', () => {
  let ds: Controller;
  before(async () => {
    await store.create(mkNode('ds-a'));
    ds = daemonSetController(deps);
  });

  const mkDs = (image: string): DaemonSet =>
    parseObject({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'agent', namespace: NS },
      spec: { selector: { matchLabels: { app: 'agent' } }, template: { metadata: { labels: { app: 'agent' } }, spec: { nodeSelector: { 'kubernetes.io/hostname': 'ds-a' }, containers: [{ name: 'main', image }] } } },
    }).object as DaemonSet;

  const setImage = (image: string) =>
    store.patch('DaemonSet', NS, 'agent', (d) => {
      d.spec.template.spec.containers[0]!.image = image;
      return d;
    });

  it('keeps the old pod (annotated) while the node lacks the image, replaces it once the node reports it', async () => {
    await store.create(mkDs('docker.io/library/busybox:1'));
    await ds.reconcile(key('agent'), signal);
    const [old] = await podsOf();
    assert.ok(old, 'the daemon pod of the first revision');
    await setReady(old);

    await setImage('localhost/app:2');
    const r = await ds.reconcile(key('agent'), signal);
    let pods = await podsOf();
    assert.deepEqual(
      pods.map((p) => p.metadata.uid),
      [old.metadata.uid],
      'the old pod is not stopped for an image its node does not have',
    );
    assert.equal(pods[0]!.metadata.annotations?.[PREFETCH_ANNOTATION], 'localhost/app:2', 'the node is asked to fetch it');
    assert.ok(r && r.requeueAfterMs !== undefined && r.requeueAfterMs <= IMAGE_GATE_RECHECK_MS, 'looked at again within seconds, without a node event');
    // Again: nothing changes, nothing is written.
    const rv = pods[0]!.metadata.resourceVersion;
    await ds.reconcile(key('agent'), signal);
    assert.equal((await podsOf())[0]!.metadata.resourceVersion, rv);

    // A heartbeat wakes nobody; the node's report of the loaded image wakes this DaemonSet.
    const node = (await store.get('Node', '', 'ds-a'))!;
    assert.deepEqual(nodeKeys(ds, { ...node, status: { ...node.status, lastHeard: new Date().toISOString() } }), []);
    await report('ds-a', { digests: [APP2.digest] });
    assert.ok(nodeKeys(ds, (await store.get('Node', '', 'ds-a'))!).includes(key('agent')));

    await ds.reconcile(key('agent'), signal);
    assert.deepEqual(await podsOf(), [], 'replaced now that the image is there');
    await ds.reconcile(key('agent'), signal);
    pods = await podsOf();
    assert.equal(pods.length, 1);
    assert.equal(pods[0]!.spec.containers[0]!.image, 'localhost/app:2');
    assert.equal(pods[0]!.metadata.annotations?.[PREFETCH_ANNOTATION], undefined, 'the new pod asks for nothing');
  });

  it('a failed transfer: a Warning naming the node and the cause, the old pod stays', async () => {
    await setReady((await podsOf())[0]!);
    await report('ds-a', {
      digests: [],
      transfers: [{ digest: APP2.digest, name: 'localhost/app:2', bytes: 1 << 20, total: APP2.size, state: 'failed', message: 'sha256 mismatch in chunk 1' }],
    });
    // The image was removed from the device (GC) and the template changed: back to the registry image and forth again.
    await setImage('docker.io/library/busybox:1');
    await ds.reconcile(key('agent'), signal);
    await ds.reconcile(key('agent'), signal);
    const [cur] = await podsOf();
    assert.equal(cur!.spec.containers[0]!.image, 'docker.io/library/busybox:1', 'a registry image: replaced at once, as before');
    assert.equal(cur!.metadata.annotations?.[PREFETCH_ANNOTATION], undefined, 'and never annotated');
    await setReady(cur!);

    await setImage('localhost/app:2');
    await ds.reconcile(key('agent'), signal);
    await ds.reconcile(key('agent'), signal);
    const pods = await podsOf();
    assert.deepEqual(
      pods.map((p) => p.metadata.uid),
      [cur!.metadata.uid],
      'never stopped for an image that failed',
    );
    await deps.events.drain();
    const warnings = (await store.list('Event', NS)).items.filter((e) => e.reason === IMAGE_FETCH_FAILED);
    const onPod = warnings.find((e) => e.involvedObject.kind === 'Pod' && e.involvedObject.name === cur!.metadata.name);
    const onDs = warnings.find((e) => e.involvedObject.kind === 'DaemonSet');
    assert.ok(onPod && onDs, `a Warning on the pod and on the DaemonSet (got ${warnings.map((e) => e.involvedObject.kind).join(', ')})`);
    assert.equal(onPod.type, 'Warning');
    assert.match(onPod.message, /node ds-a could not fetch image localhost\/app:2: sha256 mismatch in chunk 1/);
    assert.equal(onPod.count, 1, 'once per cause, not once per pass');
  });
});

describe('Deployment rolling update to a served image: 4 replicas on 2 nodes, only node A has it', () => {
  let dep: Controller;
  let rsc: Controller;
  const NODES = ['rs-a', 'rs-b'];

  before(async () => {
    for (const n of NODES) await store.create(mkNode(n));
    await report('rs-a', { digests: [APP2.digest] });
    dep = deploymentController(deps);
    rsc = replicaSetController(deps);
  });

  const mkDeployment = (name: string, image: string, replicas: number): Deployment =>
    parseObject({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: NS },
      spec: {
        replicas,
        selector: { matchLabels: { app: name } },
        template: { metadata: { labels: { app: name } }, spec: { affinity: nodeAffinity(), containers: [{ name: 'main', image }] } },
      },
    }).object as Deployment;
  const nodeAffinity = () => ({ nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: NODES }] }] } } });

  /** Controllers, scheduler and agents until nothing moves (at most `rounds` passes). */
  async function settle(name: string, rounds = 30): Promise<void> {
    let last = '';
    for (let i = 0; i < rounds; i++) {
      await dep.reconcile(key(name), signal);
      const d = (await store.get('Deployment', NS, name))!;
      for (const rs of (await store.list('ReplicaSet', NS)).items.filter((x) => isControlledBy(x, d))) await rsc.reconcile(key(rs.metadata.name), signal);
      await bind(NODES);
      await kubelet();
      const now = JSON.stringify([(await store.list('Pod', NS)).items.map((p) => [p.metadata.name, p.metadata.resourceVersion]), (await store.list('ReplicaSet', NS)).items.map((r) => r.metadata.resourceVersion), (await store.get('Deployment', NS, name))!.metadata.resourceVersion]);
      if (now === last) return;
      last = now;
    }
  }

  const setImage = (name: string, image: string) =>
    store.patch('Deployment', NS, name, (d) => {
      d.spec.template.spec.containers[0]!.image = image;
      return d;
    });
  const deploymentPods = async (name: string) => (await store.list('Pod', NS)).items.filter((p) => p.metadata.labels?.app === name && !p.metadata.deletionTimestamp);
  const summary = (pods: Pod[]) =>
    pods
      .map((p) => `${p.spec.nodeName}:${p.spec.containers[0]!.image}${p.metadata.annotations?.[PREFETCH_ANNOTATION] ? '(held)' : ''}`)
      .sort()
      .join(' ');

  it("A's old pods are replaced, B's stay (annotated) until B reports the image; then the rollout completes", async () => {
    await store.create(mkDeployment('web', 'docker.io/library/nginx:1', 4));
    await settle('web');
    assert.equal(summary(await deploymentPods('web')), 'rs-a:docker.io/library/nginx:1 rs-a:docker.io/library/nginx:1 rs-b:docker.io/library/nginx:1 rs-b:docker.io/library/nginx:1');

    await setImage('web', 'localhost/app:2');
    await settle('web');
    const waiting = await deploymentPods('web');
    const onB = waiting.filter((p) => p.spec.nodeName === 'rs-b');
    assert.deepEqual(
      onB.map((p) => p.spec.containers[0]!.image),
      ['docker.io/library/nginx:1', 'docker.io/library/nginx:1'],
      `B keeps its old pods while it lacks the image (${summary(waiting)})`,
    );
    assert.ok(
      onB.every((p) => p.metadata.annotations?.[PREFETCH_ANNOTATION] === 'localhost/app:2'),
      'and B is asked to fetch it',
    );
    assert.equal(waiting.filter((p) => p.spec.nodeName === 'rs-a' && p.spec.containers[0]!.image !== 'localhost/app:2').length, 0, "A's old pods are replaced");
    assert.ok(waiting.filter((p) => p.spec.containers[0]!.image === 'localhost/app:2' && p.status?.phase === 'Running').length >= 2, 'the new revision runs on A');
    let d = (await store.get('Deployment', NS, 'web'))!;
    assert.notEqual(d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason, 'NewReplicaSetAvailable', 'not complete while B waits');

    // The ReplicaSet holding them is woken by B's report (and only by a change of it).
    const oldRs = (await store.list('ReplicaSet', NS)).items.find((rs) => isControlledBy(rs, d) && rs.spec.template.spec.containers[0]!.image === 'docker.io/library/nginx:1')!;
    await report('rs-b', { digests: [], transfers: [{ digest: APP2.digest, name: 'localhost/app:2', bytes: 20_000_000, total: APP2.size, state: 'fetching' }] });
    assert.deepEqual(nodeKeys(rsc, (await store.get('Node', '', 'rs-b'))!), [], 'progress bytes wake nobody');
    await report('rs-b', { digests: [APP2.digest] });
    assert.deepEqual(nodeKeys(rsc, (await store.get('Node', '', 'rs-b'))!), [key(oldRs.metadata.name)]);

    await settle('web');
    assert.equal(summary(await deploymentPods('web')), 'rs-a:localhost/app:2 rs-a:localhost/app:2 rs-a:localhost/app:2 rs-b:localhost/app:2');
    d = (await store.get('Deployment', NS, 'web'))!;
    assert.equal(d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason, 'NewReplicaSetAvailable', 'the rollout completes');
    assert.equal(d.status?.updatedReplicas, 4);
    assert.equal(d.status?.replicas, 4);
  });

  it('a registry image rolls as before: no annotation, B does not wait', async () => {
    await report('rs-b', { digests: [] });
    await store.create(mkDeployment('api', 'docker.io/library/nginx:1', 4));
    await settle('api');
    await setImage('api', 'docker.io/library/nginx:2');
    await settle('api');
    const pods = await deploymentPods('api');
    // Which node each new pod lands on is the scheduler's business (spread ties): what counts is that none waited.
    assert.equal(pods.length, 4, summary(pods));
    assert.ok(pods.every((p) => p.spec.containers[0]!.image === 'docker.io/library/nginx:2'), `every pod on the new image: ${summary(pods)}`);
    assert.ok(pods.every((p) => p.metadata.annotations?.[PREFETCH_ANNOTATION] === undefined), 'no pod asked to prefetch a registry image');
    assert.equal((await store.get('Deployment', NS, 'api'))!.status?.conditions?.find((c) => c.type === 'Progressing')?.reason, 'NewReplicaSetAvailable');
  });

  it('a plain scale-down is never held, even on a node without the image', async () => {
    await store.create(mkDeployment('cache', 'localhost/app:2', 4));
    // Started while B had the image; B has since lost it (its report no longer lists it).
    await report('rs-b', { digests: [APP2.digest] });
    await settle('cache');
    assert.equal((await deploymentPods('cache')).filter((p) => p.status?.phase === 'Running').length, 4);
    await report('rs-b', { digests: [] });
    await store.patch('Deployment', NS, 'cache', (d) => {
      d.spec.replicas = 1;
      return d;
    });
    await settle('cache');
    const pods = await deploymentPods('cache');
    assert.equal(pods.length, 1, `scaled to 1 at once (${summary(pods)})`);
    assert.equal(pods[0]!.metadata.annotations?.[PREFETCH_ANNOTATION], undefined);
  });
});
