import { z } from 'zod';
import { containerStatus, podPhase, podSpec } from '../api/pod.js';
import { desiredImage, imageDigest, imageTransfer } from './images.js';

/** Upper bound for any payload drover accepts on the wire; larger messages are rejected unparsed. */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * Bounds on what one node reports, so a joined node cannot make the server store and fan out
 * megabytes per message (40,000 image names in a hello slowed every API call). Lists and texts past
 * a bound are cut, not refused: a device with many images must still register. Agents cut the same
 * way before sending; the server cuts again, as it must not trust them.
 */
export const REPORT_LIMITS = {
  /** Image names in a hello (kubelet reports 50 by default; drover scores placement with them). */
  images: 500,
  addresses: 64,
  devices: 256,
  /** Short fields: names, versions, reasons. */
  shortText: 256,
  /** Messages (a container's last words, a probe's output). */
  message: 4096,
} as const;

/** A string cut to `max` characters. */
const text = (max: number) => z.string().transform((s) => (s.length > max ? s.slice(0, max) : s));
/** A list cut to its first `max` items. */
const upTo = <T extends z.ZodType>(item: T, max: number) => z.array(item).transform((a) => (a.length > max ? a.slice(0, max) : a));

export const presence = z.object({
  state: z.enum(['online', 'offline']),
  bootId: z.string(),
  ts: z.string(),
});
export type Presence = z.infer<typeof presence>;

export const hello = z.object({
  agentVersion: text(REPORT_LIMITS.shortText),
  contractVersion: z.number().int(),
  node: z.string(),
  bootId: z.string(),
  arch: text(REPORT_LIMITS.shortText),
  os: text(REPORT_LIMITS.shortText),
  osImage: text(REPORT_LIMITS.shortText),
  kernelVersion: text(REPORT_LIMITS.shortText),
  hostname: text(REPORT_LIMITS.shortText),
  cpu: z.object({ cores: z.number().int(), model: text(REPORT_LIMITS.shortText) }),
  memoryBytes: z.number().int(),
  addresses: upTo(text(REPORT_LIMITS.shortText), REPORT_LIMITS.addresses),
  runtime: z.object({ name: text(REPORT_LIMITS.shortText), version: text(REPORT_LIMITS.shortText) }),
  labels: z.record(z.string(), z.string()).default({}),
  images: upTo(text(REPORT_LIMITS.shortText), REPORT_LIMITS.images).default([]),
  /**
   * Host device nodes worth scheduling on (serial ports, GPIO chips, cameras, I2C and SPI buses), as
   * /dev paths. Optional: agents older than the field send none.
   */
  devices: upTo(text(REPORT_LIMITS.shortText), REPORT_LIMITS.devices).optional(),
  /**
   * Encodings of the desired state the agent can read besides plain JSON (DESIRED_ENCODINGS). Optional:
   * a server that knows none of them, or an agent older than the field, keeps to plain JSON.
   */
  accepts: upTo(text(REPORT_LIMITS.shortText), 16).optional(),
});
export type Hello = z.infer<typeof hello>;

/**
 * Encodings of a desired-state payload other than plain JSON, each announced by the agent in its hello
 * (`accepts`) before the server uses it. `deflate`: raw DEFLATE (RFC 1951) of the JSON, after the one
 * byte DEFLATE_MARKER, which no JSON text starts with, so a reader tells the two apart by the first byte.
 */
export const DESIRED_ENCODINGS = ['deflate'] as const;
export type DesiredEncoding = (typeof DESIRED_ENCODINGS)[number];
export const DEFLATE_MARKER = 0x00;

/** One pod as the agent needs it: identity plus the validated spec. */
export const desiredPod = z.object({
  uid: z.string(),
  namespace: z.string(),
  name: z.string(),
  /** For the downward API (fieldRef metadata.labels['k'] / metadata.annotations['k']). */
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  spec: podSpec,
});
export type DesiredPod = z.infer<typeof desiredPod>;

/** A ConfigMap some pod of the node references (env, envFrom or volume). */
export const desiredConfigMap = z.object({
  namespace: z.string(),
  name: z.string(),
  data: z.record(z.string(), z.string()).default({}),
  /** Values are base64, as in the API. */
  binaryData: z.record(z.string(), z.string()).optional(),
});
export type DesiredConfigMap = z.infer<typeof desiredConfigMap>;

/** A Secret some pod of the node references; only ever sent to nodes that run such a pod. */
export const desiredSecret = z.object({
  namespace: z.string(),
  name: z.string(),
  type: z.string().optional(),
  /** Values are base64, as in the API; the agent decodes them when it uses them. */
  data: z.record(z.string(), z.string()).default({}),
});
export type DesiredSecret = z.infer<typeof desiredSecret>;

