import { ValidationError } from '../src/util/errors.js';
import { droverVersion } from '../src/version.js';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import type { MetricsAddress } from './metrics.js';

/** Container runtimes the agent can drive; 'auto' takes podman if it answers, else nerdctl. */
export const RUNTIME_KINDS = ['auto', 'podman', 'nerdctl'] as const;
export type RuntimeKind = (typeof RUNTIME_KINDS)[number];

export interface AgentConfig {
  node: string;
  /** https://host:port of the server's API: where the node joins and renews its certificate. */
  serverUrl: string;
  /**
   * The join token (K10<ca hash>::<id>.<secret>), needed only for the first join: afterwards the
   * node's own certificate under STATE_DIR/credentials is used. Never taken from argv.
   */
  token?: string;
  /** Broker URL to dial instead of the one the server advertised at join (a proxy, another address). */
  mqttUrl?: string;
  /** Name checked against the server's certificate instead of the URL's host (an address not in its SANs). */
  tlsServerName?: string;
  stateDir: string;
  labels: Record<string, string>;
  /** kind: which runtime CLI drives containers ('auto': podman if it answers, else nerdctl). */
  runtime: { kind?: RuntimeKind; podmanRoot?: string; podmanRunroot?: string; nerdctlNamespace?: string; containerdAddress?: string; env?: Record<string, string> };
  heartbeatSeconds: number;
  /**
   * Period of the reconcile loop when nothing else triggers it: a safety net, since desired-state
   * changes, container exits (runtime events) and back-off expiries trigger it on their own.
   */
  resyncSeconds: number;
  keepaliveSeconds: number;
  /**
   * Events raised while connected wait this long to go out together in one batch (one publish and its
   * acknowledgement instead of one each); 0: at once. A heartbeat sends what is waiting.
   */
  eventBatchSeconds?: number;
  /** Ask for the desired state DEFLATE-compressed (the cellular link profile). */
  compressDesired?: boolean;
  /**
   * The address this node is known by (its INTERNAL-IP, its pods' hostIP); default: the local
   * address of the agent's connection to the server, the one the server reaches it from.
   */
  nodeIP?: string;
  /** Failed runtime calls in a row before the node reports its runtime unhealthy (NotReady); one is retried in a second. */
  runtimeFailures?: number;
  /** Longest pause between attempts to reach the server (the reconnect back-off's cap). */
  reconnectMaxSeconds?: number;
  /** Longest wait for the server to accept a connection attempt. */
  connectTimeoutSeconds?: number;
  /**
   * Budget for fetching the server's images (--image-bandwidth, bytes/s); absent: as fast as the link
   * goes. The cellular link profile sets 64 KiB/s unless given.
   */
  imageBandwidthBytesPerSecond?: number;
  /** Serve Prometheus metrics here (--metrics-addr); absent: not served and prom-client never loaded. */
  metricsAddress?: MetricsAddress;
  logLevel?: string;
}

/** Defaults of AgentConfig's tunables, shown in `drover agent --help`. */
export const AGENT_DEFAULTS = {
  // Liveness rides on the MQTT keepalive (a ping every 15 s, timed by the server): the heartbeat is a
  // status that says nothing new, so it is rare (a few KB a day) and carries no unchanged pod reports.
  heartbeatSeconds: 600,
  resyncSeconds: 10,
  keepaliveSeconds: 15,
  runtimeFailures: 3,
  // Capped at 5 s (delays 2.5-5 s once capped): after a server restart the last agents to come back
  // are those whose next attempt was furthest off, so the cap is the floor of the fleet's p99 (15 s
  // made 2,000 agents' p99 37 s, bench/scale.ts). Jitter still spreads the fleet over 2.5 s, and the
  // broker's connect rate limit refuses the excess, which then backs off too.
  reconnectMaxSeconds: 5,
  connectTimeoutSeconds: 10,
} as const;

/** A node name usable as a DNS label and an MQTT topic level, derived from the hostname. */
export function defaultNodeName(): string {
  return hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'node';
}

export function defaultStateDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/drover/agent' : join(homedir(), '.drover', 'agent');
}

/** package.json's version: written in one place, reported in the agent's hello (fleet status flags skew). */
export const AGENT_VERSION = droverVersion();

