/**
 * Issue 15, the server's side of "a pod may reference a served image by its usual name; the desired state
 * carries its digest": which images a node's desired state lists (its pods' and, as prefetch, a rollout's),
 * the publisher sending them again when an image is pushed, and a node fetching only what it is to run.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { ObjectCache } from '../../server/cache/object-cache.js';
import { imageAccess } from '../../server/desired/image-access.js';
import { PREFETCH_ANNOTATION, type ImageCatalog, type ServedImage } from '../../server/desired/image-catalog.js';
import { DesiredPublisher } from '../../server/desired/publisher.js';
import { imagesFor } from '../../server/desired/snapshot.js';
import { LevelStore } from '../../server/store/level.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;

/** A catalog whose contents the test changes, as pushes and removals change the server's store. */
function catalog(initial: Record<string, ServedImage> = {}) {
  const served = new Map(Object.entries(initial));
  const subs = new Set<() => void>();
  const c: ImageCatalog & { set(name: string, img: ServedImage | undefined): void } = {
    byName: (ref) => served.get(ref),
    onChange: (cb) => (subs.add(cb), () => void subs.delete(cb)),
    set(name, img) {
      if (img) served.set(name, img);
      else served.delete(name);
      for (const cb of subs) cb();
    },
  };
  return c;
}

const desiredPod = (name: string, images: string[], annotations?: Record<string, string>): payloads.DesiredPod => ({
  uid: `uid-${name}`,
  namespace: 'default',
  name,
  ...(annotations ? { annotations } : {}),
  spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 1, containers: images.map((image, i) => ({ name: `c${i}`, image })) } as never,
});

test('imagesFor: served images of the pods by name, each once; a rollout\'s ahead of time marked prefetch; registry images left out', () => {
  const cat = catalog({
    'localhost/app:1': { digest: digest('a'), size: 100, names: ['localhost/app:1'] },
    'localhost/app:2': { digest: digest('b'), size: 200, names: ['localhost/app:2'] },
    'localhost/side:1': { digest: digest('c'), size: 50, names: ['localhost/side:1'] },
  });
  const got = imagesFor(
    [
      desiredPod('web-1', ['localhost/app:1', 'docker.io/library/busybox:latest'], { [PREFETCH_ANNOTATION]: 'localhost/app:2, localhost/side:1,docker.io/library/nginx:1' }),
      desiredPod('web-2', ['localhost/app:1', 'localhost/side:1']),
    ],
    cat,
  );
  assert.deepEqual(got, [
    { name: 'localhost/app:1', digest: digest('a'), size: 100 },
    { name: 'localhost/app:2', digest: digest('b'), size: 200, prefetch: true },
    { name: 'localhost/side:1', digest: digest('c'), size: 50 },
  ]);
  assert.deepEqual(imagesFor([desiredPod('x', ['docker.io/library/busybox:latest'])], cat), [], 'nothing served: no images');
});

