/**
 * The datastore snapshot file (server/store/snapshot.ts) as an operator's disk sees it: written 0600 and
 * atomically, read back exactly, and refused — naming the cause — when it is cut short, edited, or not a
 * snapshot at all. The objects here are records as a store dump produces them, a sealed Secret among them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { HEADER_BYTES, SnapshotError, readSnapshot, writeSnapshot } from '../../server/store/snapshot.js';
import type { RawObject } from '../../server/store/raw-objects.js';

const SEALED = 'k8s:enc:aesgcm:v1:k1:' + Buffer.from('opaque sealed bytes, never opened here').toString('base64');

function objects(): RawObject[] {
  return [
    { key: '/registry/Namespace//default', revision: 1, value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default', uid: 'u-ns' } } },
    { key: '/registry/ConfigMap/default/ünïcode', revision: 7, value: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ünïcode', namespace: 'default', uid: 'u-cm' }, data: { k: 'v'.repeat(70_000) } } },
    { key: '/registry/Secret/default/db', value: SEALED },
  ];
}

async function tmp(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-snapfile-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a snapshot reads back exactly what was written; 0600; the header tells what it holds; Secrets stay sealed', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'snap');
  const header = await writeSnapshot(file, 'leveldb', 42, objects());
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ['snap'], 'no temp file left');
  assert.deepEqual(header.kinds, { Namespace: 1, ConfigMap: 1, Secret: 1 });
  assert.equal(header.sealedSecrets, 1);
  assert.deepEqual(header.keyIds, ['k1']);
  const back = await readSnapshot(file);
  assert.deepEqual(back.objects, objects());
  assert.equal(back.header.revision, 42);
  assert.equal(back.header.source, 'leveldb');
  const raw = await readFile(file);
  assert.equal(JSON.parse(raw.subarray(0, HEADER_BYTES).toString()).objects, 3, 'the header is plain JSON (head -c 4096)');
  const body = gunzipSync(raw.subarray(HEADER_BYTES)).toString();
  assert.ok(body.includes(SEALED), 'the sealed string is in the body as it was');
});

test('saving over an existing snapshot replaces it atomically; a failed save leaves the old one and no temp file', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'snap');
  await writeSnapshot(file, 'etcd', 5, objects().slice(0, 1));
  const before = await readFile(file);
  // A key id so long the header cannot hold it: the save fails after the body was written.
  const huge = `k8s:enc:aesgcm:v1:${'k'.repeat(64)}:AAAA`;
  const many = Array.from({ length: 80 }, (_, i) => ({ key: `/registry/Secret/default/s${i}`, value: huge.replace('kkkk', `k${String(i).padStart(3, '0')}`) }));
  await assert.rejects(writeSnapshot(file, 'etcd', 6, many), (err: Error) => err instanceof SnapshotError && /header is \d+ bytes/.test(err.message));
  assert.deepEqual(await readFile(file), before, 'the old snapshot is untouched');
  assert.deepEqual(await readdir(dir), ['snap']);
});

test('a truncated snapshot is refused naming the truncation', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'snap');
  await writeSnapshot(file, 'leveldb', 3, objects());
  const size = (await stat(file)).size;
  await truncate(file, size - 10);
  await assert.rejects(readSnapshot(file), /is truncated: \d+ bytes, its header says \d+; nothing was restored/);
  await truncate(file, 100);
  await assert.rejects(readSnapshot(file), /is not a drover datastore snapshot \(no 4096-byte header line/);
});

test('an edited body (one byte, or a re-compressed edit of an object) is refused by its checksum; bytes appended too', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'snap');
  await writeSnapshot(file, 'leveldb', 3, objects());
  const good = await readFile(file);

  const flipped = Buffer.from(good);
  flipped[HEADER_BYTES + 40] ^= 0x01;
  await writeFile(file, flipped);
  await assert.rejects(readSnapshot(file), /is damaged or was edited: the sha256 of its body is [0-9a-f]{64}, its header says [0-9a-f]{64}/);

  // An attacker rewriting a uid and keeping the length right still changes the hash.
  const body = gunzipSync(good.subarray(HEADER_BYTES)).toString().replace('u-cm', 'u-XX');
  const header = JSON.parse(good.subarray(0, HEADER_BYTES).toString());
  const rebody = gzipSync(body);
  const h = Buffer.alloc(HEADER_BYTES, ' ');
  h.write(JSON.stringify({ ...header, bodyBytes: rebody.length }));
  h[HEADER_BYTES - 1] = 0x0a;
  await writeFile(file, Buffer.concat([h, rebody]));
  await assert.rejects(readSnapshot(file), /sha256 of its body/);

  await writeFile(file, good);
  await appendFile(file, 'x');
  await assert.rejects(readSnapshot(file), /has 1 bytes more than its header says/);
});

test('a file that is no snapshot, or whose lines lie about their objects, is refused naming the cause', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'snap');
  await writeFile(file, 'hello\n'.repeat(2000));
  await assert.rejects(readSnapshot(file), /is not a drover datastore snapshot/);

  // A consistent file (the checksum recomputed) whose content is wrong: each line is checked.
  const forge = async (lines: string[], extra: Record<string, unknown> = {}) => {
    const body = gzipSync(lines.join('\n') + '\n');
    const header = { format: 'drover-datastore-snapshot', version: 1, source: 'etcd', revision: 9, objects: lines.length, kinds: {}, sealedSecrets: 0, keyIds: [], createdAt: '', bodyBytes: body.length, bodySha256: createHash('sha256').update(body).digest('hex'), ...extra };
    const h = Buffer.alloc(HEADER_BYTES, ' ');
    h.write(JSON.stringify(header));
    h[HEADER_BYTES - 1] = 0x0a;
    await writeFile(file, Buffer.concat([h, body]));
  };
  const cm = (name: string, extra: object = {}) => JSON.stringify({ key: `/registry/ConfigMap/default/${name}`, revision: 3, object: { kind: 'ConfigMap', metadata: { name, namespace: 'default', uid: 'u1' }, ...extra } });
  await forge([cm('a'), '{not json']);
  await assert.rejects(readSnapshot(file), /object 2 is not JSON/);
  await forge([cm('a'), cm('a')]);
  await assert.rejects(readSnapshot(file), /object 2: \/registry\/ConfigMap\/default\/a appears twice/);
  await forge([JSON.stringify({ key: '/registry/ConfigMap/default/a', revision: 3, object: { kind: 'ConfigMap', metadata: { name: 'b', namespace: 'default', uid: 'u' } } })]);
  await assert.rejects(readSnapshot(file), /the object is ConfigMap default\/b, stored under \/registry\/ConfigMap\/default\/a/);
  await forge([JSON.stringify({ key: '/registry/ConfigMap/default/a', sealed: SEALED })]);
  await assert.rejects(readSnapshot(file), /only a Secret may be sealed/);
  await forge([JSON.stringify({ key: '/registry/ConfigMap/default/a', revision: 3, object: { kind: 'ConfigMap', metadata: { name: 'a', namespace: 'default' } } })]);
  await assert.rejects(readSnapshot(file), /no metadata.uid/);
  await forge([cm('a')], { objects: 2 });
  await assert.rejects(readSnapshot(file), /holds 1 objects, its header says 2/);
  await forge([cm('a')], { version: 2 });
  await assert.rejects(readSnapshot(file), /snapshot format version 2 is not one this drover reads/);
  await forge([cm('a')], { bodySha256: 'nope' });
  await assert.rejects(readSnapshot(file), /the snapshot header is damaged \(bodySha256/);
});

test('a symlink planted at the temp path or at FILE is not followed: the file it points to is untouched', async (t) => {
  const dir = await tmp(t);
  const victim = join(dir, 'victim');
  await writeFile(victim, 'precious');
  const file = join(dir, 'snap');
  const { symlink } = await import('node:fs/promises');
  const { tempPathOf } = await import('../../src/util/private-fs.js');
  await symlink(victim, tempPathOf(file));
  await writeSnapshot(file, 'leveldb', 1, objects());
  await symlink(victim, join(dir, 'link.snap'));
  await writeSnapshot(join(dir, 'link.snap'), 'leveldb', 1, objects());
  assert.equal(await readFile(victim, 'utf8'), 'precious');
  assert.equal((await readSnapshot(join(dir, 'link.snap'))).objects.length, 3, 'the link itself was replaced by the snapshot');
});
