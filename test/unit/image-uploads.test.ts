/**
 * Chunked uploads into the image store on real files (server/images/uploads.ts): pieces appended only at
 * the offset the server holds, a piece cut midway keeping what arrived, a newer piece taking over from one
 * whose client vanished, a commit that stores the file exactly as a one-request push (same manifest, the
 * part renamed, no copy left) or refuses a wrong digest naming both and keeps nothing; the cap, idle
 * expiry across a restart, a full disk (tmpfs) keeping what the upload had, bad ids.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { silentLogger } from '../../src/util/logger.js';
import { ImageStore } from '../../server/images/store.js';
import { UploadOffsetError } from '../../server/images/uploads.js';

/** A docker-archive as `podman save` lays it out (manifest.json, config, one layer of random bytes). */
async function dockerArchive(dir: string, tag: string, layerBytes: number): Promise<Buffer> {
  const src = await mkdtemp(join(dir, 'src-'));
  await writeFile(join(src, 'layer.tar'), randomBytes(layerBytes));
  await writeFile(join(src, 'config.json'), '{}');
  await writeFile(join(src, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: [tag], Layers: ['layer.tar'] }]));
  const out = join(dir, `a-${randomBytes(4).toString('hex')}.tar`);
  await execa('tar', ['-cf', out, '-C', src, 'manifest.json', 'config.json', 'layer.tar']);
  await rm(src, { recursive: true });
  return readFile(out);
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const noStop = () => undefined;
const LIMIT = 1024 ** 3;

