/**
 * `drover datastore snapshot save FILE --server`: the backup of a running single server on its real
 * LevelDB store, through GET /drover/v1/snapshot, while it keeps writing. The file is the store at one
 * revision (no torn read: checked against every acknowledged write), restores offline into a fresh data
 * dir, and a server started there serves its Secrets with the copied keyring. Refused as an attacker or a
 * broken link would have it: a view token, no token, a download cut part way (no file, an older backup
 * untouched, no temp file left).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { AUDIT_FILE } from '../../server/audit/log.js';
import { Keyring, keyringPath } from '../../server/secrets/keyring.js';
import { storePath } from '../../server/secrets/rotate.js';
import { LevelStore } from '../../server/store/level.js';
import { HEADER_BYTES, readSnapshot, readSnapshotHeader } from '../../server/store/snapshot.js';
import type { ApiObject } from '../../src/api/meta.js';
import { drover, fails, ok } from '../helpers/cli.js';
import { startServer } from '../../server/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { apiClient, freePort, startTestServer, trustCa, waitFor, type TestServer } from '../helpers/cluster.js';
import { datastoreCli } from '../helpers/datastore-cli.js';
import { startEtcd } from '../helpers/etcd.js';

type T = { after(fn: () => Promise<void> | void): void };

const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;

async function tempDir(t: T, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `drover-online-snap-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function server(t: T, dataDir?: string): Promise<TestServer> {
  const s = await startTestServer(dataDir ? { dataDir } : {});
  t.after(() => s.stop());
  return s;
}

const cm = (name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data });

async function created(s: TestServer, path: string, body: unknown): Promise<ApiObject> {
  const r = await s.api('POST', path, body);
  assert.equal(r.status, 201, r.text);
  return r.body as ApiObject;
}

/** `n` ConfigMaps of ~300 incompressible bytes each (so a snapshot is many chunks), 16 at a time. */
async function fill(s: TestServer, n: number, prefix: string): Promise<void> {
  for (let i = 0; i < n; i += 16) {
    await Promise.all(Array.from({ length: Math.min(16, n - i) }, (_, k) => created(s, '/api/v1/namespaces/default/configmaps', cm(`${prefix}-${i + k}`, { blob: randomBytes(150).toString('hex') }))));
  }
}

async function saveOnline(s: TestServer, file: string, env: Record<string, string> = {}, url = s.apiUrl) {
  return drover({ DROVER_SERVER: url, DROVER_TOKEN: s.token, ...env }, ['datastore', 'snapshot', 'save', file, '--server']);
}

