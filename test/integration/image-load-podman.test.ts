/**
 * The server's images on a device with real podman (a private store, test/helpers/podman.ts): an
 * archive `podman save` made is fetched by the agent's ImageManager from a real HTTPS server speaking
 * the contract's routes, loaded, and a container runs from it; a truncated archive is refused with
 * podman's own complaint; `drover image load FILE.tar --state-dir D` (airgap) loads with no server at
 * all, adds the archive's sha256 to the agent's record, and an agent's manager on that state dir
 * reports it. The same tag pushed again with other bytes: the new archive is fetched though the name is
 * on the device, the name then means the new image, a container running from the old one keeps it, and
 * a name the desired state uses that the archive does not carry (pushed with --name) is tagged.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Command } from 'commander';
import { execa } from 'execa';
import { ImageFetcher } from '../../agent/images/fetch.js';
import { ImageManager } from '../../agent/images/manager.js';
import { readRecord } from '../../agent/images/record.js';
import { plan } from '../../agent/engine/plan.js';
import { registerImageLoad } from '../../src/cli/image-load.js';
import type { CommandContext } from '../../src/cli/context.js';
import { RuntimeError } from '../../src/util/errors.js';
import { makeTestPki, manifestOf, startImageServer, type ImageServer } from '../helpers/image-server.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

let sb: PodmanSandbox;
let archive: string;
let data: Buffer;
const TAG = 'localhost/drover-test:1';

const podman = (args: string[]) => execa('podman', ['--root', sb.root, '--runroot', sb.runroot, ...args], { env: sb.env });
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

before(async () => {
  sb = await podmanSandbox();
  await buildTestImage(sb, TAG);
  archive = join(sb.dir, 'drover-test.tar');
  await podman(['save', '--output', archive, TAG]);
  await podman(['rmi', TAG]);
  data = await readFile(archive);
});

after(async () => {
  await sb?.cleanup();
});

test('runtime.load of a saved archive gives its name and podman lists it; a truncated archive is a RuntimeError naming podman\'s complaint', async () => {
  assert.deepEqual(await sb.runtime.load(archive), [TAG]);
  assert.equal(await sb.runtime.imageStoreDir(), sb.root, 'podman info\'s graphRoot: the filesystem the disk-pressure look measures');
  assert.match((await sb.runtime.imageId(TAG))!, /^[0-9a-f]{64}$/);
  assert.equal(await sb.runtime.imageId('localhost/no-such:1'), undefined);
  assert.ok((await sb.runtime.images()).includes(TAG));
  await sb.runtime.removeImage(TAG);
  assert.ok(!(await sb.runtime.images()).includes(TAG));
  const cut = join(sb.dir, 'cut.tar');
  await writeFile(cut, data.subarray(0, Math.floor(data.length / 2)));
  const err = await sb.runtime.load(cut).then(() => assert.fail('a truncated archive loaded'), (e: unknown) => e);
  assert.ok(err instanceof RuntimeError, String(err));
  assert.match(err.message, /^podman load of .*cut\.tar failed: payload does not match any of the supported image formats: .*docker-archive: .*unexpected EOF/);
});

test('fetched from the server over mTLS by the ImageManager, loaded into podman, and a container runs from it; the archive is gone afterwards', async () => {
  const pki = makeTestPki();
  const m = manifestOf(data, [TAG], 256 * 1024);
  const srv: ImageServer = await startImageServer(pki, [{ data, manifest: m }]);
  const stateDir = await mkdtemp(join(sb.dir, 'state-'));
  const fetcher = new ImageFetcher({ baseUrl: srv.url, tls: { ca: pki.ca, cert: pki.node.cert, key: pki.node.key }, stateDir });
  const images = new ImageManager({ stateDir, runtime: sb.runtime, fetcher: () => fetcher, refreshMs: 60_000 });
  await images.start();
  try {
    srv.corruptOnce.add(1);
    images.setDesired([{ name: TAG, digest: m.digest, size: m.size }]);
    const ready = await images.ensure(TAG);
    assert.equal(ready.fetched, true);
    assert.equal(ready.bytes, m.size);
    assert.ok((await sb.runtime.images()).includes(TAG));
    assert.deepEqual(images.digests(), [m.digest]);
    assert.deepEqual((await readRecord(stateDir)).record.images[m.digest]?.names, [TAG]);
    const id = await sb.runtime.run({ name: `from-server-${process.pid}`, image: TAG, env: {}, ports: [], labels: {} });
    for (let i = 0; i < 50 && !(await sb.runtime.logs(id, {})).includes('default-cmd'); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(await sb.runtime.logs(id, {}), /default-cmd/);
    await sb.runtime.remove(id);
    assert.deepEqual((await execa('ls', [join(stateDir, 'images')])).stdout.split('\n').sort(), ['loaded.json', 'partial']);
  } finally {
    await images.stop();
    fetcher.close();
    await srv.close();
  }
});

function cli(): { program: Command; out: string[] } {
  const out: string[] = [];
  const ctx = { io: { stdout: (s: string) => out.push(s), stderr: (s: string) => out.push(s), env: { ...process.env, ...sb.env } } } as unknown as CommandContext;
  const program = new Command().exitOverride();
  registerImageLoad(program.command('image').exitOverride(), ctx);
  return { program, out };
}

test('drover image load FILE.tar --state-dir D: loaded with no server, recorded by digest, and an agent on that state dir reports it', async () => {
  await sb.runtime.removeImage(TAG);
  const stateDir = await mkdtemp(join(sb.dir, 'airgap-'));
  const agent = new ImageManager({ stateDir, runtime: sb.runtime, fetcher: () => assert.fail('no transfer for an airgap image'), refreshMs: 60_000 });
  await agent.start();
  let told = 0;
  agent.onChange(() => told++);
  const common = ['--state-dir', stateDir, '--runtime', 'podman', '--podman-root', sb.root, '--podman-runroot', sb.runroot];
  const { program, out } = cli();
  await program.parseAsync(['image', 'load', archive, ...common], { from: 'user' });
  assert.match(out.join(''), new RegExp(`^Loaded ${TAG} from .*drover-test\\.tar \\(${sha(data)}, \\d+\\.\\d MB\\) into podman; recorded in .*loaded\\.json\\n$`));
  assert.ok((await sb.runtime.images()).includes(TAG));
  const { record } = await readRecord(stateDir);
  assert.deepEqual(record.images[sha(data)], { ...record.images[sha(data)]!, names: [TAG], source: 'airgap' });
  await agent.refresh();
  assert.deepEqual(agent.digests(), [sha(data)]);
  assert.ok(told > 0, 'the agent tells its reporter');
  await agent.stop();

  // Bad input: a missing file, a truncated archive; the record keeps what it had.
  const bad = cli();
  await assert.rejects(bad.program.parseAsync(['image', 'load', join(sb.dir, 'nope.tar'), ...common], { from: 'user' }), /cannot read .*nope\.tar: ENOENT/);
  const cut = join(sb.dir, 'cut2.tar');
  await writeFile(cut, data.subarray(0, 5000));
  await assert.rejects(bad.program.parseAsync(['image', 'load', cut, ...common], { from: 'user' }), /podman load of .*cut2\.tar failed: .*EOF/);
  assert.deepEqual(Object.keys((await readRecord(stateDir)).record.images), [sha(data)]);
});

test('same tag pushed again: B is fetched though the name is here, the name then means B, a container from A keeps A; --name aliases are tagged; A removed by its id once unused', async () => {
  const X = 'localhost/drover-x:1';
  const ALIAS = 'localhost/drover-alias:7';
  const OTHER = 'localhost/drover-other:2';
  const id = async (ref: string) => (await podman(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();
  // A, then B built on it with another CMD under the same name; both saved, then gone from the store.
  await buildTestImage(sb, X);
  const idA = await id(X);
  const ctx = await mkdtemp(join(sb.dir, 'b-'));
  await writeFile(join(ctx, 'Containerfile'), `FROM ${X}\nCMD ["sh","-c","echo second-cmd; sleep 3600"]\n`);
  await podman(['build', '--quiet', '--network', 'none', '-t', X, ctx]);
  const idB = await id(X);
  assert.notEqual(idA, idB);
  const [a, b] = [join(sb.dir, 'x-a.tar'), join(sb.dir, 'x-b.tar')];
  await podman(['save', '--output', b, X]);
  await podman(['tag', idA, X]);
  await podman(['save', '--output', a, X]);
  await podman(['rmi', '--force', idB, idA]);
  const [dataA, dataB] = [await readFile(a), await readFile(b)];
  const mA = manifestOf(dataA, [X], 256 * 1024);
  const mB = manifestOf(dataB, [X], 256 * 1024);

  const pki = makeTestPki();
  const srv: ImageServer = await startImageServer(pki, [{ data: dataA, manifest: mA }, { data: dataB, manifest: mB }]);
  const stateDir = await mkdtemp(join(sb.dir, 'repush-'));
  const fetcher = new ImageFetcher({ baseUrl: srv.url, tls: { ca: pki.ca, cert: pki.node.cert, key: pki.node.key }, stateDir });
  // Held while the plan is asked (a 2 MB transfer on loopback may end before it).
  let mayFetch = true;
  const images = new ImageManager({
    stateDir,
    runtime: sb.runtime,
    fetcher: () => fetcher,
    refreshMs: 60_000,
    mayFetch: () => mayFetch,
    inUse: async () => (await sb.runtime.list({})).map((c) => c.image),
    gcGraceMs: 0,
    keepPerName: 0,
  });
  await images.start();
  const logsOf = async (cid: string, want: string) => {
    for (let i = 0; i < 50 && !(await sb.runtime.logs(cid, {})).includes(want); i++) await new Promise((r) => setTimeout(r, 100));
    return sb.runtime.logs(cid, {});
  };
  const containerImage = async (cid: string) => (await podman(['inspect', '--format', '{{.Image}}', cid])).stdout.trim();
  const exists = async (ref: string) => (await podman(['image', 'exists', ref]).then(() => true, () => false));
  const pod = { uid: 'u1', namespace: 'default', name: 'p', spec: { containers: [{ name: 'c', image: X }], restartPolicy: 'Always' } } as unknown as Parameters<typeof plan>[1][number];
  const ids: string[] = [];
  try {
    images.setDesired([{ name: X, digest: mA.digest, size: mA.size }]);
    assert.equal((await images.ensure(X)).fetched, true);
    assert.equal(await id(X), idA);
    assert.equal((await readRecord(stateDir)).record.images[mA.digest]?.id, idA, 'the loaded image\'s id is recorded');
    ids.push(await sb.runtime.run({ name: `old-${process.pid}`, image: X, env: {}, ports: [], labels: {} }));
    assert.match(await logsOf(ids[0]!, 'default-cmd'), /default-cmd/);

    // B pushed under the same name (and with --name ALIAS, which the archive does not carry): the name
    // is on the device, yet a new container must wait for B.
    const sentBefore = srv.blobBytesSent;
    mayFetch = false;
    images.setDesired([{ name: X, digest: mB.digest, size: mB.size }, { name: ALIAS, digest: mB.digest, size: mB.size }]);
    const onDevice = new Set(await sb.runtime.images());
    assert.ok(onDevice.has(X));
    const ctxPlan = { node: 'n', now: 0, images: onDevice, restartBackoff: () => 0, imageStale: (i: string) => images.awaiting(i) };
    assert.deepEqual(plan([], [pod], ctxPlan).steps.map((s) => s.action), ['pull'], 'the plan fetches B first');
    assert.deepEqual(plan([], [pod], { ...ctxPlan, imageStale: undefined }).steps.map((s) => s.action), ['run'], 'without the check it would run A');
    mayFetch = true;
    assert.equal((await images.ensure(X)).fetched, true);
    assert.equal(srv.blobBytesSent - sentBefore, mB.size);
    assert.equal(images.awaiting(X), false);
    assert.equal(await id(X), idB, 'podman load moved the name to B');
    assert.equal(await id(ALIAS), idB, 'the --name alias is tagged');
    assert.deepEqual(await images.ensure(ALIAS), { fetched: false });
    assert.equal(await containerImage(ids[0]!), idA, 'the running container keeps A (a tag that moves restarts nothing)');
    assert.equal((await sb.runtime.inspect(ids[0]!))?.state, 'running');
    assert.ok(await exists(idA), 'A stays, untagged, while a container uses it');
    // What the plan compares before a restart: the container's image id (podman ps) against the one loaded for the name.
    assert.equal((await sb.runtime.list({})).find((c) => c.id === ids[0])?.imageId, idA);
    assert.equal(images.loadedId(X), idB);
    ids.push(await sb.runtime.run({ name: `new-${process.pid}`, image: X, env: {}, ports: [], labels: {} }));
    assert.match(await logsOf(ids[1]!, 'second-cmd'), /second-cmd/);
    assert.equal(await containerImage(ids[1]!), idB);

    // B given one more name: tagged from the image on the device, nothing fetched again.
    images.setDesired([{ name: X, digest: mB.digest, size: mB.size }, { name: OTHER, digest: mB.digest, size: mB.size }]);
    const sent = srv.blobBytesSent;
    assert.deepEqual(await images.ensure(OTHER), { fetched: false });
    assert.equal(srv.blobBytesSent, sent);
    assert.equal(await id(OTHER), idB);
    assert.deepEqual((await readRecord(stateDir)).record.images[mB.digest]?.names, [ALIAS, OTHER, X]);

    // Garbage collection: A is kept while a container uses it, then removed by its id (it has no name left).
    await images.gc();
    assert.deepEqual(await images.gc(), []);
    assert.ok(await exists(idA));
    for (const cid of ids.splice(0)) await sb.runtime.remove(cid);
    await images.gc();
    assert.deepEqual(await images.gc(), [mA.digest]);
    assert.equal(await exists(idA), false, 'A removed');
    assert.equal(await id(X), idB, 'B untouched');
  } finally {
    for (const cid of ids) await sb.runtime.remove(cid).catch(() => undefined);
    await images.stop();
    fetcher.close();
    await srv.close();
    await podman(['rmi', '--force', '--ignore', X, ALIAS, OTHER, idA, idB]).catch(() => undefined);
  }
});
