/**
 * A small real HTTPS server speaking the image routes of src/contract/images.ts (manifest, ranged blob)
 * for the agent's fetcher tests, independent of the server's own image store: a cluster-like CA,
 * a server certificate for 127.0.0.1, a node client certificate (required: no certificate, no
 * answer), and switches for the faults a bad link or a busy server makes.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { execa } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateKeyPem, issueCertificate } from '../../server/pki/x509.js';
import { IMAGES_PATH, type ImageManifest } from '../../src/contract/images.js';

export interface TestPki {
  ca: string;
  server: { cert: string; key: string };
  node: { cert: string; key: string };
  /** A node certificate from another CA: what an attacker holds. */
  stranger: { cert: string; key: string; ca: string };
}

export function makeTestPki(): TestPki {
  const now = Date.now();
  const mkCa = (cn: string) => {
    const k = generateKeyPem();
    return { key: k.privateKey, cert: issueCertificate({ subject: { cn }, publicKeyPem: k.publicKey, selfKeyPem: k.privateKey, usage: 'ca', days: 30, now }).pem };
  };
  const issue = (ca: { key: string; cert: string }, cn: string, usage: 'server' | 'client') => {
    const k = generateKeyPem();
    const cert = issueCertificate({ subject: { cn, o: usage === 'client' ? 'drover:nodes' : undefined }, publicKeyPem: k.publicKey, issuer: { certPem: ca.cert, keyPem: ca.key }, usage, days: 30, now, ...(usage === 'server' ? { dnsNames: ['localhost'], ips: ['127.0.0.1'] } : {}) });
    return { cert: cert.pem, key: k.privateKey };
  };
  const ca = mkCa(`drover-ca@test-${randomBytes(4).toString('hex')}`);
  const other = mkCa(`other-ca@test-${randomBytes(4).toString('hex')}`);
  return { ca: ca.cert, server: issue(ca, 'drover-server', 'server'), node: issue(ca, 'edge-1', 'client'), stranger: { ...issue(other, 'edge-1', 'client'), ca: other.cert } };
}

export function manifestOf(data: Buffer, names: string[], chunkSize: number): ImageManifest {
  const chunks: string[] = [];
  for (let s = 0; s < data.length; s += chunkSize) chunks.push(createHash('sha256').update(data.subarray(s, s + chunkSize)).digest('hex'));
  return { digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, size: data.length, chunkSize, chunks, names, format: 'docker-archive', createdAt: new Date().toISOString() };
}

export interface ImageServer {
  url: string;
  port: number;
  /** Body bytes the server wrote for blob requests (cut ones included). */
  blobBytesSent: number;
  /** Every blob Range asked for, in order ("A-B"). */
  ranges: string[];
  /** Chunks to corrupt (one byte flipped) the next time each is sent; removed once done. */
  corruptOnce: Set<number>;
  /** Chunks corrupted every time they are sent. */
  corruptAlways: Set<number>;
  /** Answer this many blob requests 503 with Retry-After: retryAfterSeconds. */
  busy: { count: number; retryAfterSeconds: number; at: number[] };
  /** Called as a blob answer is about to be written (chunk index): a test stalls its proxy here. */
  beforeChunk?: (chunk: number, half: () => Promise<void>) => Promise<void> | void;
  /** The answer is written in two halves with this pause between them (so a fault can land mid-chunk). */
  halfPauseMs: number;
  close(): Promise<void>;
}

