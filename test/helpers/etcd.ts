/**
 * Real etcd members (Debian's etcd 3.4, /usr/bin/etcd) on free loopback ports, each in its own temp
 * data dir, for the store's contract suite and the etcd fault tests. Every member is killed and its
 * dir removed by stop(); a test registers that with t.after so nothing outlives it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitFor } from './cluster.js';

const run = promisify(execFile);

/** PEM files of a CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A client certificate from another CA: etcd must refuse it. */
  strangerCertFile: string;
  strangerKeyFile: string;
}

export interface EtcdMember {
  name: string;
  /** The client URL (http:// or https://127.0.0.1:PORT). */
  endpoint: string;
  /** SIGKILL, data kept: start() brings the member back with its data. */
  kill(): Promise<void>;
  /** SIGTERM and wait, data kept. */
  stop(): Promise<void>;
  /** Starts a stopped member again on the same ports and data dir; resolves once it answers /health. */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: the process holds its sockets but answers nothing. */
  pause(): void;
  resume(): void;
  running(): boolean;
  /** The tail of its stdout/stderr, for failure messages. */
  output(): string;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Every member's client URL. */
  endpoints: string[];
  tls?: EtcdTls;
  /** Kills every member and removes the temp dir. */
  stop(): Promise<void>;
}

