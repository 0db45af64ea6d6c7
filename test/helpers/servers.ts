/**
 * Several `drover server` processes on one etcd and one external broker, for the fault tests: each
 * server spawned with the cluster's server token, its leadership read from its own log into a
 * LeadershipLog (who led when, by each server's clock), and a partition proxy a test puts between a
 * server and etcd or the broker to cut it off.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiClient, freePort, waitFor, type ApiCall } from './cluster.js';
import type { LeadershipLog } from './leader.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** The cluster's server token of the tests (DROVER_SERVER_TOKEN): one identity for every server on the etcd. */
export const TEST_SERVER_TOKEN = 'test-server-token-0123456789';

export interface ElectionTimings {
  leaseDurationSeconds: number;
  renewDeadlineSeconds: number;
  retryPeriodSeconds: number;
}

export interface ServerOnEtcd {
  name: string;
  child: ChildProcess;
  apiPort: number;
  apiUrl: string;
  dataDir: string;
  /** The API with the data dir's admin token (read once the server serves). */
  api: ApiCall;
  /** The tail of its output. */
  output(): string;
  /** Its log lines (parsed) whose msg matches what `keep` asked for, every one since the start. */
  kept: Array<{ time: number; msg: string; line: string }>;
  alive(): boolean;
  /** Resolves with the wall-clock ms the process was seen gone. */
  exited: Promise<number>;
  /** SIGKILL; resolves with the time it was seen gone. */
  kill9(): Promise<number>;
}

/**
 * `drover server` on etcd (`endpoints`) and the external broker at `brokerUrl`, API on `apiHost`
 * (0.0.0.0: devices in network namespaces join through it). Every "became leader" / "stopped leading"
 * it logs goes into `leadership` under `name`, at the time it logged it; its exit closes its interval
 * (a dead server acts no more). Resolves once /healthz answers; the CA must be trusted already.
 */
export async function spawnServerOnEtcd(opts: {
  name: string;
  dataDir: string;
  endpoints: string[];
  brokerUrl: string;
  timings: ElectionTimings;
  leadership: LeadershipLog;
  apiHost?: string;
  /** Log lines (by msg or text) to keep whole, beside the output's tail. */
  keep?: RegExp;
}): Promise<ServerOnEtcd> {
  const apiPort = await freePort();
  const { timings } = opts;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', 'server', '--data-dir', opts.dataDir, '--api-host', opts.apiHost ?? '127.0.0.1', '--api-port', String(apiPort), '--broker-url', opts.brokerUrl, '--disable-agent',
      '--datastore-endpoint', opts.endpoints.join(','), '--leader-elect-lease-duration', String(timings.leaseDurationSeconds), '--leader-elect-renew-deadline', String(timings.renewDeadlineSeconds),
      '--leader-elect-retry-period', String(timings.retryPeriodSeconds), '--log-level', 'info'],
    { cwd: REPO, env: { ...process.env, DROVER_CONFIG: join(opts.dataDir, 'cli-config'), DROVER_SERVER_TOKEN: TEST_SERVER_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let partial = '';
  const kept: ServerOnEtcd['kept'] = [];
  // DROVER_TEST_SERVER_LOGS=DIR: every server's whole output in DIR/NAME.log, for a failure the tail does not explain.
  const whole = process.env.DROVER_TEST_SERVER_LOGS ? createWriteStream(join(process.env.DROVER_TEST_SERVER_LOGS, `${opts.name}.log`), { flags: 'a' }) : undefined;
  if (whole) child.once('exit', () => whole.end());
  child.stderr!.on('data', (d: Buffer) => whole?.write(d));
  child.stdout!.on('data', (d: Buffer) => {
    whole?.write(d);
    const text = d.toString();
    out = (out + text).slice(-60_000);
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const l = JSON.parse(line) as { time: number; msg: string; reason?: string };
      if (l.msg === 'leader election: became leader') opts.leadership.started(opts.name, l.time);
      else if (l.msg === 'leader election: stopped leading') opts.leadership.stopped(opts.name, l.time, l.reason);
      if (opts.keep?.test(line)) kept.push({ time: l.time, msg: l.msg, line });
    }
  });
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-60_000)));
  let gone = false;
  const exited = new Promise<number>((resolve) =>
    child.once('exit', () => {
      gone = true;
      const at = Date.now();
      opts.leadership.stopped(opts.name, at, 'process exited');
      resolve(at);
    }),
  );
  const apiUrl = `https://127.0.0.1:${apiPort}`;
  let adminToken = '';
  const s: ServerOnEtcd = {
    name: opts.name,
    child,
    apiPort,
    apiUrl,
    dataDir: opts.dataDir,
    api: apiClient(apiUrl, () => adminToken),
    output: () => out,
    kept,
    alive: () => !gone,
    exited,
    async kill9() {
      if (!gone) child.kill('SIGKILL');
      return exited;
    },
  };
  await waitFor(`${opts.name} to serve`, async () => {
    if (gone) throw new Error(`${opts.name} exited before it served`);
    return (await fetch(`${apiUrl}/healthz`).catch(() => undefined))?.status === 200;
  }, 120_000, 100).catch((err) => {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${out.slice(-4000)}`);
  });
  adminToken = (await readFile(join(opts.dataDir, 'admin-token'), 'utf8')).trim();
  return s;
}

/**
 * A TCP proxy that can partition its client from its target the way a network does: cut() stops reading
 * either side (both sockets stay open, the kernel keeps what was sent and, once its window is full, the
 * sender waits), heal() reads again, so bytes sent during the cut arrive late, in order — a request a
 * cut-off leader sent before it knew arrives after another server took over. (test/helpers/tcp-proxy.ts's
 * stall() drops what it reads instead: a link that loses data, not a partition.) New connections made
 * during the cut are accepted and held the same way.
 */
export interface PartitionProxy {
  port: number;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startPartitionProxy(target: { host: string; port: number }, listenHost = '127.0.0.1'): Promise<PartitionProxy> {
  let cut = false;
  const sockets = new Set<Socket>();
  // Not stream.pipe(): it resumes a source itself when the destination drains, which would undo a cut.
  const pipe = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => to.writable && to.write(chunk));
    from.on('end', () => to.end());
    from.on('error', () => to.destroy());
    from.on('close', () => to.destroy());
  };
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      if (cut) s.pause();
    }
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, listenHost, () => resolve()));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    cut() {
      cut = true;
      for (const s of sockets) s.pause();
    },
    heal() {
      cut = false;
      for (const s of sockets) s.resume();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
