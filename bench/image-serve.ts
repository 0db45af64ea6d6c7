/**
 * The server's side of image transfers (issue 15: "record transfer throughput and server CPU per
 * concurrent transfer"): one real `drover server` process (compiled with tsc as bin/drover.js runs it,
 * TLS), a docker-archive of ~64 MiB of random bytes pushed with `drover image push --from-archive`,
 * then N devices fetching it at once over HTTPS with the agent's own ImageFetcher (1 MiB Range chunks,
 * each verified and fsynced). Every device is a joined node (the real join: its key, CSR, certificate)
 * with a pod bound to it through the API that uses the image, so the server's access check
 * (imageAccess: the images its desired state lists) is what lets it fetch; a joined node without such
 * a pod is checked to get 403 first.
 *
 * Runs: N = 1, 4, 8, 16 unbudgeted (the server's cap raised to 16 so none waits); N = 16 with a
 * budget of 1 MiB/s each (a fleet rollout); N = 16 with the server restarted with --image-transfers 4
 * (the rest get 503 + Retry-After and wait: total time, and that every device got the image).
 * Per run: wall time, total and per-device MB/s, the server's CPU (/proc/PID/stat before/after) per MB
 * and per concurrent transfer, its RSS peak, the bytes it counted served (/metrics
 * drover_image_bytes_served_total) against size × N, and the devices' CPU (this process, for context:
 * devices and server share the machine's cores).
 *
 * Run: node --import tsx bench/image-serve.ts [--mb 64] [--sizes 1,4,8,16] [--budget-n 16] [--cap-n 16] [--cap 4]
 *      → bench/results/image-serve.json and image-serve.md (--markdown bench/results/image-serve.json: the .md again from it)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { request } from 'node:https';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ImageFetcher, TokenBucket, type FetchResult } from '../agent/images/fetch.js';
import { joinCluster } from '../agent/join.js';
import { imagePath } from '../src/contract/images.js';
import { silentLogger } from '../src/util/logger.js';
import { makeDockerArchive } from '../test/helpers/image-server.js';
import { compileServer, Monitor, ServerProc } from './lib/fleet-server.js';
import { freePort, median, numArg, parseArgs, procCpuMs, procMemory, round, sleep, writeResult } from './lib/common.js';
import { scrape } from './lib/metrics.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const IMAGE = 'localhost/bench-serve:1';
const load = () => loadavg().map((l) => round(l, 2));

interface Device {
  node: string;
  tls: { ca: string; cert: string; key: string };
}

interface RunSpec {
  name: string;
  n: number;
  budgetBytesPerSecond?: number;
  /** The server's --image-transfers during the run. */
  cap: number;
}

