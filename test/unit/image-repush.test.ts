/**
 * The same tag pushed again with other bytes (issue 15): the desired state lists the new digest under a
 * name the device already has. The plan must not take the name for the image: a new pod's container
 * waits for the new archive (fetched from a real HTTPS server, loaded by the FakeRuntime, which reads
 * the archive's RepoTags) and then runs; a container running from the old archive is not restarted
 * (Kubernetes: a tag that moves restarts nothing); imagePullPolicy Never runs what is there; a name the
 * desired state uses that the archive does not carry (pushed with --name) is tagged after the load.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { applySteps } from '../../agent/engine/apply.js';
import { plan, toRunSpec, type PlanContext } from '../../agent/engine/plan.js';
import { RestartTracker } from '../../agent/engine/restart-tracker.js';
import { ImageFetcher } from '../../agent/images/fetch.js';
import { ImageManager } from '../../agent/images/manager.js';
import type { ImageManifest } from '../../src/contract/images.js';
import type { AgentEvent, DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { makeDockerArchive, makeTestPki, manifestOf, startImageServer, type ImageServer, type TestPki } from '../helpers/image-server.js';

const NAME = 'localhost/app:1';
let dir: string;
let pki: TestPki;
let srv: ImageServer;
let A: ImageManifest;
let B: ImageManifest;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-image-repush-'));
  pki = makeTestPki();
  const a = await makeDockerArchive(dir, 300_000, [NAME]);
  const b = await makeDockerArchive(dir, 400_000, [NAME]);
  A = manifestOf(a, [NAME], 128 * 1024);
  B = manifestOf(b, [NAME], 128 * 1024);
  srv = await startImageServer(pki, [{ data: a, manifest: A }, { data: b, manifest: B }]);
});

after(async () => {
  await srv?.close();
  await rm(dir, { recursive: true, force: true });
});

function pod(uid: string, image = NAME, policy?: 'Never'): DesiredPod {
  return { uid, namespace: 'default', name: `web-${uid}`, spec: { containers: [{ name: 'c', image, ...(policy ? { imagePullPolicy: policy } : {}) }], restartPolicy: 'Always' } } as DesiredPod;
}

async function setup() {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const runtime = new FakeRuntime();
  const fetcher = new ImageFetcher({ baseUrl: srv.url, tls: { ca: pki.ca, cert: pki.node.cert, key: pki.node.key }, stateDir, logger: silentLogger });
  let may = true;
  const m = new ImageManager({ stateDir, runtime, fetcher: () => fetcher, refreshMs: 60_000, progressIntervalMs: 0, mayFetch: () => may });
  await m.start();
  const restarts = new RestartTracker();
  const events: AgentEvent[] = [];
  const ctx = async (): Promise<PlanContext> => ({ node: 'n1', now: Date.now(), images: new Set(await runtime.images()), restartBackoff: () => 0, imageStale: (i) => m.awaiting(i) });
  const apply = (steps: Parameters<typeof applySteps>[0]) => applySteps(steps, { runtime, logger: silentLogger, emit: (e) => events.push(e), restarts, images: m });
  return { runtime, m, ctx, apply, events, hold: (h: boolean) => void (may = !h), close: async () => (await m.stop(), fetcher.close()) };
}

test('a re-pushed tag: a new pod waits for the new archive though the name is on the device, then runs; the running pod is left alone', async () => {
  const s = await setup();
  try {
    s.m.setDesired([{ name: NAME, digest: A.digest, size: A.size }]);
    assert.deepEqual((await s.apply(plan([], [pod('u1')], await s.ctx()).steps)).errors, []);
    const ran = await s.apply(plan([], [pod('u1')], await s.ctx()).steps);
    assert.deepEqual(ran.done.map((d) => d.step.action), ['run']);
    const running = await s.runtime.list({});

    // B under the same name: held off the link, so the plan is seen while B is not there.
    s.hold(true);
    s.m.setDesired([{ name: NAME, digest: B.digest, size: B.size }]);
    assert.ok((await s.runtime.images()).includes(NAME), 'the name is on the device (A)');
    assert.equal(s.m.awaiting(NAME), true);
    const p = plan(running, [pod('u1'), pod('u2')], await s.ctx());
    assert.deepEqual(p.steps.map((x) => [x.action, x.action === 'pull' ? x.pods.map((q) => q.uid) : '']), [['pull', ['u2']]], 'the new pod waits for B; the running one is not removed');
    const sent = srv.blobBytesSent;
    s.hold(false);
    const pulled = await s.apply(p.steps);
    assert.deepEqual(pulled.errors, []);
    assert.match(s.events.at(-1)!.message, /^Fetched and loaded image "localhost\/app:1" from the server \(0\.4 MB/);
    assert.equal(srv.blobBytesSent - sent, B.size, 'B fetched once');
    assert.equal(s.m.awaiting(NAME), false);
    assert.deepEqual(s.m.digests(), [A.digest, B.digest].sort());
    const next = plan(running, [pod('u1'), pod('u2')], await s.ctx());
    assert.deepEqual(next.steps.map((x) => x.action), ['run'], 'then it runs (from the name, now B); u1 keeps running');
    assert.equal((next.steps[0] as { spec: { name: string } }).spec.name, toRunSpec(pod('u2'), 'c', 'n1').name);
  } finally {
    await s.close();
  }
});

test('imagePullPolicy Never runs what the name means now; an image the server does not serve is unaffected', async () => {
  const s = await setup();
  try {
    await s.runtime.pull(NAME);
    await s.runtime.pull('docker.io/library/busybox:1');
    s.hold(true);
    s.m.setDesired([{ name: NAME, digest: B.digest, size: B.size }]);
    const p = plan([], [pod('u1', NAME, 'Never'), pod('u2', 'docker.io/library/busybox:1'), pod('u3')], await s.ctx());
    assert.deepEqual(p.steps.map((x) => (x.action === 'run' ? `run ${x.pod.uid}` : `${x.action} ${x.action === 'pull' ? x.pods.map((q) => q.uid).join() : ''}`)), ['run u1', 'run u2', 'pull u3']);
    assert.deepEqual(p.invalid, []);
  } finally {
    await s.close();
  }
});

test('a name the archive does not carry (pushed with --name): tagged after the load, and the pull step succeeds; one more name later: tagged, not fetched', async () => {
  const s = await setup();
  const alias = 'registry.example:5000/team/app:prod';
  try {
    s.m.setDesired([{ name: alias, digest: A.digest, size: A.size }]);
    assert.deepEqual((await s.apply(plan([], [pod('u1', alias)], await s.ctx()).steps)).errors, []);
    assert.deepEqual((await s.runtime.images()).sort(), [NAME, alias].sort());
    assert.deepEqual(plan([], [pod('u1', alias)], await s.ctx()).steps.map((x) => x.action), ['run']);
    s.m.setDesired([{ name: alias, digest: A.digest, size: A.size }, { name: 'localhost/app:stable', digest: A.digest, size: A.size }]);
    const sent = srv.blobBytesSent;
    assert.deepEqual(await s.m.ensure('localhost/app:stable'), { fetched: false });
    assert.equal(srv.blobBytesSent, sent);
    assert.ok((await s.runtime.images()).includes('localhost/app:stable'));
  } finally {
    await s.close();
  }
});

test('a container of that name that exited and is due to restart: waits for the new archive, then is re-created from it (not started again on the old image); Never restarts it as it is', () => {
  const [idA, idB] = ['a'.repeat(64), 'b'.repeat(64)];
  const p = pod('u1');
  const spec = toRunSpec(p, 'c', 'n1');
  const exited = { id: 'c1', name: spec.name, image: NAME, imageId: idA, labels: spec.labels, state: 'exited' as const, exitCode: 1, finishedAt: new Date().toISOString() };
  const base: PlanContext = { node: 'n1', now: Date.now(), images: new Set([NAME]), restartBackoff: () => 0 };
  const actions = (ctx: Partial<PlanContext>, target = p) => plan([exited], [target], { ...base, ...ctx }).steps.map((s) => (s.action === 'remove' ? `remove ${s.reason}` : s.action));
  assert.deepEqual(actions({}), ['restart'], 'not a server image: started again');
  assert.deepEqual(actions({ imageStale: () => true, imageIdFor: () => undefined }), ['pull'], 'the new archive not loaded yet: fetched first, the container stays exited');
  assert.deepEqual(actions({ imageStale: () => false, imageIdFor: () => idB }), ['remove image-changed'], 'loaded: re-created from it');
  assert.deepEqual(actions({ imageStale: () => false, imageIdFor: () => idA }), ['restart'], 'created from the wanted image: started again');
  const never = pod('u1', NAME, 'Never');
  const neverSpec = toRunSpec(never, 'c', 'n1');
  const ctx = { ...base, imageStale: () => true, imageIdFor: () => idB };
  assert.deepEqual(plan([{ ...exited, name: neverSpec.name, labels: neverSpec.labels }], [never], ctx).steps.map((s) => s.action), ['restart'], 'Never: started again as it is');
});
