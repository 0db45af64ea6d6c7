/**
 * The server hands out install.sh, its binaries and their SHA256SUMS without a token, over its real
 * HTTPS listener, and nothing else: names are checked strictly, absent binaries are a clear 404.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/cluster.js';
import { INSTALL_SH } from '../helpers/fakeroot.js';
import { DownloadCatalog } from '../../server/downloads/catalog.js';

let t: TestServer;
let downloads: string;

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

before(async () => {
  t = await startTestServer();
  downloads = join(t.dataDir, 'downloads');
  await mkdir(downloads, { recursive: true });
});
after(async () => {
  await t?.stop();
});

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; type: string | null; length: string | null }> {
  const r = await fetch(t.apiUrl + path, { headers });
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()), type: r.headers.get('content-type'), length: r.headers.get('content-length') };
}

test('GET /install.sh serves the repository installer without a token', async () => {
  const r = await get('/install.sh');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), await readFile(INSTALL_SH, 'utf8'));
  assert.match(r.type ?? '', /shellscript/);
});

test('a binary is streamed whole, and SHA256SUMS lists exactly the binaries present with their sha256', async () => {
  const amd = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
  const arm = Buffer.from('#!/bin/sh\necho arm64\n');
  await writeFile(join(downloads, 'drover-linux-amd64'), amd);
  await writeFile(join(downloads, 'drover-linux-arm64'), arm);
  await writeFile(join(downloads, 'notes.txt'), 'not a binary');

  const bin = await get('/download/drover-linux-amd64');
  assert.equal(bin.status, 200);
  assert.equal(bin.length, String(amd.length));
  assert.equal(sha256(bin.body), sha256(amd));

  const sums = await get('/download/SHA256SUMS');
  assert.equal(sums.status, 200);
  assert.equal(sums.body.toString(), `${sha256(amd)}  drover-linux-amd64\n${sha256(arm)}  drover-linux-arm64\n`);

  // A replaced binary (new size) is hashed again.
  const arm2 = Buffer.from('#!/bin/sh\necho arm64 v2, longer\n');
  await writeFile(join(downloads, 'drover-linux-arm64'), arm2);
  assert.match((await get('/download/SHA256SUMS')).body.toString(), new RegExp(`^${sha256(arm2)}  drover-linux-arm64$`, 'm'));
});

test('an absent binary is a 404 naming it and where to put it', async () => {
  await rm(join(downloads, 'drover-linux-arm'), { force: true });
  const r = await get('/download/drover-linux-arm');
  assert.equal(r.status, 404);
  const msg = JSON.parse(r.body.toString()).message as string;
  assert.match(msg, /no drover-linux-arm: put it in its downloads dir \(drover server --downloads-dir/);
  // A directory under a binary's name is no binary either.
  await mkdir(join(downloads, 'drover-linux-arm'));
  assert.equal((await get('/download/drover-linux-arm')).status, 404);
  await rm(join(downloads, 'drover-linux-arm'), { recursive: true });
});

test('only the listed names are served: traversal and other files of the data dir are refused', async () => {
  const secret = await readFile(join(t.dataDir, 'admin-token'), 'utf8');
  const key = await readFile(join(t.dataDir, 'tls', 'ca.key'), 'utf8');
  await writeFile(join(downloads, 'drover-linux-amd64.bak'), 'old');
  const attempts = [
    '/download/..%2fadmin-token',
    '/download/%2e%2e/admin-token',
    '/download/../admin-token',
    '/download/..%2f..%2ftls%2fca.key',
    '/download/drover-linux-amd64%2f..%2f..%2fadmin-token',
    '/download/drover-linux-amd64.bak',
    '/download/notes.txt',
    '/download/drover-linux-x86_64',
    '/download/drover-linux-amd64/extra',
    '/download/',
    '/download/SHA256SUMS/..',
    '/download/%00drover-linux-amd64',
  ];
  for (const path of attempts) {
    const r = await get(path);
    assert.notEqual(r.status, 200, `${path} answered 200`);
    assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status}`);
    const body = r.body.toString();
    assert.ok(!body.includes(secret.trim()) && !body.includes('PRIVATE KEY'), `${path} leaked a secret`);
    assert.ok(!body.includes(key.slice(40, 80)));
  }
  const named = JSON.parse((await get('/download/notes.txt')).body.toString()).message as string;
  assert.match(named, /no download "notes.txt": this server offers drover-linux-amd64, drover-linux-arm64, drover-linux-arm, SHA256SUMS/);
});

test('a single-binary server serves its own file for its arch, unless the downloads dir has one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-downloads-'));
  try {
    const self = join(dir, 'self-binary');
    await writeFile(self, 'i am the server');
    const catalog = new DownloadCatalog({ dir: join(dir, 'downloads'), self: { arch: 'arm64', path: self } });
    assert.equal(await catalog.sha256sums(), `${sha256('i am the server')}  drover-linux-arm64\n`);
    const f = await catalog.open('drover-linux-arm64');
    assert.ok(f);
    assert.equal(f.size, 15);
    await f.handle.close();
    assert.equal(await catalog.open('drover-linux-amd64'), undefined);
    await mkdir(join(dir, 'downloads'));
    await writeFile(join(dir, 'downloads', 'drover-linux-arm64'), 'newer build');
    assert.equal(await catalog.sha256sums(), `${sha256('newer build')}  drover-linux-arm64\n`);
    await assert.rejects(catalog.open('../self-binary'), /not a binary name/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('SHA256SUMS follows a binary rewritten in place (same size, new mtime)', async () => {
  const p = join(downloads, 'drover-linux-amd64');
  await writeFile(p, 'version-1');
  const first = (await get('/download/SHA256SUMS')).body.toString();
  assert.match(first, new RegExp(sha256('version-1')));
  await writeFile(p, 'version-2');
  const st = await stat(p);
  await utimes(p, st.atime, new Date(st.mtimeMs + 5000));
  assert.match((await get('/download/SHA256SUMS')).body.toString(), new RegExp(sha256('version-2')));
});
