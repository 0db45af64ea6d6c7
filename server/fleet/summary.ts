/**
 * The fleet in one value (pure): what `drover fleet status`, GET /drover/v1/fleet/status and the
 * retained `drover/v1/fleet/summary` topic show. Built from stored objects and a clock only, so the
 * same numbers come out of every door and a unit test can check them with plain values.
 */
import type { ApiObject, Condition } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import type { DaemonSet, Deployment } from '../../src/api/workloads.js';
import { BadRequestError } from '../../src/util/errors.js';
import { matchesLabels, parseLabelSelector } from '../api/selectors.js';
import { compareStrings } from '../../src/util/compare.js';

/** What the node's Ready condition says. */
export type NodeState = 'Ready' | 'NotReady' | 'Unknown';

/**
 * Exactly one per node, so the buckets add up to the total:
 * - ready: Ready, heard recently, nothing wrong;
 * - degraded: Ready and heard recently, but its link flaps (LinkDegraded), a pressure condition is
 *   True (Memory/Disk/PID pressure, NetworkUnavailable), or a pod bound to it is failing (phase Failed,
 *   or a container waiting in a back-off or error state);
 * - stale: its Ready condition says True but it was last heard too long ago (STALE rule below), so
 *   that True is out of date: never counted as Ready;
 * - notReady / unknown: the Ready condition is False / Unknown (or missing).
 */
export type NodeBucket = 'ready' | 'degraded' | 'stale' | 'notReady' | 'unknown';
export const NODE_BUCKETS: readonly NodeBucket[] = ['ready', 'degraded', 'stale', 'notReady', 'unknown'];

/**
 * A node is stale when the node-lifecycle controller marked it HeartbeatLate, or when its lastHeard
 * is older than this. lastHeard comes from memory (server/nodes/live-view.ts), moved by every report
 * and every MQTT ping the embedded broker hears (keepalive 15 s by default): 150 s is surely silence,
 * even when the controller that would mark it is not running. Behind an external broker the server
 * hears no pings, only statuses (a heartbeat every 10 min by default, or each agent's own period):
 * there only HeartbeatLate, which the controller times by each node's announced period, says stale.
 */
export const DEFAULT_STALE_AFTER_MS = 60_000 + 3 * 30_000;

const PRESSURE_CONDITIONS = ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'NetworkUnavailable'];
/** Container waiting reasons that mean the pod is failing rather than starting. */
const FAILING_WAIT = /BackOff$|^Err|Error$|^InvalidImageName$/;
/** The "site" of pods that are bound to no node, or to one the store does not hold. */
export const UNSCHEDULED = '<unscheduled>';
/** Rows of the lists kept in a summary; counts are always complete. */
export const LIST_CAP = 50;

export interface FleetFilters {
  /** Node label selector, as `-l` (`site=north,arch!=arm`). */
  labelSelector?: string;
  /** The node's site: its `site` label, else `topology.kubernetes.io/zone`. */
  site?: string;
  /** One bucket (ready, degraded, stale, notready, unknown), case-insensitive. */
  state?: string;
}

export interface FleetInput {
  nodes: Node[];
  pods: Pod[];
  deployments: Deployment[];
  daemonSets: DaemonSet[];
  nowMs: number;
  /** The server's own version, against which agent versions are checked. */
  serverVersion: string;
  filters?: FleetFilters;
  staleAfterMs?: number;
  /** 'attention' (default): only nodes that are not ready, at most LIST_CAP; 'all': every selected node. */
  nodeList?: 'attention' | 'all';
}

export interface NodeEntry {
  name: string;
  state: NodeState;
  bucket: NodeBucket;
  stale: boolean;
  /** Why it is degraded (or not ready: the Ready condition's reason). */
  reasons: string[];
  lastHeard?: string;
  lastHeardAgeSeconds?: number;
  site: string;
  arch: string;
  agentVersion: string;
  runtime: string;
}

export type BucketCounts = Record<NodeBucket, number>;

