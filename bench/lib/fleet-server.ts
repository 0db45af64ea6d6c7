/**
 * A real `drover server --disable-agent` as a child process for the fleet-scale benches (fleet.ts,
 * scale.ts): under tsx or compiled with tsc (as bin/drover.js runs it), restartable on the same data
 * dir and ports, with the measurements they share: RSS/CPU per phase from /proc, API watches, waits.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trustCa } from '../../test/helpers/cluster.js';
import { apiClient, type ApiCall } from '../../test/helpers/http.js';
import { procCpuMs, procMemory, round, sleep } from './common.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** Builds the server with tsc into `dir` (outside the repo), runnable as plain node like bin/drover.js. */
export function compileServer(dir: string): string {
  execFileSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json'), '--outDir', dir, '--sourceMap', 'false'], { stdio: 'inherit', cwd: REPO });
  copyFileSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return join(dir, 'src/main.js');
}

export interface ServerSpec {
  /** Compiled entry (compileServer); undefined: src/main.ts under tsx. */
  entry?: string;
  /** The single binary (dist/bin/drover-linux-ARCH) instead of node + entry; nodeArgs then go in NODE_OPTIONS. */
  binary?: string;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs: string[];
  dataDir: string;
  apiPort: number;
  mqttPort: number;
  insecure: boolean;
  /** Extra `drover server` flags. */
  serverArgs?: string[];
  env?: Record<string, string>;
  /** Where the CLI config goes (kept out of the user's home). */
  clientConfig: string;
}

/** One server process; start() again after stop() restarts it on the same data dir and ports. */
export class ServerProc {
  proc: ChildProcess | undefined;
  exit: string | undefined;
  readonly warnCounts = new Map<string, number>();
  readonly logLines: string[] = [];
  apiUrl: string;
  token = '';
  joinToken = '';

  constructor(readonly spec: ServerSpec) {
    this.apiUrl = `${spec.insecure ? 'http' : 'https'}://127.0.0.1:${spec.apiPort}`;
  }

  get pid(): number {
    return this.proc?.pid ?? -1;
  }