test('the publisher: a pod on a served image gets its digest in the desired state; a push of a new version republishes that node only; a node fetches only the digests it is to have', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-desired-images-'));
  const store = await LevelStore.open({ path: join(dir, 'db') });
  const cat = catalog({ 'localhost/app:1': { digest: digest('a'), size: 100, names: ['localhost/app:1'] } });
  const sent: payloads.Desired[] = [];
  const publisher = new DesiredPublisher({
    store,
    sink: { publishDesired: async (d) => void sent.push(d), clearRetained: async () => {} },
    logger: silentLogger,
    debounceMs: 5,
    images: cat,
  });
  const settle = async () => {
    await new Promise((r) => setTimeout(r, 30));
    await publisher.flush();
  };
  let cache: ObjectCache | undefined;
  try {
    for (const n of ['edge-1', 'edge-2']) await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {} } as never);
    const mkPod = (name: string, node: string, image: string) =>
      store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image }], nodeName: node } } as never);
    await mkPod('app', 'edge-1', 'localhost/app:1');
    await mkPod('other', 'edge-2', 'docker.io/library/busybox:latest');
    await publisher.start();
    await settle();
    const last = (n: string) => sent.filter((s) => s.node === n).at(-1);
    assert.deepEqual(last('edge-1')?.images, [{ name: 'localhost/app:1', digest: digest('a'), size: 100 }]);
    assert.equal(last('edge-2')?.images, undefined, 'a node running only registry images gets no images field');
    // What goes over MQTT passes the agent's schema.
    assert.doesNotThrow(() => payloads.desired.parse(last('edge-1')));

    sent.length = 0;
    cat.set('localhost/app:1', { digest: digest('d'), size: 120, names: ['localhost/app:1'] });
    await settle();
    assert.deepEqual(sent.map((d) => [d.node, d.images?.[0]?.digest]), [['edge-1', digest('d')]], 'the new push reaches the node whose pod uses the name, and only it');

    cache = await ObjectCache.start(store, ['Pod'], silentLogger);
    const mayFetch = imageAccess(() => cache!.list('Pod').items, cat);
    assert.equal(mayFetch('edge-1', digest('d')), true, 'edge-1 runs it');
    assert.equal(mayFetch('edge-2', digest('d')), false, 'edge-2 does not: another node\'s image is not its to read');
    assert.equal(mayFetch('edge-1', digest('a')), false, 'the replaced version is no longer listed');
    assert.equal(mayFetch('ghost', digest('d')), false, 'a node with no pods fetches nothing');

    // A rollout marks edge-2's pod to fetch the image ahead: now it may.
    const other = (await store.get('Pod', 'default', 'other'))!;
    await store.update({ ...other, metadata: { ...other.metadata, annotations: { [PREFETCH_ANNOTATION]: 'localhost/app:1' } } } as never);
    await settle();
    await new Promise((r) => setTimeout(r, 50)); // the cache follows the store's watch
    assert.deepEqual(last('edge-2')?.images, [{ name: 'localhost/app:1', digest: digest('d'), size: 120, prefetch: true }]);
    assert.equal(mayFetch('edge-2', digest('d')), true, 'prefetch listed: edge-2 may fetch it');
  } finally {
    cache?.close();
    await publisher.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('the node label drover.io/image-bandwidth reaches its desired state as bytes/s: set, changed, not a bandwidth (left out), removed; other nodes untouched', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-desired-bandwidth-'));
  const store = await LevelStore.open({ path: join(dir, 'db') });
  const sent: payloads.Desired[] = [];
  const publisher = new DesiredPublisher({ store, sink: { publishDesired: async (d) => void sent.push(d), clearRetained: async () => {} }, logger: silentLogger, debounceMs: 5 });
  const settle = async () => {
    await new Promise((r) => setTimeout(r, 30));
    await publisher.flush();
  };
  const label = async (value: string | undefined) => {
    const n = (await store.get('Node', '', 'edge-1'))!;
    const labels = { ...n.metadata.labels };
    if (value === undefined) delete labels['drover.io/image-bandwidth'];
    else labels['drover.io/image-bandwidth'] = value;
    await store.update({ ...n, metadata: { ...n.metadata, labels } } as never);
    await settle();
  };
  try {
    for (const n of ['edge-1', 'edge-2']) await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {} } as never);
    await publisher.start();
    await settle();
    const last = (n: string) => sent.filter((s) => s.node === n).at(-1);
    assert.equal(last('edge-1')?.imageBandwidth, undefined, 'no label: the agent keeps its own budget');
    sent.length = 0;
    await label('256KiB');
    assert.deepEqual(sent.map((d) => [d.node, d.imageBandwidth]), [['edge-1', 262_144]], 'labelled: republished to that node only');
    assert.doesNotThrow(() => payloads.desired.parse(last('edge-1')));
    await label('2MB');
    assert.equal(last('edge-1')?.imageBandwidth, 2_000_000);
    sent.length = 0;
    const n = (await store.get('Node', '', 'edge-1'))!;
    await store.update({ ...n, status: { ...n.status, lastHeard: new Date().toISOString() } } as never);
    await settle();
    assert.deepEqual(sent, [], 'a status write is no reason to publish');
    await label('fast');
    assert.equal(last('edge-1')?.imageBandwidth, undefined, 'not a bandwidth: left out (the agent keeps its own)');
    await label('64KiB');
    await label(undefined);
    assert.equal(last('edge-1')?.imageBandwidth, undefined, 'removed');
  } finally {
    await publisher.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