/** The status of a GET made with a device's certificate (node:https: fetch takes no client certificate). */
function httpsStatus(url: string, d: Device): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: d.tls.ca, cert: d.tls.cert, key: d.tls.key }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const md = args.get('markdown');
  // `--markdown FILE.json`: only rewrite FILE.md from a result written before.
  if (md) return writeFileSync(md.replace(/\.json$/, '.md'), markdown(JSON.parse(readFileSync(md, 'utf8')) as Record<string, unknown>));
  const mb = numArg(args, 'mb', 64);
  const sizes = (args.get('sizes') ?? '1,4,8,16').split(',').map(Number).filter((x) => x > 0);
  const budgetN = numArg(args, 'budget-n', 16);
  const capN = numArg(args, 'cap-n', 16);
  const cap = numArg(args, 'cap', 4);
  const budget = numArg(args, 'budget-kib', 1024) * 1024;
  const maxN = Math.max(...sizes, budgetN, capN);
  const cmd = `node --import tsx bench/image-serve.ts ${process.argv.slice(2).join(' ')}`.trim();
  const loadAtStart = load();
  console.log(`image-serve bench: ${mb} MiB, N ${sizes.join(', ')}, budget ${budget / 1024} KiB/s × ${budgetN}, cap ${cap} × ${capN}; load ${loadAtStart.join(' ')}`);

  const tmp = mkdtempSync(join(tmpdir(), 'drover-image-serve-'));
  const entry = compileServer(join(tmp, 'build'));
  // Uncapped runs: the cap at the largest N, so no device waits (the default, 8, would queue half of 16).
  const uncapped = Math.max(16, maxN);
  const server = new ServerProc({
    entry,
    nodeArgs: [],
    dataDir: join(tmp, 'data'),
    apiPort: await freePort(),
    mqttPort: await freePort(),
    insecure: false,
    serverArgs: ['--image-transfers', String(uncapped)],
    clientConfig: join(tmp, 'client-config.json'),
  });
  const mon = new Monitor(() => server.pid);
  const results: Array<Record<string, unknown>> = [];
  const out: Record<string, unknown> = { command: cmd, imageMiB: mb, loadAverageAtStart: loadAtStart };
  try {
    server.start();
    await server.ready();
    const metrics = () => scrape(`${server.apiUrl}/metrics`, server.token);

    // ── the image: a docker-archive of random bytes, pushed with the CLI through POST /drover/v1/images
    const work = join(tmp, 'archive');
    await mkdir(work);
    await makeDockerArchive(work, mb * MiB, [IMAGE]);
    const file = join(work, readdirSync(work).find((f) => f.startsWith('docker-archive-') && f.endsWith('.tar'))!);
    const size = statSync(file).size;
    const pushPhase = mon.begin('push');
    const push = await run(process.execPath, [entry, 'image', 'push', '--from-archive', file], {
      env: { ...process.env, DROVER_SERVER: server.apiUrl, DROVER_TOKEN: server.token, DROVER_CONFIG: server.spec.clientConfig },
      maxBuffer: 16 * MiB,
    });
    const pushed = pushPhase.end();
    const m = /^(sha256:[0-9a-f]{64}) /m.exec(push.stdout);
    if (!m) throw new Error(`drover image push printed no digest: ${push.stdout} ${push.stderr}`);
    const digest = m[1]!;
    rmSync(file);
    out.image = { name: IMAGE, digest, bytes: size, chunks: Math.ceil(size / MiB) };
    out.push = { ...pushed, mbPerSecond: round(size / 1e6 / ((pushed.wallMs as number) / 1000), 1) };
    console.log(`pushed ${IMAGE} ${digest.slice(0, 19)} (${size} B) in ${pushed.wallMs} ms`);

    // ── the devices: joined nodes, each with a pod bound to it that runs the image
    const devices: Device[] = [];
    for (let i = 0; i < maxN + 1; i++) {
      const node = `serve-${String(i).padStart(2, '0')}`;
      const c = await joinCluster({ apiUrl: server.apiUrl, token: server.joinToken, node, logger: silentLogger });
      devices.push({ node, tls: { ca: c.ca, cert: c.cert, key: c.key } });
    }
    const outsider = devices.pop()!;
    for (const d of devices) {
      const r = await server.api('POST', '/api/v1/namespaces/default/pods', {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `app-${d.node}`, namespace: 'default' },
        spec: { nodeName: d.node, containers: [{ name: 'app', image: IMAGE, resources: { requests: { cpu: '10m', memory: '8Mi' } } }] },
      });
      if (r.status !== 201) throw new Error(`POST pod for ${d.node}: HTTP ${r.status} ${r.text}`);
    }
    // The server's check, not a shortcut: a joined node without such a pod is refused; one with it is let in.
    const refused = await httpsStatus(server.apiUrl + imagePath(digest), outsider);
    if (refused !== 403) throw new Error(`a joined node with no pod using the image got ${refused} for its manifest, not 403`);
    for (const d of devices) {
      let s = 0;
      // The server's pod cache follows the store within moments of the POST.
      for (let tries = 0; s !== 200 && tries < 100; tries++) {
        s = await httpsStatus(server.apiUrl + imagePath(digest), d);
        if (s !== 200) await sleep(100);
      }
      if (s !== 200) throw new Error(`${d.node} (pod bound, image in its desired state) got ${s} for the manifest`);
    }
    out.accessCheck = { nodeWithoutPodManifestStatus: refused, devicesAllowed: devices.length };

    // The server's own idle CPU (controllers, broker with no clients) to read the runs against.
    const idle = mon.begin('idle');
    await sleep(3_000);
    out.serverIdle = idle.end();

    const once = async (spec: RunSpec): Promise<Record<string, unknown>> => {
      const ds = devices.slice(0, spec.n);
      const dirs = await Promise.all(ds.map((d) => mkdtemp(join(tmp, `dev-${d.node}-`))));
      const fetchers = ds.map((d, i) => new ImageFetcher({ baseUrl: server.apiUrl, tls: d.tls, stateDir: dirs[i]!, bucket: spec.budgetBytesPerSecond ? new TokenBucket(spec.budgetBytesPerSecond) : undefined, backoff: { baseMs: 200, maxMs: 5_000 } }));
      const m0 = await metrics();
      const loadStart = load();
      const cpu0 = process.cpuUsage();
      const ph = mon.begin(spec.name);
      const cpuStart = procCpuMs(server.pid);
      const settled = await Promise.allSettled(fetchers.map((f) => f.fetch({ digest, size, name: IMAGE })));
      const wallMs = ph.elapsedMs();
      const cpuMs = procCpuMs(server.pid) - cpuStart;
      const rec = ph.end();
      const cpu = process.cpuUsage(cpu0);
      const m1 = await metrics();
      for (const f of fetchers) f.close();
      const ok = settled.filter((s): s is PromiseFulfilledResult<FetchResult> => s.status === 'fulfilled').map((s) => s.value);
      // A fetch resolves only once the whole archive's sha256 is the digest: each is a device with the image.
      const whole = ok.filter((r) => statSync(r.path).size === size).length;
      await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
      const served = m1.value('drover_image_bytes_served_total') - m0.value('drover_image_bytes_served_total');
      const rates = ok.map((r) => size / 1e6 / (r.ms / 1000));
      const mbServed = served / 1e6;
      const res = {
        run: spec.name,
        devices: spec.n,
        budgetBytesPerSecondEach: spec.budgetBytesPerSecond ?? null,
        serverImageTransfersCap: spec.cap,
        wallSeconds: round(wallMs / 1000, 2),
        totalMBPerSecond: round((spec.n * size) / 1e6 / (wallMs / 1000), 1),
        perDeviceMBPerSecond: { median: round(median(rates), 2), min: round(Math.min(...rates), 2), max: round(Math.max(...rates), 2) },
        serverCpuSeconds: round(cpuMs / 1000, 2),
        serverCpuPercentOfOneCore: round((cpuMs / wallMs) * 100, 1),
        serverCpuMsPerMBServed: round(cpuMs / mbServed, 2),
        serverCpuPercentOfOneCorePerTransfer: round(((cpuMs / wallMs) * 100) / spec.n, 2),
        serverRssPeakMiB: rec.rssPeakMiB,
        serverRssEndMiB: rec.rssEndMiB,
        // VmHWM: the process's peak since it started, which a 250 ms sample of a sub-second run can miss.
        serverVmHwmMiB: round(procMemory(server.pid)?.hwmMiB ?? NaN, 1),
        bytesServed: served,
        bytesExpected: size * spec.n,
        servedRatio: round(served / (size * spec.n), 4),
        refused503: m1.value('drover_image_transfers_refused_total') - m0.value('drover_image_transfers_refused_total'),
        deviceRetries: ok.reduce((n, r) => n + r.drops, 0),
        devicesWithImage: whole,
        failures: settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason?.message ?? s)).slice(0, 3),
        devicesCpuSeconds: round((cpu.user + cpu.system) / 1e6, 2),
        loadAverage: { start: loadStart, end: load() },
      };
      console.log(`[${spec.name}] ${spec.n} devices: ${res.wallSeconds} s, ${res.totalMBPerSecond} MB/s total, per device median ${res.perDeviceMBPerSecond.median} min ${res.perDeviceMBPerSecond.min} MB/s; server CPU ${res.serverCpuSeconds} s (${res.serverCpuMsPerMBServed} ms/MB, ${res.serverCpuPercentOfOneCorePerTransfer} % core/transfer), RSS peak ${res.serverRssPeakMiB} MiB; served ${res.servedRatio} × size × N; 503s ${res.refused503}; ${whole}/${spec.n} have the image`);
      return res;
    };

    const save = () => {
      const f = writeResult('image-serve', { ...out, results });
      const body = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
      writeFileSync(f.replace(/\.json$/, '.md'), markdown(body));
      return f;
    };
    for (const n of sizes) {
      results.push(await once({ name: `unbudgeted-${n}`, n, cap: uncapped }));
      await sleep(1_000);
    }
    results.push(await once({ name: `budget-${budgetN}`, n: budgetN, budgetBytesPerSecond: budget, cap: uncapped }));
    save();
    // The same server (data dir, ports, image, pods, node certificates) restarted with a small cap.
    await server.stop();
    server.spec.serverArgs = ['--image-transfers', String(cap)];
    server.start();
    await server.ready();
    await sleep(1_000);
    results.push(await once({ name: `cap${cap}-${capN}`, n: capN, cap }));
    out.loadAverageAtEnd = load();
    out.serverLogCounts = Object.fromEntries([...server.warnCounts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10));
    console.log(`wrote ${save()} and .md`);
  } catch (err) {
    out.error = (err as Error).message;
    console.error(`failed: ${(err as Error).stack}`);
    process.exitCode = 1;
    if (results.length) writeResult('image-serve', { ...out, results });
  } finally {
    mon.stop();
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
    // trustCa (ServerProc.ready) wrote the CA bundle the CLI used into a temp dir of its own.
    const bundle = process.env.DROVER_CA_FILE;
    if (bundle && dirname(bundle).startsWith(join(tmpdir(), 'drover-test-ca-'))) rmSync(dirname(bundle), { recursive: true, force: true });
  }
}