/** Serves `archives` (bytes + manifest) at the contract's routes, to clients holding a certificate of `pki.ca`. */
export async function startImageServer(pki: TestPki, archives: Array<{ data: Buffer; manifest: ImageManifest }>): Promise<ImageServer> {
  const byDigest = new Map(archives.map((a) => [a.manifest.digest, a]));
  const sockets = new Set<Socket>();
  const state: Omit<ImageServer, 'url' | 'port' | 'close'> = { blobBytesSent: 0, ranges: [], corruptOnce: new Set(), corruptAlways: new Set(), busy: { count: 0, retryAfterSeconds: 1, at: [] }, halfPauseMs: 0 };
  const server: Server = createServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    void (async () => {
      const m = new RegExp(`^${IMAGES_PATH}/(sha256:[0-9a-f]{64})(/blob)?$`).exec(req.url ?? '');
      const a = m ? byDigest.get(m[1]!) : undefined;
      if (!m || !a) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `image ${m?.[1] ?? req.url} not found` }));
        return;
      }
      if (!m[2]) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(a.manifest));
        return;
      }
      if (state.busy.count > 0) {
        state.busy.count--;
        state.busy.at.push(Date.now());
        res.writeHead(503, { 'retry-after': String(state.busy.retryAfterSeconds), 'content-type': 'application/json' }).end(JSON.stringify({ message: 'too many image transfers at once' }));
        return;
      }
      const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (!r) {
        res.writeHead(416).end();
        return;
      }
      const start = Number(r[1]);
      const end = Math.min(Number(r[2]), a.data.length - 1);
      state.ranges.push(`${start}-${end}`);
      const chunk = Math.floor(start / a.manifest.chunkSize);
      let body = a.data.subarray(start, end + 1);
      if (state.corruptOnce.delete(chunk) || state.corruptAlways.has(chunk)) {
        body = Buffer.from(body);
        body[body.length >> 1] ^= 0xff;
      }
      res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': String(body.length), 'content-range': `bytes ${start}-${end}/${a.data.length}` });
      const half = body.length >> 1;
      const write = (b: Buffer) => {
        state.blobBytesSent += b.length;
        return new Promise<void>((resolve) => (res.write(b) ? resolve() : res.once('drain', () => resolve())));
      };
      let firstHalfSent = false;
      const sendHalf = async () => {
        if (firstHalfSent) return;
        firstHalfSent = true;
        await write(body.subarray(0, half));
      };
      await state.beforeChunk?.(chunk, sendHalf);
      await sendHalf();
      if (state.halfPauseMs) await new Promise((res2) => setTimeout(res2, state.halfPauseMs));
      if (res.destroyed) return;
      await write(body.subarray(half));
      res.end();
    })().catch(() => res.destroy());
  });
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `https://127.0.0.1:${port}`,
    port,
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}

/**
 * A real tar archive of `bytes` of incompressible files (made with tar(1)), in `dir`: what the fetcher
 * moves is an archive like `podman save`'s, though it never looks inside.
 */
export async function makeTarArchive(dir: string, bytes: number): Promise<Buffer> {
  const src = await mkdtemp(join(dir, 'tar-src-'));
  const per = 1024 * 1024;
  for (let i = 0; i * per < bytes; i++) await writeFile(join(src, `layer-${i}.bin`), randomBytes(Math.min(per, bytes - i * per)));
  const out = join(dir, `archive-${randomBytes(4).toString('hex')}.tar`);
  await execa('tar', ['-cf', out, '-C', src, '.']);
  await rm(src, { recursive: true, force: true });
  return readFile(out);
}

/**
 * A docker-archive-shaped tar (manifest.json with RepoTags, a config, one layer of `bytes` random
 * bytes), made with tar(1): enough for the FakeRuntime's load, which reads the RepoTags.
 */
export async function makeDockerArchive(dir: string, bytes: number, tags: string[]): Promise<Buffer> {
  const src = await mkdtemp(join(dir, 'docker-archive-'));
  const layer = randomBytes(bytes);
  const layerName = `${createHash('sha256').update(layer).digest('hex')}.tar`;
  await writeFile(join(src, layerName), layer);
  await writeFile(join(src, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', config: {} }));
  await writeFile(join(src, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: tags, Layers: [layerName] }]));
  const out = join(dir, `docker-archive-${randomBytes(4).toString('hex')}.tar`);
  await execa('tar', ['-cf', out, '-C', src, 'manifest.json', 'config.json', layerName]);
  await rm(src, { recursive: true, force: true });
  return readFile(out);
}