test('image uploads: pieces at the offset, cut pieces, take-over, commit, refusals, cap, idle expiry', { timeout: 30_000 }, async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'drover-image-uploads-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const dir = join(base, 'images');
  let clock = Date.parse('2026-11-28T12:00:00Z');
  const now = () => clock;
  let store = await ImageStore.open({ dir, logger: silentLogger, chunkSize: 64 * 1024, now, uploads: { maxOpen: 3, sweepMs: 0 } });
  const archive = await dockerArchive(base, 'localhost/app:1', 600_000);

  await t.test('pieces append only at the offset held; the commit stores what a one-request push stores, and the part becomes the blob', async () => {
    const { id, offset } = await store.uploads.create(['app:extra']);
    assert.equal(offset, 0);
    assert.match(id, /^[0-9a-f]{32}$/);
    const piece = 200_000;
    let at = 0;
    while (at < archive.length) {
      const b = archive.subarray(at, at + piece);
      at = (await store.uploads.append(id, at, b.length, once(b), noStop, LIMIT)).offset;
      if (at === piece) {
        // The same piece again (its answer lost): refused with where the upload stands.
        await assert.rejects(store.uploads.append(id, 0, piece, once(archive.subarray(0, piece)), noStop, LIMIT), (err: unknown) => err instanceof UploadOffsetError && err.code === 409 && err.offset === piece && /must start at offset 200000, not 0/.test(err.message));
      }
    }
    assert.equal(store.uploads.state(id).offset, archive.length);
    const r = await store.uploads.commit(id, digestOf(archive));
    assert.equal(r.created, true);
    assert.equal(r.manifest.digest, digestOf(archive));
    assert.deepEqual(r.manifest.names, ['localhost/app:extra', 'localhost/app:1']);
    // The same manifest (chunk digests included) as the one-request push of those bytes into another store.
    const other = await ImageStore.open({ dir: join(base, 'other'), logger: silentLogger, chunkSize: 64 * 1024, now, uploads: { sweepMs: 0 } });
    const direct = await other.put(once(archive), ['app:extra']);
    assert.deepEqual(r.manifest, direct.manifest);
    assert.deepEqual(await readdir(join(dir, 'uploads')), [], 'the part was renamed into the store, its description removed');
    assert.deepEqual(await readdir(join(dir, 'tmp')), []);
    assert.deepEqual(await readFile(join(dir, 'blobs', 'sha256', r.manifest.digest.slice(7))), archive);
    assert.throws(() => store.uploads.state(id), /image upload [0-9a-f]{32} \(finished, deleted/);
  });

  await t.test('a piece cut midway keeps the bytes that arrived; the next piece goes on from there', async () => {
    const { id } = await store.uploads.create([]);
    async function* cut(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 70_000);
      throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
    }
    await assert.rejects(store.uploads.append(id, 0, 300_000, cut(), noStop, LIMIT), /aborted/);
    assert.equal(store.uploads.state(id).offset, 70_000);
    assert.equal(await store.uploads.sizeOnDisk(id), 70_000);
    const rest = archive.subarray(70_000);
    assert.equal((await store.uploads.append(id, 70_000, rest.length, once(rest), noStop, LIMIT)).offset, archive.length);
    const r = await store.uploads.commit(id, digestOf(archive));
    assert.equal(r.created, false, 'those bytes were stored already: names added, no second copy');
  });

  await t.test('a newer piece takes over from one whose client went silent', async () => {
    const { id } = await store.uploads.create(['app:3']);
    let stop!: () => void;
    const stopped = new Promise<never>((_, reject) => (stop = () => reject(new Error('stopped by a newer piece'))));
    stopped.catch(() => undefined);
    async function* silent(): AsyncGenerator<Buffer> {
      yield archive.subarray(0, 1000);
      await stopped;
    }
    const first = store.uploads.append(id, 0, 500_000, silent(), () => stop(), LIMIT).then(() => undefined, (err: unknown) => err);
    while (store.uploads.state(id).offset < 1000) await new Promise((r) => setImmediate(r));
    const rest = archive.subarray(1000);
    const second = await store.uploads.append(id, 1000, rest.length, once(rest), noStop, LIMIT);
    assert.match(String(await first), /stopped by a newer piece/);
    assert.equal(second.offset, archive.length);
    await store.uploads.remove(id);
  });

  await t.test('a commit with another digest is refused naming both, and nothing is kept', async () => {
    const { id } = await store.uploads.create(['wrong:1']);
    const bent = Buffer.from(archive);
    bent[1000] ^= 0xff;
    await store.uploads.append(id, 0, bent.length, once(bent), noStop, LIMIT);
    const before = store.list().map((m) => m.digest);
    await assert.rejects(store.uploads.commit(id, digestOf(archive)), (err: Error & { code?: number }) => err.code === 400 && err.message.includes(digestOf(bent)) && err.message.includes(digestOf(archive)) && /nothing was stored/.test(err.message));
    assert.deepEqual(store.list().map((m) => m.digest), before);
    assert.equal(store.byName('wrong:1'), undefined);
    assert.throws(() => store.uploads.state(id), (err: Error & { code?: number }) => err.code === 404);
    assert.deepEqual(await readdir(join(dir, 'uploads')), []);
    // Bytes that are what the client sent but no archive: the archive checks of a one-request push.
    const junk = Buffer.from('not a tar\n'.repeat(100));
    const j = await store.uploads.create(['junk:1']);
    await store.uploads.append(j.id, 0, junk.length, once(junk), noStop, LIMIT);
    await assert.rejects(store.uploads.commit(j.id, digestOf(junk)), /not an image archive/);
    assert.deepEqual(await readdir(join(dir, 'uploads')), []);
  });

  await t.test('past the cap 503; over the upload limit 413; bad and unknown ids 400 and 404', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await store.uploads.create([])).id);
    await assert.rejects(store.uploads.create([]), (err: Error & { code?: number }) => err.code === 503 && /holds 3 unfinished image uploads, its cap/.test(err.message));
    await assert.rejects(store.uploads.append(ids[0]!, 0, 2000, once(Buffer.alloc(2000)), noStop, 1000), (err: Error & { code?: number }) => err.code === 413);
    await store.uploads.remove(ids[2]!);
    ids[2] = (await store.uploads.create([])).id;
    for (const bad of ['../../etc/passwd', 'A'.repeat(32), 'a'.repeat(31), '']) assert.throws(() => store.uploads.state(bad), (err: Error & { code?: number }) => err.code === 400);
    assert.throws(() => store.uploads.state('0'.repeat(32)), (err: Error & { code?: number }) => err.code === 404);
    // Names are checked at creation, not after the whole archive went up.
    await assert.rejects(store.uploads.create(['Bad Name!']), (err: Error & { code?: number }) => err.code === 400);
    for (const id of ids) await store.uploads.remove(id);
  });

  await t.test('uploads outlive a restart; idle ones expire, at open and by the sweep', async () => {
    const a = await store.uploads.create(['keep:1']);
    await store.uploads.append(a.id, 0, 5000, once(archive.subarray(0, 5000)), noStop, LIMIT);
    const b = await store.uploads.create(['idle:1']);
    store.close();
    // Stray files in the directory (an interrupted metadata write) go at open.
    await writeFile(join(dir, 'uploads', 'x.json.tmp-1'), '{');
    await mkdir(join(dir, 'uploads', 'nested'));
    store = await ImageStore.open({ dir, logger: silentLogger, chunkSize: 64 * 1024, now, uploads: { maxOpen: 3, sweepMs: 0, idleMs: 60_000 } });
    assert.equal(store.uploads.state(a.id).offset, 5000);
    assert.equal(store.uploads.state(b.id).offset, 0);
    assert.deepEqual((await readdir(join(dir, 'uploads'))).sort(), [`${a.id}.json`, `${a.id}.part`, `${b.id}.json`, `${b.id}.part`].sort());
    // The files' times are the real clock's: move this store's clock past them.
    clock = Date.now() + 30_000;
    await store.uploads.append(a.id, 5000, 5000, once(archive.subarray(5000, 10_000)), noStop, LIMIT);
    clock += 40_000;
    assert.deepEqual(await store.uploads.sweep(), [b.id], 'b idle 70 s, a touched 40 s ago');
    assert.equal(store.uploads.state(a.id).offset, 10_000);
    store.close();
    clock = Date.now() + 24 * 3600_000;
    store = await ImageStore.open({ dir, logger: silentLogger, now, uploads: { sweepMs: 0 } });
    assert.equal(store.uploads.count, 0, 'idle for more than 24 h at open: deleted');
    assert.deepEqual(await readdir(join(dir, 'uploads')), []);
    store.close();
  });
});

