/**
 * The agent's ImageManager (agent/images/manager.ts) with the real fetcher against a real HTTPS server
 * (test/helpers/image-server.ts) and the FakeRuntime (its load reads the archive's RepoTags): the
 * desired state's images fetched one at a time, loaded, recorded and their archives deleted; the pull
 * step's events; failures reported; an airgap load noticed; garbage collection's grace and
 * keep-the-newest rule; the --image-bandwidth parser and the cellular default.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { imageBandwidth, parseBandwidth } from '../../agent/config.js';
import { applySteps } from '../../agent/engine/apply.js';
import { RestartTracker } from '../../agent/engine/restart-tracker.js';
import { ImageFetcher } from '../../agent/images/fetch.js';
import { ImageManager, repositoryOf } from '../../agent/images/manager.js';
import { readRecord, recordLoaded, recordPath, updateRecord } from '../../agent/images/record.js';
import type { AgentEvent } from '../../src/contract/payloads.js';
import type { DesiredImage, ImageManifest, ImageTransfer } from '../../src/contract/images.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { recordingReporter } from '../helpers/reporter.js';
import type { Status } from '../../src/contract/payloads.js';
import { makeDockerArchive, makeTestPki, manifestOf, startImageServer, type ImageServer, type TestPki } from '../helpers/image-server.js';

let dir: string;
let pki: TestPki;
let srv: ImageServer;
const img: Record<string, { data: Buffer; manifest: ImageManifest }> = {};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-image-manager-'));
  pki = makeTestPki();
  for (const [key, tags, size] of [['a', ['localhost/app:1'], 700_000], ['b', ['localhost/app:2'], 500_000], ['c', ['localhost/tool:1'], 300_000]] as const) {
    const data = await makeDockerArchive(dir, size, [...tags]);
    img[key] = { data, manifest: manifestOf(data, [...tags], 256 * 1024) };
  }
  srv = await startImageServer(pki, Object.values(img));
});

after(async () => {
  await srv?.close();
  await rm(dir, { recursive: true, force: true });
});

function desired(key: string, over: Partial<DesiredImage> = {}): DesiredImage {
  const m = img[key]!.manifest;
  return { name: m.names[0]!, digest: m.digest, size: m.size, ...over };
}

async function setup(over: Partial<ConstructorParameters<typeof ImageManager>[0]> = {}) {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const runtime = new FakeRuntime();
  const fetcher = new ImageFetcher({ baseUrl: srv.url, tls: { ca: pki.ca, cert: pki.node.cert, key: pki.node.key }, stateDir, backoff: { baseMs: 10, maxMs: 50 }, dropAttempts: 2, logger: silentLogger });
  const events: AgentEvent[] = [];
  const snapshots: ImageTransfer[][] = [];
  const m = new ImageManager({
    stateDir,
    runtime,
    fetcher: () => fetcher,
    node: 'edge-1',
    emit: (e) => events.push({ ts: '', ...e }),
    inUse: async () => (await runtime.list({})).map((c) => c.image),
    refreshMs: 60_000,
    progressIntervalMs: 0,
    ...over,
  });
  m.onChange(() => snapshots.push(m.transfers()));
  await m.start();
  return { stateDir, runtime, fetcher, m, events, snapshots, close: async () => (await m.stop(), fetcher.close()) };
}

async function settled(m: ImageManager, digests: string[]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (digests.every((d) => m.digests().includes(d)) && m.transfers().length === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`not loaded: ${JSON.stringify(m.transfers())}`);
}

test('the desired images are fetched one at a time, loaded, recorded and their archives deleted; prefetches last', async () => {
  srv.ranges.length = 0;
  const s = await setup();
  try {
    s.m.setDesired([desired('c', { prefetch: true }), desired('a'), desired('b')]);
    await settled(s.m, [img.a!.manifest.digest, img.b!.manifest.digest, img.c!.manifest.digest]);
    assert.ok(s.snapshots.every((t) => t.filter((x) => x.state === 'fetching' || x.state === 'loading').length <= 1), 'never two transfers at once');
    const order = s.snapshots.flatMap((t) => t.filter((x) => x.state === 'fetching').map((x) => x.name)).filter((n, i, all) => all.indexOf(n) === i);
    assert.deepEqual(order, ['localhost/app:1', 'localhost/app:2', 'localhost/tool:1'], 'the pods\' images first, the prefetch last');
    assert.deepEqual((await s.runtime.images()).sort(), ['localhost/app:1', 'localhost/app:2', 'localhost/tool:1']);
    const { record } = await readRecord(s.stateDir);
    assert.deepEqual(record.images[img.a!.manifest.digest]?.names, ['localhost/app:1']);
    assert.equal(record.images[img.a!.manifest.digest]?.source, 'server');
    assert.deepEqual((await readdir(join(s.stateDir, 'images'))).sort(), ['loaded.json', 'partial'], 'archives deleted once loaded');
    assert.deepEqual(await readdir(join(s.stateDir, 'images', 'partial')), []);
    assert.deepEqual(s.m.digests(), Object.keys(record.images).sort());
  } finally {
    await s.close();
  }
});

test('the pull step of a server image: ensure() fetches it ahead of the queue, with events naming the size and time; an image already loaded is not fetched again', async () => {
  const s = await setup();
  const restarts = new RestartTracker();
  const events: AgentEvent[] = [];
  const pod = { uid: 'u1', namespace: 'default', name: 'web' };
  try {
    s.m.setDesired([desired('a', { prefetch: true }), desired('b')]);
    const { errors } = await applySteps([{ action: 'pull', image: 'localhost/app:2', pods: [pod] }], { runtime: s.runtime, logger: silentLogger, emit: (e) => events.push(e), restarts, images: s.m });
    assert.deepEqual(errors, []);
    assert.deepEqual(events.map((e) => [e.type, e.reason]), [['Normal', 'Pulling'], ['Normal', 'Pulled']]);
    assert.equal(events[0]!.message, 'Fetching image "localhost/app:2" from the server');
    assert.match(events[1]!.message, /^Fetched and loaded image "localhost\/app:2" from the server \(0\.5 MB in \d+\.\d s\)$/);
    assert.ok((await s.runtime.images()).includes('localhost/app:2'));
    assert.equal(s.runtime.inFlight.pull, 0);
    assert.deepEqual(await s.m.ensure('localhost/app:2'), { fetched: false });
    // An image the desired state does not list goes to the registry as before.
    events.length = 0;
    await applySteps([{ action: 'pull', image: 'docker.io/library/busybox:1', pods: [pod] }], { runtime: s.runtime, logger: silentLogger, emit: (e) => events.push(e), restarts, images: s.m });
    assert.match(events.at(-1)!.message, /^Successfully pulled image "docker\.io\/library\/busybox:1" in \d+\.\d{3}s$/);
  } finally {
    await s.close();
  }
});

test('a transfer that fails: the pull step gets a Warning with the cause, the node an event, the status a failed transfer; ensure() tries again', async () => {
  const s = await setup();
  const restarts = new RestartTracker();
  const events: AgentEvent[] = [];
  const pod = { uid: 'u1', namespace: 'default', name: 'web' };
  const missing: DesiredImage = { name: 'localhost/gone:1', digest: `sha256:${'e'.repeat(64)}`, size: 1000 };
  try {
    s.m.setDesired([missing]);
    const { errors } = await applySteps([{ action: 'pull', image: 'localhost/gone:1', pods: [pod] }], { runtime: s.runtime, logger: silentLogger, emit: (e) => events.push(e), restarts, images: s.m });
    assert.equal(errors.length, 1);
    assert.deepEqual(events.at(-1), { ...events.at(-1)!, type: 'Warning', reason: 'Failed' });
    assert.match(events.at(-1)!.message, /^Failed to fetch image "localhost\/gone:1" from the server: GET .* answered 404: image sha256:e+ not found \(the server does not have it\)$/);
    const [t] = s.m.transfers();
    assert.equal(t?.state, 'failed');
    assert.match(t?.message ?? '', /answered 404/);
    assert.ok(s.events.some((e) => e.reason === 'ImageFetchFailed' && e.involved.kind === 'Node' && /localhost\/gone:1/.test(e.message)));
    assert.ok(restarts.pullFailure('localhost/gone:1'), 'the pull backs off like a failed registry pull');
    const before = srv.ranges.length;
    await assert.rejects(s.m.ensure('localhost/gone:1'), /answered 404/);
    assert.equal(srv.ranges.length, before, 'nothing of a blob was asked for');
  } finally {
    await s.close();
  }
});

test('an archive loaded by hand (drover image load writes the record) is noticed and reported; a transfer of it is no longer needed', async () => {
  const s = await setup({ mayFetch: () => false });
  try {
    s.m.setDesired([desired('c')]);
    assert.equal(s.m.transfers()[0]?.state, 'waiting');
    assert.match(s.m.transfers()[0]?.message ?? '', /waiting until this node may fetch/);
    await recordLoaded(s.stateDir, img.c!.manifest.digest, ['localhost/tool:1'], 'airgap', new Date());
    const told = s.snapshots.length;
    await s.m.refresh();
    assert.deepEqual(s.m.digests(), [img.c!.manifest.digest]);
    assert.deepEqual(s.m.transfers(), []);
    assert.ok(s.snapshots.length > told, 'listeners told (the reporter sends a status)');
  } finally {
    await s.close();
  }
});

test('garbage collection: unwanted images go after the grace period, the newest two of a name stay, an airgap image never used stays, a name a newer archive took is not removed', async () => {
  let now = Date.parse('2026-11-28T10:00:00Z');
  const s = await setup({ now: () => now, gcGraceMs: 3600_000, keepPerName: 2 });
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  try {
    const t = (min: number) => new Date(Date.parse('2026-11-28T09:00:00Z') + min * 60_000).toISOString();
    await updateRecord(s.stateDir, (r) => {
      r.images[d('1')] = { names: ['localhost/app:1'], loadedAt: t(1), source: 'server', wanted: true };
      r.images[d('2')] = { names: ['localhost/app:2'], loadedAt: t(2), source: 'server', wanted: true };
      r.images[d('3')] = { names: ['localhost/app:3'], loadedAt: t(3), source: 'server', wanted: true };
      r.images[d('4')] = { names: ['localhost/side:1'], loadedAt: t(4), source: 'airgap' };
      // Two archives under one name: the older one's name now means the newer image.
      r.images[d('5')] = { names: ['localhost/x:1'], loadedAt: t(5), source: 'server', wanted: true };
      r.images[d('6')] = { names: ['localhost/x:1'], loadedAt: t(6), source: 'server', wanted: true };
      r.images[d('7')] = { names: ['localhost/y:1'], loadedAt: t(7), source: 'server', wanted: true };
      r.images[d('8')] = { names: ['localhost/y:2'], loadedAt: t(8), source: 'server', wanted: true };
      r.images[d('9')] = { names: ['localhost/y:3'], loadedAt: t(9), source: 'server', wanted: true };
    });
    await s.m.refresh();
    const calls: string[] = [];
    s.runtime.removeImage = async (ref: string) => void calls.push(ref);
    s.m.setDesired([{ name: 'localhost/app:3', digest: d('3'), size: 1 }, { name: 'localhost/y:3', digest: d('9'), size: 1 }]);
    assert.deepEqual(await s.m.gc(), [], 'the first look only starts the grace period');
    now += 30 * 60_000;
    assert.deepEqual(await s.m.gc(), [], 'within the grace period');
    now += 31 * 60_000;
    const removed = await s.m.gc();
    // app:1 (older than the newest two app revisions), y:1 (likewise); x: two revisions, both kept.
    assert.deepEqual(removed.sort(), [d('1'), d('7')]);
    assert.deepEqual(calls.sort(), ['localhost/app:1', 'localhost/y:1']);
    const { record } = await readRecord(s.stateDir);
    assert.ok(record.images[d('4')], 'the airgap image nothing used yet stays');
    assert.ok(!record.images[d('1')] && !record.images[d('7')]);
    assert.ok(s.events.some((e) => e.reason === 'ImageGarbageCollected' && /localhost\/app:1/.test(e.message)));
    // x: three revisions under one name; the oldest goes, but its name is the newest's: only the record entry.
    await updateRecord(s.stateDir, (r) => void (r.images[d('a')] = { names: ['localhost/x:1'], loadedAt: t(10), source: 'server', wanted: true }));
    await s.m.refresh();
    calls.length = 0;
    assert.deepEqual(await s.m.gc(), [d('5')], 'unused for over an hour already, and no longer among the newest two');
    assert.ok(!calls.includes('localhost/x:1'), `removed by a name the newer archive carries: ${calls.join()}`);
  } finally {
    await s.close();
  }
});

test('a damaged record is moved aside, and reported as a node event', async () => {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  await updateRecord(stateDir, () => undefined);
  await (await import('node:fs/promises')).writeFile(recordPath(stateDir), '{"version":1,"images":{"nope":{}}');
  const events: AgentEvent[] = [];
  const m = new ImageManager({ stateDir, runtime: new FakeRuntime(), fetcher: () => assert.fail('no fetch'), node: 'edge-1', emit: (e) => events.push({ ts: '', ...e }) });
  await m.start();
  await m.stop();
  assert.deepEqual(m.digests(), []);
  assert.match(events[0]?.message ?? '', /image record .*loaded\.json is corrupt .*moved to .*corrupt-\d+/);
  assert.ok((await readdir(join(stateDir, 'images'))).some((f) => f.startsWith('loaded.json.corrupt-')));
  assert.equal(await readFile(recordPath(stateDir), 'utf8').catch(() => 'gone'), 'gone');
});

test('--image-bandwidth units; the cellular profile sets 64 KiB/s unless given', () => {
  assert.equal(parseBandwidth('256KiB/s'), 262_144);
  assert.equal(parseBandwidth('2MB/s'), 2_000_000);
  assert.equal(parseBandwidth('1.5 MiB/s'), 1_572_864);
  assert.equal(parseBandwidth('64kib'), 65_536);
  assert.equal(parseBandwidth('5000'), 5000);
  for (const bad of ['fast', '0KiB/s', '-1MB/s', '10Mbit/s', '']) assert.throws(() => parseBandwidth(bad), /--image-bandwidth: ".*" is not a bandwidth/);
  assert.equal(imageBandwidth('cellular'), 65_536);
  assert.equal(imageBandwidth('cellular', 1_000_000), 1_000_000);
  assert.equal(imageBandwidth('default'), undefined);
  assert.equal(repositoryOf('registry.local:5000/team/app:1'), 'registry.local:5000/team/app');
  assert.equal(repositoryOf('registry.local:5000/team/app'), 'registry.local:5000/team/app');
  assert.equal(repositoryOf(`localhost/app@sha256:${'0'.repeat(64)}`), 'localhost/app');
});

test('the reporter puts imageDigests and imageTransfers in every status; a transfer\'s progress sends no pod report again', () => {
  let digests = ['sha256:' + 'a'.repeat(64)];
  let transfers: ImageTransfer[] = [{ digest: 'sha256:' + 'b'.repeat(64), name: 'localhost/app:2', bytes: 0, total: 100, state: 'fetching' }];
  const { reporter, sent } = recordingReporter({ digests: () => digests, transfers: () => transfers });
  const pod = { namespace: 'default', name: 'web', uid: 'u1', phase: 'Running' } as unknown as Status['pods'][number];
  reporter.update({ observedGeneration: 1, pods: [pod], runtimeHealthy: true });
  assert.deepEqual([sent[0]?.imageDigests, sent[0]?.imageTransfers, sent[0]?.pods.length], [digests, transfers, 1]);
  transfers = [{ ...transfers[0]!, bytes: 50 }];
  reporter.imagesChanged();
  assert.equal(sent.length, 2);
  assert.deepEqual([sent[1]?.imageTransfers?.[0]?.bytes, sent[1]?.pods.length], [50, 0], 'progress alone: no pod report');
  reporter.imagesChanged();
  assert.equal(sent.length, 2, 'nothing changed: nothing sent');
  digests = [...digests, 'sha256:' + 'b'.repeat(64)];
  transfers = [];
  reporter.imagesChanged();
  assert.deepEqual([sent[2]?.imageDigests?.length, sent[2]?.imageTransfers], [2, []]);
  reporter.stop();
});
