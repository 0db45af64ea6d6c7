import { homedir } from 'node:os';
import { join } from 'node:path';

export interface ServerConfig {
  dataDir: string;
  apiHost: string;
  apiPort: number;
  /** Embedded aedes broker (default) or an external broker the server connects to as a client. */
  mqtt:
    | { mode: 'embedded'; host: string; port: number }
    | { mode: 'external'; url: string; username?: string; password?: string };
  /** The address agents on other machines use to reach the broker; shown in the join command. */
  advertiseMqttUrl?: string;
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
}

export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/drover/server' : join(homedir(), '.drover', 'server');
}

export const DEFAULTS = {
  apiHost: '0.0.0.0',
  apiPort: 6443,
  mqttHost: '0.0.0.0',
  mqttPort: 1883,
  nodeRequestTimeoutMs: 10_000,
  nodeMonitorMs: 30_000,
  missedHeartbeats: 3,
  flapThreshold: 3,
  flapWindowMs: 10 * 60_000,
  maxPodsPerNode: 110,
} as const;

/** Fixed parts of the node lifecycle (not flags: they follow from the heartbeat the agents announce). */
export const NODE_LIFECYCLE = {
  /** A node this many heartbeat periods without a status is marked HeartbeatLate (stale status). */
  lateFactor: 1.5,
  /** Heartbeat period assumed for a Ready node this process has not heard yet (the agent's default). */
  assumedHeartbeatMs: 30_000,
  /** Ready/lastHeard of a node that keeps reporting is rewritten at most this often. */
  lastHeardWriteMs: 60_000,
} as const;