async function auditRecords(dataDir: string): Promise<Array<{ verb: string; result: number; who: { role?: string; tokenId?: string }; reason?: string }>> {
  const text = await readFile(join(dataDir, AUDIT_FILE), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('online save while a writer keeps going: the file is the store at its header\'s revision, restores offline, and the restored server serves the Secret with the copied keyring', { timeout: 240_000 }, async (t) => {
  const s = await server(t);
  await created(s, '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'default' }, data: { password: Buffer.from(PASSWORD).toString('base64') } });
  await fill(s, 1500, 'before');
  await created(s, '/api/v1/namespaces/default/configmaps', cm('tick', { n: '0' }));

  // One writer, one write at a time, each acknowledged with its revision: `live-n` created, then `tick`
  // set to n. At any one revision R, exactly the live-n created at or below R exist, and tick holds the
  // n of the last update at or below R.
  const log: Array<{ n: number; createdAt: number; tickedAt: number }> = [];
  let writing = true;
  const writer = (async () => {
    for (let n = 1; writing; n++) {
      const c = await created(s, '/api/v1/namespaces/default/configmaps', cm(`live-${n}`, { n: String(n) }));
      const u = await s.api('PUT', '/api/v1/namespaces/default/configmaps/tick', cm('tick', { n: String(n) }));
      assert.equal(u.status, 200, u.text);
      log.push({ n, createdAt: Number(c.metadata.resourceVersion), tickedAt: Number((u.body as ApiObject).metadata.resourceVersion) });
    }
  })();
  await waitFor('writes under way', async () => log.length >= 10, 30_000, 10);

  const out = await tempDir(t, 'out');
  const file = join(out, 'online.snap');
  const r = ok(await saveOnline(s, file), 'online save while writing');
  const during = log.length;
  await waitFor('more writes after the save', async () => log.length >= during + 5, 30_000, 10);
  writing = false;
  await writer;

  assert.match(r.stdout, new RegExp(`^saved \\d+ object\\(s\\) from the drover server at ${s.apiUrl.replace(/[.]/g, '\\.')}'s LevelDB store at revision \\d+ to ${file} `));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual((await readdir(out)).sort(), ['online.snap'], 'no temp file left beside it');

  const { header, objects } = await readSnapshot(file);
  const R = header.revision;
  assert.equal(header.source, 'leveldb');
  assert.ok(log[0]!.createdAt <= R && R < log.at(-1)!.tickedAt, `the save ran while the writer wrote (revision ${R})`);
  assert.ok(objects.every((o) => o.revision === undefined || o.revision <= R), 'no object newer than the header says');
  const byKey = new Map(objects.map((o) => [o.key, o]));
  const live = objects.filter((o) => o.key.startsWith('/registry/ConfigMap/default/live-')).map((o) => o.key).sort();
  const expected = log.filter((w) => w.createdAt <= R).map((w) => `/registry/ConfigMap/default/live-${w.n}`).sort();
  assert.deepEqual(live, expected, 'exactly the ConfigMaps created at or below the header revision');
  const tick = byKey.get('/registry/ConfigMap/default/tick')!.value as ApiObject & { data: { n: string } };
  assert.equal(tick.data.n, String(log.filter((w) => w.tickedAt <= R).at(-1)?.n ?? 0), 'tick as of the header revision');
  assert.equal(objects.filter((o) => o.key.startsWith('/registry/ConfigMap/default/before-')).length, 1500);
  // Secrets travel sealed: the password is nowhere in the file.
  assert.equal(typeof byKey.get('/registry/Secret/default/db')!.value, 'string');
  assert.ok(!gunzipSync((await readFile(file)).subarray(HEADER_BYTES)).toString('utf8').includes(PASSWORD));

  // Audited as the admin call it is.
  await waitFor('the snapshot in the audit log', async () => (await auditRecords(s.dataDir)).some((a) => a.verb === 'datastore.snapshot' && a.result === 200 && a.who.role === 'admin'));

  // Offline restore into a fresh data dir with the server's keyring; a server started there serves it.
  const fresh = await tempDir(t, 'fresh');
  await mkdir(join(fresh, 'secrets'), { recursive: true, mode: 0o700 });
  await writeFile(keyringPath(fresh), await readFile(keyringPath(s.dataDir)), { mode: 0o600 });
  ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', fresh]), 'restore');
  {
    const restored = await LevelStore.open({ path: storePath(fresh), secrets: await Keyring.load(fresh) });
    const cms = (await restored.list('ConfigMap', 'default')).items;
    assert.deepEqual(cms.map((o) => `/registry/ConfigMap/default/${o.metadata.name}`).sort(), objects.filter((o) => o.key.startsWith('/registry/ConfigMap/default/')).map((o) => o.key).sort());
    assert.equal(restored.revision(), Math.max(R, ...objects.map((o) => o.revision ?? 0)));
    await restored.close();
  }
  const original = (await s.api('GET', '/api/v1/namespaces/default/secrets/db')).body as ApiObject;
  const s2 = await server(t, fresh);
  const secret = await s2.api('GET', '/api/v1/namespaces/default/secrets/db');
  assert.equal(secret.status, 200, secret.text);
  assert.equal(Buffer.from((secret.body as { data: { password: string } }).data.password, 'base64').toString(), PASSWORD);
  assert.equal((secret.body as ApiObject).metadata.uid, original.metadata.uid, 'the same Secret (uid kept)');
  const restoredTick = await s2.api('GET', '/api/v1/namespaces/default/configmaps/tick');
  assert.equal(restoredTick.body.data.n, tick.data.n);
});

test('a view token gets 403 and no token 401, each audited; neither (nor a server not there) leaves a file', { timeout: 120_000 }, async (t) => {
  const s = await server(t);
  await created(s, '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'default' }, data: { password: Buffer.from(PASSWORD).toString('base64') } });
  const view = (await created(s, '/drover/v1/tokens', { type: 'api', role: 'view', description: 'read-only' })) as unknown as { id: string; token: string };
  const out = await tempDir(t, 'out');
  const file = join(out, 'x.snap');

  fails(await saveOnline(s, file, { DROVER_TOKEN: view.token }), /forbidden: .*it needs an admin token/);
  fails(await saveOnline(s, file, { DROVER_TOKEN: `${view.id}.${'0'.repeat(32)}` }), /unauthorized: check the token/);
  fails(await saveOnline(s, file, { DROVER_TOKEN: '' }), /needs an admin token: set DROVER_TOKEN/);
  fails(await saveOnline(s, file, {}, 'https://127.0.0.1:1'), /cannot reach the drover server at https:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/);
  assert.deepEqual(await readdir(out), []);

  // The route itself, as any HTTP client would try it.
  const url = `${s.apiUrl}/drover/v1/snapshot`;
  assert.equal((await fetch(url)).status, 401);
  const asView = await fetch(url, { headers: { authorization: `Bearer ${view.token}` } });
  assert.equal(asView.status, 403);
  assert.ok(!(await asView.text()).includes('k8s:enc'), 'a refusal carries no store data');

  await waitFor('the refusals in the audit log', async () => {
    const recs = (await auditRecords(s.dataDir)).filter((a) => a.verb === 'datastore.snapshot');
    return recs.some((a) => a.result === 403 && a.who.tokenId === view.id) && recs.some((a) => a.result === 401);
  });
});

/**
 * A TCP proxy to `port` that, once `limit` bytes have come back from the server, cuts both connections
 * ('cut') or keeps them open and forwards nothing more ('stall': a link gone silent).
 */
async function cuttingProxy(t: T, port: number, limit: number, mode: 'cut' | 'stall' = 'cut'): Promise<{ url: string; cuts: () => number }> {
  let cuts = 0;
  const sockets = new Set<Socket>();
  const proxy = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port });
    sockets.add(client).add(upstream);
    let passed = 0;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (passed >= limit) return;
      if (passed + chunk.length >= limit) {
        client.write(chunk.subarray(0, limit - passed));
        passed = limit;
        cuts += 1;
        if (mode === 'stall') return void upstream.pause();
        client.destroy();
        upstream.destroy();
        return;
      }
      passed += chunk.length;
      client.write(chunk);
    });
    for (const sock of [client, upstream]) sock.on('error', () => sock.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const sock of sockets) sock.destroy();
        proxy.close(() => resolve());
      }),
  );
  return { url: `https://127.0.0.1:${(proxy.address() as { port: number }).port}`, cuts: () => cuts };
}

