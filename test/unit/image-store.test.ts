/**
 * The server's image store on real files (issue 15): archives made by GNU tar in a temp dir, stored,
 * found by the names pods use, cut into chunks whose sha256 a device can check; refused when truncated,
 * not tar, not an image, or when the disk is full, always without a leftover; whole again after a restart.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { chunkRange, imageManifest } from '../../src/contract/images.js';
import { silentLogger } from '../../src/util/logger.js';
import { nameCandidates, normalizeImageName } from '../../server/images/archive.js';
import { ImageStore, type ImageChange } from '../../server/images/store.js';

/** A docker-archive as `podman save` lays it out: manifest.json, the config, one layer tar. */
async function dockerArchive(dir: string, opts: { tags: string[]; layerBytes: number; seed?: string }): Promise<Buffer> {
  const src = await mkdtemp(join(dir, 'src-'));
  const layerSrc = join(src, 'layer-src');
  await mkdir(layerSrc);
  await writeFile(join(layerSrc, 'payload'), Buffer.concat([Buffer.from(opts.seed ?? ''), randomBytes(opts.layerBytes)]));
  const layerTar = join(src, 'layer.tar');
  await execa('tar', ['-cf', layerTar, '-C', layerSrc, 'payload']);
  await rm(layerSrc, { recursive: true });
  await writeFile(join(src, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  await writeFile(join(src, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: opts.tags, Layers: ['layer.tar'] }]));
  const out = join(dir, `archive-${randomBytes(4).toString('hex')}.tar`);
  // `-C src .`: entries come as ./manifest.json, as a hand-made archive often does.
  await execa('tar', ['-cf', out, '-C', src, '.']);
  await rm(src, { recursive: true });
  const bytes = await readFile(out);
  await rm(out);
  return bytes;
}

/** A body streamed in uneven pieces, as a socket delivers it. */
async function* pieces(b: Buffer, size = 70_001): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function tmpFiles(dir: string): Promise<string[]> {
  return readdir(join(dir, 'tmp'));
}

