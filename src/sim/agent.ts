/**
 * One simulated agent: after its join it speaks the real MQTT contract (src/contract) as
 * agent/connection.ts and agent/reporter.ts do — presence (retained, last will offline), hello,
 * status on every change and every heartbeat, answers to requests — over its own MQTT connection
 * (TLS with its client certificate, or the node password with --insecure). Its fake runtime "runs"
 * every desired pod after `podStartMs`, at most `podsPerNode` of them; the rest wait.
 */
import { randomUUID } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import { desiredJson } from '../../agent/connection.js';
import { agentClientId, CONTRACT_VERSION, DELIVERY, decode, encode, parseTopic, payloads, topics } from '../contract/index.js';
import { backoffDelay } from '../util/backoff.js';
import { keepTlsSession } from '../util/tls-session.js';
import type { Joined } from './device-join.js';
import { runningPodReport, waitingPodReport } from './pod-report.js';

/** As agent/connection.ts: the first reconnect delay, doubling with jitter up to reconnectMaxMs. */
const RECONNECT_BASE_MS = 500;

export interface SimAgentSettings {
  /** Plain MQTT with the node password instead of TLS with the client certificate. */
  insecure: boolean;
  heartbeatSeconds: number;
  keepaliveSeconds: number;
  /** >0: status changes wait this long and go out as one (the cellular profile's batching). */
  eventBatchSeconds: number;
  /** Announce DEFLATE for the desired state in the hello (the cellular profile, as the agent does). */
  compressDesired?: boolean;
  reconnectMaxMs: number;
  /** Dial this broker instead of the one the server advertised at join. */
  brokerUrl?: string;
  /** Pods the fake runtime runs at most; more are reported Pending (reason OutOfPods). 0: no limit. */
  podsPerNode: number;
  /** How long the fake runtime takes to start a pod. */
  podStartMs: number;
}

export interface SimAgentStats {
  connects: number;
  closes: number;
  errors: number;
  statusSent: number;
  heartbeatsSent: number;
  desiredReceived: number;
  desiredRejected: number;
  requestsAnswered: number;
  /** Payload size of each kind of message last sent or received (bytes). */
  sizes: Record<string, number>;
  /** Milliseconds from a lost connection to the next CONNACK, one entry per reconnect. */
  reconnectMs: number[];
  /** Connection attempts each reconnect took (the one that got its CONNACK included), beside reconnectMs. */
  reconnectAttempts: number[];
  /** Milliseconds from the start of the attempt that got its CONNACK to that CONNACK (TCP, TLS, CONNECT at the server), beside reconnectMs. */
  reconnectLastAttemptMs: number[];
  errorSamples: string[];
  /** Errors counted by their message with numbers taken out (ports, addresses): what a reconnect storm ran into. */
  errorKinds: Record<string, number>;
}

export function emptyAgentStats(): SimAgentStats {
  return { connects: 0, closes: 0, errors: 0, statusSent: 0, heartbeatsSent: 0, desiredReceived: 0, desiredRejected: 0, requestsAnswered: 0, sizes: {}, reconnectMs: [], reconnectAttempts: [], reconnectLastAttemptMs: [], errorSamples: [], errorKinds: {} };
}

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

export class SimAgent {
  private client: MqttClient | undefined;
  private readonly bootId = randomUUID();
  private seq = 0;
  private desired: payloads.Desired | undefined;
  private reports: payloads.PodReport[] = [];
  private lastStatusKey = '';
  /** When the fake runtime started each pod (uid → ISO time); absent: not started yet. */
  private readonly startTimes = new Map<string, string>();
  private startTimer: NodeJS.Timeout | undefined;
  private batchTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** When the current connection attempt started. */
  private attemptAt = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  private lostAt: number | undefined;
  everConnected = false;
  private closedIn = 0;
  private closedOut = 0;

  constructor(
    readonly node: string,
    private readonly index: number,
    private readonly cfg: SimAgentSettings,
    private readonly creds: Joined & { key: string },
    private readonly stats: SimAgentStats,
    private readonly onFirstConnect: () => void,
  ) {}

  private presence(state: 'online' | 'offline'): Buffer {
    return encode({ state, bootId: this.bootId, ts: new Date().toISOString() } satisfies payloads.Presence);
  }

