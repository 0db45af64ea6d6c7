/**
 * The agent's image fetcher (agent/images/fetch.ts) against a real HTTPS server speaking the contract's
 * image routes (test/helpers/image-server.ts, client certificates required), real files, and a TCP
 * proxy for a link that stalls: whole transfers, refused chunks, drops, resumption after a crash, a
 * torn partial file, a busy server, the bandwidth budget, a full disk and a lying manifest.
 * Speeds are not asserted here (bench/image-transfer.ts measures the budget's accuracy); only that the
 * budget holds the transfer back at all.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, readdir, mkdir, appendFile, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { ImageFetcher, ImageTransferError, partialPath, TokenBucket, archivePath, type FetchProgress } from '../../agent/images/fetch.js';
import { makeTarArchive, makeTestPki, manifestOf, startImageServer, type ImageServer, type TestPki } from '../helpers/image-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import type { ImageManifest } from '../../src/contract/images.js';

const CHUNK = 256 * 1024;
const FAST = { baseMs: 20, maxMs: 200 };

let dir: string;
let pki: TestPki;
let data: Buffer;
let m: ImageManifest;
let small: Buffer;
let sm: ImageManifest;
let liar: { data: Buffer; manifest: ImageManifest };
let srv: ImageServer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-image-fetch-'));
  pki = makeTestPki();
  data = await makeTarArchive(dir, 4 * 1024 * 1024);
  m = manifestOf(data, ['localhost/app:1'], CHUNK);
  small = await makeTarArchive(dir, 600 * 1024);
  sm = manifestOf(small, ['localhost/small:1'], CHUNK);
  // Chunks that match their own hashes, under a digest that is not the archive's.
  const other = await makeTarArchive(dir, 300 * 1024);
  const lm = manifestOf(other, ['localhost/liar:1'], CHUNK);
  liar = { data: other, manifest: { ...lm, digest: `sha256:${createHash('sha256').update('something else').digest('hex')}` } };
  srv = await startImageServer(pki, [{ data, manifest: m }, { data: small, manifest: sm }, liar]);
});

after(async () => {
  await srv?.close();
  await rm(dir, { recursive: true, force: true });
});

function fresh(): void {
  srv.ranges.length = 0;
  srv.blobBytesSent = 0;
  srv.corruptOnce.clear();
  srv.corruptAlways.clear();
  srv.busy.count = 0;
  srv.busy.at.length = 0;
  srv.beforeChunk = undefined;
  srv.halfPauseMs = 0;
}

async function stateDir(): Promise<string> {
  return mkdtemp(join(dir, 'state-'));
}

function fetcher(state: string, over: Partial<ConstructorParameters<typeof ImageFetcher>[0]> = {}): ImageFetcher {
  return new ImageFetcher({ baseUrl: srv.url, tls: { ca: pki.ca, cert: pki.node.cert, key: pki.node.key }, stateDir: state, backoff: FAST, readTimeoutMs: 5_000, ...over });
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const chunkOf = (range: string) => Number(range.split('-')[0]) / CHUNK;

test('a whole transfer: every chunk once, the archive verified and moved out of partial/, progress up to the total', async () => {
  fresh();
  const state = await stateDir();
  const f = fetcher(state);
  const seen: FetchProgress[] = [];
  const r = await f.fetch({ digest: m.digest, size: m.size, name: 'localhost/app:1' }, { onProgress: (p) => seen.push(p) });
  f.close();
  assert.equal(r.path, archivePath(state, m.digest));
  assert.equal(sha(await readFile(r.path)), m.digest);
  await assert.rejects(stat(partialPath(state, m.digest)), /ENOENT/);
  assert.equal(srv.ranges.length, m.chunks.length, 'one request per chunk');
  // The blob once, and the manifest (a few KB).
  assert.ok(r.wireBytes >= m.size && r.wireBytes < m.size + 8192, `${r.wireBytes} bytes received`);
  assert.deepEqual([r.refusedChunks, r.drops, r.resumedChunks], [0, 0, 0]);
  assert.deepEqual(seen.at(-1), { bytes: m.size, total: m.size, state: 'fetching' });
  assert.ok(seen.every((p, i) => i === 0 || p.bytes >= seen[i - 1]!.bytes), 'progress never goes back');
});

test('a chunk corrupted on the way is refused, counted and fetched again; the archive is intact', async () => {
  fresh();
  srv.corruptOnce.add(5);
  const state = await stateDir();
  const f = fetcher(state);
  const r = await f.fetch({ digest: m.digest, size: m.size });
  f.close();
  assert.equal(r.refusedChunks, 1);
  assert.equal(sha(await readFile(r.path)), m.digest);
  assert.equal(srv.ranges.filter((x) => chunkOf(x) === 5).length, 2, 'chunk 5 fetched twice');
  assert.equal(srv.ranges.length, m.chunks.length + 1, 'no other chunk twice');
  assert.ok(r.wireBytes >= m.size + CHUNK && r.wireBytes < m.size + CHUNK + 8192, `${r.wireBytes} bytes received`);
});

test('a chunk that keeps failing its sha256 fails the transfer with an error naming the chunk', async () => {
  fresh();
  const state = await stateDir();
  srv.corruptAlways.add(2);
  const f = fetcher(state, { chunkAttempts: 3 });
  const err = await f.fetch({ digest: m.digest }).then(() => assert.fail('should fail'), (e: unknown) => e);
  f.close();
  assert.ok(err instanceof ImageTransferError);
  assert.equal(err.failure, 'ChunkCorrupt');
  assert.match(err.message, /chunk 2 of \d+ \(bytes 524288-786431\) of image sha256:[0-9a-f]{64} failed its sha256 check 3 times/);
  // The two good chunks before it are kept for the next attempt.
  assert.equal((await stat(partialPath(state, m.digest))).size, 2 * CHUNK);
});

test('the link stalls at ~50 % (a half-open connection through a proxy): the transfer resumes where the stalled chunk stopped; bytes on the wire stay under 1.1 × the size', async () => {
  fresh();
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: srv.port });
  let stalled = false;
  srv.beforeChunk = async (chunk, half) => {
    if (stalled || chunk !== 8) return;
    // Half of chunk 8 reaches the device, then the link goes silent both ways.
    await half();
    await new Promise((r) => setTimeout(r, 100));
    stalled = true;
    proxy.stall();
    setTimeout(() => proxy.resume(), 2_500);
  };
  const state = await stateDir();
  const f = fetcher(state, { baseUrl: `https://127.0.0.1:${proxy.port}`, readTimeoutMs: 800 });
  const messages: string[] = [];
  try {
    const r = await f.fetch({ digest: m.digest, size: m.size }, { onProgress: (p) => p.message && messages.push(p.message) });
    assert.equal(sha(await readFile(r.path)), m.digest);
    assert.ok(r.drops >= 1, 'the stall was noticed');
    assert.ok(messages.some((x) => /stalled link|no answer/.test(x)), messages.join('\n'));
    const fetched = srv.ranges.map(chunkOf);
    assert.deepEqual(fetched.filter((c) => Math.floor(c) !== 8), [...Array(m.chunks.length).keys()].filter((c) => c !== 8), 'every other chunk exactly once, in order');
    // Chunk 8 asked for again from the byte it stopped at (half of it had arrived), not from its start.
    assert.deepEqual(fetched.filter((c) => Math.floor(c) === 8).length, 2, fetched.join(','));
    assert.ok(fetched.some((c) => c > 8 && c < 9), `the second request for chunk 8 starts inside it: ${fetched.join(',')}`);
    assert.ok(r.wireBytes <= 1.1 * m.size, `device received ${r.wireBytes} bytes for ${m.size}`);
    assert.ok(srv.blobBytesSent <= 1.1 * m.size, `server sent ${srv.blobBytesSent} bytes for ${m.size}`);
  } finally {
    f.close();
    await proxy.close();
  }
});

test('the connection cut mid-chunk (server side RST): resumed at once from where that chunk stopped', async () => {
  fresh();
  let cut = false;
  srv.beforeChunk = async (chunk, half) => {
    if (cut || chunk !== 3) return;
    cut = true;
    await half();
    throw new Error('cut'); // the server destroys the response: the socket is reset mid-body
  };
  const state = await stateDir();
  const f = fetcher(state);
  const r = await f.fetch({ digest: m.digest });
  f.close();
  assert.equal(sha(await readFile(r.path)), m.digest);
  assert.equal(r.drops, 1);
  assert.ok(r.wireBytes <= m.size + CHUNK);
  const third = srv.ranges.map(chunkOf).filter((c) => Math.floor(c) === 3);
  assert.equal(third.length, 2, third.join(','));
  // What had arrived of it before the reset is kept (or, when nothing had, it starts over at its beginning).
  assert.ok(third[1]! >= 3 && third[1]! < 4, third.join(','));
});

test('after a crash mid-transfer a new fetcher on the same state dir fetches only what was not verified', async () => {
  fresh();
  const state = await stateDir();
  const ac = new AbortController();
  srv.halfPauseMs = 30;
  srv.beforeChunk = (chunk) => {
    if (chunk === 7) ac.abort(new Error('agent killed'));
  };
  const first = fetcher(state);
  const err = await first.fetch({ digest: m.digest }, { signal: ac.signal }).then(() => assert.fail('aborted'), (e: unknown) => e);
  first.close();
  assert.ok(err instanceof ImageTransferError && err.failure === 'Aborted', String(err));
  const kept = (await stat(partialPath(state, m.digest))).size;
  assert.equal(kept % CHUNK, 0, 'only whole verified chunks on disk');
  const verified = kept / CHUNK;
  assert.ok(verified >= 6 && verified <= 7, `verified ${verified}`);
  const before = srv.ranges.length;
  srv.beforeChunk = undefined;
  const second = fetcher(state);
  const r = await second.fetch({ digest: m.digest });
  second.close();
  assert.equal(r.resumedChunks, verified);
  assert.deepEqual(srv.ranges.slice(before).map(chunkOf), [...Array(m.chunks.length).keys()].slice(verified), 'nothing verified fetched twice');
  assert.equal(sha(await readFile(r.path)), m.digest);
});

test('an agent killed with SIGKILL mid-transfer: the next fetcher on its state dir resumes after the chunks it verified, never fetching one twice', async () => {
  fresh();
  const state = await stateDir();
  const child = execa(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../helpers/image-fetch-child.ts', import.meta.url))], {
    env: { DROVER_TEST_FETCH: JSON.stringify({ baseUrl: srv.url, tls: { ca: pki.ca, cert: pki.node.cert, key: pki.node.key }, stateDir: state, digest: m.digest, bytesPerSecond: 2 * 1024 * 1024 }) },
    reject: false,
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const last = out.trim().split('\n').pop() ?? '';
      const p = /^progress (\d+) (\d+)$/.exec(last);
      if (p && Number(p[2]) > 0 && Number(p[1]) >= Number(p[2]) / 2) resolve();
      if (last.startsWith('done')) reject(new Error('the transfer ended before it could be killed'));
    });
    void child.then((r) => reject(new Error(`child ended: ${r.exitCode} ${r.stderr}`)));
  });
  child.kill('SIGKILL');
  const r0 = await child;
  assert.equal(r0.signal, 'SIGKILL');
  const onDisk = (await stat(partialPath(state, m.digest))).size;
  const sentBefore = srv.ranges.length;
  const f = fetcher(state);
  const r = await f.fetch({ digest: m.digest, size: m.size });
  f.close();
  assert.ok(r.resumedChunks >= m.chunks.length / 2 - 1, `resumed from chunk ${r.resumedChunks} (${onDisk} bytes were on disk)`);
  const after = srv.ranges.slice(sentBefore).map(chunkOf);
  assert.deepEqual(after, [...Array(m.chunks.length).keys()].slice(r.resumedChunks), 'only the chunks not yet verified');
  assert.ok(srv.ranges.slice(0, sentBefore).map(chunkOf).every((c) => c <= r.resumedChunks), 'the killed one got no further than what was verified plus the chunk in flight');
  assert.ok(srv.blobBytesSent <= 1.1 * m.size, `server sent ${srv.blobBytesSent} bytes for ${m.size}`);
  assert.equal(sha(await readFile(r.path)), m.digest);
});

test('an archive verified but not yet loaded when the agent died is used as it is, not fetched again', async () => {
  fresh();
  const state = await stateDir();
  const f = fetcher(state);
  await f.fetch({ digest: sm.digest });
  srv.ranges.length = 0;
  const again = await f.fetch({ digest: sm.digest });
  f.close();
  assert.equal(again.path, archivePath(state, sm.digest));
  assert.deepEqual(srv.ranges, [], 'no blob request');
  assert.ok(again.wireBytes < 8192, 'the manifest only');
  assert.equal(sha(await readFile(again.path)), sm.digest);
});

test('a partial file with a bad tail (a torn write, a damaged chunk) is cut back to its verified chunks', async () => {
  fresh();
  const state = await stateDir();
  const part = partialPath(state, m.digest);
  await mkdir(join(state, 'images', 'partial'), { recursive: true });
  // Chunks 0-4 good, chunk 5 damaged, half of chunk 6 (a write the power cut interrupted).
  const damaged = Buffer.from(data.subarray(0, 6 * CHUNK + CHUNK / 2));
  damaged[5 * CHUNK + 10] ^= 1;
  await writeFile(part, damaged);
  const f = fetcher(state);
  const r = await f.fetch({ digest: m.digest });
  f.close();
  assert.equal(r.resumedChunks, 5);
  assert.deepEqual(srv.ranges.map(chunkOf), [...Array(m.chunks.length).keys()].slice(5));
  assert.equal(sha(await readFile(r.path)), m.digest);
});

test('a busy server (503 + Retry-After) is waited out as it asks, and does not count as a failure', async () => {
  fresh();
  srv.busy.count = 2;
  srv.busy.retryAfterSeconds = 1;
  const state = await stateDir();
  const states: string[] = [];
  const f = fetcher(state, { dropAttempts: 2 });
  const r = await f.fetch({ digest: sm.digest }, { onProgress: (p) => states.push(`${p.state}${p.message ? `: ${p.message}` : ''}`) });
  f.close();
  assert.equal(sha(await readFile(r.path)), sm.digest);
  assert.equal(srv.busy.at.length, 2);
  // The backoff alone would come back after 20-40 ms; Retry-After says a second.
  assert.ok(srv.busy.at[1]! - srv.busy.at[0]! >= 900, `second ask ${srv.busy.at[1]! - srv.busy.at[0]!} ms after the first`);
  assert.ok(states.some((s) => /^waiting: GET .* answered 503: too many image transfers at once; trying again in 1 s/.test(s)), states.join('\n'));
});

test('the bandwidth budget holds the reading back (a 600 KB archive at 256 KiB/s takes over 2 s)', async () => {
  fresh();
  const state = await stateDir();
  const f = fetcher(state, { bucket: new TokenBucket(256 * 1024) });
  const r = await f.fetch({ digest: sm.digest });
  f.close();
  const floor = ((sm.size - 32 * 1024) / (256 * 1024)) * 1000;
  assert.ok(r.ms >= 0.9 * floor, `${sm.size} bytes in ${Math.round(r.ms)} ms`);
});

test('the TLS identity is checked both ways: a node certificate from another CA gets nothing, a server the cluster CA did not sign is refused', async () => {
  fresh();
  const state = await stateDir();
  const stranger = fetcher(state, { tls: { ca: pki.ca, cert: pki.stranger.cert, key: pki.stranger.key }, dropAttempts: 2 });
  const e1 = await stranger.fetch({ digest: sm.digest }).then(() => assert.fail('refused'), (e: unknown) => e);
  stranger.close();
  assert.ok(e1 instanceof ImageTransferError, String(e1));
  assert.equal(srv.ranges.length, 0);
  const wrongCa = fetcher(state, { tls: { ca: pki.stranger.ca, cert: pki.node.cert, key: pki.node.key } });
  const e2 = await wrongCa.fetch({ digest: sm.digest }).then(() => assert.fail('refused'), (e: unknown) => e);
  wrongCa.close();
  assert.ok(e2 instanceof ImageTransferError && e2.failure === 'Refused', String(e2));
  assert.match(e2.message, /TLS verification of 127\.0\.0\.1:\d+ failed/);
  assert.deepEqual(await readdir(join(state, 'images', 'partial')).catch(() => []), [], 'nothing written');
});

test('an unknown digest is NotFound; a manifest for another size than the desired state says is refused before any byte of the blob', async () => {
  fresh();
  const state = await stateDir();
  const f = fetcher(state);
  const missing = `sha256:${'0'.repeat(64)}`;
  await assert.rejects(f.fetch({ digest: missing }), (e: unknown) => e instanceof ImageTransferError && e.failure === 'NotFound' && /answered 404: image sha256:0+ not found/.test(e.message));
  await assert.rejects(f.fetch({ digest: sm.digest, size: sm.size + 1 }), (e: unknown) => e instanceof ImageTransferError && e.failure === 'BadManifest' && /it says \d+ bytes, the desired state \d+/.test(e.message));
  f.close();
  assert.equal(srv.ranges.length, 0);
});

test('chunks that match a manifest whose digest is not theirs: the whole-file check fails, the partial file is removed', async () => {
  fresh();
  const state = await stateDir();
  const f = fetcher(state);
  const err = await f.fetch({ digest: liar.manifest.digest }).then(() => assert.fail('mismatch'), (e: unknown) => e);
  f.close();
  assert.ok(err instanceof ImageTransferError && err.failure === 'DigestMismatch', String(err));
  assert.match(err.message, /the fetched archive's sha256 is sha256:[0-9a-f]{64} although every chunk matched the manifest .*; the partial file was removed/);
  await assert.rejects(stat(partialPath(state, liar.manifest.digest)), /ENOENT/);
});

describe('a full disk (a tiny tmpfs as the state dir)', () => {
  let mnt: string;
  before(async () => {
    mnt = await mkdtemp(join(tmpdir(), 'drover-image-full-'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  });
  after(async () => {
    await execa('umount', [mnt]).catch(() => {});
    await rm(mnt, { recursive: true, force: true });
  });

  test('an archive larger than the free space fails before fetching, naming the need', async () => {
    fresh();
    const f = fetcher(mnt);
    const err = await f.fetch({ digest: m.digest }).then(() => assert.fail('full'), (e: unknown) => e);
    f.close();
    assert.ok(err instanceof ImageTransferError && err.failure === 'DiskFull', String(err));
    assert.match(err.message, /the disk is full: image sha256:[0-9a-f]{64} needs 4\d+ more bytes in .*, \d+ are free; the partial file was removed/);
    assert.equal(srv.ranges.length, 0);
    await assert.rejects(stat(partialPath(mnt, m.digest)), /ENOENT/);
  });

  test('the disk filling up mid-transfer (ENOSPC on a chunk write): a clear error, the partial file removed', async () => {
    fresh();
    srv.beforeChunk = async (chunk) => {
      if (chunk !== 1) return;
      // Someone else takes the rest of the disk while the transfer runs.
      const fs = await statfs(mnt);
      await appendFile(join(mnt, 'filler'), Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - 4096))).catch(() => undefined);
    };
    const f = fetcher(mnt);
    const err = await f.fetch({ digest: sm.digest }).then(() => assert.fail('full'), (e: unknown) => e);
    f.close();
    await rm(join(mnt, 'filler'), { force: true });
    assert.ok(err instanceof ImageTransferError && err.failure === 'DiskFull', String(err));
    assert.match(err.message, /the disk is full: cannot write .*\.part \(ENOSPC.*\); the partial file was removed/);
    await assert.rejects(stat(partialPath(mnt, sm.digest)), /ENOENT/);
  });
});

test('TokenBucket: waits in proportion to what was taken beyond the burst', () => {
  let now = 0;
  const b = new TokenBucket(1000, 100, () => now);
  assert.equal(b.take(100), 0);
  assert.equal(b.take(500), 500);
  now = 500;
  assert.equal(b.take(0), 0);
  assert.throws(() => new TokenBucket(0), /bandwidth budget must be positive/);
});

test('TokenBucket: no budget never waits; a budget set later (a node label) applies from then on, and can be lifted', () => {
  let now = 0;
  const b = new TokenBucket(undefined, 100, () => now);
  assert.equal(b.take(10_000_000), 0, 'no budget: no wait');
  b.setRate(1000);
  assert.equal(b.bytesPerSecond, 1000);
  assert.equal(b.take(100), 100, 'a new budget starts with an empty bucket: no burst earned while unlimited');
  now = 1000;
  assert.equal(b.take(1000), 900, 'the time since counts at the new rate, up to the burst (100 B): 900 B to wait for');
  b.setRate(undefined);
  assert.equal(b.take(1_000_000), 0, 'lifted: no wait');
  assert.throws(() => b.setRate(-5), /bandwidth budget must be positive/);
});
