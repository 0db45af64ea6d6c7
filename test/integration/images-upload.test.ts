/**
 * Resumable chunked pushes on a real server over HTTPS (server/images/uploads.ts): `drover image push`
 * through a TCP proxy that cuts every connection once mid-upload resumes from the server's offset and the
 * proxy counts what crossed toward the server (at most the archive plus one piece); the protocol by hand:
 * a wrong offset (409 carrying the offset), a wrong digest (400, nothing stored), a piece over the bound
 * (413) or without a length (411); as an attacker: no credential, a view token, a node certificate, bad
 * and unknown ids; and each call in the audit log.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { IMAGE_UPLOADS_PATH, imagePath, UPLOAD_PIECE_MAX_BYTES, uploadPath, type ImageManifest } from '../../src/contract/images.js';
import { drover, fails, ok } from '../helpers/cli.js';
import { httpsCall, type Answer } from '../helpers/https-call.js';
import { startTestServer, type NodeMqttOptions, type TestServer } from '../helpers/cluster.js';

/** One HTTPS request (test/helpers/https-call.ts); a fresh connection each (agent: false). */
const call = (ca: string, url: string, opts: Parameters<typeof httpsCall>[2] = {}) => httpsCall(ca, url, { agent: false, ...opts });

/**
 * A TCP proxy that counts the bytes going toward the server and, once, when that count passes `cutAt`,
 * breaks every connection open at that moment: 'cut' destroys them (both ends see the connection die);
 * 'stall' keeps them open and forwards nothing more either way (a link that died without a FIN or RST:
 * only timeouts can tell). Connections made afterwards work.
 */
async function faultyProxy(target: number, cutAt: number, mode: 'cut' | 'stall'): Promise<{ port: number; up: () => number; faults: () => number; close: () => Promise<void> }> {
  let up = 0;
  let faults = 0;
  const sockets = new Set<Socket>();
  const dead = new WeakSet<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('data', (d: Buffer) => {
      up += d.length;
      if (dead.has(client)) return;
      upstream.write(d);
      if (faults === 0 && up > cutAt) {
        faults++;
        for (const s of sockets) {
          if (mode === 'cut') s.destroy();
          else dead.add(s);
        }
      }
    });
    upstream.on('data', (d: Buffer) => !dead.has(upstream) && client.writable && client.write(d));
    client.on('end', () => !dead.has(client) && upstream.end());
    upstream.on('end', () => !dead.has(upstream) && client.end());
    client.on('close', () => !dead.has(client) && upstream.destroy());
    upstream.on('close', () => !dead.has(upstream) && client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    up: () => up,
    faults: () => faults,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let t: TestServer;
let work: string;
let archivePath: string;
let archive: Buffer;
let viewToken: string;
let edge1: NodeMqttOptions;

before(async () => {
  t = await startTestServer();
  work = await mkdtemp(join(tmpdir(), 'drover-images-upload-'));
  // A 12 MiB docker-archive: twelve 1 MiB pieces.
  const src = join(work, 'src');
  await execa('mkdir', [src]);
  await writeFile(join(src, 'layer.tar'), randomBytes(12 * 1024 * 1024));
  await writeFile(join(src, 'config.json'), '{}');
  await writeFile(join(src, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['localhost/resumed:1'], Layers: ['layer.tar'] }]));
  archivePath = join(work, 'resumed.tar');
  await execa('tar', ['-cf', archivePath, '-C', src, 'manifest.json', 'config.json', 'layer.tar']);
  archive = await readFile(archivePath);
  const created = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view' });
  assert.equal(created.status, 201, created.text);
  viewToken = created.body.token;
  edge1 = await t.joinNode('edge-1');
});

