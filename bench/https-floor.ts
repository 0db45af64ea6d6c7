/**
 * The ceiling any Node.js API server reaches on this machine: a bare `https` server in its own process,
 * with drover's own TLS set-up (a server certificate from drover's PKI), that reads each POST's body,
 * parses it as JSON and answers 201 with it, nothing else (no auth, no validation, no store). Driven by
 * the same client as bench/store-commit.ts --part api (fetch, bearer header, a pod-sized JSON body, 16
 * and 64 requests in flight), so its figure is the roof over drover's "API durable creates/s" row:
 * what HTTPS + HTTP parsing + JSON cost before drover does any work of its own.
 *
 * Run: node --import tsx bench/https-floor.ts [--runs 3] [--requests 3000] [--label NAME]
 *   → bench/results/https-floor[-NAME].json and .md
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadOrCreatePki } from '../server/pki/pki.js';
import { silentLogger } from '../src/util/logger.js';
import { trustCa } from '../test/helpers/cluster.js';
import { freePort, median, numArg, parseArgs, procCpuMs, round, sleep, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));

if (args.has('serve')) {
  // Child: the bare server.
  const dir = args.get('serve')!;
  const pki = await loadOrCreatePki({ dir, sans: { dns: ['localhost'], ips: ['127.0.0.1'] }, logger: silentLogger });
  const server = createServer({ key: pki.server.key, cert: pki.server.cert, keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const obj = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      const body = JSON.stringify(obj);
      res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.listen(Number(args.get('port')), '127.0.0.1', () => writeFileSync(join(dir, 'ready'), ''));
} else {
  const RUNS = numArg(args, 'runs', 3);
  const REQUESTS = numArg(args, 'requests', 3000);
  const LABEL = args.get('label');
  const dir = mkdtempSync(join(tmpdir(), 'drover-https-floor-'));
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--serve', dir, '--port', String(port)], { stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        readFileSync(join(dir, 'ready'));
        break;
      } catch {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error('bare server did not start');
        await sleep(50);
      }
    }
    await trustCa(readFileSync(join(dir, 'ca.crt'), 'utf8'));
    const url = `https://127.0.0.1:${port}/api/v1/namespaces/default/pods`;
    let seq = 0;
    const post = async () => {
      const name = `b${seq++}`;
      const r = await fetch(url, {
        method: 'POST',
        headers: { authorization: 'Bearer x'.padEnd(60, 'x'), 'content-type': 'application/json' },
        body: JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app: 'bench' } }, spec: { containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'] }] } }),
      });
      await r.text();
      if (r.status !== 201) throw new Error(`POST: ${r.status}`);
    };
    const drive = async (total: number, inFlight: number) => {
      let next = 0;
      const t0 = performance.now();
      await Promise.all(Array.from({ length: inFlight }, async () => {
        while (next++ < total) await post();
      }));
      return (total / (performance.now() - t0)) * 1000;
    };
    await drive(500, 16);
    const figures: Array<Record<string, unknown>> = [];
    for (const inFlight of [16, 64]) {
      const runs: number[] = [];
      const serverMs: number[] = [];
      const clientCpu: number[] = [];
      const load = loadavg().map((l) => round(l, 2));
      for (let i = 0; i < RUNS; i++) {
        const c0 = procCpuMs(child.pid!);
        const u0 = process.cpuUsage();
        const t0 = performance.now();
        runs.push(await drive(REQUESTS, inFlight));
        const wall = performance.now() - t0;
        const u = process.cpuUsage(u0);
        serverMs.push((procCpuMs(child.pid!) - c0) / REQUESTS);
        clientCpu.push(((u.user + u.system) / 1000 / wall) * 100);
      }
      const f = { inFlight, requests: REQUESTS, perSecondRuns: runs.map((x) => round(x)), perSecondMedian: round(median(runs)), serverCpuMsPerRequest: round(median(serverMs), 3), clientCpuPercentOfOneCore: round(median(clientCpu)), loadAverage: load };
      figures.push(f);
      console.log(`bare HTTPS ${inFlight} in flight: ${f.perSecondMedian} POSTs/s (runs ${f.perSecondRuns.join(', ')}); server CPU ${f.serverCpuMsPerRequest} ms per request; client CPU ${f.clientCpuPercentOfOneCore}% of a core; load ${load.join(' ')}`);
    }
    const name = LABEL ? `https-floor-${LABEL}` : 'https-floor';
    const file = writeResult(name, { command: `node --import tsx bench/https-floor.ts --runs ${RUNS} --requests ${REQUESTS}${LABEL ? ` --label ${LABEL}` : ''}`, figures });
    const md = [
      `# Bare Node.js HTTPS POST ceiling on this machine (${new Date().toISOString()})`,
      '',
      'A `https` server that only parses the JSON body and echoes it with 201, in its own process, driven by the client of bench/store-commit.ts --part api. The roof over any Node.js API server here.',
      '',
      '| in flight | POSTs/s (median) | runs | server CPU per request | client CPU | load |',
      '|---|---|---|---|---|---|',
      ...figures.map((f) => `| ${String(f.inFlight)} | ${String(f.perSecondMedian)} | ${(f.perSecondRuns as number[]).join(', ')} | ${String(f.serverCpuMsPerRequest)} ms | ${String(f.clientCpuPercentOfOneCore)} % | ${(f.loadAverage as number[]).join(' / ')} |`),
      '',
    ];
    writeFileSync(file.replace(/\.json$/, '.md'), md.join('\n'));
    console.log(`wrote ${file}`);
  } finally {
    child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}