  start(): void {
    const node = this.node;
    // Over TLS the broker takes who we are from the certificate only; plain MQTT needs the node password from the join.
    // One TLS context for all of this agent's connection attempts, as agent/connection.ts.
    const auth = this.cfg.insecure ? { username: node, password: this.creds.mqttPassword } : { secureContext: createSecureContext({ key: this.creds.key, cert: this.creds.cert, ca: this.creds.ca }), rejectUnauthorized: true };
    const client = mqtt.connect(this.cfg.brokerUrl ?? this.creds.mqttUrl, {
      clientId: agentClientId(node),
      ...auth,
      protocolVersion: 4,
      clean: false,
      keepalive: this.cfg.keepaliveSeconds,
      connectTimeout: 30_000,
      reconnectPeriod: 0,
      will: { topic: topics.presence(node), payload: this.presence('offline'), ...DELIVERY.presence },
      manualConnect: true,
    });
    this.client = client;
    // TLS sessions resumed on reconnect, as agent/connection.ts does.
    keepTlsSession(client);
    client.on('connect', () => {
      const attempts = this.attempt + 1;
      this.attempt = 0;
      this.stats.connects++;
      if (this.lostAt !== undefined) {
        if (this.stats.reconnectMs.length < 100_000) {
          this.stats.reconnectMs.push(Date.now() - this.lostAt);
          this.stats.reconnectAttempts.push(attempts);
          this.stats.reconnectLastAttemptMs.push(Date.now() - this.attemptAt);
        }
        this.lostAt = undefined;
      }
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
        .then(() => this.sendStatus(true, false, true));
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('error', (err) => this.error(err.message));
    client.on('close', () => {
      this.stats.closes++;
      if (this.everConnected && this.lostAt === undefined && !this.stopped) this.lostAt = Date.now();
      this.scheduleReconnect();
    });
    client.connect();
    // Heartbeats of a fleet are spread over the period (devices booted at different times).
    const period = this.cfg.heartbeatSeconds * 1000;
    this.heartbeat = setTimeout(() => {
      this.sendStatus(true, true);
      this.heartbeat = setInterval(() => this.sendStatus(true, true), period);
    }, Math.random() * period);
  }

  private error(msg: string): void {
    this.stats.errors++;
    const kind = msg.replace(/\d+/g, 'N').slice(0, 120);
    this.stats.errorKinds[kind] = (this.stats.errorKinds[kind] ?? 0) + 1;
    if (this.stats.errorSamples.length < 5) this.stats.errorSamples.push(`${this.node}: ${msg}`);
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = backoffDelay(this.attempt++, { baseMs: RECONNECT_BASE_MS, maxMs: this.cfg.reconnectMaxMs, jitter: 0.5 });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopped && this.client && !this.client.connected) {
        this.attemptAt = Date.now();
        this.client.reconnect();
      }
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
      runtime: { name: 'sim', version: '1.0.0' },
      labels: { 'drover.io/site': `site-${this.index % 20}` },
      images: ['localhost/busybox:latest'],
      ...(this.cfg.compressDesired ? { accepts: [...payloads.DESIRED_ENCODINGS] } : {}),
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
        d = decode(payloads.desired, desiredJson(payload), 'desired state');
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
      this.reconcile();
    } else if (t.kind === 'request') {
      this.stats.requestsAnswered++;
      this.client?.publish(topics.response(this.node, t.id), encode(this.answer(payload)), DELIVERY.response);
    }
  }

  /** A simulated node has no containers: usage is what its pods would idle at, logs are empty, exec runs nothing. */
  private answer(payload: Buffer): payloads.Response {
    let req: payloads.AgentRequest;
    try {
      req = decode(payloads.request, payload, 'request');
    } catch (err) {
      return { ok: false, error: { code: 'BadRequest', message: (err as Error).message } };
    }
    if (req.op === 'usage') {
      const pods = (this.desired?.pods ?? []).filter((p) => this.startTimes.has(p.uid)).map((p) => ({ namespace: p.namespace, name: p.name, usage: { cpuMilli: 1, memoryBytes: 4 * 2 ** 20 } }));
      const data: payloads.UsageResult = { node: { cpuMilli: 50 + pods.length, memoryBytes: 300 * 2 ** 20 + pods.length * 4 * 2 ** 20 }, pods, windowSeconds: 15, ts: new Date().toISOString() };
      return { ok: true, data };
    }
    if (req.op === 'exec') return { ok: true, data: { exitCode: 0, output: '', timedOut: false } satisfies payloads.ExecResult };
    return { ok: true, data: 'simulated agent: no logs\n' };
  }

