/**
 * The agent's image fetcher (agent/images/fetch.ts) measured against a real HTTPS server speaking the
 * contract's image routes (test/helpers/image-server.ts, mutual TLS, in this process): how close the
 * bandwidth budget holds (the issue asks within 10 %), the unbudgeted throughput with per-chunk
 * verification and fsync, and what a link stalled at ~50 % costs on the wire (a TCP proxy that
 * swallows everything, then comes back).
 *
 * Run: npx tsx bench/image-transfer.ts [--mb 50] → bench/results/image-transfer.json
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageFetcher, TokenBucket } from '../agent/images/fetch.js';
import { makeTarArchive, makeTestPki, manifestOf, startImageServer } from '../test/helpers/image-server.js';
import { startTcpProxy } from '../test/helpers/tcp-proxy.js';
import { numArg, parseArgs, round, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));
const bigMb = numArg(args, 'mb', 50);
const KiB = 1024;
const MiB = 1024 * 1024;

const dir = await mkdtemp(join(tmpdir(), 'drover-bench-image-'));
const pki = makeTestPki();
const small = await makeTarArchive(dir, 4 * MiB);
const big = await makeTarArchive(dir, bigMb * MiB);
const sm = manifestOf(small, ['localhost/small:1'], MiB);
const bm = manifestOf(big, ['localhost/big:1'], MiB);
const srv = await startImageServer(pki, [{ data: small, manifest: sm }, { data: big, manifest: bm }]);
const tls = { ca: pki.ca, cert: pki.node.cert, key: pki.node.key };

async function once(digest: string, o: { bucket?: TokenBucket; baseUrl?: string; readTimeoutMs?: number } = {}) {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const f = new ImageFetcher({ baseUrl: o.baseUrl ?? srv.url, tls, stateDir, bucket: o.bucket, readTimeoutMs: o.readTimeoutMs, backoff: { baseMs: 100, maxMs: 1000 } });
  const cpu0 = process.cpuUsage();
  try {
    const r = await f.fetch({ digest });
    const cpu = process.cpuUsage(cpu0);
    return { ...r, cpuMs: (cpu.user + cpu.system) / 1000 };
  } finally {
    f.close();
    await rm(stateDir, { recursive: true, force: true });
  }
}

const budgets: Array<Record<string, unknown>> = [];
for (const budget of [512 * KiB, MiB, 2 * MiB]) {
  const r = await once(sm.digest, { bucket: new TokenBucket(budget) });
  const rate = r.wireBytes / (r.ms / 1000);
  budgets.push({ budgetBytesPerSecond: budget, bytes: sm.size, seconds: round(r.ms / 1000, 2), measuredBytesPerSecond: Math.round(rate), deviationPercent: round(((rate - budget) / budget) * 100, 1), within10Percent: Math.abs(rate - budget) <= 0.1 * budget });
  console.log(`budget ${budget / KiB} KiB/s: ${round(rate / KiB, 1)} KiB/s over ${round(r.ms / 1000, 1)} s`);
}

const fast = await once(bm.digest);
const unbudgeted = { bytes: bm.size, seconds: round(fast.ms / 1000, 2), mbPerSecond: round(bm.size / 1e6 / (fast.ms / 1000), 1), fetcherCpuMsPerMB: round(fast.cpuMs / (bm.size / 1e6), 2) };
console.log(`unbudgeted ${bigMb} MB: ${unbudgeted.mbPerSecond} MB/s, ${unbudgeted.fetcherCpuMsPerMB} ms CPU per MB (fetcher and server in one process)`);

// A link stalled at ~50 %: the proxy swallows both ways for 3 s, the fetcher's read timeout (1 s) notices.
const proxy = await startTcpProxy({ host: '127.0.0.1', port: srv.port });
const half = Math.floor(bm.chunks.length / 2);
let stalled = false;
srv.blobBytesSent = 0;
srv.beforeChunk = async (chunk, sendHalf) => {
  if (stalled || chunk !== half) return;
  await sendHalf();
  stalled = true;
  proxy.stall();
  setTimeout(() => proxy.resume(), 3_000);
};
const cut = await once(bm.digest, { baseUrl: `https://127.0.0.1:${proxy.port}`, readTimeoutMs: 1_000 });
srv.beforeChunk = undefined;
await proxy.close();
const stall = { bytes: bm.size, deviceReceived: cut.wireBytes, serverSent: srv.blobBytesSent, deviceRatio: round(cut.wireBytes / bm.size, 3), serverRatio: round(srv.blobBytesSent / bm.size, 3), drops: cut.drops, seconds: round(cut.ms / 1000, 1) };
console.log(`stalled at 50 %: device received ${stall.deviceRatio} × size, server sent ${stall.serverRatio} × size, ${stall.drops} drops`);

await srv.close();
await rm(dir, { recursive: true, force: true });
const file = writeResult('image-transfer', { chunkBytes: MiB, budgets, unbudgeted, stall });
console.log(`wrote ${file}`);
