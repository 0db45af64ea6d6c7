import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { podTemplateHash } from '../../src/api/revisions.js';
import { daemonSet, type DaemonSet } from '../../src/api/workloads.js';
import { PREFETCH_ANNOTATION, type ImageCatalog, type ServedImage } from '../../server/desired/image-catalog.js';
import { newDaemonPod, planDaemonSet } from '../../server/controllers/daemonset.js';
import { GatedIndex, failedTransfer, imageFacts, imageGate, missingOn, prefetchValue, servedImages, withPrefetch } from '../../server/controllers/image-gate.js';
import { pickVictims } from '../../server/controllers/replicaset.js';
import { imageWaitText } from '../../server/controllers/rollout.js';
import { planWaves } from '../../server/controllers/waves.js';
import { heldPods, imageWaitLines } from '../../src/cli/rollout.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const APP2: ServedImage = { digest: `sha256:${'a'.repeat(64)}`, size: 48_000_000, names: ['localhost/app:2'] };
const SIDE: ServedImage = { digest: `sha256:${'b'.repeat(64)}`, size: 1_000_000, names: ['localhost/side:1'] };
/** The server serves localhost/app:2 and localhost/side:1; everything else comes from a registry. */
const catalog: ImageCatalog = { byName: (ref) => [APP2, SIDE].find((i) => i.names.includes(ref)), onChange: () => () => undefined };

function mkNode(name: string, o: { digests?: string[]; transfers?: NonNullable<Node['status']>['imageTransfers']; heard?: string } = {}): Node {
  const alloc = { cpu: '4', memory: '8Gi', pods: '110' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } },
    spec: {},
    status: {
      capacity: alloc,
      allocatable: alloc,
      conditions: [{ type: 'Ready', status: 'True' }],
      ...(o.digests ? { imageDigests: o.digests } : {}),
      ...(o.transfers ? { imageTransfers: o.transfers } : {}),
      ...(o.heard ? { lastHeard: o.heard } : {}),
    },
  };
}

function mkDs(images: string[], o: { uid?: string; rollout?: unknown } = {}): DaemonSet {
  return daemonSet.parse({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent', namespace: 'default', uid: o.uid ?? 'ds-uid', generation: 2 },
    spec: {
      selector: { matchLabels: { app: 'agent' } },
      template: { metadata: { labels: { app: 'agent' } }, spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } },
      ...(o.rollout ? { drover: { rollout: o.rollout } } : {}),
    },
  });
}

