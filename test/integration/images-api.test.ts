/**
 * The server's image store over HTTPS (issue 15), with a real podman image: `drover image push` saves it
 * from podman and uploads it, `image ls` / `get images` list it with the nodes that report it, its blob
 * is served whole and by Range exactly as the manifest's chunks say, `image rm` frees it. As an attacker:
 * no credential, a view token writing, a node certificate pushing or fetching what it was not given,
 * another CA's certificate, a revoked node, bad digests and escaping paths, an oversized upload, more
 * transfers than the cap. The second half runs the same routes on a second real ApiServer (same CA and
 * node identity) with a small transfer cap, a small upload limit and a `mayFetch` that allows one image.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import mqtt from 'mqtt';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { CONTRACT_VERSION, DELIVERY, encode, payloads, topics } from '../../src/contract/index.js';
import { chunkRange, IMAGES_PATH, imagePath, type ImageInfo, type ImageManifest } from '../../src/contract/images.js';
import { silentLogger } from '../../src/util/logger.js';
import { ApiServer } from '../../server/api/server.js';
import { imageRoutes } from '../../server/images/routes.js';
import { ImageStore } from '../../server/images/store.js';
import { TransferLimit } from '../../server/images/transfers.js';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { generateKeyPem, issueCertificate } from '../../server/pki/x509.js';
import { LevelStore } from '../../server/store/level.js';
import { drover, ok, fails, rows } from '../helpers/cli.js';
import { httpsCall, type Answer } from '../helpers/https-call.js';
import { startTestServer, waitFor, type NodeMqttOptions, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const call = httpsCall;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let t: TestServer;
let sb: PodmanSandbox;
let env: Record<string, string>;
let podmanFlags: string[];
let digest: string;
let manifest: ImageManifest;
let viewToken: string;
let edge1: NodeMqttOptions;
const work: string[] = [];

before(async () => {
  sb = await podmanSandbox();
  await buildTestImage(sb);
  t = await startTestServer();
  env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token, CONTAINERS_CONF: sb.confPath };
  podmanFlags = ['--podman-root', sb.root, '--podman-runroot', sb.runroot];
  const created = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view' });
  assert.equal(created.status, 201, created.text);
  viewToken = created.body.token;
  edge1 = await t.joinNode('edge-1');
});

after(async () => {
  await t?.stop();
  await sb?.cleanup();
  for (const d of work) await rm(d, { recursive: true, force: true });
});

describe('images served by the server', () => {
  test('drover image push saves the podman image and uploads it; the same bytes again are already stored', async () => {
    const r = ok(await drover(env, ['image', 'push', 'drover-test:1', ...podmanFlags]));
    const m = /^(sha256:[0-9a-f]{64}) (\S+) localhost\/drover-test:1 pushed$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    digest = m[1]!;
    assert.match(r.stderr, /pushing .*\(100%\)/);
    const again = ok(await drover(env, ['image', 'push', 'localhost/drover-test:1', ...podmanFlags]));
    assert.match(again.stdout, new RegExp(`^${digest} .* already stored$`, 'm'), 'podman save writes the same bytes for the same image');
    const got = await call(t.ca, t.apiUrl + imagePath(digest), { who: { token: t.token } });
    assert.equal(got.status, 200);
    manifest = got.json;
    assert.deepEqual(manifest.names, ['localhost/drover-test:1']);
    assert.equal(manifest.format, 'docker-archive');
    assert.equal(got.headers.etag, `"${digest}"`);
  });

  test('image ls and get images list it, with the nodes whose status reports it loaded', async () => {
    // edge-1 says it has loaded the archive, as its agent does: hello, then a status with imageDigests, over MQTT with its certificate.
    const c = await mqtt.connectAsync(edge1.url, { ...edge1, rejectUnauthorized: true });
    try {
      const bootId = randomUUID();
      const hello: payloads.Hello = {
        agentVersion: '0.1.0', contractVersion: CONTRACT_VERSION, node: 'edge-1', bootId, hostname: 'edge-1', arch: 'arm64', os: 'linux', osImage: 'test',
        kernelVersion: '6.1.0', cpu: { cores: 4, model: 'test' }, memoryBytes: 2 ** 30, addresses: ['10.0.0.1'], runtime: { name: 'podman', version: '4.3.1' }, labels: {}, images: [],
      };
      await c.publishAsync(topics.hello('edge-1'), encode(payloads.hello.parse(hello)), DELIVERY.hello);
      const status: payloads.Status = { node: 'edge-1', bootId, seq: 1, observedGeneration: 0, ts: new Date().toISOString(), pods: [], runtimeHealthy: true, heartbeatSeconds: 30, imageDigests: [digest] };
      await c.publishAsync(topics.status('edge-1'), encode(status), DELIVERY.status);
      await waitFor('the list to show edge-1 has it', async () => {
        const r = await drover(env, ['get', 'images', '-o', 'json']);
        return r.code === 0 && (JSON.parse(r.stdout) as { items: ImageInfo[] }).items.find((i) => i.digest === digest)?.nodes.includes('edge-1');
      });
    } finally {
      await c.endAsync(true);
    }
    const table = rows(ok(await drover(env, ['image', 'ls'])).stdout);
    assert.deepEqual(table[0], ['NAMES', 'DIGEST', 'SIZE', 'NODES', 'AGE']);
    assert.deepEqual(table[1]!.slice(0, 4), ['localhost/drover-test:1', digest.slice(7, 19), `${(manifest.size / 1024 / 1024).toFixed(1)}MiB`, 'edge-1']);
    const one = rows(ok(await drover(env, ['get', 'images', 'drover-test:1'])).stdout);
    assert.equal(one.length, 2);
    fails(await drover(env, ['get', 'images', 'nope:1']), /image "nope:1" not found/);
  });

  test('the blob: whole (200) is the archive of the digest; each chunk by Range (206) is the bytes its sha256 names; bad ranges 416', async () => {
    const who = { token: t.token };
    const whole = await call(t.ca, t.apiUrl + imagePath(digest, true), { who });
    assert.equal(whole.status, 200);
    assert.equal(Number(whole.headers['content-length']), manifest.size);
    assert.equal(whole.headers.etag, `"${digest}"`);
    assert.equal(`sha256:${sha256(whole.body)}`, digest);
    // It is the podman archive: tar lists its manifest.json.
    const dir = await mkdtemp(join(tmpdir(), 'drover-images-api-'));
    work.push(dir);
    await writeFile(join(dir, 'blob.tar'), whole.body);
    assert.match((await execa('tar', ['-tf', join(dir, 'blob.tar')])).stdout, /^manifest\.json$/m);
    assert.ok(manifest.chunks.length >= 2, 'the test image spans several chunks');
    for (let i = 0; i < manifest.chunks.length; i++) {
      const { start, end } = chunkRange(manifest, i);
      const r = await call(t.ca, t.apiUrl + imagePath(digest, true), { who, headers: { range: `bytes=${start}-${end}` } });
      assert.equal(r.status, 206, `chunk ${i}`);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${manifest.size}`);
      assert.equal(r.body.length, end - start + 1);
      assert.equal(sha256(r.body), manifest.chunks[i], `chunk ${i}`);
    }
    const open = await call(t.ca, t.apiUrl + imagePath(digest, true), { who, headers: { range: `bytes=${manifest.size - 10}-` } });
    assert.equal(open.status, 206);
    assert.deepEqual(open.body, whole.body.subarray(manifest.size - 10));
    for (const range of [`bytes=${manifest.size}-`, 'bytes=5-2', 'bytes=0-1,4-5', 'items=0-1']) {
      const r = await call(t.ca, t.apiUrl + imagePath(digest, true), { who, headers: { range } });
      assert.equal(r.status, 416, range);
      assert.equal(r.headers['content-range'], `bytes */${manifest.size}`, range);
    }
  });

  test('attacker: no credential 401; a view token reads but cannot push or delete (403)', async () => {
    for (const [method, path] of [['GET', IMAGES_PATH], ['GET', imagePath(digest)], ['GET', imagePath(digest, true)], ['POST', IMAGES_PATH], ['DELETE', imagePath(digest)]] as const) {
      assert.equal((await call(t.ca, t.apiUrl + path, { method })).status, 401, `${method} ${path}`);
      assert.equal((await call(t.ca, t.apiUrl + path, { method, who: { token: 'not-a-token' } })).status, 401, `${method} ${path} with a made-up token`);
    }
    const view = { token: viewToken };
    assert.equal((await call(t.ca, t.apiUrl + IMAGES_PATH, { who: view })).status, 200);
    assert.equal((await call(t.ca, t.apiUrl + imagePath(digest), { who: view })).status, 200);
    const push = await call(t.ca, t.apiUrl + IMAGES_PATH + '?name=evil:1', { method: 'POST', who: view, body: Buffer.alloc(1024) });
    assert.equal(push.status, 403);
    assert.match(push.json.message, /needs the admin role/);
    assert.equal((await call(t.ca, t.apiUrl + imagePath(digest), { method: 'DELETE', who: view })).status, 403);
    fails(await drover({ ...env, DROVER_TOKEN: viewToken }, ['image', 'rm', digest]), /forbidden/);
  });

  test('attacker: a node certificate cannot push, nor fetch an image its desired state does not list; another CA or a revoked node is refused', async () => {
    const node = { cert: { cert: edge1.cert, key: edge1.key } };
    assert.equal((await call(t.ca, t.apiUrl + IMAGES_PATH + '?name=evil:1', { method: 'POST', who: node, body: Buffer.alloc(1024) })).status, 401);
    assert.equal((await call(t.ca, t.apiUrl + imagePath(digest), { method: 'DELETE', who: node })).status, 401);
    assert.equal((await call(t.ca, t.apiUrl + IMAGES_PATH, { who: node })).status, 401, 'the list is for people');
    for (const blob of [false, true]) {
      const r = await call(t.ca, t.apiUrl + imagePath(digest, blob), { who: node });
      assert.equal(r.status, 403);
      assert.match(r.json.message, /node edge-1 may not fetch image sha256:[0-9a-f]{64}: its desired state does not list it/);
    }
    // A node certificate (right CN and O) from another CA.
    const other = await loadOrCreatePki({ dir: await mkdtemp(join(tmpdir(), 'drover-other-ca-')), sans: serverSans([]), logger: silentLogger });
    work.push(other.dir);
    const k = generateKeyPem();
    const forged = issueCertificate({ subject: { cn: 'edge-1', o: 'drover:nodes' }, publicKeyPem: k.publicKey, issuer: { certPem: other.caCert, keyPem: other.caKey }, usage: 'client', days: 30, now: Date.now() });
    const stranger = await call(t.ca, t.apiUrl + imagePath(digest, true), { who: { cert: { cert: forged.pem, key: k.privateKey } } });
    assert.equal(stranger.status, 401);
    assert.match(stranger.json.message, /not a node certificate of this cluster/);
    // A revoked node.
    const edge2 = await t.joinNode('edge-2');
    assert.equal((await t.api('POST', '/drover/v1/nodes/edge-2/revoke', {})).status, 200);
    const revoked = await call(t.ca, t.apiUrl + imagePath(digest), { who: { cert: { cert: edge2.cert, key: edge2.key } } });
    assert.equal(revoked.status, 403);
    assert.match(revoked.json.message, /node edge-2 was revoked/);
  });

  test('attacker: bad digests and escaping paths are 400 and touch nothing', async () => {
    const who = { token: t.token };
    for (const seg of ['sha256:abc', 'sha256:' + 'A'.repeat(64), '..%2F..%2Fetc%2Fpasswd', 'sha256:' + 'a'.repeat(63) + '%2F', 'md5:' + 'a'.repeat(32)]) {
      for (const [method, path] of [['GET', `${IMAGES_PATH}/${seg}`], ['GET', `${IMAGES_PATH}/${seg}/blob`], ['DELETE', `${IMAGES_PATH}/${seg}`]] as const) {
        const r = await call(t.ca, t.apiUrl + path, { method, who });
        assert.equal(r.status, 400, `${method} ${path}: ${r.body.toString().slice(0, 200)}`);
      }
    }
    const r = await call(t.ca, t.apiUrl + `${IMAGES_PATH}/sha256:abc/blob`, { who });
    assert.match(r.json.message, /invalid image digest in the path \("sha256:abc"\): must be sha256:<64 lowercase hex digits>/);
    assert.equal((await call(t.ca, t.apiUrl + `${IMAGES_PATH}/${digest}/../../x`, { who })).status, 404, 'a dot path resolves away from the images routes');
    assert.equal((await call(t.ca, t.apiUrl + imagePath(digest), { who })).status, 200, 'still there');
  });

  test('a body that is not an image archive is refused with the cause; image rm frees the image', async () => {
    const who = { token: t.token };
    const dir = await mkdtemp(join(tmpdir(), 'drover-images-junk-'));
    work.push(dir);
    await writeFile(join(dir, 'junk.tar'), 'hello, not a tar\n'.repeat(64));
    const junk = await drover(env, ['image', 'push', '--from-archive', join(dir, 'junk.tar'), '--name', 'junk:1']);
    assert.equal(junk.code, 1, junk.stderr);
    assert.match(junk.stderr.trimEnd().split('\n').at(-1)!, /^error: not an image archive: the body is not a tar archive/);
    const half = await call(t.ca, t.apiUrl + imagePath(digest, true), { who, headers: { range: `bytes=0-${Math.floor(manifest.size / 2)}` } });
    const cut = await call(t.ca, t.apiUrl + IMAGES_PATH + '?name=cut:1', { method: 'POST', who, body: half.body });
    assert.equal(cut.status, 400);
    assert.match(cut.json.message, /truncated archive/);
    const out = ok(await drover(env, ['image', 'rm', 'drover-test:1'])).stdout;
    assert.match(out, new RegExp(`image ${digest} \\(localhost/drover-test:1\\) removed`));
    assert.equal((await call(t.ca, t.apiUrl + imagePath(digest), { who })).status, 404);
    assert.match(ok(await drover(env, ['image', 'ls'])).stderr, /No images found/);
  });
});

describe('the image routes with a small transfer cap, a small upload limit and a node allowed one image', () => {
  let api: ApiServer;
  let url: string;
  let store: ImageStore;
  let transfers: TransferLimit;
  let big: ImageManifest;
  let level: LevelStore;
  let bigTar: string;
  const ADMIN = 'admin-' + randomBytes(8).toString('hex');
  const CAP = 2;

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-images-cap-'));
    work.push(dir);
    store = await ImageStore.open({ dir: join(dir, 'images'), logger: silentLogger });
    // A 24 MiB archive: more than socket buffers hold, so a transfer whose client does not read stays open.
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'layer.tar'), randomBytes(24 * 1024 * 1024));
    await writeFile(join(src, 'config.json'), '{}');
    await writeFile(join(src, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['localhost/big:1'], Layers: ['layer.tar'] }]));
    await execa('tar', ['-cf', join(dir, 'big.tar'), '-C', src, 'manifest.json', 'config.json', 'layer.tar']);
    bigTar = join(dir, 'big.tar');
    big = (await store.put(createReadStream(bigTar), [])).manifest;
    transfers = new TransferLimit({ max: CAP });
    level = await LevelStore.open({ path: join(dir, 'db') });
    const pki = await loadOrCreatePki({ dir: join(t.dataDir, 'tls'), sans: serverSans(['127.0.0.1']), logger: silentLogger });
    api = new ApiServer({
      store: level,
      logger: silentLogger,
      adminToken: ADMIN,
      tls: { key: pki.server.key, cert: pki.server.cert, ca: pki.caCert },
      extraRoutes: imageRoutes({ store, transfers, nodeStore: level, identity: t.server.identity, mayFetch: (node, d) => node === 'edge-1' && d === big.digest, logger: silentLogger, maxUploadBytes: 1024 * 1024 }),
      logs: async () => '',
      ready: () => true,
    });
    url = (await api.listen('127.0.0.1', 0)).url;
  });

  after(async () => {
    await api?.close();
    await level?.close();
  });

  test('a node fetches the image it is allowed, by chunk; not another image, and another node not that one', async () => {
    const node = { cert: { cert: edge1.cert, key: edge1.key } };
    const m = await call(t.ca, url + imagePath(big.digest), { who: node });
    assert.equal(m.status, 200);
    const { start, end } = chunkRange(big, 3);
    const c = await call(t.ca, url + imagePath(big.digest, true), { who: node, headers: { range: `bytes=${start}-${end}` } });
    assert.equal(c.status, 206);
    assert.equal(sha256(c.body), big.chunks[3]);
    // Another image in the same store: edge-1's certificate is good, but this one is not its business.
    const src = await mkdtemp(join(tmpdir(), 'drover-images-other-'));
    work.push(src);
    await writeFile(join(src, 'manifest.json'), JSON.stringify([{ Config: 'c.json', RepoTags: ['localhost/other:1'], Layers: [] }]));
    await writeFile(join(src, 'c.json'), '{}');
    await execa('tar', ['-cf', join(src, 'o.tar'), '-C', src, 'manifest.json', 'c.json']);
    const other = (await store.put(createReadStream(join(src, 'o.tar')), [])).manifest;
    for (const blob of [false, true]) assert.equal((await call(t.ca, url + imagePath(other.digest, blob), { who: node })).status, 403);
    // Another node, even for the allowed image.
    const edge3 = await t.joinNode('edge-3');
    assert.equal((await call(t.ca, url + imagePath(big.digest, true), { who: { cert: { cert: edge3.cert, key: edge3.key } } })).status, 403);
  });

  test(`transfers past the cap (${CAP}) get 503 with Retry-After; a client that drops gives its slot back`, async () => {
    const who = { token: ADMIN };
    // CAP transfers whose clients read nothing: the server's writes stall with the slot held.
    const held: Array<{ destroy: () => void }> = [];
    for (let i = 0; i < CAP; i++) {
      held.push(
        await new Promise((resolve, reject) => {
          const req = request(url + imagePath(big.digest, true), { headers: { authorization: `Bearer ${ADMIN}` }, ca: t.ca }, (res) => {
            assert.equal(res.statusCode, 200);
            res.pause();
            resolve({ destroy: () => req.destroy() });
          });
          req.on('error', () => undefined);
          req.once('error', reject);
          req.end();
        }),
      );
    }
    assert.equal(transfers.active, CAP);
    const busy = await call(t.ca, url + imagePath(big.digest, true), { who, headers: { range: 'bytes=0-99' } });
    assert.equal(busy.status, 503);
    assert.equal(busy.headers['retry-after'], '5');
    assert.match(busy.json.message, new RegExp(`sending ${CAP} image transfers, its cap \\(--image-transfers ${CAP}\\): try again in 5 s`));
    // The manifest is no transfer: still served.
    assert.equal((await call(t.ca, url + imagePath(big.digest), { who })).status, 200);
    held[0]!.destroy();
    await waitFor('the dropped transfer to give its slot back', async () => transfers.active < CAP);
    const now = await call(t.ca, url + imagePath(big.digest, true), { who, headers: { range: 'bytes=0-99' } });
    assert.equal(now.status, 206);
    held[1]!.destroy();
    await waitFor('every slot back', async () => transfers.active === 0);
  });

  test('an upload over the limit is refused (413) whether its size is declared or not, leaving nothing', async () => {
    const who = { token: ADMIN };
    const stored = store.list().map((m) => m.digest);
    const body = randomBytes(2 * 1024 * 1024);
    const declared = await call(t.ca, url + IMAGES_PATH + '?name=huge:1', { method: 'POST', who, body });
    assert.equal(declared.status, 413);
    assert.match(declared.json.message, /larger than the server's upload limit of 1048576 bytes/);
    // Chunked (no Content-Length): found out as the bytes arrive.
    const chunked = await new Promise<Answer>((resolve, reject) => {
      const req = request(url + IMAGES_PATH + '?name=huge:1', { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'transfer-encoding': 'chunked' }, ca: t.ca }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.from(text), json: text.startsWith('{') ? JSON.parse(text) : undefined });
        });
      });
      req.on('error', reject);
      // A real archive's start, so the size limit (not the format) is what refuses it.
      void (async () => {
        const b = await readFile(bigTar);
        for (let i = 0; i < 2 * 1024 * 1024 && !req.destroyed; i += 64 * 1024) {
          if (!req.write(b.subarray(i, i + 64 * 1024))) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      })().catch(() => undefined);
    }).catch((err: Error) => ({ status: -1, headers: {}, body: Buffer.from(err.message), json: undefined }));
    assert.equal(chunked.status, 413, chunked.body.toString());
    assert.match(chunked.json.message, /larger than 1048576 bytes/);
    assert.deepEqual(store.list().map((m) => m.digest), stored);
    assert.deepEqual(await readdir(join(store.dir, 'tmp')), []);
  });
});
