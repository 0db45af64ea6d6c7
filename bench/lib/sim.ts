/**
 * Simulated agents for the fleet bench and `sim` (bench/sim.ts): each joins as agent/join.ts does and then
 * speaks the real MQTT contract as agent/connection.ts and agent/reporter.ts do, with a fake runtime that
 * starts every desired pod at once. They live in forked worker processes (startWorkers), so the load
 * generator does not share a core's event loop with thousands of TLS clients. The one copy of the
 * simulated protocol: bench/fleet.ts and bench/sim.ts both use it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { agentClientId, CONTRACT_VERSION, DELIVERY, decode, encode, parseTopic, payloads, topics } from '../../src/contract/index.js';
import { runningPodReport } from '../../test/helpers/sim-agent.js';
import { joinDevice, nativeCsr, type DeviceKeyPem, type Joined } from './join.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

// ───────────────────────────── worker side: the simulated agents ─────────────────────────────

export interface WorkerConfig {
  nodes: Array<{ name: string; index: number }>;
  apiUrl: string;
  /** The K10 join token. */
  joinToken: string;
  /** RSA key pool; node i uses keys[i % keys.length]. */
  keys: DeviceKeyPem[];
  insecure: boolean;
  /** Joins in flight at once in this worker. */
  joinConcurrency: number;
  heartbeatSeconds: number;
  keepaliveSeconds: number;
  /** Connections opened per second by this worker; 0 = all at once. */
  connectPerSecond: number;
}

export interface WorkerStats {
  agents: number;
  connectedNow: number;
  everConnected: number;
  connects: number;
  closes: number;
  errors: number;
  bytesIn: number;
  bytesOut: number;
  statusSent: number;
  heartbeatsSent: number;
  desiredReceived: number;
  desiredRejected: number;
  requestsAnswered: number;
  podsRunning: number;
  sizes: Record<string, number>;
  cpuMs: number;
  rssMiB: number;
  errorSamples: string[];
}

export interface JoinReport {
  ok: number;
  failed: number;
  latenciesMs: number[];
  /** Date.now() at each successful join's answer: the rate as the credential store grows. */
  doneAt: number[];
  errorSamples: string[];
}

type FromWorker =
  | { type: 'prepared' }
  | { type: 'joined'; report: JoinReport }
  | { type: 'connected'; count: number }
  | { type: 'stats'; id: number; stats: WorkerStats }
  | { type: 'started' };
type ToWorker = { type: 'config'; config: WorkerConfig } | { type: 'join' } | { type: 'connect' } | { type: 'stats'; id: number } | { type: 'stop' };

/** Plausible edge hardware, varied by index: mostly arm64 boards, some amd64 boxes. */
function hardware(index: number): Pick<payloads.Hello, 'arch' | 'os' | 'osImage' | 'kernelVersion' | 'cpu' | 'memoryBytes' | 'addresses' | 'devices'> {
  const arm = index % 4 !== 0;
  return {
    arch: arm ? 'arm64' : 'amd64',
    os: 'linux',
    osImage: 'Debian GNU/Linux 12 (bookworm)',
    kernelVersion: arm ? '6.1.0-rpi7-rpi-v8' : '6.1.0-18-amd64',
    cpu: arm ? { cores: 4, model: 'ARM Cortex-A72' } : { cores: 4, model: 'Intel(R) Celeron(R) J4125 CPU @ 2.00GHz' },
    memoryBytes: (arm ? 4 : 8) * 2 ** 30,
    addresses: [`10.${(index >> 16) & 255}.${(index >> 8) & 255}.${(index & 255) || 1}`],
    devices: arm ? ['/dev/gpiochip0', '/dev/i2c-1', '/dev/ttyAMA0'] : ['/dev/ttyS0'],
  };
}