let seq = 0;
/** A Ready pod of `ds` (as its template says, or of another hash) on `node`. */
function dsPod(ds: DaemonSet, node: string, o: { hash?: string; ready?: boolean; annotations?: Record<string, string> } = {}): Pod {
  const p = newDaemonPod(ds, node, o.hash ?? podTemplateHash(ds.spec.template), NOW);
  seq++;
  p.metadata.name = `agent-${node}-${seq}`;
  p.metadata.uid = `pod-${seq}`;
  p.metadata.creationTimestamp = new Date(NOW - 60_000 + seq).toISOString();
  if (o.annotations) p.metadata.annotations = o.annotations;
  p.status = { phase: 'Running', conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True', lastTransitionTime: new Date(NOW - 30_000).toISOString() }] };
  return p;
}

describe('image gate (pure)', () => {
  it('only server-served images are gated, sorted, each once; registry images never', () => {
    assert.deepEqual(servedImages({ containers: [{ image: 'localhost/side:1' }, { image: 'docker.io/library/nginx:1' }, { image: 'localhost/app:2' }, { image: 'localhost/app:2' }] }, catalog), ['localhost/app:2', 'localhost/side:1']);
    assert.deepEqual(servedImages({ containers: [{ image: 'docker.io/library/nginx:1' }] }, catalog), []);
    assert.equal(prefetchValue(['localhost/side:1', 'localhost/app:2']), 'localhost/app:2,localhost/side:1');
    assert.equal(prefetchValue([]), undefined);
  });

  it('holds a Ready pod whose node lacks a served image; lets it go once every digest is reported', () => {
    const ds = mkDs(['localhost/app:2', 'localhost/side:1']);
    const pod = dsPod(ds, 'a', { hash: 'old' });
    const served = servedImages(ds.spec.template.spec, catalog);
    const lacking = imageGate(pod, served, catalog, mkNode('a', { digests: [SIDE.digest] }));
    assert.equal(lacking.hold, true);
    assert.deepEqual(lacking.missing, ['localhost/app:2']);
    assert.equal(lacking.annotation, 'localhost/app:2,localhost/side:1', 'the annotation names every served image of the new template');
    assert.equal(imageGate(pod, served, catalog, mkNode('a', { digests: [SIDE.digest, APP2.digest] })).hold, false);
    // The same name re-pushed as another archive: the node's old digest is not the one needed.
    assert.deepEqual(missingOn(mkNode('a', { digests: [`sha256:${'c'.repeat(64)}`, SIDE.digest] }), served, catalog), ['localhost/app:2']);
  });

  it('never holds a pod that does not serve (not Ready), an unbound one, or one whose node is gone', () => {
    const ds = mkDs(['localhost/app:2']);
    const served = servedImages(ds.spec.template.spec, catalog);
    assert.equal(imageGate(dsPod(ds, 'a', { hash: 'old', ready: false }), served, catalog, mkNode('a')).hold, false);
    assert.equal(imageGate(dsPod(ds, 'a', { hash: 'old' }), served, catalog, undefined).hold, false);
    const unbound = dsPod(ds, 'a', { hash: 'old' });
    delete unbound.spec.nodeName;
    assert.equal(imageGate(unbound, served, catalog, mkNode('a')).hold, false);
    assert.equal(imageGate(dsPod(ds, 'a', { hash: 'old' }), [], catalog, mkNode('a')).hold, false, 'registry images only: nothing to wait for');
  });

  it('a failed transfer on the node is reported naming the node, the image and the cause', () => {
    const node = mkNode('edge-7', { transfers: [{ digest: APP2.digest, name: 'localhost/app:2', bytes: 3 << 20, total: APP2.size, state: 'failed', message: 'sha256 mismatch in chunk 3' }] });
    const v = imageGate(dsPod(mkDs(['localhost/app:2']), 'edge-7', { hash: 'old' }), ['localhost/app:2'], catalog, node);
    assert.equal(v.hold, true, 'a failed image never stops the old pod');
    assert.equal(v.failure, 'node edge-7 could not fetch image localhost/app:2: sha256 mismatch in chunk 3');
    assert.equal(failedTransfer(mkNode('edge-7', { transfers: [{ digest: APP2.digest, name: 'localhost/app:2', bytes: 1, total: 2, state: 'fetching' }] }), ['localhost/app:2'], catalog), undefined);
  });

  it('the annotation is written only when it differs, and removed with undefined', () => {
    const p = dsPod(mkDs(['x']), 'a', { annotations: { keep: 'me', [PREFETCH_ANNOTATION]: 'localhost/app:2' } });
    assert.equal(withPrefetch(p, 'localhost/app:2'), undefined);
    assert.deepEqual(withPrefetch(p, 'localhost/app:3'), { keep: 'me', [PREFETCH_ANNOTATION]: 'localhost/app:3' });
    assert.deepEqual(withPrefetch(p, undefined), { keep: 'me' });
  });

  it('GatedIndex wakes only the owners holding pods on that node, only when its images or failures change', () => {
    const idx = new GatedIndex();
    idx.set('default/web-1', ['a', 'b']);
    idx.set('default/db-1', ['b']);
    const b = mkNode('b', { heard: 't1' });
    idx.seen(b);
    assert.deepEqual(idx.changed(mkNode('b', { heard: 't2' }), 'b'), [], 'a heartbeat wakes nobody');
    assert.deepEqual(idx.changed(mkNode('c', { digests: [APP2.digest] }), 'c'), [], 'a node nobody waits on wakes nobody');
    assert.deepEqual(idx.changed(mkNode('b', { digests: [APP2.digest] }), 'b').sort(), ['default/db-1', 'default/web-1']);
    assert.deepEqual(idx.changed(mkNode('b', { digests: [APP2.digest] }), 'b'), [], 'the same report again wakes nobody');
    idx.set('default/web-1', []);
    assert.deepEqual(idx.changed(mkNode('a', { digests: [APP2.digest] }), 'a'), [], 'an owner that holds nothing any more is forgotten');
    assert.notEqual(imageFacts(mkNode('a')), imageFacts(mkNode('a', { transfers: [{ digest: APP2.digest, name: 'x', bytes: 0, total: 1, state: 'failed', message: 'disk full' }] })));
    assert.equal(imageFacts(mkNode('a')), imageFacts(mkNode('a', { transfers: [{ digest: APP2.digest, name: 'x', bytes: 5, total: 9, state: 'fetching' }] })), 'progress bytes are not a reason to plan again');
  });
});

describe('DaemonSet plan with the image gate', () => {
  const nodes = [mkNode('a'), mkNode('b', { digests: [APP2.digest] }), mkNode('c')];

  it('rolling update: a node with the image is replaced, nodes without it keep their pod (annotated), budget unspent', () => {
    const ds = mkDs(['localhost/app:2']);
    const pods = nodes.map((n) => dsPod(ds, n.metadata.name, { hash: 'old' }));
    const plan = planDaemonSet(ds, nodes, pods, { now: NOW, images: catalog });
    assert.deepEqual(
      plan.delete.map((d) => d.pod.spec.nodeName),
      ['b'],
      'maxUnavailable 1 goes to the node that has the image',
    );
    assert.deepEqual(plan.hold.map((h) => [h.pod.spec.nodeName, h.annotation]).sort(), [
      ['a', 'localhost/app:2'],
      ['c', 'localhost/app:2'],
    ]);
    assert.ok(plan.requeueAfterMs !== undefined && plan.requeueAfterMs <= 5_000, 'looked at again within seconds');
  });

  it('a pod waiting for its turn keeps its prefetch request once its node has the image', () => {
    const ds = mkDs(['localhost/app:2']);
    const both = [mkNode('a', { digests: [APP2.digest] }), mkNode('b', { digests: [APP2.digest] })];
    const waiting = dsPod(ds, 'a', { hash: 'old', annotations: { [PREFETCH_ANNOTATION]: 'localhost/app:2' } });
    const broken = dsPod(ds, 'b', { hash: 'old', ready: false });
    const plan = planDaemonSet(ds, both, [waiting, broken], { now: NOW, images: catalog });
    assert.deepEqual(
      plan.delete.map((d) => d.pod.spec.nodeName),
      ['b'],
      'the unavailable pod spends the budget',
    );
    assert.deepEqual(plan.hold, []);
    assert.deepEqual(plan.reannotate, [], 'no write: its node keeps the image wanted until the pod is replaced');
  });

  it('a registry image rolls exactly as without a catalog: no hold, no annotation', () => {
    const ds = mkDs(['docker.io/library/busybox:2']);
    const pods = nodes.map((n) => dsPod(ds, n.metadata.name, { hash: 'old' }));
    const gated = planDaemonSet(ds, nodes, pods, { now: NOW, images: catalog });
    const plain = planDaemonSet(ds, nodes, pods, { now: NOW });
    assert.deepEqual(gated.hold, []);
    assert.deepEqual(gated.reannotate, []);
    assert.deepEqual(
      gated.delete.map((d) => d.pod.metadata.name),
      plain.delete.map((d) => d.pod.metadata.name),
    );
    assert.equal(gated.delete.length, 1);
  });

  it('a pod of the current revision still carrying a prefetch request (an undone rollout) loses it', () => {
    const ds = mkDs(['docker.io/library/busybox:1']);
    const pods = [dsPod(ds, 'a', { annotations: { [PREFETCH_ANNOTATION]: 'localhost/app:2' } })];
    const plan = planDaemonSet(ds, [mkNode('a')], pods, { now: NOW, images: catalog });
    assert.deepEqual(
      plan.reannotate.map((a) => [a.pod.metadata.name, a.value]),
      [[pods[0]!.metadata.name, undefined]],
    );
  });

  it('waved rollout: a wave node without the image keeps its old pod and the status says it is fetching', () => {
    const rollout = { waves: [{ percent: 100 }] };
    const stable = mkDs(['docker.io/library/busybox:1'], { rollout });
    const ds = mkDs(['localhost/app:2'], { rollout });
    ds.status = { desiredNumberScheduled: 3, currentNumberScheduled: 3, numberReady: 3, updatedNumberScheduled: 0, numberAvailable: 3, numberMisscheduled: 0, drover: { stableTemplate: stable.spec.template } };
    const pods = nodes.map((n) => dsPod(stable, n.metadata.name));
    const plan = planDaemonSet(ds, nodes, pods, { now: NOW, images: catalog });
    assert.deepEqual(
      plan.delete.map((d) => d.pod.spec.nodeName),
      ['b'],
    );
    assert.deepEqual(plan.hold.map((h) => h.pod.spec.nodeName).sort(), ['a', 'c']);
    assert.match(plan.status.drover!.rollout!.message, /waiting: 3 pods to be replaced \(2 nodes fetching the new image\)/);
    // planWaves alone: imageReady false counts a node as fetching.
    const wp = planWaves({ ds, nodes: [{ node: nodes[0]!, pod: pods[0], imageReady: false }], now: NOW });
    assert.match(wp.drover.rollout.message, /1 node fetching the new image/);
  });
});

describe('ReplicaSet scale-down victims with the image gate', () => {
  const ds = mkDs(['localhost/app:1']);
  it('takes pods whose node has the image first; holds only as many as are missing, already-held ones first', () => {
    const a1 = dsPod(ds, 'a');
    const b1 = dsPod(ds, 'b');
    const b2 = dsPod(ds, 'b', { annotations: { [PREFETCH_ANNOTATION]: 'localhost/app:2' } });
    const pending = dsPod(ds, 'b', { ready: false });
    const verdict = (p: Pod) => imageGate(p, ['localhost/app:2'], catalog, p.spec.nodeName === 'a' ? mkNode('a', { digests: [APP2.digest] }) : mkNode('b'));
    const one = pickVictims([a1, b1, b2, pending], 2, verdict);
    assert.deepEqual(
      one.victims.map((p) => p.metadata.name).sort(),
      [a1.metadata.name, pending.metadata.name].sort(),
      'the pod that does not serve and the one on the node with the image',
    );
    assert.deepEqual(one.held, []);
    const three = pickVictims([a1, b1, b2, pending], 3, verdict);
    assert.equal(three.victims.length, 2);
    assert.deepEqual(
      three.held.map((h) => h.pod.metadata.name),
      [b2.metadata.name],
      'the pod whose node already fetches is the one held',
    );
  });
});

describe('rollout status: fetch progress per node', () => {
  it('prints bytes / total per node, waiting when no transfer is listed, and the failure', () => {
    const ds = mkDs(['localhost/app:2']);
    const held = (node: string) => dsPod(ds, node, { hash: 'old', annotations: { [PREFETCH_ANNOTATION]: 'localhost/app:2' } });
    const pods = [held('edge-b'), held('edge-a'), held('edge-c'), dsPod(ds, 'edge-d')];
    const nodes = new Map<string, Node>([
      ['edge-a', mkNode('edge-a', { transfers: [{ digest: APP2.digest, name: 'localhost/app:2', bytes: 12_300_000, total: 48_000_000, state: 'fetching' }] })],
      ['edge-b', mkNode('edge-b')],
      ['edge-c', mkNode('edge-c', { transfers: [{ digest: APP2.digest, name: 'localhost/app:2', bytes: 4_000_000, total: 48_000_000, state: 'failed', message: 'disk full' }] })],
    ]);
    assert.deepEqual(imageWaitLines(heldPods(ds, pods), nodes), [
      'node edge-a: fetching localhost/app:2 12.3/48.0 MB',
      'node edge-b: waiting for image localhost/app:2',
      'node edge-c: fetching localhost/app:2 failed at 4.0/48.0 MB: disk full (retrying; the old pod keeps running)',
    ]);
    assert.deepEqual(heldPods({ ...ds, metadata: { ...ds.metadata, uid: 'someone-else' } }, pods), [], "another DaemonSet's held pods are not shown");
  });

  it('the Deployment status names the nodes it waits on', () => {
    assert.equal(imageWaitText({ pods: 2, nodes: ['edge-b'] }), '2 old pods kept until its node has the new image (edge-b)');
    assert.equal(imageWaitText(undefined), '');
  });
});
