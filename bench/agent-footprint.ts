/**
 * What a drover agent costs a device at idle, and what an idle fleet costs the server: for the sizing
 * table in firmware-notes/. A real server process (embedded broker, TLS) and real agent processes
 * (joined with the K10 token, MQTT over TLS with their own certificate, real podman in a private store,
 * the busybox image of the tests), both run as plain `node` on the tsc output (as bin/drover.js; the
 * single binary embeds the same code), or under tsx with `--mode tsx`.
 *
 * Phases, each an idle window of --idle seconds after a settle:
 *   idle-0     one agent, no pods
 *   idle-N     the same agent running --pods busybox pods (sleep loops)
 *   fleet-K    K more agents joined (no pods each): the server's side with 1+K idle agents
 * Per phase, from /proc: agent RSS (sampled every 2 s), CPU (its own threads, and the podman calls it
 * made and reaped: ps per resync, stats per heartbeat), the long-lived `podman events` child (RSS,
 * CPU), bytes the agent dirtied on disk (/proc/PID/io write_bytes, which includes reaped children),
 * the state dir's size, log bytes (stdout+stderr, what journald would store); the server's RSS, CPU,
 * write_bytes (LevelDB and its files; its logs go to a pipe), data dir growth and log bytes; MQTT bytes
 * up and down on the measured agent's link, counted by a TCP relay the agent dials (--mqtt-url), and
 * TCP segments on that link (ss), to estimate what the link carries with IP/TCP headers.
 *
 * Run (root, podman): npx tsx bench/agent-footprint.ts [--idle 150] [--pods 10] [--extra-agents 4] [--mode compiled|tsx] [--out NAME]
 *   [--heartbeat S|agent-default] [--agent-node-flags "--max-semi-space-size=1 ..."] (V8 flags for the agent process only)
 *   → bench/results/agent-footprint.json and bench/results/agent-footprint.md (NAME.json, NAME.md)
 * With --insecure (plain HTTP and MQTT, node password) the relay also decodes the MQTT packets and
 * reports the bytes per topic and packet type → bench/results/agent-footprint-topics.json / .md.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, lstatSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trustCa } from '../test/helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../test/helpers/podman.js';
import { podmanEventsPid } from './agent-footprint-procs.js';
import { freePort, machine, numArg, parseArgs, procCpuMs, procMemory, round, sleep, writeResult } from './lib/common.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const args = parseArgs(process.argv.slice(2));
const IDLE_S = numArg(args, 'idle', 150);
const SETTLE_S = numArg(args, 'settle', 30);
const PODS = numArg(args, 'pods', 10);
const EXTRA = numArg(args, 'extra-agents', 4);
const MODE = args.get('mode') ?? 'compiled';
// --insecure: plain MQTT, so the relay can read the packets and count bytes per topic (TLS hides them).
const INSECURE = args.has('insecure');
// --tmp-on-tmpfs: podman's temporary directory (containers.conf image_copy_tmp_dir, default /var/tmp) on a
// tmpfs, to see how much of the idle writes are podman's temporary files.
const TMP_ON_TMPFS = args.has('tmp-on-tmpfs');
const OUT = args.get('out') ?? (INSECURE ? 'agent-footprint-topics' : TMP_ON_TMPFS ? 'agent-footprint-tmpfs' : 'agent-footprint');
if (MODE !== 'compiled' && MODE !== 'tsx' && MODE !== 'binary') throw new Error(`--mode expects compiled, tsx or binary, got "${MODE}"`);
/** --mode binary: the single binary as installed (dist/bin/drover-linux-<arch>, `npm run build:binary`), for the server and the agent. */
const BINARY = join(REPO, 'dist/bin', `drover-linux-${process.arch === 'x64' ? 'amd64' : process.arch}`);
// The agent's --heartbeat, passed explicitly so the result says what it measured; `agent-default`: none passed.
const HEARTBEAT_ARG = args.get('heartbeat') ?? '30';
const HEARTBEAT_S = HEARTBEAT_ARG === 'agent-default' ? undefined : Number(HEARTBEAT_ARG);
if (HEARTBEAT_S !== undefined && !(HEARTBEAT_S > 0)) throw new Error(`--heartbeat expects seconds or agent-default, got "${HEARTBEAT_ARG}"`);
/** Node/V8 options for the agent process alone (the server runs with none), e.g. "--max-semi-space-size=1". */
const AGENT_NODE_FLAGS = (args.get('agent-node-flags') ?? '').split(/\s+/).filter(Boolean);
const RESYNC_S = 10; // the agent's default --resync