class SimAgent {
  private client: MqttClient | undefined;
  private readonly bootId = randomUUID();
  private seq = 0;
  private desired: payloads.Desired | undefined;
  private reports: payloads.PodReport[] = [];
  private lastStatusKey = '';
  private readonly startTimes = new Map<string, string>();
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  everConnected = false;
  private closedIn = 0;
  private closedOut = 0;

  constructor(
    private readonly node: string,
    private readonly index: number,
    private readonly cfg: WorkerConfig,
    private readonly creds: Joined & { key: string },
    private readonly stats: WorkerStats,
    private readonly onFirstConnect: () => void,
  ) {}

  private presence(state: 'online' | 'offline'): Buffer {
    return encode({ state, bootId: this.bootId, ts: new Date().toISOString() } satisfies payloads.Presence);
  }

  start(): void {
    const node = this.node;
    // Over TLS the broker takes who we are from the certificate only; plain MQTT needs the node password from the join.
    const auth = this.cfg.insecure ? { username: node, password: this.creds.mqttPassword } : { key: this.creds.key, cert: this.creds.cert, ca: this.creds.ca, rejectUnauthorized: true };
    const client = mqtt.connect(this.creds.mqttUrl, {
      clientId: agentClientId(node),
      ...auth,
      protocolVersion: 4,
      clean: false,
      keepalive: this.cfg.keepaliveSeconds,
      connectTimeout: 30_000,
      reconnectPeriod: 0,
      will: { topic: topics.presence(node), payload: this.presence('offline'), ...DELIVERY.presence },
    });
    this.client = client;
    client.on('connect', () => {
      this.attempt = 0;
      this.stats.connects++;
      if (!this.everConnected) {
        this.everConnected = true;
        this.onFirstConnect();
      }
      const s = client.stream as unknown as { once(e: string, f: () => void): void; bytesRead: number; bytesWritten: number };
      s.once('close', () => {
        this.closedIn += s.bytesRead;
        this.closedOut += s.bytesWritten;
      });
      client.subscribe(topics.agentInbox(node), { qos: 1 }, (err) => {
        if (err) this.error(`subscribe: ${err.message}`);
      });
      const presence = this.presence('online');
      this.stats.sizes.presence = presence.length;
      client.publish(topics.presence(node), presence, DELIVERY.presence);
      // Hello first (the server creates the Node from it), then a status, as Agent.onConnect does.
      void this.sendHello()
        .catch((err: Error) => this.error(`hello: ${err.message}`))
        .then(() => this.sendStatus(true));
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('error', (err) => this.error(err.message));
    client.on('close', () => {
      this.stats.closes++;
      this.scheduleReconnect();
    });
    // Heartbeats of a fleet are spread over the period (devices booted at different times).
    const period = this.cfg.heartbeatSeconds * 1000;
    this.heartbeat = setTimeout(() => {
      this.sendStatus(true, true);
      this.heartbeat = setInterval(() => this.sendStatus(true, true), period);
    }, Math.random() * period);
  }

  private error(msg: string): void {
    this.stats.errors++;
    if (this.stats.errorSamples.length < 5) this.stats.errorSamples.push(`${this.node}: ${msg}`);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    // As AgentLink: exponential back-off with jitter, so a fleet does not reconnect in step.
    const base = Math.min(30_000, 500 * 2 ** this.attempt++);
    const delay = base * (0.5 + Math.random());
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopped && this.client && !this.client.connected) this.client.reconnect();
    }, delay);
  }

  private async sendHello(): Promise<void> {
    const h: payloads.Hello = {
      agentVersion: '0.1.0',
      contractVersion: CONTRACT_VERSION,
      node: this.node,
      bootId: this.bootId,
      hostname: this.node,
      ...hardware(this.index),
      runtime: { name: 'podman', version: '4.3.1' },
      labels: { 'drover.io/site': `site-${this.index % 20}` },
      images: ['localhost/busybox:latest'],
    };
    const buf = encode(payloads.hello.parse(h));
    this.stats.sizes.hello = buf.length;
    await this.client?.publishAsync(topics.hello(this.node), buf, DELIVERY.hello);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.node !== this.node) return;
    if (t.kind === 'desired') {
      if (payload.length === 0) return;
      let d: payloads.Desired;
      try {
        d = decode(payloads.desired, payload, 'desired state');
      } catch (err) {
        this.stats.desiredRejected++;
        this.error(`desired: ${(err as Error).message}`);
        return;
      }
      this.stats.desiredReceived++;
      this.stats.sizes[`desired${d.pods.length}Pods`] = payload.length;
      if (d.node !== this.node) return;
      // TargetState.accept: the highest generation wins; the same content again changes nothing.
      const cur = this.desired;
      if (cur && d.generation < cur.generation) return;
      if (cur && d.generation === cur.generation && JSON.stringify([d.pods, d.configMaps, d.secrets]) === JSON.stringify([cur.pods, cur.configMaps, cur.secrets])) return;
      this.desired = d;
      this.reports = this.podReports(d);
      this.sendStatus(false);
    } else if (t.kind === 'request') {
      // Only `logs` exists; a simulated node has no containers to read from.
      const res: payloads.Response = { ok: true, data: 'simulated agent: no logs\n' };
      this.stats.requestsAnswered++;
      this.client?.publish(topics.response(this.node, t.id), encode(res), DELIVERY.response);
    }
  }

  /** Every desired pod Running with all containers ready (stable between heartbeats, as the real reports are). */
  private podReports(d: payloads.Desired): payloads.PodReport[] {
    const now = new Date().toISOString();
    const live = new Set(d.pods.map((p) => p.uid));
    for (const uid of this.startTimes.keys()) if (!live.has(uid)) this.startTimes.delete(uid);
    return d.pods.map((p) => {
      const startTime = this.startTimes.get(p.uid) ?? now;
      this.startTimes.set(p.uid, startTime);
      return runningPodReport(p, startTime);
    });
  }

  /** As Agent.sendStatus: on change, or always on a heartbeat. */
  private sendStatus(heartbeat: boolean, timer = false): void {
    const observedGeneration = this.desired?.generation ?? 0;
    const key = JSON.stringify([observedGeneration, this.reports, true]);
    if (!heartbeat && key === this.lastStatusKey) return;
    if (!this.client?.connected) return;
    const s: payloads.Status = {
      node: this.node,
      bootId: this.bootId,
      seq: ++this.seq,
      observedGeneration,
      ts: new Date().toISOString(),
      pods: this.reports,
      runtimeHealthy: true,
      heartbeatSeconds: this.cfg.heartbeatSeconds,
    };
    const buf = encode(s);
    this.stats.sizes[`status${s.pods.length}Pods`] = buf.length;
    this.client.publish(topics.status(this.node), buf, DELIVERY.status);
    this.lastStatusKey = key;
    this.stats.statusSent++;
    if (timer) this.stats.heartbeatsSent++;
  }

  podsRunning(): number {
    return this.reports.length;
  }

  bytes(): { in: number; out: number } {
    const s = this.client?.stream as unknown as { bytesRead?: number; bytesWritten?: number; destroyed?: boolean } | undefined;
    const live = s && !s.destroyed ? { in: s.bytesRead ?? 0, out: s.bytesWritten ?? 0 } : { in: 0, out: 0 };
    return { in: this.closedIn + live.in, out: this.closedOut + live.out };
  }

  connected(): boolean {
    return this.client?.connected ?? false;
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.heartbeat) clearTimeout(this.heartbeat); // also clears an interval
    this.client?.end(true);
  }
}