after(async () => {
  await t?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('resumable chunked image pushes', () => {
  test('drover image push cut mid-upload resumes from the server offset; what crossed the link stays under archive + one piece', async () => {
    const piece = 1024 * 1024;
    const port = Number(new URL(t.apiUrl).port);
    const proxy = await faultyProxy(port, Math.floor(archive.length * 0.45), 'cut');
    try {
      const env = { DROVER_SERVER: `https://127.0.0.1:${proxy.port}`, DROVER_TOKEN: t.token };
      const r = ok(await drover(env, ['image', 'push', '--from-archive', archivePath, '--piece-size', '1MiB']));
      assert.equal(proxy.faults(), 1, 'the link was cut once');
      const digest = digestOf(archive);
      assert.match(r.stdout, new RegExp(`^${digest} 12\\.0MiB localhost/resumed:1 pushed$`, 'm'));
      assert.match(r.stderr, /upload [0-9a-f]{32} started \(if this run stops, resume with --upload-id [0-9a-f]{32}\)/);
      assert.match(r.stderr, /piece at .*resuming in/);
      assert.match(r.stderr, /the server holds \S+: resuming there/);
      assert.match(r.stderr, /pushing 12\.0MiB \/ 12\.0MiB \(100%\)/);
      const sent = proxy.up();
      assert.ok(sent <= archive.length + piece, `${sent} bytes crossed toward the server for a ${archive.length}-byte archive (bound: + ${piece})`);
      assert.ok(sent >= archive.length, `${sent} bytes crossed: the archive did go`);
      const m = await call(t.ca, t.apiUrl + imagePath(digest), { who: { token: t.token } });
      assert.equal(m.status, 200);
      assert.equal((m.json as ImageManifest).size, archive.length);
      assert.deepEqual(await readdir(join(t.dataDir, 'images', 'uploads')), [], 'the upload is gone once stored');
      console.log(`# pushed ${archive.length} bytes through one cut in 1 MiB pieces: ${sent} bytes toward the server (${(sent / archive.length).toFixed(3)} x)`);
    } finally {
      await proxy.close();
    }
  });

  test('a link that goes silent mid-piece (no FIN, no RST): the CLI times the piece out, and its next piece takes over from the one the server still holds open', async () => {
    const piece = 1024 * 1024;
    const port = Number(new URL(t.apiUrl).port);
    const proxy = await faultyProxy(port, Math.floor(archive.length * 0.6), 'stall');
    try {
      const env = { DROVER_SERVER: `https://127.0.0.1:${proxy.port}`, DROVER_TOKEN: t.token };
      // Pushed under another name: the same bytes as the first test, so "already stored" with the name added.
      const r = ok(await drover(env, ['image', 'push', '--from-archive', archivePath, '--piece-size', '1MiB', '--name', 'silent:1', '--request-timeout', '2s']));
      assert.equal(proxy.faults(), 1);
      assert.match(r.stderr, /made no progress for 2s/);
      assert.match(r.stdout, new RegExp(`^${digestOf(archive)} 12\\.0MiB .*localhost/silent:1.* (pushed|already stored)$`, 'm'));
      const sent = proxy.up();
      assert.ok(sent <= archive.length + piece, `${sent} bytes toward the server for ${archive.length} (bound: + ${piece})`);
      assert.deepEqual(await readdir(join(t.dataDir, 'images', 'uploads')), []);
      console.log(`# pushed ${archive.length} bytes through a silent link in 1 MiB pieces: ${sent} bytes toward the server (${(sent / archive.length).toFixed(3)} x)`);
    } finally {
      await proxy.close();
    }
  });

  test('drover image push --upload-id resumes an upload a stopped run left, sending only what the server lacks', async () => {
    const admin = { token: t.token };
    const c = await call(t.ca, `${t.apiUrl}${IMAGE_UPLOADS_PATH}?name=left:1`, { method: 'POST', who: admin });
    const id = c.json.id as string;
    const had = 5 * 1024 * 1024 + 123;
    assert.equal((await call(t.ca, `${t.apiUrl}${uploadPath(id)}?offset=0`, { method: 'PUT', who: admin, body: archive.subarray(0, had) })).json.offset, had);
    const port = Number(new URL(t.apiUrl).port);
    // Counting only: the fault lies beyond any byte this push sends.
    const proxy = await faultyProxy(port, 10 * archive.length, 'cut');
    try {
      const env = { DROVER_SERVER: `https://127.0.0.1:${proxy.port}`, DROVER_TOKEN: t.token };
      fails(await drover(env, ['image', 'push', '--from-archive', archivePath, '--upload-id', id, '--name', 'x:1']), /--upload-id resumes an upload with the names and format it was started with/);
      fails(await drover(env, ['image', 'push', '--from-archive', archivePath, '--upload-id', '../x']), /invalid --upload-id/);
      const r = ok(await drover(env, ['image', 'push', '--from-archive', archivePath, '--upload-id', id]));
      assert.match(r.stderr, new RegExp(`resuming upload ${id} at 5\\.0MiB`));
      assert.match(r.stdout, /localhost\/left:1/);
      const sent = proxy.up();
      assert.ok(sent < archive.length - had + 256 * 1024, `${sent} bytes sent for the ${archive.length - had} the server lacked`);
    } finally {
      await proxy.close();
    }
  });

  test('the protocol by hand: 409 carries the offset, GET resumes, a wrong digest is 400 and stores nothing, oversize 413, no length 411', async () => {
    const admin = { token: t.token };
    const url = t.apiUrl;
    const c = await call(t.ca, `${url}${IMAGE_UPLOADS_PATH}?name=byhand:1`, { method: 'POST', who: admin });
    assert.equal(c.status, 201, c.body.toString());
    const id = c.json.id as string;
    assert.match(id, /^[0-9a-f]{32}$/);
    assert.equal(c.json.offset, 0);
    const bent = Buffer.from(archive.subarray(0, 3 * 1024 * 1024));
    const wrong = await call(t.ca, `${url}${uploadPath(id)}?offset=5`, { method: 'PUT', who: admin, body: bent.subarray(0, 1000) });
    assert.equal(wrong.status, 409);
    assert.equal(wrong.json.offset, 0);
    assert.match(wrong.json.message, /must start at offset 0, not 5/);
    const p1 = await call(t.ca, `${url}${uploadPath(id)}?offset=0`, { method: 'PUT', who: admin, body: bent.subarray(0, 1024 * 1024) });
    assert.equal(p1.status, 200, p1.body.toString());
    assert.equal(p1.json.offset, 1024 * 1024);
    // The same piece again, as a client that lost the answer sends it: 409 says where to go on.
    const again = await call(t.ca, `${url}${uploadPath(id)}?offset=0`, { method: 'PUT', who: admin, body: bent.subarray(0, 1024 * 1024) });
    assert.equal(again.status, 409);
    assert.equal(again.json.offset, 1024 * 1024);
    assert.equal((await call(t.ca, `${url}${uploadPath(id)}`, { who: admin })).json.offset, 1024 * 1024);
    const over = await new Promise<Answer>((resolve, reject) => {
      // Headers only: the bound is checked from Content-Length before a byte of the body is read.
      const req = request(`${url}${uploadPath(id)}?offset=${1024 * 1024}`, { method: 'PUT', headers: { authorization: `Bearer ${t.token}`, 'content-length': UPLOAD_PIECE_MAX_BYTES + 1 }, ca: t.ca, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.from(text), json: JSON.parse(text) });
          req.destroy();
        });
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(over.status, 413);
    assert.match(over.json.message, /a piece of 16777217 bytes is larger than the server's bound of 16777216 bytes per piece/);
    const unsized = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}${uploadPath(id)}?offset=${1024 * 1024}`, { method: 'PUT', headers: { authorization: `Bearer ${t.token}`, 'transfer-encoding': 'chunked' }, ca: t.ca, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(Buffer.alloc(100));
    });
    assert.equal(unsized, 411);
    assert.equal((await call(t.ca, `${url}${uploadPath(id)}`, { who: admin })).json.offset, 1024 * 1024, 'refused pieces add nothing');
    // The rest, with one byte changed on the way; the commit names the digest of the bytes meant.
    const rest = Buffer.from(bent.subarray(1024 * 1024));
    const meant = digestOf(bent);
    rest[10] ^= 0xff;
    assert.equal((await call(t.ca, `${url}${uploadPath(id)}?offset=${1024 * 1024}`, { method: 'PUT', who: admin, body: rest })).json.offset, bent.length);
    const before = (await call(t.ca, `${url}/drover/v1/images`, { who: admin })).json.items.length;
    const commit = await call(t.ca, `${url}${uploadPath(id, true)}?digest=${meant}`, { method: 'POST', who: admin });
    assert.equal(commit.status, 400);
    assert.ok(commit.json.message.includes(meant) && commit.json.message.includes(digestOf(Buffer.concat([bent.subarray(0, 1024 * 1024), rest]))), commit.json.message);
    assert.match(commit.json.message, /nothing was stored/);
    assert.equal((await call(t.ca, `${url}${uploadPath(id)}`, { who: admin })).status, 404, 'the upload is discarded');
    assert.equal((await call(t.ca, `${url}/drover/v1/images`, { who: admin })).json.items.length, before);
    assert.equal((await call(t.ca, `${url}${imagePath(meant)}`, { who: admin })).status, 404);
    // DELETE drops an upload.
    const d = await call(t.ca, `${url}${IMAGE_UPLOADS_PATH}`, { method: 'POST', who: admin });
    assert.equal((await call(t.ca, `${url}${uploadPath(d.json.id)}`, { method: 'DELETE', who: admin })).status, 200);
    assert.equal((await call(t.ca, `${url}${uploadPath(d.json.id)}`, { who: admin })).status, 404);
  });

  test('attacker: no credential, a view token, a node certificate cannot create, append, read, commit or delete; bad ids 400, unknown 404', async () => {
    const admin = { token: t.token };
    const url = t.apiUrl;
    const mine = (await call(t.ca, `${url}${IMAGE_UPLOADS_PATH}?name=target:1`, { method: 'POST', who: admin })).json.id as string;
    const calls: Array<[string, string, Buffer?]> = [
      ['POST', IMAGE_UPLOADS_PATH + '?name=evil:1'],
      ['PUT', `${uploadPath(mine)}?offset=0`, Buffer.alloc(512)],
      ['GET', uploadPath(mine)],
      ['POST', `${uploadPath(mine, true)}?digest=${digestOf(Buffer.alloc(512))}`],
      ['DELETE', uploadPath(mine)],
    ];
    const node = { cert: { cert: edge1.cert, key: edge1.key } };
    for (const [method, path, body] of calls) {
      assert.equal((await call(t.ca, url + path, { method, body })).status, 401, `${method} ${path} with no credential`);
      assert.equal((await call(t.ca, url + path, { method, body, who: node })).status, 401, `${method} ${path} with a node certificate`);
      const v = await call(t.ca, url + path, { method, body, who: { token: viewToken } });
      assert.equal(v.status, 403, `${method} ${path} with a view token`);
      assert.match(v.json.message, /needs the admin role/);
    }
    assert.equal((await call(t.ca, `${url}${uploadPath(mine)}`, { who: admin })).json.offset, 0, 'nothing was appended');
    // (A dot segment, %2e%2e, resolves away from these routes before routing: images-api tests that.)
    for (const seg of ['..%2F..%2Fimages', 'ABCDEF'.padEnd(32, '0'), 'a'.repeat(31), 'a'.repeat(33), `${'a'.repeat(32)}%2F..`]) {
      for (const [method, path] of [['GET', `${IMAGE_UPLOADS_PATH}/${seg}`], ['PUT', `${IMAGE_UPLOADS_PATH}/${seg}?offset=0`], ['DELETE', `${IMAGE_UPLOADS_PATH}/${seg}`], ['POST', `${IMAGE_UPLOADS_PATH}/${seg}/commit?digest=${digestOf(archive)}`]] as const) {
        const r = await call(t.ca, url + path, { method, who: admin, ...(method === 'PUT' ? { body: Buffer.alloc(10) } : {}) });
        assert.equal(r.status, 400, `${method} ${path}: ${r.body.toString().slice(0, 200)}`);
      }
    }
    const unknown = '0'.repeat(32);
    for (const [method, path] of [['GET', uploadPath(unknown)], ['PUT', `${uploadPath(unknown)}?offset=0`], ['DELETE', uploadPath(unknown)], ['POST', `${uploadPath(unknown, true)}?digest=${digestOf(archive)}`]] as const) {
      const r = await call(t.ca, url + path, { method, who: admin, ...(method === 'PUT' ? { body: Buffer.alloc(10) } : {}) });
      assert.equal(r.status, 404, `${method} ${path}`);
    }
    assert.equal((await call(t.ca, `${url}${uploadPath(mine)}`, { method: 'DELETE', who: admin })).status, 200);
    // Audited as the other admin routes: the calls that changed something and the refusals.
    const log = await readFile(join(t.dataDir, 'audit.log'), 'utf8');
    for (const verb of ['image.upload.create', 'image.upload.append', 'image.upload.commit', 'image.upload.delete']) assert.match(log, new RegExp(`"verb":"${verb.replace(/\./g, '\\.')}"`), verb);
    assert.match(log, /"verb":"image\.upload\.append".*"result":403/);
  });
});
