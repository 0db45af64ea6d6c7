/**
 * `drover sim`: N simulated agents against a running drover server, for load and scale work (the
 * benchmarks run them too). Each joins with the join token like a device, then speaks the real MQTT
 * contract from a sim worker with a fake runtime (agent.ts). Node names are PREFIX-00000…: a second
 * run with the same prefix joins the same names again.
 */
import { linkSettings } from '../../agent/config.js';
import { ValidationError, type FieldCause } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { keyPool } from './device-join.js';
import { startSimFleet, type SimFleet } from './fleet.js';
import type { JoinReport, WorkerStats } from './worker.js';

export interface SimOptions {
  /** API URL of the server (https://…, or http://… for a server started with --insecure). */
  server: string;
  /** The join token (K10 form); never from argv. */
  joinToken: string;
  nodes: number;
  /** Worker processes the agents are spread over; 0 keeps them in this process. */
  workers: number;
  prefix: string;
  /** Dial this broker instead of the one the server advertises at join. */
  brokerUrl?: string;
  /** default or cellular (agent/config.ts LINK_PROFILES); keepalive and heartbeat given explicitly win. */
  linkProfile: string;
  keepaliveSeconds?: number;
  heartbeatSeconds?: number;
  /** Pods each simulated node runs at most (the rest are reported Pending, OutOfPods); 0: no limit. */
  podsPerNode: number;
  /** How long the fake runtime takes to start a pod. */
  podStartMs: number;
  /** Distinct RSA keys shared among the nodes (each node still gets its own certificate). */
  keys: number;
  /** Joins in flight per worker. */
  joinConcurrency: number;
  /** New MQTT connections per second over the whole fleet; 0: all at once. */
  connectPerSecond: number;
  /** Log totals every this many seconds; 0: never. */
  reportSeconds: number;
}

export const SIM_DEFAULTS = {
  workers: 2,
  prefix: 'sim',
  linkProfile: 'default',
  podsPerNode: 0,
  podStartMs: 0,
  keys: 20,
  joinConcurrency: 8,
  connectPerSecond: 200,
  reportSeconds: 10,
} as const;

export interface RunningSim {
  /** The simulated nodes' names, in order. */
  nodes: string[];
  /** How the joins went (a node whose join failed is not simulated). */
  joined: JoinReport;
  fleet: SimFleet;
  stats(): Promise<WorkerStats>;
  /** Ends every agent's connection as a power loss does (the server sees the last will and missed heartbeats). */
  stop(): Promise<void>;
}

export function simNodeName(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(5, '0')}`;
}

function check(o: SimOptions): void {
  const bad: FieldCause[] = [];
  const whole = (field: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) bad.push({ field, message: `expected a whole number of at least ${min}, got ${v}` });
  };
  whole('--nodes', o.nodes, 1);
  whole('--workers', o.workers, 0);
  whole('--pods-per-node', o.podsPerNode, 0);
  whole('--pod-start-ms', o.podStartMs, 0);
  whole('--keys', o.keys, 1);
  whole('--join-concurrency', o.joinConcurrency, 1);
  whole('--connect-rate', o.connectPerSecond, 0);
  if (!/^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$/.test(o.prefix)) bad.push({ field: '--prefix', message: `"${o.prefix}" is not a DNS label of at most 42 characters (node names are PREFIX-NNNNN)` });
  for (const [field, url, schemes] of [['--server', o.server, ['https:', 'http:']], ['--broker', o.brokerUrl, ['mqtts:', 'mqtt:', 'ssl:', 'tls:', 'tcp:']]] as const) {
    if (url === undefined) continue;
    let u: URL | undefined;
    try {
      u = new URL(url);
    } catch (err) {
      bad.push({ field, message: `"${url}" is not a URL (${(err as Error).message})` });
    }
    if (u && !(schemes as readonly string[]).includes(u.protocol)) bad.push({ field, message: `${u.protocol}// is not one of ${schemes.join(', ')}` });
  }
  if (!o.joinToken.trim()) bad.push({ field: 'join token', message: 'empty' });
  if (bad.length) throw new ValidationError(bad, 'invalid sim option');
}

export async function runSim(o: SimOptions, logger: Logger): Promise<RunningSim> {
  check(o);
  const link = linkSettings(o.linkProfile, { keepaliveSeconds: o.keepaliveSeconds, heartbeatSeconds: o.heartbeatSeconds });
  const workers = Math.min(o.workers, o.nodes);
  const keys = await keyPool(Math.min(o.keys, o.nodes));
  const names = Array.from({ length: o.nodes }, (_, i) => ({ name: simNodeName(o.prefix, i), index: i }));
  const fleet = await startSimFleet(workers, names, {
    apiUrl: o.server,
    joinToken: o.joinToken,
    keys,
    insecure: new URL(o.server).protocol === 'http:',
    joinConcurrency: o.joinConcurrency,
    heartbeatSeconds: link.heartbeatSeconds,
    keepaliveSeconds: link.keepaliveSeconds,
    eventBatchSeconds: link.eventBatchSeconds,
    compressDesired: link.compressDesired,
    reconnectMaxMs: link.reconnectMaxSeconds * 1000,
    brokerUrl: o.brokerUrl,
    podsPerNode: o.podsPerNode,
    podStartMs: o.podStartMs,
    connectPerSecond: o.connectPerSecond,
  });
  let reporter: NodeJS.Timeout | undefined;
  try {
    const joined = await fleet.join();
    const log = { nodes: o.nodes, joined: joined.ok, failed: joined.failed, workers, profile: o.linkProfile, ...link };
    if (joined.failed) logger.warn({ ...log, errors: joined.errorSamples.slice(0, 3) }, 'sim: some joins failed; those nodes are not simulated');
    else logger.info(log, 'sim: every node joined');
    await fleet.connect();
    if (o.reportSeconds > 0) {
      let prev = await fleet.stats();
      let prevAt = Date.now();
      reporter = setInterval(() => {
        void fleet.stats().then((s) => {
          const secs = (Date.now() - prevAt) / 1000;
          const bytes = s.bytesIn - prev.bytesIn + (s.bytesOut - prev.bytesOut);
          logger.info(
            { connected: s.connectedNow, nodes: joined.ok, podsRunning: s.podsRunning, statusSent: s.statusSent, desiredReceived: s.desiredReceived, errors: s.errors, mqttKiBPerAgentPerDay: Math.round(((bytes / Math.max(1, s.connectedNow) / secs) * 86_400) / 102.4) / 10, workerRssMiB: Math.round(s.rssMiB) },
            'sim: totals',
          );
          prev = s;
          prevAt = Date.now();
        });
      }, o.reportSeconds * 1000);
      reporter.unref();
    }
    return {
      nodes: names.map((n) => n.name),
      joined,
      fleet,
      stats: () => fleet.stats(),
      stop: async () => {
        clearInterval(reporter);
        await fleet.stop();
      },
    };
  } catch (err) {
    clearInterval(reporter);
    await fleet.stop();
    throw err;
  }
}