/**
 * /proc/PID/io: bytes this process (and its reaped children) dirtied on a block filesystem, less those
 * truncated or deleted before writeback (cancelled_write_bytes: podman's short-lived temp files).
 */
function ioWriteBytes(pid: number): { gross: number; net: number } {
  const text = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (f: string) => Number(new RegExp(`^${f}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { gross: field('write_bytes'), net: field('write_bytes') - field('cancelled_write_bytes') };
}

/** RssAnon and RssFile of /proc/PID/status in MiB: what the process holds itself vs mapped files (node's code). */
function rssSplit(pid: number): { anonMiB: number; fileMiB: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (f: string) => Number(new RegExp(`^${f}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { anonMiB: round(kb('RssAnon') / 1024, 1), fileMiB: round(kb('RssFile') / 1024, 1) };
}

/** write_bytes of the live threads of a process: its own writes, without the children it reaped. */
function ownWriteBytes(pid: number): number {
  let sum = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      sum += Number(/^write_bytes:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/io`, 'utf8'))?.[1] ?? 0);
    } catch {
      // the thread ended meanwhile
    }
  }
  return sum;
}

/** cutime + cstime: CPU of the children this process waited for (podman ps, podman stats), in ms. */
function childrenCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[13]) + Number(rest[14])) * 1000) / 100;
}

/** Bytes of every regular file below dir (not following links). */
function duBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e);
      try {
        const s = lstatSync(p);
        if (s.isDirectory()) walk(p);
        else if (s.isFile()) total += s.size;
      } catch {
        // removed while walking (LevelDB compaction)
      }
    }
  };
  walk(dir);
  return total;
}

/** TCP segments and payload bytes of the established connections to `port` (ss -ti), summed. */
function tcpSegments(port: number): { segsOut: number; segsIn: number } {
  const out = execFileSync('ss', ['-tinH', 'state', 'established', 'dst', `127.0.0.1:${port}`], { encoding: 'utf8' });
  let segsOut = 0;
  let segsIn = 0;
  for (const m of out.matchAll(/segs_out:(\d+) segs_in:(\d+)/g)) {
    segsOut += Number(m[1]);
    segsIn += Number(m[2]);
  }
  return { segsOut, segsIn };
}

const PACKET_TYPES = ['?', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE', 'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH'];

/**
 * Bytes and packets per MQTT packet kind on one direction of a plain MQTT stream: `PUBLISH topic`
 * (node names replaced by NODE) or the packet type. Whole packets, fixed header included.
 */
class MqttTally {
  private buf = Buffer.alloc(0);
  readonly kinds = new Map<string, { bytes: number; packets: number }>();
  constructor(private readonly nodeNames: RegExp) {}
  feed(b: Buffer): void {
    this.buf = Buffer.concat([this.buf, b]);
    for (;;) {
      if (this.buf.length < 2) return;
      let len = 0;
      let mul = 1;
      let i = 1;
      for (; i < 5; i++) {
        if (i >= this.buf.length) return;
        const byte = this.buf[i]!;
        len += (byte & 0x7f) * mul;
        mul *= 128;
        if ((byte & 0x80) === 0) break;
      }
      const total = i + 1 + len;
      if (this.buf.length < total) return;
      const type = this.buf[0]! >> 4;
      let kind = PACKET_TYPES[type] ?? '?';
      if (type === 3) {
        const tlen = this.buf.readUInt16BE(i + 1);
        kind = `PUBLISH ${this.buf.subarray(i + 3, i + 3 + tlen).toString('utf8').replace(this.nodeNames, 'NODE')}`;
      }
      const k = this.kinds.get(kind) ?? { bytes: 0, packets: 0 };
      k.bytes += total;
      k.packets += 1;
      this.kinds.set(kind, k);
      this.buf = this.buf.subarray(total);
    }
  }
  snapshot(): Map<string, { bytes: number; packets: number }> {
    return new Map([...this.kinds].map(([k, v]) => [k, { ...v }]));
  }
}

/** A relay between the measured agent and the broker, counting the bytes each way (and, on plain MQTT, per topic). */
async function countingRelay(targetPort: number, tally?: { up: MqttTally; down: MqttTally }): Promise<{ port: number; up: () => number; down: () => number; close: () => Promise<void> }> {
  let up = 0;
  let down = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const broker = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(broker);
    client.on('data', (b: Buffer) => {
      up += b.length;
      tally?.up.feed(b);
      broker.write(b);
    });
    broker.on('data', (b: Buffer) => {
      down += b.length;
      tally?.down.feed(b);
      client.write(b);
    });
    const end = () => {
      client.destroy();
      broker.destroy();
      sockets.delete(client);
      sockets.delete(broker);
    };
    client.on('close', end).on('error', end);
    broker.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    up: () => up,
    down: () => down,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A child process whose stdout+stderr bytes are counted (its log volume) and whose last lines are kept. */
interface Proc {
  child: ChildProcess;
  pid: number;
  logBytes: () => number;
  tail: string[];
  exited?: string;
}

function start(name: string, entry: string[], argv: string[], env: Record<string, string> = {}, nodeFlags: string[] = []): Proc {
  // The single binary takes node flags from NODE_OPTIONS only.
  const child =
    MODE === 'binary'
      ? spawn(BINARY, argv, { cwd: REPO, env: { ...process.env, ...env, ...(nodeFlags.length ? { NODE_OPTIONS: nodeFlags.join(' ') } : {}) }, stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [...nodeFlags, ...entry, ...argv], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let bytes = 0;
  const p: Proc = { child, pid: child.pid!, logBytes: () => bytes, tail: [] };
  const onData = (b: Buffer) => {
    bytes += b.length;
    for (const line of b.toString('utf8').split('\n')) if (line.trim()) p.tail.push(line.slice(0, 300));
    if (p.tail.length > 40) p.tail.splice(0, p.tail.length - 40);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.on('exit', (code, sig) => (p.exited = `${name} exited (code ${code}, signal ${sig}); last lines:\n${p.tail.join('\n')}`));
  return p;
}

async function stop(p: Proc | undefined): Promise<void> {
  if (!p || p.exited) return;
  const gone = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
  await gone;
  clearTimeout(t);
}

/** Builds the product with tsc into `dir`, runnable as plain node as bin/drover.js runs dist/. */
function compile(dir: string): string[] {
  execFileSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json'), '--outDir', dir, '--sourceMap', 'false'], { stdio: 'inherit', cwd: REPO });
  copyFileSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  return [join(dir, 'src/main.js')];
}

interface Snapshot {
  t: number;
  agentCpuMs: number;
  agentChildrenCpuMs: number;
  agentWriteBytes: { gross: number; net: number };
  agentOwnWriteBytes: number;
  agentLogBytes: number;
  eventsPid?: number;
  eventsCpuMs?: number;
  eventsWriteBytes?: { gross: number; net: number };
  stateDirBytes: number;
  serverCpuMs: number;
  serverWriteBytes: { gross: number; net: number };
  serverLogBytes: number;
  dataDirBytes: number;
  mqttUp: number;
  mqttDown: number;
  segsOut: number;
  segsIn: number;
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'drover-footprint-'));
  const dataDir = join(tmp, 'server');
  const stateDir = join(tmp, 'agent');
  let sb: PodmanSandbox | undefined;
  let server: Proc | undefined;
  const agents: Proc[] = [];
  let relay: Awaited<ReturnType<typeof countingRelay>> | undefined;
  const cleanup = async () => {
    for (const a of agents) await stop(a);
    await stop(server);
    await relay?.close();
    await sb?.cleanup();
    await rm(tmp, { recursive: true, force: true });
  };
  // Interrupted (Ctrl-C, timeout): the server, agents, pods and the tmpfs mount go too.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));
  try {
    console.log(`agent footprint: mode ${MODE}, idle ${IDLE_S} s per phase, ${PODS} pods, ${EXTRA} extra agents; machine ${JSON.stringify(machine())}`);
    sb = await podmanSandbox();
    // On a device podman's runroot is /run/containers/storage, a tmpfs; the sandbox's is under the temp
    // dir (ext4 here), which would count podman's lock and state files as disk writes. The sandbox's
    // cleanup unmounts what is mounted below its directory.
    mkdirSync(sb.runroot, { recursive: true, mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=64m', 'tmpfs', sb.runroot]);
    if (TMP_ON_TMPFS) {
      const podmanTmp = join(sb.dir, 'podman-tmp');
      mkdirSync(podmanTmp, { mode: 0o700 });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=64m', 'tmpfs', podmanTmp]);
      writeFileSync(sb.confPath, readFileSync(sb.confPath, 'utf8').replace('[engine]\n', `[engine]\nimage_copy_tmp_dir = "${podmanTmp}"\n`));
    }
    const image = await buildTestImage(sb);
    if (MODE === 'binary' && !existsSync(BINARY)) throw new Error(`${BINARY} is missing: npm run build:binary`);
    const entry = MODE === 'compiled' ? compile(join(tmp, 'build')) : MODE === 'binary' ? [] : ['--import', 'tsx', join(REPO, 'src/main.ts')];
    const apiPort = await freePort();
    const mqttPort = await freePort();
    server = start('server', entry, ['server', '--disable-agent', '--data-dir', dataDir, '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(mqttPort), ...(INSECURE ? ['--insecure'] : [])], {
      DROVER_CONFIG: join(tmp, 'client-config.json'),
    });
    const apiUrl = `${INSECURE ? 'http' : 'https'}://127.0.0.1:${apiPort}`;
    const waitFor = async (what: string, fn: () => boolean | Promise<boolean>, ms = 120_000) => {
      const deadline = Date.now() + ms;
      while (!(await fn())) {
        for (const p of [server, ...agents]) if (p?.exited) throw new Error(p.exited);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await sleep(250);
      }
    };
    await waitFor('server tokens', () => existsSync(join(dataDir, 'join-token')) && existsSync(join(dataDir, 'admin-token')) && (INSECURE || existsSync(join(dataDir, 'tls', 'ca.crt'))));
    if (!INSECURE) await trustCa(readFileSync(join(dataDir, 'tls', 'ca.crt'), 'utf8'));
    await waitFor('server /readyz', () => fetch(`${apiUrl}/readyz`).then((r) => r.ok, () => false));
    const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(apiUrl + path, { method, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, body: (await r.json().catch(() => undefined)) as any };
    };
    const tokenFile = join(tmp, 'join-token');
    writeFileSync(tokenFile, readFileSync(join(dataDir, 'join-token')), { mode: 0o600 });
    const tally = INSECURE ? { up: new MqttTally(/fp-\d+/g), down: new MqttTally(/fp-\d+/g) } : undefined;
    relay = await countingRelay(mqttPort, tally);

    const startAgent = (name: string, dir: string, viaRelay: boolean) => {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const a = start(name, entry, [
        'agent', '--server', apiUrl, '--token-file', tokenFile, '--node-name', name, '--state-dir', dir, '--runtime', 'podman',
        '--podman-root', sb!.root, '--podman-runroot', sb!.runroot, ...(HEARTBEAT_S !== undefined ? ['--heartbeat', String(HEARTBEAT_S)] : []), '--resync', String(RESYNC_S),
        ...(viaRelay ? ['--mqtt-url', `${INSECURE ? 'mqtt' : 'mqtts'}://127.0.0.1:${relay!.port}`] : []),
      ], sb!.env, AGENT_NODE_FLAGS);
      agents.push(a);
      return a;
    };
    const nodeReady = async (name: string) =>
      (await api('GET', `/api/v1/nodes/${name}`)).body?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') === true;

    const agent = startAgent('fp-0', stateDir, true);
    await waitFor('fp-0 Ready', () => nodeReady('fp-0'));
    console.log('fp-0 Ready');

    const rss: number[] = [];
    /** Of the agent's RSS: anonymous pages (heap, V8 spaces, malloc) and file pages (node's own code, mostly shared). */
    const rssAnon: number[] = [];
    const rssFile: number[] = [];
    const serverRss: number[] = [];
    const eventsRss: number[] = [];
    const sampler = setInterval(() => {
      const a = procMemory(agent.pid);
      const s = procMemory(server!.pid);
      const ev = podmanEventsPid(agent.pid);
      const e = ev ? procMemory(ev) : undefined;
      if (a) rss.push(a.rssMiB);
      const split = rssSplit(agent.pid);
      if (split) {
        rssAnon.push(split.anonMiB);
        rssFile.push(split.fileMiB);
      }
      if (s) serverRss.push(s.rssMiB);
      if (e) eventsRss.push(e.rssMiB);
    }, 2000);
    sampler.unref();

    const snap = (): Snapshot => {
      const ev = podmanEventsPid(agent.pid);
      const seg = tcpSegments(relay!.port);
      return {
        t: performance.now(),
        agentCpuMs: procCpuMs(agent.pid),
        agentChildrenCpuMs: childrenCpuMs(agent.pid),
        agentWriteBytes: ioWriteBytes(agent.pid),
        agentOwnWriteBytes: ownWriteBytes(agent.pid),
        agentLogBytes: agent.logBytes(),
        eventsPid: ev,
        eventsCpuMs: ev ? procCpuMs(ev) : undefined,
        eventsWriteBytes: ev ? ioWriteBytes(ev) : undefined,
        stateDirBytes: duBytes(stateDir),
        serverCpuMs: procCpuMs(server!.pid),
        serverWriteBytes: ioWriteBytes(server!.pid),
        serverLogBytes: server!.logBytes(),
        dataDirBytes: duBytes(dataDir),
        mqttUp: relay!.up(),
        mqttDown: relay!.down(),
        segsOut: seg.segsOut,
        segsIn: seg.segsIn,
      };
    };
    const stats = (xs: number[]) => (xs.length ? { avg: round(xs.reduce((a, b) => a + b, 0) / xs.length, 1), min: round(Math.min(...xs), 1), max: round(Math.max(...xs), 1) } : undefined);

    const phase = async (name: string, agentsConnected: number, podsRunning: number) => {
      console.log(`${name}: settling ${SETTLE_S} s`);
      await sleep(SETTLE_S * 1000);
      rss.length = 0;
      rssAnon.length = 0;
      rssFile.length = 0;
      serverRss.length = 0;
      eventsRss.length = 0;
      const s0 = snap();
      const t0 = tally ? { up: tally.up.snapshot(), down: tally.down.snapshot() } : undefined;
      const load0 = loadavg()[0]!;
      console.log(`${name}: measuring ${IDLE_S} s`);
      await sleep(IDLE_S * 1000);
      for (const p of [server, ...agents]) if (p?.exited) throw new Error(p.exited);
      const s1 = snap();
      const t1 = tally ? { up: tally.up.snapshot(), down: tally.down.snapshot() } : undefined;
      const sec = (s1.t - s0.t) / 1000;
      /** Per packet kind over the window: bytes per day and packets per hour, largest first. */
      const perKind = (a: Map<string, { bytes: number; packets: number }>, b: Map<string, { bytes: number; packets: number }>) =>
        Object.fromEntries(
          [...b]
            .map(([k, v]) => [k, { bytes: v.bytes - (a.get(k)?.bytes ?? 0), packets: v.packets - (a.get(k)?.packets ?? 0) }] as const)
            .filter(([, v]) => v.packets > 0)
            .sort((x, y) => y[1].bytes - x[1].bytes)
            .map(([k, v]) => [k, { bytesPerDay: Math.round((v.bytes / sec) * 86400), packetsPerHour: round((v.packets / sec) * 3600, 1), bytesPerPacket: Math.round(v.bytes / v.packets) }]),
        );
      const perHour = (d: number) => Math.round((d / sec) * 3600);
      const pct = (ms: number) => round((ms / (sec * 1000)) * 100, 2);
      const sameEvents = s0.eventsPid !== undefined && s0.eventsPid === s1.eventsPid;
      const up = s1.mqttUp - s0.mqttUp;
      const down = s1.mqttDown - s0.mqttDown;
      const segs = s1.segsOut - s0.segsOut + (s1.segsIn - s0.segsIn);
      const r = {
        seconds: round(sec, 1),
        agentsConnected,
        podsRunning,
        loadAverage1mAtStart: round(load0, 2),
        agent: {
          rssMiB: stats(rss),
          rssAnonMiB: stats(rssAnon),
          rssFileMiB: stats(rssFile),
          cpuPercentOfOneCore: pct(s1.agentCpuMs - s0.agentCpuMs),
          podmanCallsCpuPercentOfOneCore: pct(s1.agentChildrenCpuMs - s0.agentChildrenCpuMs),
          podmanEvents: sameEvents
            ? { rssMiB: stats(eventsRss), cpuPercentOfOneCore: pct(s1.eventsCpuMs! - s0.eventsCpuMs!), diskWriteBytesPerHour: perHour(s1.eventsWriteBytes!.net - s0.eventsWriteBytes!.net) }
            : 'restarted during the window (not measured)',
          diskWriteBytesPerHour: perHour(s1.agentWriteBytes.net - s0.agentWriteBytes.net),
          diskWriteBytesPerHourBeforeCancel: perHour(s1.agentWriteBytes.gross - s0.agentWriteBytes.gross),
          ownThreadsDiskWriteBytesPerHour: perHour(s1.agentOwnWriteBytes - s0.agentOwnWriteBytes),
          stateDirBytesEnd: s1.stateDirBytes,
          stateDirGrowthBytesPerHour: perHour(s1.stateDirBytes - s0.stateDirBytes),
          logBytesPerHour: perHour(s1.agentLogBytes - s0.agentLogBytes),
        },
        mqttLink: {
          payloadBytesUpPerDay: Math.round((up / sec) * 86400),
          payloadBytesDownPerDay: Math.round((down / sec) * 86400),
          tcpSegmentsPerDay: Math.round((segs / sec) * 86400),
          // IPv4 (20) + TCP with timestamps (32) per segment; TLS records are inside the payload already.
          estimatedWireBytesPerDay: Math.round(((up + down + segs * 52) / sec) * 86400),
          ...(t0 && t1 ? { upByKind: perKind(t0.up, t1.up), downByKind: perKind(t0.down, t1.down) } : {}),
        },
        server: {
          rssMiB: stats(serverRss),
          cpuPercentOfOneCore: pct(s1.serverCpuMs - s0.serverCpuMs),
          diskWriteBytesPerHour: perHour(s1.serverWriteBytes.net - s0.serverWriteBytes.net),
          diskWriteBytesPerHourBeforeCancel: perHour(s1.serverWriteBytes.gross - s0.serverWriteBytes.gross),
          dataDirBytesEnd: s1.dataDirBytes,
          dataDirGrowthBytesPerHour: perHour(s1.dataDirBytes - s0.dataDirBytes),
          logBytesPerHour: perHour(s1.serverLogBytes - s0.serverLogBytes),
        },
      };
      console.log(`${name}: ${JSON.stringify(r)}`);
      // What the agent logged (pino JSON, info and up): explains its log bytes; no Secrets are logged.
      return { ...r, agentLogTail: agent.tail.slice(-8) };
    };

    const phases: Record<string, unknown> = {};
    phases['idle-0'] = await phase('idle-0', 1, 0);

    if (PODS > 0) {
      const CMD = ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 5; done"];
      for (let i = 0; i < PODS; i++) {
        const r = await api('POST', '/api/v1/namespaces/default/pods', {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: `fp-pod-${i}` },
          spec: { nodeName: 'fp-0', terminationGracePeriodSeconds: 2, containers: [{ name: 'main', image, command: CMD, resources: { requests: { cpu: '10m', memory: '8Mi' } } }] },
        });
        if (r.status !== 201) throw new Error(`create fp-pod-${i}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      }
      const running = async () => {
        const l = await api('GET', '/api/v1/namespaces/default/pods');
        return ((l.body?.items ?? []) as any[]).filter((p) => p.status?.phase === 'Running').length;
      };
      await waitFor(`${PODS} pods Running`, async () => (await running()) === PODS, 300_000);
      console.log(`${PODS} pods Running`);
      phases[`idle-${PODS}`] = await phase(`idle-${PODS}`, 1, PODS);
    }

    if (EXTRA > 0) {
      for (let i = 1; i <= EXTRA; i++) startAgent(`fp-${i}`, join(tmp, `agent-${i}`), false);
      for (let i = 1; i <= EXTRA; i++) await waitFor(`fp-${i} Ready`, () => nodeReady(`fp-${i}`));
      console.log(`${EXTRA} more agents Ready`);
      phases[`fleet-${1 + EXTRA}`] = await phase(`fleet-${1 + EXTRA}`, 1 + EXTRA, PODS);
    }
    clearInterval(sampler);

    const podmanVersion = execFileSync('podman', ['--version'], { encoding: 'utf8' }).trim();
    const result = {
      mode: MODE === 'compiled' ? 'plain node on the tsc output (as bin/drover.js)' : MODE === 'binary' ? `the single binary ${BINARY.slice(REPO.length)}` : 'node --import tsx src/main.ts',
      security: INSECURE ? '--insecure: plain HTTP join, plain MQTT with the node password (to read the packets)' : 'TLS: HTTPS join with the K10 token, MQTT over TLS with the node certificate',
      agentFlags: { heartbeatSeconds: HEARTBEAT_S ?? 'agent default', resyncSeconds: RESYNC_S, keepaliveSeconds: 15, logLevel: 'info', nodeFlags: AGENT_NODE_FLAGS },
      serverLogLevel: 'info',
      settleSeconds: SETTLE_S,
      podImage: 'localhost/drover-test:1 (static busybox, FROM scratch), command: sh loop with sleep 5',
      podmanVersion,
      kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(),
      filesystem: `ext4 on /dev/vda: state dir, data dir and podman store (--podman-root) under the system temp dir; podman --runroot on a tmpfs, as /run/containers/storage on a device; podman's temporary directory (image_copy_tmp_dir) ${TMP_ON_TMPFS ? 'on a tmpfs (--tmp-on-tmpfs)' : '/var/tmp (ext4), its default'}`,
      notes: [
        'diskWriteBytesPerHour is /proc/PID/io write_bytes - cancelled_write_bytes: pages the process (and the children it reaped) dirtied on a block filesystem, counted once per clean-to-dirty page (4 KiB granularity), less pages of files deleted or truncated before writeback; what reaches the storage, before the filesystem journal. diskWriteBytesPerHourBeforeCancel is write_bytes alone',
        'podman writes small temporary files in /var/tmp on `podman images` (seen with strace; /var/tmp is on ext4 here, as on most device images) and updates its storage lock files on each call',
        'ownThreadsDiskWriteBytesPerHour: write_bytes summed over the agent process\'s live threads, i.e. what node itself wrote (the state dir), without the podman processes it ran',
        'podmanCallsCpuPercentOfOneCore is cutime+cstime: the podman ps / images / stats processes the agent ran and reaped in the window',
        'mqttLink counts the measured agent only (fp-0), through a relay on loopback; estimatedWireBytesPerDay adds 52 bytes (IPv4 + TCP with timestamps) per TCP segment (ss segs_in + segs_out on the agent side)',
        'log bytes are the stdout+stderr of the process at the default level info (what journald stores for the unit)',
        'the server row of fleet-K has K+1 idle agents connected; the extra agents do not go through the relay',
      ],
      phases,
    };
    console.log(`wrote ${writeResult(OUT, result)}`);
    writeMarkdown(result as never);
  } finally {
    await cleanup();
  }
}

type Phase = {
  seconds: number;
  agentsConnected: number;
  podsRunning: number;
  loadAverage1mAtStart: number;
  agent: { rssMiB?: { avg: number; max: number }; rssAnonMiB?: { avg: number }; rssFileMiB?: { avg: number }; cpuPercentOfOneCore: number; podmanCallsCpuPercentOfOneCore: number; podmanEvents: { rssMiB?: { avg: number }; cpuPercentOfOneCore: number } | string; diskWriteBytesPerHour: number; ownThreadsDiskWriteBytesPerHour?: number; stateDirBytesEnd: number; logBytesPerHour: number };
  mqttLink: {
    payloadBytesUpPerDay: number;
    payloadBytesDownPerDay: number;
    estimatedWireBytesPerDay: number;
    upByKind?: Record<string, { bytesPerDay: number; packetsPerHour: number; bytesPerPacket: number }>;
    downByKind?: Record<string, { bytesPerDay: number; packetsPerHour: number; bytesPerPacket: number }>;
  };
  server: { rssMiB?: { avg: number; max: number }; cpuPercentOfOneCore: number; diskWriteBytesPerHour: number; dataDirGrowthBytesPerHour: number; logBytesPerHour: number };
};

function writeMarkdown(r: { mode: string; podmanVersion: string; kernel: string; phases: Record<string, Phase> }): void {
  const kib = (b: number) => `${round(b / 1024, 1)} KiB`;
  const m = machine();
  const lines = [
    '# agent footprint at idle',
    '',
    `${new Date().toISOString()}, ${m.cores} x ${m.cpuModel}, ${m.memoryMiB} MiB, kernel ${r.kernel}, node ${process.version}, ${r.podmanVersion}; ${r.mode}; \`npx tsx bench/agent-footprint.ts ${process.argv.slice(2).join(' ')}\` (${IDLE_S} s per window after ${SETTLE_S} s settle; ${INSECURE ? 'plain HTTP and MQTT' : 'TLS'}). Other jobs share this machine (load average at each window's start in the table). Raw figures: ${OUT}.json.`,
    '',
    '| window | agent RSS avg (max) | anon / file | agent CPU | its podman calls CPU | podman events RSS / CPU | agent disk writes | state dir | agent log | MQTT up / down per day | MQTT on the wire per day (est.) | load |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, p] of Object.entries(r.phases)) {
    if (name.startsWith('fleet')) continue;
    const ev = typeof p.agent.podmanEvents === 'string' ? p.agent.podmanEvents : `${p.agent.podmanEvents.rssMiB?.avg} MiB / ${p.agent.podmanEvents.cpuPercentOfOneCore} %`;
    lines.push(
      `| ${p.podsRunning} pods | ${p.agent.rssMiB?.avg} (${p.agent.rssMiB?.max}) MiB | ${p.agent.rssAnonMiB?.avg ?? '?'} / ${p.agent.rssFileMiB?.avg ?? '?'} MiB | ${p.agent.cpuPercentOfOneCore} % | ${p.agent.podmanCallsCpuPercentOfOneCore} % | ${ev} | ${kib(p.agent.diskWriteBytesPerHour)}/h (node itself: ${p.agent.ownThreadsDiskWriteBytesPerHour === undefined ? '?' : kib(p.agent.ownThreadsDiskWriteBytesPerHour)}/h) | ${kib(p.agent.stateDirBytesEnd)} | ${kib(p.agent.logBytesPerHour)}/h | ${kib(p.mqttLink.payloadBytesUpPerDay)} / ${kib(p.mqttLink.payloadBytesDownPerDay)} | ${kib(p.mqttLink.estimatedWireBytesPerDay)} | ${p.loadAverage1mAtStart} |`,
    );
  }
  lines.push('', 'CPU is percent of one core over the window. Disk writes: /proc/PID/io write_bytes less cancelled_write_bytes (includes the podman calls the agent reaped; the podman events process is separate).', '');
  lines.push('| window | agents | server RSS avg (max) | server CPU | server disk writes | data dir growth | server log |', '|---|---|---|---|---|---|---|');
  for (const [name, p] of Object.entries(r.phases)) {
    lines.push(`| ${name} | ${p.agentsConnected} | ${p.server.rssMiB?.avg} (${p.server.rssMiB?.max}) MiB | ${p.server.cpuPercentOfOneCore} % | ${kib(p.server.diskWriteBytesPerHour)}/h | ${kib(p.server.dataDirGrowthBytesPerHour)}/h | ${kib(p.server.logBytesPerHour)}/h |`);
  }
  for (const [name, p] of Object.entries(r.phases)) {
    if (!p.mqttLink.upByKind || name.startsWith('fleet')) continue;
    lines.push('', `MQTT packets of the measured agent, ${p.podsRunning} pods (plain MQTT; over TLS each packet also carries a TLS record header and tag):`, '', '| direction | packet | per day | per hour (packets) | bytes each |', '|---|---|---|---|---|');
    for (const [dir, kinds] of [['up', p.mqttLink.upByKind], ['down', p.mqttLink.downByKind ?? {}]] as const) {
      for (const [k, v] of Object.entries(kinds)) lines.push(`| ${dir} | \`${k}\` | ${kib(v.bytesPerDay)} | ${v.packetsPerHour} | ${v.bytesPerPacket} |`);
    }
  }
  lines.push('');
  writeFileSync(new URL(`results/${OUT}.md`, import.meta.url), lines.join('\n'));
}

await main();