test('a download cut part way (the connection dropped mid-body) or stalled (past --request-timeout) leaves no file: an older backup at FILE stays, no temp file', { timeout: 180_000 }, async (t) => {
  const s = await server(t);
  await fill(s, 1000, 'cm');
  const out = await tempDir(t, 'out');
  const whole = join(out, 'whole.snap');
  ok(await saveOnline(s, whole), 'through no proxy');
  const size = (await stat(whole)).size;
  assert.ok(size > 200_000, `a snapshot of many chunks (${size} bytes)`);
  const wholeHeader = await readSnapshotHeader(whole);
  await rm(whole);

  const file = join(out, 'backup.snap');
  const older = 'the backup from yesterday\n';
  await writeFile(file, older, { mode: 0o600 });
  const port = Number(new URL(s.apiUrl).port);
  // Cut in the middle of the body, and near its end.
  for (const limit of [Math.floor(size / 2), size - 100]) {
    const proxy = await cuttingProxy(t, port, limit);
    fails(await saveOnline(s, file, {}, proxy.url), /the snapshot download from .* broke: .*no file was written|ended after \d+ bytes, before its header|did not end with its header/);
    assert.equal(proxy.cuts(), 1, `the proxy cut the download at ${limit} bytes`);
    assert.equal(await readFile(file, 'utf8'), older, 'the older backup is untouched');
    assert.deepEqual(await readdir(out), ['backup.snap'], 'no temp file left');
  }
  // A link that goes silent mid-body: the save gives up after --request-timeout, no file.
  const silent = await cuttingProxy(t, port, Math.floor(size / 2), 'stall');
  const stalled = await drover({ DROVER_SERVER: silent.url, DROVER_TOKEN: s.token }, ['datastore', 'snapshot', 'save', file, '--server', '--request-timeout', '2s']);
  fails(stalled, /sent nothing for 2s in the middle of the snapshot; no file was written/);
  assert.equal(silent.cuts(), 1);
  assert.equal(await readFile(file, 'utf8'), older);
  assert.deepEqual(await readdir(out), ['backup.snap']);
  // The server noticed the client gone and said so in the audit log; it still serves whole snapshots.
  await waitFor('the cut-off download in the audit log', async () => (await auditRecords(s.dataDir)).some((a) => a.verb === 'datastore.snapshot' && a.result === 499));
  ok(await saveOnline(s, file), 'a whole save after the cuts');
  assert.equal((await readSnapshotHeader(file)).objects, wholeHeader.objects);
});