  /** The fake runtime: starts what is desired (after podStartMs), forgets what is not, reports on change. */
  private reconcile(): void {
    const d = this.desired;
    if (!d) return;
    const live = new Set(d.pods.map((p) => p.uid));
    for (const uid of this.startTimes.keys()) if (!live.has(uid)) this.startTimes.delete(uid);
    const cap = this.cfg.podsPerNode > 0 ? this.cfg.podsPerNode : Infinity;
    let waiting = false;
    let running = 0;
    this.reports = d.pods.map((p) => {
      const startTime = this.startTimes.get(p.uid);
      if (startTime !== undefined) {
        running++;
        return runningPodReport(p, startTime);
      }
      if (running >= cap) return waitingPodReport(p, { reason: 'OutOfPods', message: `the simulated node runs at most ${cap} pods` });
      if (this.cfg.podStartMs <= 0) {
        const now = new Date().toISOString();
        this.startTimes.set(p.uid, now);
        running++;
        return runningPodReport(p, now);
      }
      waiting = true;
      running++;
      return waitingPodReport(p, { reason: 'ContainerCreating' });
    });
    if (waiting && !this.startTimer) {
      this.startTimer = setTimeout(() => {
        this.startTimer = undefined;
        const now = new Date().toISOString();
        const cap2 = this.cfg.podsPerNode > 0 ? this.cfg.podsPerNode : Infinity;
        for (const p of this.desired?.pods ?? []) if (this.startTimes.size < cap2 && !this.startTimes.has(p.uid)) this.startTimes.set(p.uid, now);
        this.reconcile();
      }, this.cfg.podStartMs);
    }
    this.statusChanged();
  }

  private statusChanged(): void {
    if (this.cfg.eventBatchSeconds <= 0) return this.sendStatus(false);
    this.batchTimer ??= setTimeout(() => {
      this.batchTimer = undefined;
      this.sendStatus(false);
    }, this.cfg.eventBatchSeconds * 1000);
  }

  /**
   * As the agent's Reporter.sendStatus: on change with every pod's report, or always on a heartbeat
   * (pod reports only if they changed since last sent); `full` after a connect.
   */
  private sendStatus(heartbeat: boolean, timer = false, full = false): void {
    const observedGeneration = this.desired?.generation ?? 0;
    const key = JSON.stringify([observedGeneration, this.reports, true]);
    const changed = key !== this.lastStatusKey;
    if (!heartbeat && !changed) return;
    if (!this.client?.connected) return;
    const s: payloads.Status = {
      node: this.node,
      bootId: this.bootId,
      seq: ++this.seq,
      observedGeneration,
      ts: new Date().toISOString(),
      pods: changed || full ? this.reports : [],
      runtimeHealthy: true,
      heartbeatSeconds: this.cfg.heartbeatSeconds,
      keepaliveSeconds: this.cfg.keepaliveSeconds,
    };
    const buf = encode(s);
    this.stats.sizes[`status${s.pods.length}Pods`] = buf.length;
    this.client.publish(topics.status(this.node), buf, DELIVERY.status);
    this.lastStatusKey = key;
    this.stats.statusSent++;
    if (timer) this.stats.heartbeatsSent++;
  }

  podsRunning(): number {
    return this.startTimes.size;
  }

  bytes(): { in: number; out: number } {
    const s = this.client?.stream as unknown as { bytesRead?: number; bytesWritten?: number; destroyed?: boolean } | undefined;
    const live = s && !s.destroyed ? { in: s.bytesRead ?? 0, out: s.bytesWritten ?? 0 } : { in: 0, out: 0 };
    return { in: this.closedIn + live.in, out: this.closedOut + live.out };
  }

  connected(): boolean {
    return this.client?.connected ?? false;
  }

  /**
   * Stops as a device that loses power: the connection just ends, no offline notice, so the server
   * learns it from the broker (last will) and the missed heartbeats, as for a real outage.
   */
  stop(): void {
    this.stopped = true;
    for (const t of [this.reconnectTimer, this.heartbeat, this.startTimer, this.batchTimer]) if (t) clearTimeout(t); // also clears an interval
    this.client?.stream?.destroy();
    this.client?.end(true);
  }
}