/**
 * How the agent uses its link. `default`: LAN or broadband. `cellular`: a metered link, where an idle
 * day should cost little more than the MQTT keepalive's pings: a long keepalive (20 minutes: the broker's last will
 * still tells the server within 1.5 keepalives, 30 minutes, that a silent node is gone; a closed connection at once), an hourly heartbeat (liveness
 * rides on the keepalive; status goes out at once whenever it changes), events batched by the minute,
 * and the desired state DEFLATE-compressed. Only there: compressing Secrets together with what others may
 * write into the same message (their pods' specs) lets sizes on the wire hint at the Secrets (CRIME/BREACH),
 * a risk worth taking only where bytes are paid for.
 */
export const LINK_PROFILES = {
  default: { keepaliveSeconds: AGENT_DEFAULTS.keepaliveSeconds, heartbeatSeconds: AGENT_DEFAULTS.heartbeatSeconds, eventBatchSeconds: 0, compressDesired: false, reconnectMaxSeconds: AGENT_DEFAULTS.reconnectMaxSeconds },
  // 1,200 s, AWS IoT's longest keepalive: a ping exchange costs ~200 B on the wire over TLS (mostly TCP/IP
  // headers), so 300 s alone was 59 KB a day. A carrier whose NAT forgets an idle flow sooner than that
  // needs --keepalive below its timeout (else the link breaks and reconnects, a TLS handshake each time).
  // Reconnects capped at 30 s: while the server is away each attempt wakes the radio and costs a TCP
  // handshake (~150 B); at 5 s an hour's outage would cost more than a quiet day.
  cellular: { keepaliveSeconds: 1200, heartbeatSeconds: 3600, eventBatchSeconds: 60, compressDesired: true, reconnectMaxSeconds: 30 },
} as const;
export type LinkProfile = keyof typeof LINK_PROFILES;

export interface LinkSettings {
  keepaliveSeconds: number;
  heartbeatSeconds: number;
  eventBatchSeconds: number;
  /** Announce in the hello that the desired state may come DEFLATE-compressed. */
  compressDesired: boolean;
  /** The reconnect back-off's cap. */
  reconnectMaxSeconds: number;
}

/**
 * A profile's link settings, with the ones given explicitly (--keepalive, --heartbeat, --reconnect-max) over it.
 * ValidationError names the flag for an unknown profile or a period that is not a positive number.
 */
export function linkSettings(profile: string, explicit: { keepaliveSeconds?: number; heartbeatSeconds?: number; reconnectMaxSeconds?: number } = {}): LinkSettings {
  if (!Object.hasOwn(LINK_PROFILES, profile)) {
    throw new ValidationError([{ field: '--link-profile', message: `unknown profile "${profile}" (one of ${Object.keys(LINK_PROFILES).join(', ')})` }], 'invalid agent option');
  }
  const base = LINK_PROFILES[profile as LinkProfile];
  const out: LinkSettings = { ...base, ...definedOnly(explicit) };
  for (const [flag, v] of [['--keepalive', out.keepaliveSeconds], ['--heartbeat', out.heartbeatSeconds], ['--reconnect-max', out.reconnectMaxSeconds]] as const) {
    // mqtt.js takes keepalive in whole seconds up to 65535 (the CONNECT field is 16 bits).
    if (!Number.isFinite(v) || v <= 0 || (flag === '--keepalive' && (v > 65_535 || !Number.isInteger(v)))) {
      throw new ValidationError([{ field: flag, message: `${v} is not a period in seconds${flag === '--keepalive' ? ' (a whole number from 1 to 65535)' : ''}` }], 'invalid agent option');
    }
  }
  return out;
}

/**
 * A link profile's image bandwidth budget (bytes/s), the one given (--image-bandwidth) over it;
 * undefined: none. Cellular: 64 KiB/s, a 50 MB image in ~13 minutes, leaving the rest of a typical
 * cellular uplink (a few hundred KB/s at the edge of coverage) to the workloads and the link itself.
 */
export function imageBandwidth(profile: string, explicit?: number): number | undefined {
  if (explicit !== undefined) return explicit;
  return profile === 'cellular' ? 64 * 1024 : undefined;
}

/** `--image-bandwidth`: see src/util/bandwidth.ts (the server reads the node label the same way). */
export { parseBandwidth } from '../src/util/bandwidth.js';

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