test('image uploads on a full disk: 507, the upload keeps what it had, its offset what is on disk', { timeout: 30_000 }, async (t) => {
  const mnt = await mkdtemp(join(tmpdir(), 'drover-upload-full-'));
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  t.after(async () => {
    await execa('umount', [mnt]);
    await rm(mnt, { recursive: true, force: true });
  });
  const store = await ImageStore.open({ dir: join(mnt, 'images'), logger: silentLogger, uploads: { sweepMs: 0 } });
  const { id } = await store.uploads.create(['full:1']);
  const first = randomBytes(1024 * 1024);
  await store.uploads.append(id, 0, first.length, once(first), noStop, LIMIT);
  // Declared bigger than the room left: refused before a byte is written.
  await assert.rejects(store.uploads.append(id, first.length, 3 * 1024 * 1024, once(randomBytes(10)), noStop, LIMIT), (err: Error & { code?: number }) => err.code === 507);
  assert.equal(store.uploads.state(id).offset, first.length);
  // The room check passed, then the disk fills while the piece arrives (another writer, here: more bytes than declared).
  async function* lots(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 16; i++) yield randomBytes(128 * 1024);
  }
  await assert.rejects(store.uploads.append(id, first.length, 1000, lots(), noStop, LIMIT), (err: Error & { code?: number }) => err.code === 507 && /ran out of disk space while appending.*keeps the \d+ bytes it had/.test(err.message));
  const kept = store.uploads.state(id).offset;
  assert.ok(kept >= first.length, `kept ${kept}`);
  assert.equal(await store.uploads.sizeOnDisk(id), kept, 'the offset is what is on disk');
  store.close();
});