function markdown(b: Record<string, any>): string {
  const rows: Array<Record<string, any>> = b.results;
  const lines = [
    '# Image transfers from the server (bench/image-serve.ts)',
    '',
    `Command: \`${b.command}\``,
    '',
    `${b.date}, node ${b.node}, ${b.machine.cores} cores (${b.machine.cpuModel}), ${b.machine.memoryMiB} MiB. Load average at start ${b.loadAverageAtStart?.join(' ')}, at end ${b.loadAverageAtEnd?.join(' ') ?? '—'}.`,
    '',
    `One compiled \`drover server\` process (TLS); the image ${b.image.name}, a docker-archive of ${b.image.bytes.toLocaleString('en-US')} bytes of random data (${b.image.chunks} chunks of 1 MiB), pushed with \`drover image push --from-archive\` (${b.push.wallMs} ms, ${b.push.mbPerSecond} MB/s). Devices: joined nodes (real join, own certificate), each with a pod bound to it through the API that uses the image; a joined node without one got ${b.accessCheck.nodeWithoutPodManifestStatus} for the manifest. Each device fetches with the agent's ImageFetcher (1 MiB Range requests over one kept-alive HTTPS connection, sha256 per chunk, fsync per chunk, whole-archive sha256 at the end) into its own state dir; the devices run in the bench process on the same ${b.machine.cores} cores as the server. MB = 10^6 bytes. Server idle: ${b.serverIdle.serverCpuPercentOfOneCore} % of a core, RSS ${b.serverIdle.rssEndMiB} MiB.`,
    '',
    '| run | devices | budget each | --image-transfers | wall | total MB/s | per device MB/s median / min | server CPU s | CPU ms per MB | % core per transfer | server RSS peak (VmHWM) | served / (size × N) | 503s | devices with image | devices\' CPU s | load start → end |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.run} | ${r.devices} | ${r.budgetBytesPerSecondEach ? `${r.budgetBytesPerSecondEach / 1024} KiB/s` : '—'} | ${r.serverImageTransfersCap} | ${r.wallSeconds} s | ${r.totalMBPerSecond} | ${r.perDeviceMBPerSecond.median} / ${r.perDeviceMBPerSecond.min} | ${r.serverCpuSeconds} | ${r.serverCpuMsPerMBServed} | ${r.serverCpuPercentOfOneCorePerTransfer} | ${r.serverRssPeakMiB} MiB (${r.serverVmHwmMiB}) | ${r.bytesServed.toLocaleString('en-US')} / ${r.bytesExpected.toLocaleString('en-US')} (${r.servedRatio}) | ${r.refused503} | ${r.devicesWithImage}/${r.devices} | ${r.devicesCpuSeconds} | ${r.loadAverage.start[0]} → ${r.loadAverage.end[0]} |`,
    );
  }
  const unb = rows.filter((r) => !r.budgetBytesPerSecondEach && r.serverImageTransfersCap >= r.devices);
  const big = unb.at(-1);
  if (big) {
    lines.push('', `Reading: at ${big.devices} unbudgeted devices the server used ${big.serverCpuPercentOfOneCore} % of one core while the devices (one process here, TLS, sha256 and fsync for all of them) used ${round((big.devicesCpuSeconds / big.wallSeconds) * 100)} %: the throughput is bounded by the devices' side on this machine, not the server's. The server's cost is the figure to scale from: ${big.serverCpuMsPerMBServed}–${Math.max(...unb.map((r) => r.serverCpuMsPerMBServed))} ms of CPU per MB served unbudgeted, i.e. one server core serves about ${Math.round(1000 / Math.max(...unb.map((r) => r.serverCpuMsPerMBServed)))}–${Math.round(1000 / big.serverCpuMsPerMBServed)} MB/s.`);
  }
  for (const r of rows.filter((x) => x.budgetBytesPerSecondEach)) {
    lines.push('', `Fleet rollout (${r.run}): ${r.devices} devices at ${r.budgetBytesPerSecondEach / 1024} KiB/s each cost the server ${r.serverCpuPercentOfOneCorePerTransfer} % of a core per transfer (${r.serverCpuMsPerMBServed} ms per MB, more than unbudgeted): about ${Math.round(100 / r.serverCpuPercentOfOneCorePerTransfer)} such transfers per server core.`);
  }
  for (const r of rows.filter((x) => x.serverImageTransfersCap < x.devices)) {
    lines.push('', `Cap (${r.run}): ${r.devices} devices against --image-transfers ${r.serverImageTransfersCap}: ${r.refused503} chunk requests answered 503 + Retry-After, all ${r.devicesWithImage} of ${r.devices} devices got the whole image (sha256 verified) in ${r.wallSeconds} s in total, the slowest at ${r.perDeviceMBPerSecond.min} MB/s; the server sent ${r.servedRatio} × size × N (a refused request sends no byte of the archive).`);
  }
  lines.push('', '"% core per transfer": the server\'s CPU over the run as % of one core, divided by the devices fetching at once. "CPU ms per MB": server CPU over the bytes its /metrics counted served (drover_image_bytes_served_total). "503s": blob requests refused at the cap (drover_image_transfers_refused_total); each refused device waits the Retry-After (5 s) and resumes from its last verified chunk.');
  return lines.join('\n') + '\n';
}

void main();
