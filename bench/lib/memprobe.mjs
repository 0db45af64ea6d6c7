// Memory probe preloaded into the server (node --import bench/lib/memprobe.mjs, or the fleet bench's --server-node-args): every 10 s one JSON line
// to $MEMPROBE_OUT (default /tmp/memprobe.log) with process.memoryUsage, V8 heap spaces, smaps_rollup and smaps Rss by mapping. SIGUSR2: one line now.
import { readFileSync, appendFileSync } from 'node:fs';
import v8 from 'node:v8';
const out = process.env.MEMPROBE_OUT || '/tmp/memprobe.log';
function smapsByKind() {
  const txt = readFileSync('/proc/self/smaps', 'utf8').split('\n');
  const kinds = {};
  let cur = null;
  let count = {};
  for (const l of txt) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(l);
    if (m) {
      const size = (parseInt(m[2], 16) - parseInt(m[1], 16)) / 1024;
      let name = m[4] || '[anon]';
      if (name.includes('node_modules')) name = name.replace(/.*node_modules\//, 'nm/');
      cur = name;
      kinds[cur] ??= { rssKiB: 0, sizeKiB: 0, n: 0, anonKiB: 0 };
      kinds[cur].sizeKiB += size;
      kinds[cur].n++;
      continue;
    }
    const r = /^Rss:\s+(\d+)/.exec(l);
    if (r && cur) kinds[cur].rssKiB += Number(r[1]);
    const a = /^Anonymous:\s+(\d+)/.exec(l);
    if (a && cur) kinds[cur].anonKiB += Number(a[1]);
  }
  // anon mappings: bucket by size
  return Object.fromEntries(Object.entries(kinds).filter(([, v]) => v.rssKiB > 1024).sort((a, b) => b[1].rssKiB - a[1].rssKiB).map(([k, v]) => [k, { rssMiB: +(v.rssKiB / 1024).toFixed(1), n: v.n }]));
}
function anonHist() {
  const txt = readFileSync('/proc/self/smaps', 'utf8').split('\n');
  const hist = {};
  let size = 0, anon = false;
  for (const l of txt) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\S+)\s*(.*)$/.exec(l);
    if (m) { size = (parseInt(m[2], 16) - parseInt(m[1], 16)) / 1024; anon = !m[5]; continue; }
    const r = /^Rss:\s+(\d+)/.exec(l);
    if (r && anon) { const b = size >= 65536 ? '64MiB+' : size >= 16384 ? '16-64MiB' : size >= 1024 ? '1-16MiB' : '<1MiB'; hist[b] = (hist[b] ?? 0) + Number(r[1]) / 1024; }
  }
  return Object.fromEntries(Object.entries(hist).map(([k, v]) => [k, +v.toFixed(1)]));
}
function rollup() {
  const o = {};
  for (const l of readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+) kB/.exec(l);
    if (m && ['Rss', 'Pss', 'Anonymous', 'Shared_Clean', 'Private_Clean', 'Private_Dirty'].includes(m[1])) o[m[1]] = +(Number(m[2]) / 1024).toFixed(1);
  }
  return o;
}
const MiB = (n) => +(n / 2 ** 20).toFixed(1);
function probe(tag) {
  const mu = process.memoryUsage();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, MiB(s.space_used_size)]));
  const hs = v8.getHeapStatistics();
  appendFileSync(out, JSON.stringify({ t: new Date().toISOString(), tag, rss: MiB(mu.rss), heapTotal: MiB(mu.heapTotal), heapUsed: MiB(mu.heapUsed), external: MiB(mu.external), arrayBuffers: MiB(mu.arrayBuffers), mallocedMiB: MiB(hs.malloced_memory), peakMalloced: MiB(hs.peak_malloced_memory), spaces, rollup: rollup(), anonHist: anonHist(), maps: smapsByKind(), handles: process.getActiveResourcesInfo().length }) + '\n');
}
setInterval(() => probe('tick'), 10_000).unref();
process.on('SIGUSR2', () => {
  probe('usr2');
  if (process.env.MEMPROBE_SNAP) { const f = v8.writeHeapSnapshot(process.env.MEMPROBE_SNAP); appendFileSync(out, JSON.stringify({ snapshot: f }) + '\n'); }
});
