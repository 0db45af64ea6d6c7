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
  /** Period of the heartbeat check that marks silent nodes NotReady. */
  nodeMonitorMs?: number;
  /** Resync period of the controllers (every object of their kinds looked at again). */
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
  controllerResyncMs: 30_000,
  nodeRequestTimeoutMs: 10_000,
} as const;
