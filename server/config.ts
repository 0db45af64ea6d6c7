import type { MqttLimits } from './mqtt/limits.js';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface ServerConfig {
  dataDir: string;
  apiHost: string;
  apiPort: number;
  /**
   * Embedded aedes broker (default; MQTT over TLS unless `insecure`) or an external broker the server
   * connects to as a client (with its client certificate when the URL is mqtts://).
   */
  mqtt:
    | { mode: 'embedded'; host: string; port: number }
    | { mode: 'external'; url: string; username?: string; password?: string };
  /**
   * Plain MQTT and HTTP instead of TLS (`drover server --insecure`): tokens and Secrets cross the
   * network in clear. Agents then authenticate with a per-node password issued at join.
   */
  insecure?: boolean;
  /** The host other devices reach this server at: in the server certificate and the advertised broker URL. */
  advertiseAddress?: string;
  /** More names or addresses for the server certificate (`--tls-san`). */
  tlsSans?: string[];
  /** New nodes wait for `drover node approve` before the broker lets them in. */
  requireApproval?: boolean;
  /** Life of a node certificate in days (default 365; the agent renews it with a third left). */
  nodeCertDays?: number;
  /** Audit log rotation: size (B, K, M, G) and rotated files kept. */
  auditLogMaxSize?: string;
  auditLogMaxFiles?: number;
  /** Host directories pods may mount with hostPath in any namespace. */
  allowedHostPaths?: string[];
  /** etcd as the datastore (k3s's flags): comma-separated client URLs, and the TLS files; absent: embedded LevelDB. */
  datastoreEndpoint?: string;
  datastoreCafile?: string;
  datastoreCertfile?: string;
  datastoreKeyfile?: string;
  /**
   * With an etcd datastore: the cluster's server token (k3s's --token; `--server-token-file` or DROVER_SERVER_TOKEN),
   * the same on every server. It seals the CA, keyring, tokens and node credentials the servers share in etcd.
   */
  serverToken?: string;
  /**
   * This server's id among several sharing one external broker: its MQTT client id is `drover-server-{id}`
   * (`--server-id`; 1-48 of A-Za-z0-9_.-). Default with an etcd datastore: one kept in DATA_DIR/server-id;
   * otherwise none (`drover-server`, one server per broker).
   */
  serverId?: string;
  /** Leader election among servers sharing an etcd datastore, in seconds (controller-runtime's flags; defaults 15, 10, 2). */
  leaderElectLeaseDuration?: number;
  leaderElectRenewDeadline?: number;
  leaderElectRetryPeriod?: number;
  /** Events not updated for this long are deleted (default 1 h). */
  eventTtlMs?: number;
  /** Events kept per involved object (default 100). */
  eventsPerObject?: number;
  /** Cap on replicas, completions and parallelism (default and maximum 10,000). */
  maxReplicas?: number;
  /** Limits of the embedded broker on hostile clients (packet sizes, connect rate). */
  mqttLimits?: Partial<MqttLimits>;
  /** Clock of certificate issuing (tests fake it to make near-expiry and expired node certificates). */
  now?: () => number;
  logLevel?: string;
  /** Scheduler resync period. */
  resyncMs?: number;
  /**
   * Longest a node goes without a look from the node-lifecycle controller (it wakes up when the next
   * thing falls due; this bounds the wait, e.g. across a clock step).
   */
  nodeMonitorMs?: number;
  /** Heartbeat periods of silence after which a node turns NotReady. */
  missedHeartbeats?: number;
  /** Disconnects within `flapWindowMs` that mark a node's link LinkDegraded. */
  flapThreshold?: number;
  /** The flap window; a degraded link is stable again after a whole window without a disconnect. */
  flapWindowMs?: number;
  /** Pods the scheduler places on one node at most (the `pods` in its capacity). */
  maxPodsPerNode?: number;
  /** Resync period of the controllers (every object of their kinds looked at again); default RUNNER_DEFAULTS.resyncMs (30 s). */
  controllerResyncMs?: number;
  /** How long a node has to answer a logs request (and the allowance on top of an exec command's own timeout). */
  nodeRequestTimeoutMs?: number;
  /** First delay before a failed Job pod is replaced (doubles per failure, capped at 6 min); Kubernetes' 10 s by default. */
  jobBackoffBaseMs?: number;
  /**
   * Where the drover-linux-ARCH binaries served at /download/ (for install.sh) live; default
   * DATA_DIR/downloads. A server that is itself the single binary also serves its own file.
   */
  downloadsDir?: string;
  /** Addresses Services' cluster IPs come from (default 10.43.0.0/16, k3s's). */
  serviceCidr?: string;
  /** NodePorts Services may get (default 30000-32767). */
  nodePortRange?: { min: number; max: number };
  /** Image blob transfers the server sends at once (`--image-transfers`, default 8); more get 503 + Retry-After. */
  imageTransfers?: number;
  /** Largest image archive `drover image push` may upload (default 8 GiB). */
  imageMaxUploadBytes?: number;
}

export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/drover/server' : join(homedir(), '.drover', 'server');
}

export const DEFAULTS = {
  apiHost: '0.0.0.0',
  apiPort: 6443,
  mqttHost: '0.0.0.0',
  /** MQTT over TLS. */
  mqttPort: 8883,
  /** Plain MQTT (--insecure). */
  mqttInsecurePort: 1883,
  /** Where --insecure listeners bind unless --api-host/--mqtt-host say otherwise. */
  insecureHost: '127.0.0.1',
  nodeRequestTimeoutMs: 10_000,
  nodeMonitorMs: 30_000,
  missedHeartbeats: 3,
  flapThreshold: 3,
  flapWindowMs: 10 * 60_000,
  maxPodsPerNode: 110,
  /** Life of a node certificate; the agent renews it when a third is left. */
  nodeCertDays: 365,
  /** Image blob transfers the server sends at once (issue 15). */
  imageTransfers: 8,
} as const;

/** Fixed parts of the node lifecycle (not flags: they follow from the heartbeat the agents announce). */
export const NODE_LIFECYCLE = {
  /** A node this many heartbeat periods without a status is marked HeartbeatLate (stale status). */
  lateFactor: 1.5,
  /** Heartbeat period assumed for a Ready node this process has not heard yet (the agent's default). */
  assumedHeartbeatMs: 30_000,
} as const;