const ipv4 = z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, 'must be an IPv4 address');
const port = z.number().int().min(1).max(65535);

/**
 * Where one port of a Service leads from this node: a ready endpoint, already resolved to an address
 * this node can reach. `local`: a pod on this node, by its pod IP and target port; otherwise the
 * endpoint's node address and the pod's hostPort or the Service's nodePort.
 */
export const desiredBackend = z.object({ ip: ipv4, port, local: z.boolean() });
export type DesiredBackend = z.infer<typeof desiredBackend>;

export const desiredServicePort = z.object({
  name: z.string().optional(),
  protocol: z.enum(['TCP', 'UDP']),
  port,
  nodePort: port.optional(),
  backends: z.array(desiredBackend),
});
export type DesiredServicePort = z.infer<typeof desiredServicePort>;

/** A Service some pod of the node could use (one of its namespaces), with its ready endpoints. */
export const desiredService = z.object({
  namespace: z.string(),
  name: z.string(),
  clusterIP: ipv4,
  ports: z.array(desiredServicePort),
});
export type DesiredService = z.infer<typeof desiredService>;

/**
 * The full set of pods bound to a node, with exactly the ConfigMaps and Secrets they reference.
 * Retained; the highest generation wins. A referenced object that does not exist is simply absent.
 */
export const desired = z.object({
  node: z.string(),
  generation: z.number().int().min(0),
  pods: z.array(desiredPod),
  configMaps: z.array(desiredConfigMap).default([]),
  secrets: z.array(desiredSecret).default([]),
  /**
   * Services of the namespaces the node's pods run in, absent when there are none (a node that runs no
   * pods gets none). Older agents ignore it.
   */
  services: z.array(desiredService).optional(),
  /**
   * Images the server serves that this node is to have (its pods' and, marked prefetch, a coming
   * rollout's), absent when none: the agent fetches these from the server instead of pulling them.
   */
  images: z.array(desiredImage).optional(),
  /**
   * The node's image bandwidth budget in bytes/s, from its label drover.io/image-bandwidth (set by the
   * operator for the fleet); absent: the agent's own (--image-bandwidth, its link profile).
   */
  imageBandwidth: z.number().int().positive().optional(),
  ts: z.string(),
});
export type Desired = z.infer<typeof desired>;

/** Resource use measured on the device, for `drover top`: not stored, served from memory. */
export const usage = z.object({ cpuMilli: z.number().min(0), memoryBytes: z.number().min(0) });
export type Usage = z.infer<typeof usage>;

export const podReport = z.object({
  uid: z.string(),
  namespace: z.string(),
  name: z.string(),
  phase: podPhase,
  message: text(REPORT_LIMITS.message).optional(),
  reason: text(REPORT_LIMITS.shortText).optional(),
  startTime: z.string().optional(),
  /** The pod's own address on the node's container bridge (absent for host-network pods: the server uses the node's). */
  podIP: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}$/, 'must be an IPv4 address').optional(),
  containers: z.array(containerStatus),
  usage: usage.optional(),
});
export type PodReport = z.infer<typeof podReport>;

export const status = z.object({
  node: z.string(),
  /** The device's boot (kernel boot id): the server applies status only from the boot its Node's hello announced. */
  bootId: z.string(),
  /**
   * Grows with every status within one boot, across agent restarts (milliseconds of the boot clock): the
   * server applies a status only if its seq is above the last one it applied, so a replayed or
   * reordered status never moves pods back.
   */
  seq: z.number().int().min(0),
  observedGeneration: z.number().int(),
  ts: z.string(),
  pods: z.array(podReport),
  runtimeHealthy: z.boolean(),
  runtimeMessage: text(REPORT_LIMITS.message).optional(),
  /** Seconds between heartbeats; the server marks the node NotReady after a few missed ones. */
  heartbeatSeconds: z.number().int().min(1),
  /**
   * The agent's MQTT keepalive: it pings the broker at least this often, whatever else it sends. A server
   * that hears the pings (its embedded broker) times the node's liveness by them instead of by the much
   * rarer heartbeats. Optional: older agents send none and are timed by their heartbeats.
   */
  keepaliveSeconds: z.number().int().min(1).max(65_535).optional(),
  /** Whole-node use (all processes, not only containers). */
  usage: usage.optional(),
  /** Digests of the server's image archives loaded on the device (src/contract/images.ts), in every status; absent from older agents. */
  imageDigests: upTo(imageDigest, REPORT_LIMITS.images).optional(),
  /** Image transfers in progress or failed, in every status (empty: none); absent from older agents. */
  imageTransfers: upTo(imageTransfer, 64).optional(),
  /**
   * Whether the state dir's or the image store's filesystem is short of space (agent/images/disk.ts):
   * the server sets the Node condition DiskPressure and the taint node.kubernetes.io/disk-pressure.
   * Absent from older agents and before the first look.
   */
  diskPressure: z.object({ pressure: z.boolean(), message: text(REPORT_LIMITS.message) }).optional(),
});
export type Status = z.infer<typeof status>;