test('image store: put, chunks, names, moves, removal, refusals and restart', { timeout: 30_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'drover-image-store-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const dir = join(base, 'images');
  let store = await ImageStore.open({ dir, logger: silentLogger });
  const changes: ImageChange[] = [];
  store.onChange((c) => changes.push(c));

  const a = await dockerArchive(base, { tags: ['localhost/drover-test:1'], layerBytes: 2_600_000 });

  await t.test('stores an archive under its digest, with chunk digests a device can check', async () => {
    const { manifest, created } = await store.put(pieces(a), []);
    assert.equal(created, true);
    imageManifest.parse(manifest);
    assert.equal(manifest.digest, `sha256:${sha256(a)}`);
    assert.equal(manifest.size, a.length);
    assert.equal(manifest.format, 'docker-archive');
    assert.deepEqual(manifest.names, ['localhost/drover-test:1'], 'the name the archive carries');
    assert.equal(manifest.chunks.length, Math.ceil(a.length / manifest.chunkSize));
    for (let i = 0; i < manifest.chunks.length; i++) {
      const { start, end } = chunkRange(manifest, i);
      assert.equal(manifest.chunks[i], sha256(a.subarray(start, end + 1)), `chunk ${i}`);
    }
    assert.deepEqual(await readFile(join(dir, 'blobs', 'sha256', sha256(a))), a, 'the archive as uploaded');
    assert.deepEqual(changes.at(-1), { digest: manifest.digest, before: [], after: ['localhost/drover-test:1'] });
  });

  await t.test('finds it by the references pods write', () => {
    const digest = `sha256:${sha256(a)}`;
    for (const ref of ['localhost/drover-test:1', 'drover-test:1']) assert.equal(store.byName(ref)?.digest, digest, ref);
    for (const ref of ['drover-test', 'drover-test:2', 'docker.io/library/drover-test:1', 'quay.io/drover-test:1']) assert.equal(store.byName(ref), undefined, ref);
  });

  await t.test('a range of bytes read back is exactly that part of the archive', async () => {
    const digest = `sha256:${sha256(a)}`;
    const s = await store.openRange(digest, 1000, 1_048_576 + 99);
    const parts: Buffer[] = [];
    for await (const p of s) parts.push(p as Buffer);
    assert.deepEqual(Buffer.concat(parts), a.subarray(1000, 1_048_576 + 100));
  });

  await t.test('the same bytes again only add names; a name given moves from the archive that had it', async () => {
    const again = await store.put(pieces(a), ['app:1']);
    assert.equal(again.created, false);
    assert.deepEqual(again.manifest.names, ['localhost/drover-test:1', 'localhost/app:1']);
    const b = await dockerArchive(base, { tags: ['localhost/other:2'], layerBytes: 3000 });
    const put = await store.put(pieces(b), ['localhost/app:1']);
    assert.equal(put.created, true);
    assert.deepEqual(put.manifest.names.sort(), ['localhost/app:1', 'localhost/other:2']);
    assert.equal(store.byName('app:1')?.digest, put.manifest.digest, 'app:1 now names the second archive');
    assert.deepEqual(store.get(`sha256:${sha256(a)}`)?.names, ['localhost/drover-test:1'], 'and left the first');
    assert.ok(changes.some((c) => c.digest === `sha256:${sha256(a)}` && c.after.length === 1 && c.before.includes('localhost/app:1')), 'listeners told of the move');
    // An archive whose last name moves away can no longer be asked for: it goes.
    const c = await dockerArchive(base, { tags: ['localhost/other:2'], layerBytes: 3000 });
    const third = await store.put(pieces(c), ['app:1']);
    assert.equal(store.get(put.manifest.digest), undefined, 'the second archive lost both names and was removed');
    await assert.rejects(readFile(join(dir, 'blobs', 'sha256', put.manifest.digest.slice(7))), { code: 'ENOENT' });
    assert.equal(store.byName('other:2')?.digest, third.manifest.digest);
  });

  await t.test('two pushes of the same new bytes at once store one archive', async () => {
    const d = await dockerArchive(base, { tags: ['localhost/twice:1'], layerBytes: 1_500_000 });
    const [x, y] = await Promise.all([store.put(pieces(d, 50_000), []), store.put(pieces(d, 90_000), ['twice:2'])]);
    assert.equal(x.manifest.digest, y.manifest.digest);
    assert.deepEqual([x.created, y.created].sort(), [false, true]);
    assert.deepEqual(store.get(x.manifest.digest)?.names.sort(), ['localhost/twice:1', 'localhost/twice:2']);
    assert.deepEqual(await tmpFiles(dir), []);
    await store.remove(x.manifest.digest);
  });

  await t.test('an oci-archive (index.json, oci-layout) is stored as one, named by its ref annotation', async () => {
    const src = await mkdtemp(join(base, 'oci-'));
    await mkdir(join(src, 'blobs', 'sha256'), { recursive: true });
    const layer = randomBytes(5000);
    await writeFile(join(src, 'blobs', 'sha256', sha256(layer)), layer);
    await writeFile(join(src, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(src, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha256(layer)}`, size: 5000, annotations: { 'org.opencontainers.image.ref.name': 'localhost/oci-app:3' } }] }));
    await execa('tar', ['-cf', join(base, 'oci.tar'), '-C', src, 'oci-layout', 'index.json', 'blobs']);
    const o = await store.put(pieces(await readFile(join(base, 'oci.tar'))), []);
    assert.equal(o.manifest.format, 'oci-archive');
    assert.deepEqual(o.manifest.names, ['localhost/oci-app:3']);
    await assert.rejects(store.put(pieces(await readFile(join(base, 'oci.tar'))), [], { format: 'docker-archive' }), /is an oci-archive, not the docker-archive/);
    await store.remove(o.manifest.digest);
  });

  await t.test('refuses what is not a whole image archive, with the cause, and keeps nothing', async () => {
    const before = store.list().map((m) => m.digest);
    const refuse = async (body: Buffer, re: RegExp, names: string[] = ['x:1']) => {
      await assert.rejects(store.put(pieces(body), names), (err: Error & { code?: number }) => err.code === 400 && re.test(err.message));
      assert.deepEqual(await tmpFiles(dir), [], 'no temp file left');
      assert.deepEqual(store.list().map((m) => m.digest), before, 'store unchanged');
    };
    await refuse(a.subarray(0, Math.floor(a.length / 2)), /truncated archive: it ends inside entry "layer\.tar"/);
    // Cut right after the last entry: every entry whole, the end-of-archive blocks (and GNU tar's zero padding) gone.
    let last = a.length - 1;
    while (a[last] === 0) last--;
    await refuse(a.subarray(0, Math.ceil((last + 1) / 512) * 512), /truncated archive: no end-of-archive marker/);
    await refuse(Buffer.from('{"kind":"Pod"}\n'.repeat(100)), /not a tar archive/);
    await refuse(Buffer.alloc(0), /empty body/);
    const corrupt = Buffer.from(a);
    // The second header (the first is ./, a directory with no data) with one byte of its name changed.
    assert.equal(corrupt.toString('latin1', 512, 514), './');
    corrupt[512 + 3] ^= 0x01;
    await refuse(corrupt, /corrupt tar header at byte 512 \(checksum mismatch\)/);
    // A tar that is not an image.
    const plain = join(base, 'plain');
    await mkdir(plain);
    await writeFile(join(plain, 'notes.txt'), 'hello');
    await execa('tar', ['-cf', join(base, 'plain.tar'), '-C', plain, 'notes.txt']);
    await refuse(await readFile(join(base, 'plain.tar')), /without manifest\.json/);
    // An image with no name anywhere.
    await refuse(await dockerArchive(base, { tags: [], layerBytes: 100 }), /needs a name/, []);
    await assert.rejects(store.put(pieces(a), ['UPPER/case']), /invalid image name "UPPER\/case"/);
    await assert.rejects(store.put(pieces(a), ['app@sha256:' + 'a'.repeat(64)]), /digest reference cannot name an archive/);
    await assert.rejects(store.put(pieces(a), [], { maxBytes: 1_000_000 }), (err: Error & { code?: number }) => err.code === 413);
    assert.deepEqual(await tmpFiles(dir), []);
  });

  await t.test('a restart keeps every image and clears what a crash left behind', async () => {
    const kept = store.list();
    // A crash's leftovers: a half-written upload, a manifest temp file, an archive with no manifest.
    await writeFile(join(dir, 'tmp', 'upload-crashed'), a.subarray(0, 5000));
    await writeFile(join(dir, 'manifests', `${'e'.repeat(64)}.json.tmp-123`), '{');
    await writeFile(join(dir, 'blobs', 'sha256', 'f'.repeat(64)), 'orphan');
    store = await ImageStore.open({ dir, logger: silentLogger });
    assert.deepEqual(store.list(), kept);
    assert.equal(store.byName('drover-test:1')?.digest, `sha256:${sha256(a)}`);
    assert.deepEqual(await tmpFiles(dir), []);
    assert.deepEqual((await readdir(join(dir, 'manifests'))).sort(), kept.map((m) => `${m.digest.slice(7)}.json`).sort());
    assert.deepEqual((await readdir(join(dir, 'blobs', 'sha256'))).sort(), kept.map((m) => m.digest.slice(7)).sort());
  });

  await t.test('removal frees the archive and its names', async () => {
    const digest = `sha256:${sha256(a)}`;
    await store.remove(digest);
    assert.equal(store.get(digest), undefined);
    assert.equal(store.byName('drover-test:1'), undefined);
    await assert.rejects(store.remove(digest), (err: Error & { code?: number }) => err.code === 404);
    assert.throws(() => store.get('sha256:../../etc/passwd'), /invalid image digest/);
  });
});

test('image names are normalized as podman names what it loads, and looked up as podman resolves short names', () => {
  assert.equal(normalizeImageName('app:1'), 'localhost/app:1');
  assert.equal(normalizeImageName('busybox'), 'localhost/busybox:latest');
  assert.equal(normalizeImageName('someuser/z:3'), 'localhost/someuser/z:3');
  assert.equal(normalizeImageName('localhost/drover-test:1'), 'localhost/drover-test:1');
  assert.equal(normalizeImageName('docker.io/busybox'), 'docker.io/library/busybox:latest');
  assert.equal(normalizeImageName('registry.local:5000/team/app:2.1'), 'registry.local:5000/team/app:2.1');
  assert.deepEqual(nameCandidates('busybox'), ['localhost/busybox:latest', 'docker.io/library/busybox:latest']);
  assert.deepEqual(nameCandidates('team/app:1'), ['localhost/team/app:1', 'docker.io/team/app:1']);
  assert.deepEqual(nameCandidates('quay.io/x/y:2'), ['quay.io/x/y:2']);
  assert.deepEqual(nameCandidates('nginx@sha256:' + 'a'.repeat(64)), []);
});

test('image store on a full disk: 507 naming the cause, nothing stored, no temp file', { timeout: 30_000 }, async (t) => {
  const mnt = await mkdtemp(join(tmpdir(), 'drover-image-full-'));
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  t.after(async () => {
    await execa('umount', [mnt]);
    await rm(mnt, { recursive: true, force: true });
  });
  const dir = join(mnt, 'images');
  const store = await ImageStore.open({ dir, logger: silentLogger });
  const work = await mkdtemp(join(tmpdir(), 'drover-image-src-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const small = await dockerArchive(work, { tags: ['localhost/small:1'], layerBytes: 10_000 });
  const small0 = await store.put(pieces(small), []);
  const big = await dockerArchive(work, { tags: ['localhost/big:1'], layerBytes: 3_000_000 });
  // Not declared: found out while writing.
  await assert.rejects(store.put(pieces(big), []), (err: Error & { code?: number }) => err.code === 507 && /ran out of disk space.*ENOSPC.*nothing was stored/.test(err.message));
  assert.deepEqual(await tmpFiles(dir), []);
  assert.deepEqual(store.list().map((m) => m.digest), [small0.manifest.digest]);
  // Declared (Content-Length): refused before a byte is written.
  const free = (await statfs(dir)).bavail * (await statfs(dir)).bsize;
  await assert.rejects(store.put(pieces(big), [], { expectedBytes: big.length }), (err: Error & { code?: number }) => err.code === 507 && new RegExp(`${free} bytes free`).test(err.message));
  // Room enough for the small one again: the store still works.
  const reopened = await ImageStore.open({ dir, logger: silentLogger });
  assert.equal(reopened.byName('small:1')?.digest, small0.manifest.digest);
});