function runWorker(): void {
  const stats: WorkerStats = {
    agents: 0,
    connectedNow: 0,
    everConnected: 0,
    connects: 0,
    closes: 0,
    errors: 0,
    bytesIn: 0,
    bytesOut: 0,
    statusSent: 0,
    heartbeatsSent: 0,
    desiredReceived: 0,
    desiredRejected: 0,
    requestsAnswered: 0,
    podsRunning: 0,
    sizes: {},
    cpuMs: 0,
    rssMiB: 0,
    errorSamples: [],
  };
  const agents: SimAgent[] = [];
  let pendingConnected = 0;
  const send = (m: FromWorker) => process.send?.(m);
  const flushConnected = setInterval(() => {
    if (pendingConnected) send({ type: 'connected', count: pendingConnected });
    pendingConnected = 0;
  }, 50);

  let cfg: WorkerConfig | undefined;
  let csrs: string[] = [];
  const joined: Array<(Joined & { key: string }) | undefined> = [];
  process.on('message', (m: ToWorker) => {
    if (m.type === 'config') {
      cfg = m.config;
      stats.agents = cfg.nodes.length;
      // Device-side work done before the clock starts: each node's CSR for its key.
      const c = cfg;
      csrs = c.nodes.map((n) => nativeCsr(n.name, c.keys[n.index % c.keys.length]!));
      send({ type: 'prepared' });
    } else if (m.type === 'join') {
      const c = cfg!;
      const report: JoinReport = { ok: 0, failed: 0, latenciesMs: [], doneAt: [], errorSamples: [] };
      let next = 0;
      const lane = async () => {
        while (next < c.nodes.length) {
          const i = next++;
          const n = c.nodes[i]!;
          const t = performance.now();
          try {
            const j = await joinDevice(c.apiUrl, c.joinToken, n.name, csrs[i]!);
            joined[i] = { ...j, key: c.keys[n.index % c.keys.length]!.key };
            report.ok++;
            report.latenciesMs.push(Math.round(performance.now() - t));
            report.doneAt.push(Date.now());
          } catch (err) {
            report.failed++;
            if (report.errorSamples.length < 5) report.errorSamples.push(`${n.name}: ${(err as Error).message}`);
          }
        }
      };
      void Promise.all(Array.from({ length: Math.max(1, c.joinConcurrency) }, lane)).then(() => send({ type: 'joined', report }));
    } else if (m.type === 'connect') {
      const c = cfg!;
      let i = 0;
      const startOne = () => {
        const k = i++;
        const n = c.nodes[k]!;
        const creds = joined[k];
        if (!creds) return; // its join failed: counted in the join phase
        const a = new SimAgent(n.name, n.index, c, creds, stats, () => {
          stats.everConnected++;
          pendingConnected++;
        });
        agents.push(a);
        a.start();
      };
      if (c.connectPerSecond <= 0) {
        while (i < c.nodes.length) startOne();
      } else {
        const perTick = Math.max(1, Math.round(c.connectPerSecond / 20));
        const t = setInterval(() => {
          for (let k = 0; k < perTick && i < c.nodes.length; k++) startOne();
          if (i >= c.nodes.length) clearInterval(t);
        }, 50);
      }
      send({ type: 'started' });
    } else if (m.type === 'stats') {
      let bin = 0;
      let bout = 0;
      let connectedNow = 0;
      let pods = 0;
      for (const a of agents) {
        const b = a.bytes();
        bin += b.in;
        bout += b.out;
        if (a.connected()) connectedNow++;
        pods += a.podsRunning();
      }
      const cpu = process.cpuUsage();
      send({
        type: 'stats',
        id: m.id,
        stats: { ...stats, bytesIn: bin, bytesOut: bout, connectedNow, podsRunning: pods, cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: process.memoryUsage().rss / 2 ** 20 },
      });
    } else if (m.type === 'stop') {
      clearInterval(flushConnected);
      for (const a of agents) a.stop();
      setTimeout(() => process.exit(0), 200);
    }
  });
  process.on('disconnect', () => process.exit(0));
}