test('receiving a snapshot stream: only a whole, matching stream becomes FILE; cut, bit-flipped or forged streams leave no file', { timeout: 60_000 }, async (t) => {
  const { encodeSnapshot, receiveSnapshot } = await import('../../server/store/snapshot.js');
  const objects = Array.from({ length: 200 }, (_, i) => ({
    key: `/registry/ConfigMap/default/cm-${i}`,
    revision: i + 1,
    value: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${i}`, namespace: 'default', uid: `uid-${i}` }, data: { blob: randomBytes(100).toString('hex') } } as ApiObject,
  }));
  const streamOf = async (objs: typeof objects) => {
    const chunks: Buffer[] = [];
    const { block } = await encodeSnapshot('leveldb', 200, objs, async (c) => void chunks.push(Buffer.from(c)));
    return { body: Buffer.concat(chunks), block };
  };
  const { body, block } = await streamOf(objects);
  assert.ok(body.length > 3 * HEADER_BYTES);
  const out = await tempDir(t, 'recv');
  const file = join(out, 'r.snap');
  const feed = (b: Buffer) => (async function* () {
    for (let i = 0; i < b.length; i += 1000) yield b.subarray(i, i + 1000);
  })();
  const refused = async (b: Buffer, re: RegExp) => {
    await assert.rejects(receiveSnapshot(file, 'the test', feed(b)), re);
    assert.deepEqual(await readdir(out), [], 'no file, no temp file');
  };

  await refused(body.subarray(0, Math.floor(body.length / 2)), /did not end with its header .*cut short or damaged on its way/);
  await refused(body, /did not end with its header/);
  await refused(block.subarray(0, 100), /ended after 100 bytes, before its header/);
  const flipped = Buffer.concat([body, block]);
  flipped[1000] ^= 0x01;
  await refused(flipped, /is damaged: the sha256 of its body is [0-9a-f]{64}, its header says/);
  await refused(Buffer.concat([body.subarray(0, body.length - 10), block]), /brought \d+ body bytes, its header says \d+/);
  // A stream whose checksum matches but whose objects do not (a key that does not name its object): the
  // checks a restore makes refuse it before it becomes FILE.
  const forged = await streamOf([...objects.slice(0, 10), { ...objects[10]!, key: '/registry/Secret/default/cm-10' }]);
  await refused(Buffer.concat([forged.body, forged.block]), /the object is ConfigMap default\/cm-10, stored under \/registry\/Secret\/default\/cm-10/);

  const header = await receiveSnapshot(file, 'the test', feed(Buffer.concat([body, block])));
  assert.equal(header.objects, 200);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual((await readSnapshot(file)).objects, objects);
});

test('a server on etcd: the online save is etcd at its header\'s revision, and restores into LevelDB where a server serves the Secret', { timeout: 180_000 }, async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const dataDir = await tempDir(t, 'etcd-server');
  const running = await startServer(
    { dataDir, apiHost: '127.0.0.1', apiPort: 0, mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() }, datastoreEndpoint: etcd.endpoints[0], serverToken: 'test-server-token-0123456789', resyncMs: 1000, nodeMonitorMs: 1000 },
    silentLogger,
  );
  t.after(() => running.close());
  await trustCa(running.caCert);
  const s = { apiUrl: running.apiUrl, token: running.adminToken, api: apiClient(running.apiUrl, running.adminToken), dataDir } as TestServer;
  await created(s, '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'default' }, data: { password: Buffer.from(PASSWORD).toString('base64') } });
  await fill(s, 100, 'cm');

  const out = await tempDir(t, 'out');
  const file = join(out, 'etcd.snap');
  ok(await saveOnline(s, file), 'online save from a server on etcd');
  const { header, objects } = await readSnapshot(file);
  assert.equal(header.source, 'etcd');
  const { Etcd3 } = await import('etcd3');
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.after(() => client.close());
  const atRevision = await client.getAll().prefix('/drover/registry/').revision(String(header.revision)).keys();
  assert.deepEqual(objects.map((o) => `/drover${o.key}`).sort(), atRevision.sort(), 'exactly the keys etcd held at that revision');

  const fresh = await tempDir(t, 'fresh');
  await mkdir(join(fresh, 'secrets'), { recursive: true, mode: 0o700 });
  await writeFile(keyringPath(fresh), await readFile(keyringPath(dataDir)), { mode: 0o600 });
  ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', fresh]), 'restore into LevelDB');
  const s2 = await server(t, fresh);
  const secret = await s2.api('GET', '/api/v1/namespaces/default/secrets/db');
  assert.equal(secret.status, 200, secret.text);
  assert.equal(Buffer.from((secret.body as { data: { password: string } }).data.password, 'base64').toString(), PASSWORD);
  assert.equal((await s2.api('GET', '/api/v1/namespaces/default/configmaps')).body.items.filter((o: ApiObject) => o.metadata.name.startsWith('cm-')).length, 100);
});