  start(): void {
    const s = this.spec;
    const args = ['server', '--disable-agent', '--data-dir', s.dataDir, '--api-host', '127.0.0.1', '--api-port', String(s.apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(s.mqttPort), '--log-level', 'warn',
      // One source address for the whole simulated fleet: lift the per-address connect rate meant for one device each.
      '--mqtt-connect-rate', '100000', '--mqtt-connect-burst', '100000', ...(s.insecure ? ['--insecure'] : []), ...(s.serverArgs ?? [])];
    this.exit = undefined;
    const proc = s.binary
      ? spawn(s.binary, args, { cwd: REPO, env: { ...process.env, ...s.env, NODE_OPTIONS: s.nodeArgs.join(' '), DROVER_CONFIG: s.clientConfig }, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [...s.nodeArgs, ...(s.entry ? [s.entry] : ['--import', 'tsx', 'src/main.ts']), ...args], {
      cwd: REPO,
      env: { ...process.env, ...s.env, DROVER_CONFIG: s.clientConfig },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const onLog = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim().startsWith('{')) continue; // the startup banner
        let msg = line;
        try {
          msg = (JSON.parse(line) as { msg?: string }).msg ?? line;
        } catch (err) {
          msg = `unparsed log line (${(err as Error).message})`;
        }
        this.warnCounts.set(msg, (this.warnCounts.get(msg) ?? 0) + 1);
        if (this.logLines.length < 30) this.logLines.push(line.slice(0, 400));
      }
    };
    proc.stdout!.on('data', onLog);
    proc.stderr!.on('data', onLog);
    proc.on('exit', (code, sig) => {
      this.exit = `server exited (code ${code}, signal ${sig})`;
    });
    this.proc = proc;
  }

  /** Throws once the process has exited: a wait must not go on for a dead server. */
  alive(): true {
    if (this.exit) throw new Error(this.exit);
    return true;
  }

  /** Waits for the tokens and GET /readyz; reads the admin and join tokens. */
  async ready(timeoutMs = 120_000): Promise<void> {
    const d = this.spec.dataDir;
    await waitUntil('join-token and admin-token', () => this.alive() && existsSync(join(d, 'join-token')) && existsSync(join(d, 'admin-token')), timeoutMs);
    // The API's certificate is signed by the cluster CA the server made: trust it for this process's fetch.
    if (!this.spec.insecure) await trustCa(readFileSync(join(d, 'tls', 'ca.crt'), 'utf8'));
    const deadline = Date.now() + timeoutMs;
    while (!(await fetch(`${this.apiUrl}/readyz`).then((r) => r.ok, () => false))) {
      this.alive();
      if (Date.now() > deadline) throw new Error(`API not ready within ${timeoutMs} ms`);
      await sleep(50);
    }
    this.token = readFileSync(join(d, 'admin-token'), 'utf8').trim();
    this.joinToken = readFileSync(join(d, 'join-token'), 'utf8').trim();
  }

  api: ApiCall = (method, path, body) => apiClient(this.apiUrl, this.token)(method, path, body);

  /** The store revision (every write bumps it): read from the smallest list there is. */
  async revision(): Promise<number> {
    const r = await this.api('GET', '/api/v1/namespaces');
    return Number(r.body?.metadata?.resourceVersion ?? NaN);
  }

  /** SIGTERM (or `signal`), SIGKILL after 15 s; resolves once the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await Promise.race([gone, sleep(15_000).then(() => p.kill('SIGKILL'))]);
    await gone;
  }
}

/** A `?watch=1` stream of the API, one callback per event; from `resourceVersion` when given. */
export function watchApi(apiUrl: string, token: string, path: string, onEvent: (type: string, obj: any) => void, resourceVersion?: number): { close(): void } {
  const ac = new AbortController();
  void (async () => {
    try {
      const q = `${path.includes('?') ? '&' : '?'}watch=1${resourceVersion !== undefined ? `&resourceVersion=${resourceVersion}` : ''}`;
      const res = await fetch(`${apiUrl}${path}${q}`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
      if (!res.ok || !res.body) throw new Error(`watch ${path}: HTTP ${res.status}`);
      const dec = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          const e = JSON.parse(line) as { type: string; object: unknown };
          onEvent(e.type, e.object);
        }
      }
    } catch (err) {
      if (!ac.signal.aborted) console.error(`watch ${path} ended: ${(err as Error).message}`);
    }
  })();
  return { close: () => ac.abort() };
}

export async function waitUntil(what: string, cond: () => boolean, timeoutMs: number, progress?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastLog = Date.now();
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${progress ? ` (${progress()})` : ''}`);
    if (progress && Date.now() - lastLog > 10_000) {
      console.log(`  … ${what}: ${progress()}`);
      lastLog = Date.now();
    }
    await sleep(20);
  }
}

/** Samples a process's RSS every 250 ms into whichever phase is open. */
export class Monitor {
  private timer: NodeJS.Timeout;
  private phase: PhaseRec | undefined;
  constructor(private readonly pid: () => number) {
    this.timer = setInterval(() => this.sample(), 250);
    this.timer.unref();
  }
  sample(): number | undefined {
    const m = procMemory(this.pid());
    if (m && this.phase) this.phase.sample(m.rssMiB);
    return m?.rssMiB;
  }
  begin(name: string): PhaseRec {
    this.phase = new PhaseRec(name, this.pid());
    this.sample();
    return this.phase;
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

/** One phase: wall time, the process's CPU time and RSS samples. */
export class PhaseRec {
  readonly t0 = performance.now();
  readonly cpu0: number;
  private peak = 0;
  private min = Infinity;
  private sum = 0;
  private n = 0;
  constructor(readonly name: string, private readonly pid: number) {
    this.cpu0 = procCpuMs(pid);
  }
  sample(rss: number): void {
    this.peak = Math.max(this.peak, rss);
    this.min = Math.min(this.min, rss);
    this.sum += rss;
    this.n++;
  }
  elapsedMs(): number {
    return performance.now() - this.t0;
  }
  end(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const ms = this.elapsedMs();
    const mem = procMemory(this.pid);
    if (mem) this.sample(mem.rssMiB);
    const cpuMs = procCpuMs(this.pid) - this.cpu0;
    return {
      wallMs: Math.round(ms),
      serverCpuMs: Math.round(cpuMs),
      serverCpuPercentOfOneCore: round((cpuMs / ms) * 100, 1),
      rssEndMiB: round(mem?.rssMiB ?? NaN, 1),
      rssEndAnonMiB: round(mem?.anonMiB ?? NaN, 1),
      rssEndFileMiB: round(mem?.fileMiB ?? NaN, 1),
      rssPeakMiB: round(this.peak, 1),
      rssMinMiB: round(this.min, 1),
      rssAvgMiB: round(this.sum / Math.max(1, this.n), 1),
      ...extra,
    };
  }
}

/** A DaemonSet of one small container per node (the fake runtime "runs" it at once). */
export function daemonSet(name: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, namespace: 'default' },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: 'collector',
              image: 'localhost/busybox:latest',
              command: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 5; done"],
              resources: { requests: { cpu: '50m', memory: '16Mi' }, limits: { memory: '32Mi' } },
            },
          ],
        },
      },
    },
  };
}

/** A Deployment of `replicas` small pods (requests small enough that 110 fit on a simulated node). */
export function deployment(name: string, replicas: number): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image: 'localhost/busybox:latest', command: ['sleep', '1d'], resources: { requests: { cpu: '10m', memory: '8Mi' } } }] },
      },
    },
  };
}