export interface Workers {
  procs: ChildProcess[];
  connected: number;
  /** Every worker joins its agents; resolves with all their outcomes. */
  join(): Promise<JoinReport>;
  /** Every worker starts the MQTT clients of the agents that joined; onConnected gets the running total. */
  connect(onConnected: (total: number) => void): Promise<void>;
  stats(): Promise<WorkerStats>;
  stop(): Promise<void>;
}

/** Forks the workers and hands each its share of the nodes; resolves once each has made its CSRs. */
export function startWorkers(count: number, nodes: Array<{ name: string; index: number }>, base: Omit<WorkerConfig, 'nodes'>): Promise<Workers> {
  const procs: ChildProcess[] = [];
  let reqId = 0;
  const waiting = new Map<number, { need: number; got: WorkerStats[]; resolve: (s: WorkerStats) => void }>();
  /** Resolves when every worker has sent one message of `type`, with those messages. */
  const fromAll = <T extends FromWorker['type']>(type: T): Promise<Array<Extract<FromWorker, { type: T }>>> =>
    Promise.all(procs.map((p) => new Promise<Extract<FromWorker, { type: T }>>((resolve) => {
      const on = (m: FromWorker) => {
        if (m.type !== type) return;
        p.off('message', on);
        resolve(m as Extract<FromWorker, { type: T }>);
      };
      p.on('message', on);
    })));
  let onConnected: (total: number) => void = () => {};
  const w: Workers = {
    procs,
    connected: 0,
    join: async () => {
      const done = fromAll('joined');
      for (const p of procs) p.send({ type: 'join' } satisfies ToWorker);
      const reports = (await done).map((m) => m.report);
      return { ok: reports.reduce((a, r) => a + r.ok, 0), failed: reports.reduce((a, r) => a + r.failed, 0), latenciesMs: reports.flatMap((r) => r.latenciesMs), doneAt: reports.flatMap((r) => r.doneAt), errorSamples: reports.flatMap((r) => r.errorSamples) };
    },
    connect: async (cb) => {
      onConnected = cb;
      const started = fromAll('started');
      for (const p of procs) p.send({ type: 'connect' } satisfies ToWorker);
      await started;
    },
    stats: () =>
      new Promise((resolve) => {
        const id = ++reqId;
        waiting.set(id, { need: procs.length, got: [], resolve });
        for (const p of procs) p.send({ type: 'stats', id } satisfies ToWorker);
      }),
    stop: async () => {
      await Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null) return resolve();
              const t = setTimeout(() => p.kill('SIGKILL'), 5000);
              p.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
              p.send({ type: 'stop' } satisfies ToWorker);
            }),
        ),
      );
    },
  };
  for (let k = 0; k < count; k++) {
    const p = fork(SELF, ['--worker'], { execArgv: ['--import', 'tsx'], cwd: REPO, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    procs.push(p);
    p.on('message', (m: FromWorker) => {
      if (m.type === 'connected') {
        w.connected += m.count;
        onConnected(w.connected);
      } else if (m.type === 'stats') {
        const rec = waiting.get(m.id);
        if (!rec) return;
        rec.got.push(m.stats);
        if (rec.got.length === rec.need) {
          waiting.delete(m.id);
          rec.resolve(sumStats(rec.got));
        }
      }
    });
  }
  const prepared = fromAll('prepared');
  procs.forEach((p, k) => {
    const mine = nodes.filter((_, i) => i % count === k);
    p.send({ type: 'config', config: { ...base, nodes: mine, connectPerSecond: base.connectPerSecond / count } } satisfies ToWorker);
  });
  return prepared.then(() => w);
}

export function sumStats(list: WorkerStats[]): WorkerStats {
  const out = structuredClone(list[0]!);
  out.errorSamples = [...out.errorSamples];
  for (const s of list.slice(1)) {
    for (const k of Object.keys(s) as Array<keyof WorkerStats>) {
      if (typeof s[k] === 'number') (out[k] as number) += s[k] as number;
    }
    for (const [k, v] of Object.entries(s.sizes)) out.sizes[k] ??= v;
    out.errorSamples.push(...s.errorSamples);
  }
  return out;
}

// Forked by startWorkers: this file is the worker's entry point.
if (process.argv[1] === SELF && process.argv.includes('--worker')) runWorker();
