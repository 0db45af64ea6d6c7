import { homedir, hostname } from 'node:os';
import { join } from 'node:path';

export interface AgentConfig {
  node: string;
  /** mqtt://host:port of the server's broker (or the external broker). */
  serverUrl: string;
  token: string;
  stateDir: string;
  labels: Record<string, string>;
  runtime: { podmanRoot?: string; podmanRunroot?: string; env?: Record<string, string> };
  heartbeatSeconds: number;
  /**
   * Period of the reconcile loop when nothing else triggers it: a safety net, since desired-state
   * changes, container exits (runtime events) and back-off expiries trigger it on their own.
   */
  resyncSeconds: number;
  keepaliveSeconds: number;
  logLevel?: string;
}

/** A node name usable as a DNS label and an MQTT topic level, derived from the hostname. */
export function defaultNodeName(): string {
  return hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'node';
}

export function defaultStateDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/drover/agent' : join(homedir(), '.drover', 'agent');
}

export const AGENT_VERSION = '0.1.0';