export interface FleetStatus {
  generatedAt: string;
  serverVersion: string;
  staleAfterSeconds: number;
  /** The filters applied: they select nodes, and the pods bound to them. Workloads and rollouts are fleet-wide. */
  filters: FleetFilters;
  nodes: {
    total: number;
    byState: BucketCounts;
    /** Per bucket, the node heard from longest ago (absent: no node in it, or none ever heard). */
    oldestLastHeard: Partial<Record<NodeBucket, { node: string; lastHeard: string; ageSeconds: number }>>;
    /** Nodes never heard from (no lastHeard at all). */
    neverHeard: number;
    byArch: Record<string, number>;
    bySite: Record<string, BucketCounts & { total: number }>;
    /** Most nodes first; `skew` when it differs from the server's version or from the majority. */
    agentVersions: Array<{ version: string; nodes: number; skew: boolean }>;
    majorityAgentVersion?: string;
    skewedNodes: number;
    runtimes: Array<{ runtime: string; version: string; nodes: number }>;
    /** Nodes as `nodeList` asked: not-ready ones first, oldest last-heard first. */
    list: NodeEntry[];
    /** How many nodes the list would hold without LIST_CAP. */
    listTotal: number;
  };
  pods: {
    total: number;
    byPhase: Record<string, number>;
    byNamespace: Record<string, Record<string, number>>;
    /** By the site of the node each is bound to; pods bound to no (known) node under UNSCHEDULED. */
    bySite: Record<string, Record<string, number>>;
  };
  workloads: {
    healthy: number;
    unhealthy: number;
    byNamespace: Record<string, { healthy: number; unhealthy: number }>;
    /** Not healthy ones (ready < desired), at most LIST_CAP. */
    unhealthyList: Array<{ kind: 'Deployment' | 'DaemonSet'; namespace: string; name: string; ready: number; desired: number }>;
  };
  rollouts: RolloutEntry[];
}

export interface RolloutEntry {
  kind: 'Deployment' | 'DaemonSet';
  namespace: string;
  name: string;
  /** 'waves': a drover waved rollout (status.drover.rollout); 'classic': updated < desired. */
  type: 'waves' | 'classic';
  phase: string;
  /** 1-based wave being rolled out, and how many there are (waved rollouts only). */
  wave?: number;
  waves?: number;
  updated: number;
  ready: number;
  desired: number;
  message?: string;
}

function cond(n: Node, type: string): Condition | undefined {
  return n.status?.conditions?.find((c) => c.type === type);
}

export function nodeSite(n: ApiObject): string {
  const l = n.metadata.labels ?? {};
  return l.site || l['topology.kubernetes.io/zone'] || '<none>';
}

/** `podman://4.3.1` → podman, 4.3.1. */
export function parseRuntime(v: string | undefined): { runtime: string; version: string } {
  if (!v) return { runtime: '<unknown>', version: '' };
  const i = v.indexOf('://');
  return i < 0 ? { runtime: v, version: '' } : { runtime: v.slice(0, i), version: v.slice(i + 3) };
}

/** Ready / NotReady / Unknown from the Ready condition (missing: Unknown, as kubectl shows it). */
export function nodeState(n: Node): NodeState {
  const s = cond(n, 'Ready')?.status;
  return s === 'True' ? 'Ready' : s === 'False' ? 'NotReady' : 'Unknown';
}

/** Last heard too long ago (or never), or marked HeartbeatLate: what it last said may be out of date. */
export function isStale(n: Node, nowMs: number, staleAfterMs = DEFAULT_STALE_AFTER_MS): boolean {
  if (cond(n, 'HeartbeatLate')?.status === 'True') return true;
  const heard = Date.parse(n.status?.lastHeard ?? '');
  return Number.isNaN(heard) || nowMs - heard > staleAfterMs;
}

function podFailing(p: Pod): boolean {
  if (p.status?.phase === 'Failed') return true;
  return (p.status?.containerStatuses ?? []).some((c) => c.state === 'waiting' && !!c.reason && FAILING_WAIT.test(c.reason));
}