export const agentEvent = z.object({
  type: z.enum(['Normal', 'Warning']),
  reason: text(REPORT_LIMITS.shortText),
  message: text(REPORT_LIMITS.message),
  ts: z.string(),
  involved: z.object({ kind: z.string(), namespace: z.string().optional(), name: z.string(), uid: z.string().optional() }),
  /** Position in the sending journal (see `events.journal`), so a batch delivered twice is recorded once. */
  seq: z.number().int().min(0).optional(),
});
export type AgentEvent = z.infer<typeof agentEvent>;

export const events = z.object({
  node: z.string(),
  /**
   * Which journal the events' `seq` numbers count in (one per agent run). QoS 1 delivers at least
   * once, and an unacknowledged batch is sent again after a reconnect: the server records an event
   * only when its seq is past the last one it recorded from the same journal.
   */
  journal: z.string().max(64).optional(),
  events: z.array(agentEvent),
  /** Events dropped from a full offline journal, oldest first. */
  dropped: z.number().int().min(0).default(0),
});
export type Events = z.infer<typeof events>;

/** Bounds on an exec command: what a device's execve takes, with room to spare. */
export const EXEC_ARGS_MAX = 256;
export const EXEC_ARG_MAX = 64 * 1024;

export const request = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('logs'),
    namespace: z.string(),
    pod: z.string(),
    uid: z.string().optional(),
    container: z.string().optional(),
    tail: z.number().int().min(0).optional(),
    // The options below came after the first agents, which drop them unread: an agent names those it
    // applied in the response's `honoured`, and the server refuses an answer that does not.
    /** The previous instance of the container (Kubernetes' lastState.terminated). */
    previous: z.boolean().optional(),
    /** Lines of the last N seconds, by the agent's clock (the log's times are the device's). */
    sinceSeconds: z.number().int().min(1).optional(),
    /** Lines from this RFC 3339 time on. */
    sinceTime: z.string().refine((t) => !Number.isNaN(Date.parse(t)), 'an RFC 3339 time').optional(),
    /** Each line begins with its RFC 3339 time. */
    timestamps: z.boolean().optional(),
    /** At most this many bytes of the log, from its start. */
    limitBytes: z.number().int().min(1).optional(),
  }),
  /**
   * The node's and its pods' current resource use (`drover top`, `kubectl top`): asked by the server when
   * its metrics API is read, rather than sent with every heartbeat. Agents older than it answer with an error.
   */
  z.object({ op: z.literal('usage') }),
  z.object({
    op: z.literal('exec'),
    namespace: z.string(),
    pod: z.string(),
    uid: z.string().optional(),
    container: z.string().optional(),
    /** argv, run without a shell (as `kubectl exec POD -- CMD...`). */
    command: z
      .array(z.string().max(EXEC_ARG_MAX).refine((a) => !a.includes('\0'), 'an argument contains a NUL byte'))
      .min(1)
      .max(EXEC_ARGS_MAX),
    timeoutSeconds: z.number().int().min(1).max(600),
  }),
]);

/** What an `exec` request returns in `data`. */
export const execResult = z.object({ exitCode: z.number().int(), output: z.string(), timedOut: z.boolean() });
export type ExecResult = z.infer<typeof execResult>;
/** Any request an agent may be sent. */
export type AgentRequest = z.infer<typeof request>;
/** A request about one pod's containers (logs, exec): what the agent's runtime answers. */
export type Request = Exclude<AgentRequest, { op: 'usage' }>;

/** What a `usage` request returns in `data`: use over the last `windowSeconds`, per pod summed over its containers. */
export const usageResult = z.object({
  node: usage.optional(),
  pods: z.array(z.object({ namespace: z.string(), name: z.string(), usage })).max(10_000),
  windowSeconds: z.number().min(0),
  ts: z.string(),
});
export type UsageResult = z.infer<typeof usageResult>;

/** The logs request options an agent must say it applied (older agents ignore them). */
export const LOG_OPTIONS = ['previous', 'sinceSeconds', 'sinceTime', 'timestamps', 'limitBytes'] as const;
export type LogOption = (typeof LOG_OPTIONS)[number];

export const response = z.object({
  ok: z.boolean(),
  data: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  /** For a logs request: the LOG_OPTIONS the agent applied. Absent from agents that know none. */
  honoured: z.array(z.string()).optional(),
});
export type Response = z.infer<typeof response>;
