/**
 * A light simulated agent for fleet tests (as bench/fleet.ts's, smaller): it joins as a device does
 * (the real HTTPS join with a CSR, so the broker knows it by its certificate), then is one mqtt.js
 * client speaking the contract as agent/connection.ts and agent/reporter.ts do — presence, hello,
 * status on each new desired state and every heartbeat. Its "runtime" starts containers at once and
 * cannot pull the images in `failImages`: such a pod is reported Pending with ErrImagePull, as the
 * real agent reports a failed pull. Dozens fit in one test process where real agents (each reading
 * its hardware, sampling usage, reconciling a runtime) take a second of CPU apiece to start.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { joinCluster } from '../../agent/join.js';
import type { DeviceKey } from '../../agent/join.js';
import { agentClientId, CONTRACT_VERSION, DELIVERY, decode, encode, parseTopic, payloads, topics } from '../../src/contract/index.js';
import { runningPodReport, waitingPodReport } from '../../src/sim/pod-report.js';
import { silentLogger } from '../../src/util/logger.js';

export interface SimAgentOptions {
  node: string;
  apiUrl: string;
  joinToken: string;
  /** Where the broker is (the server's advertised MQTT URL). */
  mqttUrl: string;
  /** One key may stand for many simulated devices (each still has its own certificate). */
  deviceKey: DeviceKey;
  /** Images this device cannot pull; read at each desired state. */
  failImages?: ReadonlySet<string>;
  heartbeatSeconds?: number;
}

export class SimAgent {
  private client: MqttClient | undefined;
  private creds: { key: string; cert: string; ca: string } | undefined;
  private readonly bootId = randomUUID();
  private seq = 0;
  private desired: payloads.Desired | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly startTimes = new Map<string, string>();
  /** Every image this device was asked to run, and the ones it did run. */
  readonly asked = new Set<string>();
  readonly ran = new Set<string>();

  constructor(private readonly o: SimAgentOptions) {}

  get node(): string {
    return this.o.node;
  }

  private presence(state: 'online' | 'offline'): Buffer {
    return encode({ state, bootId: this.bootId, ts: new Date().toISOString() } satisfies payloads.Presence);
  }

  /** Joins (first time only) and connects; resolves once hello and a first status are sent. */
  async start(): Promise<void> {
    const node = this.o.node;
    this.creds ??= await joinCluster({ apiUrl: this.o.apiUrl, token: this.o.joinToken, node, logger: silentLogger, deviceKey: this.o.deviceKey });
    const client = mqtt.connect(this.o.mqttUrl, {
      clientId: agentClientId(node),
      key: this.creds.key,
      cert: this.creds.cert,
      ca: this.creds.ca,
      rejectUnauthorized: true,
      protocolVersion: 4,
      clean: false,
      keepalive: 30,
      connectTimeout: 30_000,
      reconnectPeriod: 1_000,
      will: { topic: topics.presence(node), payload: this.presence('offline'), ...DELIVERY.presence },
    });
    this.client = client;
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    client.on('connect', () => void this.announce());
    await this.announce();
    const period = (this.o.heartbeatSeconds ?? 5) * 1000;
    this.heartbeat = setInterval(() => this.sendStatus(), period);
  }

  private async announce(): Promise<void> {
    const c = this.client!;
    const node = this.o.node;
    await c.subscribeAsync(topics.agentInbox(node), { qos: 1 });
    await c.publishAsync(topics.presence(node), this.presence('online'), DELIVERY.presence);
    const hello: payloads.Hello = {
      agentVersion: '0.1.0',
      contractVersion: CONTRACT_VERSION,
      node,
      bootId: this.bootId,
      hostname: node,
      arch: 'arm64',
      os: 'linux',
      osImage: 'Debian GNU/Linux 12 (bookworm)',
      kernelVersion: '6.1.0',
      cpu: { cores: 4, model: 'ARM Cortex-A72' },
      memoryBytes: 4 * 2 ** 30,
      addresses: ['10.0.0.1'],
      runtime: { name: 'sim', version: '1.0.0' },
      labels: {},
      images: [],
    };
    await c.publishAsync(topics.hello(node), encode(payloads.hello.parse(hello)), DELIVERY.hello);
    this.sendStatus();
  }

  /** Goes offline as an agent that shuts down: presence offline (retained), then the connection ends. */
  async stop(): Promise<void> {
    clearInterval(this.heartbeat);
    const c = this.client;
    this.client = undefined;
    if (!c) return;
    if (c.connected) await c.publishAsync(topics.presence(this.o.node), this.presence('offline'), DELIVERY.presence).catch(() => undefined);
    await c.endAsync(true);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.node !== this.o.node || t.kind !== 'desired' || payload.length === 0) return;
    const d = decode(payloads.desired, payload, 'desired state');
    if (this.desired && d.generation < this.desired.generation) return;
    this.desired = d;
    this.sendStatus();
  }

  private reports(): payloads.PodReport[] {
    const now = new Date().toISOString();
    const pods = this.desired?.pods ?? [];
    const live = new Set(pods.map((p) => p.uid));
    for (const uid of this.startTimes.keys()) if (!live.has(uid)) this.startTimes.delete(uid);
    return pods.map((p) => {
      for (const c of p.spec.containers) this.asked.add(c.image);
      const bad = p.spec.containers.find((c) => this.o.failImages?.has(c.image));
      if (bad) {
        return waitingPodReport(p, (c) => (c === bad ? { reason: 'ErrImagePull', message: `initializing source docker://${c.image}: reading manifest: manifest unknown` } : { reason: 'ContainerCreating' }));
      }
      const startTime = this.startTimes.get(p.uid) ?? now;
      this.startTimes.set(p.uid, startTime);
      for (const c of p.spec.containers) this.ran.add(c.image);
      return runningPodReport(p, startTime);
    });
  }

  private sendStatus(): void {
    const c = this.client;
    if (!c?.connected) return;
    const s: payloads.Status = {
      node: this.o.node,
      bootId: this.bootId,
      seq: ++this.seq,
      observedGeneration: this.desired?.generation ?? 0,
      ts: new Date().toISOString(),
      pods: this.reports(),
      runtimeHealthy: true,
      heartbeatSeconds: this.o.heartbeatSeconds ?? 5,
    };
    c.publish(topics.status(this.o.node), encode(s), DELIVERY.status);
  }
}