/** Why a Ready node is degraded (empty: it is not). */
export function degradedReasons(n: Node, failingPods: number): string[] {
  const out: string[] = [];
  if (cond(n, 'LinkDegraded')?.status === 'True') out.push('LinkDegraded');
  for (const t of PRESSURE_CONDITIONS) if (cond(n, t)?.status === 'True') out.push(t);
  if (failingPods > 0) out.push(`PodsFailing(${failingPods})`);
  return out;
}

const BUCKET_NAMES: Record<string, NodeBucket> = { ready: 'ready', degraded: 'degraded', stale: 'stale', notready: 'notReady', unknown: 'unknown' };

/** `--state` value → bucket; a BadRequestError naming `state` otherwise. */
export function parseStateFilter(v: string): NodeBucket {
  const b = BUCKET_NAMES[v.toLowerCase()];
  if (!b) throw new BadRequestError(`state: "${v}" is not a node state; use one of ready, degraded, stale, notready, unknown`);
  return b;
}

function emptyBuckets(): BucketCounts {
  return { ready: 0, degraded: 0, stale: 0, notReady: 0, unknown: 0 };
}

function inc(m: Record<string, number>, k: string, by = 1): void {
  m[k] = (m[k] ?? 0) + by;
}

/** One node as the fleet views show it. */
export function nodeEntry(n: Node, nowMs: number, failingPods: number, staleAfterMs = DEFAULT_STALE_AFTER_MS): NodeEntry {
  const state = nodeState(n);
  const stale = isStale(n, nowMs, staleAfterMs);
  const degraded = state === 'Ready' && !stale ? degradedReasons(n, failingPods) : [];
  const bucket: NodeBucket = state === 'NotReady' ? 'notReady' : state === 'Unknown' ? 'unknown' : stale ? 'stale' : degraded.length ? 'degraded' : 'ready';
  const heard = Date.parse(n.status?.lastHeard ?? '');
  const ready = cond(n, 'Ready');
  const reasons = bucket === 'degraded' ? degraded : bucket === 'stale' ? ['HeartbeatLate'] : state !== 'Ready' ? [ready?.reason ?? 'NoReadyCondition'] : [];
  const info = n.status?.nodeInfo;
  return {
    name: n.metadata.name,
    state,
    bucket,
    stale,
    reasons,
    ...(Number.isNaN(heard) ? {} : { lastHeard: n.status!.lastHeard!, lastHeardAgeSeconds: Math.max(0, Math.floor((nowMs - heard) / 1000)) }),
    site: nodeSite(n),
    arch: info?.architecture ?? n.metadata.labels?.['kubernetes.io/arch'] ?? '<unknown>',
    agentVersion: info?.agentVersion ?? '<unknown>',
    runtime: info?.containerRuntimeVersion ?? '<unknown>',
  };
}

const BUCKET_ORDER: Record<NodeBucket, number> = { unknown: 0, notReady: 1, stale: 2, degraded: 3, ready: 4 };

/** Defensive read of a waved rollout's status (H3's status.drover.rollout): anything malformed is no rollout. */
function wavedRollout(o: { status?: unknown }): { phase: string; wave?: number; waves?: number; message?: string; updated?: number; ready?: number; total?: number } | undefined {
  const r = (o.status as { drover?: { rollout?: unknown } } | undefined)?.drover?.rollout;
  if (!r || typeof r !== 'object') return undefined;
  const x = r as Record<string, unknown>;
  if (typeof x.phase !== 'string') return undefined;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const counts = (x.counts && typeof x.counts === 'object' ? x.counts : {}) as Record<string, unknown>;
  return {
    phase: x.phase,
    wave: num(x.wave),
    waves: num(x.waves),
    message: typeof x.message === 'string' ? x.message : undefined,
    updated: num(counts.updated),
    ready: num(counts.ready),
    total: num(counts.total),
  };
}