async function makeTls(dir: string): Promise<EtcdTls> {
  const f = (n: string) => join(dir, n);
  const sh = (...args: string[]) => run('openssl', args, { cwd: dir });
  const ca = async (name: string) => {
    await sh('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '2', '-subj', `/CN=${name}`);
  };
  const leaf = async (name: string, caName: string, ext: string) => {
    await sh('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
    await writeFile(f(`${name}.ext`), ext);
    await sh('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${caName}.crt`), '-CAkey', f(`${caName}.key`), '-CAcreateserial', '-out', f(`${name}.crt`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  await ca('ca');
  await ca('stranger-ca');
  await leaf('server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  await leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  await leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  return {
    caFile: f('ca.crt'),
    certFile: f('server.crt'),
    keyFile: f('server.key'),
    clientCertFile: f('client.crt'),
    clientKeyFile: f('client.key'),
    strangerCertFile: f('stranger.crt'),
    strangerKeyFile: f('stranger.key'),
  };
}

async function healthy(endpoint: string, tls: EtcdTls | undefined): Promise<boolean> {
  const url = new URL('/health', endpoint);
  const opts = tls ? { ca: await readFile(tls.caFile), cert: await readFile(tls.clientCertFile), key: await readFile(tls.clientKeyFile) } : {};
  return new Promise((resolve) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { ...opts, timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * `n` members forming one cluster (n = 1: a single member). `tls`: client URLs are https with client
 * certificates required (--client-cert-auth); peers stay plain, they are not what is tested.
 * Short raft timings (heartbeat 50 ms, election 500 ms) so a killed leader is replaced quickly.
 */
/**
 * Returns once every thread of `pid` is stopped: SIGSTOP reaches a busy multi-threaded process (Go) thread by
 * thread, and on a loaded machine a request sent right after kill() was answered before the last one stopped.
 */
function waitStopped(pid: number): void {
  const nap = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 2000; i++) {
    let all = true;
    try {
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        // State is the field after the command name in parentheses: T (stopped) or t (traced).
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        if (state !== 'T' && state !== 't') all = false;
      }
    } catch {
      return; // gone: nothing left to wait for
    }
    if (all) return;
    Atomics.wait(nap, 0, 0, 1);
  }
  throw new Error(`etcd (pid ${pid}) did not stop within 2 s of SIGSTOP`);
}

export async function startEtcdCluster(n = 1, opts: { tls?: boolean } = {}): Promise<EtcdCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-etcd-'));
  const tls = opts.tls ? await makeTls(dir) : undefined;
  const scheme = tls ? 'https' : 'http';
  // One at a time, and never the same twice: a port freed by one probe may be handed to the next.
  const taken = new Set<number>();
  const fresh = async (): Promise<number> => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) return taken.add(p), p;
    }
  };
  const ports: Array<{ client: number; peer: number }> = [];
  for (let i = 0; i < n; i++) ports.push({ client: await fresh(), peer: await fresh() });
  const token = `drover-test-${ports[0]!.peer}`;
  const names = ports.map((_, i) => `m${i}`);
  const initialCluster = ports.map((p, i) => `${names[i]}=http://127.0.0.1:${p.peer}`).join(',');
  const members: EtcdMember[] = ports.map((p, i) => {
    const name = names[i]!;
    const endpoint = `${scheme}://127.0.0.1:${p.client}`;
    let proc: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let output = '';
    const args = [
      '--name', name,
      '--data-dir', join(dir, name),
      '--listen-client-urls', endpoint,
      '--advertise-client-urls', endpoint,
      '--listen-peer-urls', `http://127.0.0.1:${p.peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${p.peer}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', token,
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--logger', 'zap',
      '--log-level', 'error',
      ...(tls ? ['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.caFile, '--client-cert-auth'] : []),
    ];
    const member: EtcdMember = {
      name,
      endpoint,
      running: () => proc !== undefined && proc.exitCode === null && proc.signalCode === null,
      output: () => output,
      async start() {
        if (member.running()) return;
        const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        proc = child;
        output = '';
        child.stdout!.on('data', (c) => (output = (output + c).slice(-4000)));
        child.stderr!.on('data', (c) => (output = (output + c).slice(-4000)));
        exited = new Promise((resolve) => child.once('exit', () => resolve()));
      },
      async kill() {
        if (!member.running()) return;
        proc!.kill('SIGKILL');
        await exited;
      },
      async stop() {
        if (!member.running()) return;
        proc!.kill('SIGCONT');
        proc!.kill('SIGTERM');
        await exited;
      },
      pause: () => {
        if (!proc?.pid) return;
        proc.kill('SIGSTOP');
        waitStopped(proc.pid);
      },
      resume: () => void proc?.kill('SIGCONT'),
    };
    const start = member.start;
    // start() = spawn + wait until this member answers (a restarted member of a quorum-less cluster
    // cannot be healthy alone: the cluster start waits for all of them together instead).
    member.start = async () => {
      await start();
      await waitFor(`etcd ${name} at ${endpoint} healthy`, () => healthy(endpoint, tls), 20_000, 50).catch((err: Error) => {
        throw new Error(`${err.message}; its output: ${output.slice(-600)}`);
      });
    };
    (member as EtcdMember & { spawnOnly: () => Promise<void> }).spawnOnly = start;
    return member;
  });
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint),
    ...(tls ? { tls } : {}),
    async stop() {
      await Promise.all(members.map((m) => m.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    // Members of a new cluster wait for each other: spawn all, then wait for each.
    for (const m of members) await (m as EtcdMember & { spawnOnly: () => Promise<void> }).spawnOnly();
    for (const m of members) {
      await waitFor(`etcd ${m.name} at ${m.endpoint} healthy`, () => healthy(m.endpoint, tls), 20_000, 50).catch((err: Error) => {
        throw new Error(`${err.message}; its output: ${m.output().slice(-600)}`);
      });
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** One etcd member; `t.after(() => etcd.stop())` it. */
export async function startEtcd(opts: { tls?: boolean } = {}): Promise<EtcdCluster> {
  return startEtcdCluster(1, opts);
}

/** The member that leads the raft group now (from `etcdctl endpoint status`), for killing the leader. */
export async function etcdLeader(cluster: EtcdCluster): Promise<EtcdMember | undefined> {
  const live = cluster.members.filter((m) => m.running());
  const tlsArgs = cluster.tls ? ['--cacert', cluster.tls.caFile, '--cert', cluster.tls.clientCertFile, '--key', cluster.tls.clientKeyFile] : [];
  const { stdout } = await run('etcdctl', ['--endpoints', live.map((m) => m.endpoint).join(','), ...tlsArgs, 'endpoint', 'status', '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
  const status = JSON.parse(stdout) as Array<{ Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }>;
  const lead = status.find((s) => String(s.Status.header.member_id) === String(s.Status.leader));
  return lead ? live.find((m) => m.endpoint === lead.Endpoint) : undefined;
}