function rolloutOf(kind: 'Deployment' | 'DaemonSet', o: Deployment | DaemonSet, updated: number, ready: number, desired: number): RolloutEntry | undefined {
  const base = { kind, namespace: o.metadata.namespace ?? 'default', name: o.metadata.name };
  const w = wavedRollout(o);
  if (w) {
    if (w.phase !== 'Progressing' && w.phase !== 'Paused') return undefined;
    return {
      ...base,
      type: 'waves',
      phase: w.phase,
      ...(w.wave !== undefined ? { wave: w.wave + 1 } : {}),
      ...(w.waves !== undefined ? { waves: w.waves } : {}),
      updated: w.updated ?? updated,
      ready: w.ready ?? ready,
      desired: w.total ?? desired,
      ...(w.message ? { message: w.message } : {}),
    };
  }
  if (updated >= desired) return undefined;
  return { ...base, type: 'classic', phase: 'Progressing', updated, ready, desired };
}

/** The fleet status (pure). A bad filter is a BadRequestError naming it. */
export function fleetStatus(input: FleetInput): FleetStatus {
  const { nowMs, filters = {} } = input;
  const staleAfterMs = input.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const selector = parseSelector(filters.labelSelector);
  const stateFilter = filters.state ? parseStateFilter(filters.state) : undefined;

  const failing = new Map<string, number>();
  for (const p of input.pods) if (p.spec.nodeName && podFailing(p)) failing.set(p.spec.nodeName, (failing.get(p.spec.nodeName) ?? 0) + 1);

  const byState = emptyBuckets();
  const oldest: FleetStatus['nodes']['oldestLastHeard'] = {};
  const byArch: Record<string, number> = {};
  const bySite: FleetStatus['nodes']['bySite'] = {};
  const versions: Record<string, number> = {};
  const runtimes = new Map<string, { runtime: string; version: string; nodes: number }>();
  const selected = new Set<string>();
  const siteOf = new Map<string, string>();
  const entries: NodeEntry[] = [];
  let neverHeard = 0;
  for (const n of input.nodes) {
    if (selector.length && !matchesLabels(n, selector)) continue;
    if (filters.site !== undefined && nodeSite(n) !== filters.site) continue;
    const e = nodeEntry(n, nowMs, failing.get(n.metadata.name) ?? 0, staleAfterMs);
    if (stateFilter && e.bucket !== stateFilter) continue;
    selected.add(e.name);
    siteOf.set(e.name, e.site);
    entries.push(e);
    byState[e.bucket]++;
    if (e.lastHeardAgeSeconds === undefined) neverHeard++;
    else {
      const o = oldest[e.bucket];
      if (!o || e.lastHeardAgeSeconds > o.ageSeconds) oldest[e.bucket] = { node: e.name, lastHeard: e.lastHeard!, ageSeconds: e.lastHeardAgeSeconds };
    }
    inc(byArch, e.arch);
    const s = (bySite[e.site] ??= { total: 0, ...emptyBuckets() });
    s.total++;
    s[e.bucket]++;
    inc(versions, e.agentVersion);
    const rt = parseRuntime(n.status?.nodeInfo?.containerRuntimeVersion);
    const key = `${rt.runtime} ${rt.version}`;
    const r = runtimes.get(key) ?? { ...rt, nodes: 0 };
    r.nodes++;
    runtimes.set(key, r);
  }

  const versionRows = Object.entries(versions).sort((a, b) => b[1] - a[1] || compareStrings(a[0], b[0]));
  const majority = versionRows[0]?.[0];
  const agentVersions = versionRows.map(([version, nodes]) => ({ version, nodes, skew: version !== input.serverVersion || version !== majority }));

  const mode = input.nodeList ?? 'attention';
  const listed = (mode === 'all' ? entries : entries.filter((e) => e.bucket !== 'ready')).sort(
    (a, b) => BUCKET_ORDER[a.bucket] - BUCKET_ORDER[b.bucket] || (b.lastHeardAgeSeconds ?? Infinity) - (a.lastHeardAgeSeconds ?? Infinity) || compareStrings(a.name, b.name),
  );
  const list = mode === 'all' ? listed : listed.slice(0, LIST_CAP);

  const byPhase: Record<string, number> = {};
  const podsByNs: Record<string, Record<string, number>> = {};
  const podsBySite: Record<string, Record<string, number>> = {};
  const filtered = selector.length > 0 || filters.site !== undefined || stateFilter !== undefined;
  let podTotal = 0;
  for (const p of input.pods) {
    // With a node filter only the pods bound to a selected node count.
    if (filtered && !(p.spec.nodeName && selected.has(p.spec.nodeName))) continue;
    const phase = p.status?.phase ?? 'Pending';
    podTotal++;
    inc(byPhase, phase);
    inc((podsByNs[p.metadata.namespace ?? 'default'] ??= {}), phase);
    inc((podsBySite[(p.spec.nodeName && siteOf.get(p.spec.nodeName)) || UNSCHEDULED] ??= {}), phase);
  }

  const workloads: FleetStatus['workloads'] = { healthy: 0, unhealthy: 0, byNamespace: {}, unhealthyList: [] };
  const rollouts: RolloutEntry[] = [];
  const workload = (kind: 'Deployment' | 'DaemonSet', o: Deployment | DaemonSet, ready: number, desired: number, updated: number): void => {
    const ns = o.metadata.namespace ?? 'default';
    const row = (workloads.byNamespace[ns] ??= { healthy: 0, unhealthy: 0 });
    if (ready >= desired) {
      workloads.healthy++;
      row.healthy++;
    } else {
      workloads.unhealthy++;
      row.unhealthy++;
      if (workloads.unhealthyList.length < LIST_CAP) workloads.unhealthyList.push({ kind, namespace: ns, name: o.metadata.name, ready, desired });
    }
    const r = rolloutOf(kind, o, updated, ready, desired);
    if (r) rollouts.push(r);
  };
  for (const d of input.deployments) workload('Deployment', d, d.status?.readyReplicas ?? 0, d.spec.replicas ?? 1, d.status?.updatedReplicas ?? 0);
  for (const d of input.daemonSets) workload('DaemonSet', d, d.status?.numberReady ?? 0, d.status?.desiredNumberScheduled ?? 0, d.status?.updatedNumberScheduled ?? 0);

  return {
    generatedAt: new Date(nowMs).toISOString(),
    serverVersion: input.serverVersion,
    staleAfterSeconds: Math.round(staleAfterMs / 1000),
    filters: { ...(filters.labelSelector ? { labelSelector: filters.labelSelector } : {}), ...(filters.site !== undefined ? { site: filters.site } : {}), ...(stateFilter ? { state: stateFilter } : {}) },
    nodes: {
      total: entries.length,
      byState,
      oldestLastHeard: oldest,
      neverHeard,
      byArch: sortedRecord(byArch),
      bySite: Object.fromEntries(Object.entries(bySite).sort((a, b) => b[1].total - a[1].total || compareStrings(a[0], b[0]))),
      agentVersions,
      ...(majority !== undefined ? { majorityAgentVersion: majority } : {}),
      skewedNodes: agentVersions.filter((v) => v.skew).reduce((s, v) => s + v.nodes, 0),
      runtimes: [...runtimes.values()].sort((a, b) => b.nodes - a.nodes || compareStrings(a.runtime, b.runtime)),
      list,
      listTotal: listed.length,
    },
    pods: {
      total: podTotal,
      byPhase: sortedRecord(byPhase),
      byNamespace: Object.fromEntries(Object.entries(podsByNs).sort((a, b) => compareStrings(a[0], b[0]))),
      bySite: Object.fromEntries(Object.entries(podsBySite).sort((a, b) => compareStrings(a[0], b[0]))),
    },
    workloads: { ...workloads, byNamespace: Object.fromEntries(Object.entries(workloads.byNamespace).sort((a, b) => compareStrings(a[0], b[0]))) },
    rollouts: rollouts.sort((a, b) => compareStrings(a.namespace, b.namespace) || compareStrings(a.name, b.name)),
  };
}

function sortedRecord(m: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(m).sort((a, b) => b[1] - a[1] || compareStrings(a[0], b[0])));
}

function parseSelector(s: string | undefined): ReturnType<typeof parseLabelSelector> {
  try {
    return parseLabelSelector(s ?? null);
  } catch (err) {
    throw new BadRequestError(`labelSelector: "${s}" is not a label selector (e.g. site=north,arch!=arm)`, err);
  }
}
