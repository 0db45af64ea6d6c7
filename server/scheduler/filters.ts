/**
 * Feasibility filters: each one answers "can this pod run on this node?" and, when it cannot, says
 * why in the words kube-scheduler uses, so `kubectl describe`-style messages read the same.
 *
 * Everything here is pure: filters see the pod, the node and a precomputed `NodeUsage` (what is
 * already committed to the node, plus the shared cluster index for inter-pod rules), never the store.
 *
 * Reasons may carry a detail in a trailing parenthesis, e.g. "node(s) didn't match arch (needs
 * arm64)": the summary counts by `reasonKey` (the text before it), per-node explanations keep it.
 */
import type { Node } from '../../src/api/node.js';
import { nodeReady } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { parseCpu, parseMemory } from '../../src/api/quantity.js';
import {
  interPodFilterState,
  matchNodeSelector,
  matchRequiredNodeAffinity,
  type NodeMatch,
  satisfiesExistingPodsAntiAffinity,
  satisfiesPodAffinity,
  satisfiesPodAntiAffinity,
} from './affinity.js';
import { ClusterIndex } from './cluster.js';
import { podToleratesTaint, taintReason, UNSCHEDULABLE_TAINT, untoleratedTaints } from './taints.js';

export interface SchedulingContext {
  nodes: Node[];
  /** All pods, bound (spec.nodeName set) or not; Succeeded/Failed ones don't count toward usage. */
  pods: Pod[];
}

/** CPU in millicores, memory in bytes. */
export interface Resources {
  cpu: number;
  memory: number;
}

export interface HostPort {
  protocol: string;
  /** '0.0.0.0' when the port binds every address. */
  ip: string;
  port: number;
}

/** What is already committed to one node, plus its parsed capacity for scheduling. */
export interface NodeUsage {
  /** Parsed status.allocatable; undefined when the node has not reported it (or reported garbage). */
  allocatable?: Resources & { pods: number };
  /** Sum of the effective requests of the node's non-terminated pods. */
  requested: Resources;
  /**
   * Like `requested`, but a container that requests nothing counts as a small default. Used only
   * for scoring (as kube-scheduler does) so pods without requests still spread across nodes.
   */
  nonZeroRequested: Resources;
  pods: number;
  hostPorts: HostPort[];
  /** The node this usage is for (set by emptyUsage). */
  nodeName?: string;
  /**
   * Index of the whole fleet, shared by every usage built together (computeUsage/scheduleBatch) and
   * updated by `addPod`. Inter-pod affinity and spreading read it. A usage built for one node alone
   * gets an index of just that node.
   */
  cluster?: ClusterIndex;
}

export interface Filter {
  name: string;
  /** Empty = fits. Otherwise one or more short reasons, each counted separately in the summary. */
  check(pod: Pod, node: Node, usage: NodeUsage): readonly string[];
}

/**
 * "Fits", shared: a placement runs each filter on hundreds of nodes per pod, and a fresh empty array
 * per check was millions of allocations for 5,000 pods (a tenth of the pass went to the collector).
 */
export const FITS: readonly string[] = Object.freeze([]);

export const REASON = {
  notReady: 'node(s) were not ready',
  unschedulable: 'node(s) were unschedulable',
  /** kube-scheduler reports nodeSelector and required node affinity with the same words. */
  nodeSelector: "node(s) didn't match Pod's node affinity/selector",
  nodeAffinity: "node(s) didn't match Pod's node affinity/selector",
  /** Count key for an arch mismatch; the per-node text adds the arch needed: "(needs arm64)". */
  arch: "node(s) didn't match arch",
  /** Prefix only: the full reason names the taint, `... taint {key: value}` (see taintReason). */
  taint: 'node(s) had untolerated taint',
  podAffinity: "node(s) didn't match pod affinity rules",
  podAntiAffinity: "node(s) didn't match pod anti-affinity rules",
  existingPodsAntiAffinity: "node(s) didn't satisfy existing pods anti-affinity rules",
  devices: "node(s) didn't have the requested devices",
  nodeName: "node(s) didn't match the requested node name",
  cpu: 'Insufficient cpu',
  memory: 'Insufficient memory',
  pods: 'Too many pods',
  noAllocatable: "node(s) didn't report allocatable resources",
  hostPorts: "node(s) didn't have free ports for the requested pod ports",
} as const;

/** kube-scheduler's defaults for scoring containers with no request (100m CPU, 200Mi memory). */
export const DEFAULT_CPU_REQUEST = 100;
export const DEFAULT_MEMORY_REQUEST = 200 * 2 ** 20;

const ANY_IP = '0.0.0.0';

/** The count key of a reason: its text without a trailing " (detail)". */
export function reasonKey(reason: string): string {
  if (!reason.endsWith(')')) return reason;
  const i = reason.lastIndexOf(' (');
  return i > 0 ? reason.slice(0, i) : reason;
}

/** `node(s) didn't match arch (needs arm64)` */
export function archReason(needs: string): string {
  return `${REASON.arch} (needs ${needs})`;
}

// ---------------------------------------------------------------------------------------------
// Pod and node accounting helpers
// ---------------------------------------------------------------------------------------------

/** Succeeded and Failed pods keep their binding but no longer hold resources or ports. */
export function isTerminated(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

/**
 * Effective requests of a container: per resource, the request, else the limit (as the Kubernetes
 * API defaults requests to limits), else 0.
 */
function containerRequests(c: Pod['spec']['containers'][number]): Resources {
  const req = c.resources?.requests;
  const lim = c.resources?.limits;
  const cq = req?.cpu ?? lim?.cpu;
  const mq = req?.memory ?? lim?.memory;
  return { cpu: cq === undefined ? 0 : parseCpu(cq), memory: mq === undefined ? 0 : parseMemory(mq) };
}

/** Effective requests of a pod: the sum of its containers' (see containerRequests). */
/**
 * Requests of pods that cannot change (the object cache's are frozen), computed once: a scheduling pass
 * sums the requests of every pod in the fleet.
 */
const frozenRequests = new WeakMap<Pod, Resources>();
const frozenNonZeroRequests = new WeakMap<Pod, Resources>();

function memo(cache: WeakMap<Pod, Resources>, pod: Pod, compute: (p: Pod) => Resources): Resources {
  if (!Object.isFrozen(pod)) return compute(pod);
  let r = cache.get(pod);
  if (!r) cache.set(pod, (r = Object.freeze(compute(pod))));
  return r;
}

export function podRequests(pod: Pod): Resources {
  return memo(frozenRequests, pod, sumRequests);
}

function sumRequests(pod: Pod): Resources {
  let cpu = 0;
  let memory = 0;
  for (const c of pod.spec.containers) {
    const r = containerRequests(c);
    cpu += r.cpu;
    memory += r.memory;
  }
  return { cpu, memory };
}

/** Like `podRequests`, but zero container requests are replaced by the scoring defaults. */
export function podNonZeroRequests(pod: Pod): Resources {
  return memo(frozenNonZeroRequests, pod, sumNonZeroRequests);
}

function sumNonZeroRequests(pod: Pod): Resources {
  let cpu = 0;
  let memory = 0;
  for (const c of pod.spec.containers) {
    const r = containerRequests(c);
    cpu += r.cpu > 0 ? r.cpu : DEFAULT_CPU_REQUEST;
    memory += r.memory > 0 ? r.memory : DEFAULT_MEMORY_REQUEST;
  }
  return { cpu, memory };
}

/**
 * Host ports a pod would occupy. With hostNetwork every containerPort is a host port (Kubernetes
 * defaults hostPort to containerPort there), so those count too.
 */
export function podHostPorts(pod: Pod): HostPort[] {
  const out: HostPort[] = [];
  for (const c of pod.spec.containers) {
    for (const p of c.ports ?? []) {
      const port = p.hostPort ?? (pod.spec.hostNetwork ? p.containerPort : undefined);
      if (port === undefined) continue;
      out.push({ protocol: p.protocol ?? 'TCP', ip: p.hostIP || ANY_IP, port });
    }
  }
  return out;
}

/** Two bindings clash on the same protocol/port when either is a wildcard or the IPs are equal. */
function portsConflict(a: HostPort, b: HostPort): boolean {
  return a.port === b.port && a.protocol === b.protocol && (a.ip === b.ip || a.ip === ANY_IP || b.ip === ANY_IP);
}

/** Parses status.allocatable; a node that reports nothing or something unparseable gets undefined. */
export function parseAllocatable(node: Node): NodeUsage['allocatable'] {
  const a = node.status?.allocatable;
  if (!a) return undefined;
  try {
    const pods = Number(a.pods);
    if (!Number.isFinite(pods)) return undefined;
    return { cpu: parseCpu(a.cpu), memory: parseMemory(a.memory), pods };
  } catch (malformedQuantity) {
    // The one thing that throws here is parseCpu/parseMemory refusing a quantity: such a node is
    // treated as reporting no allocatable (and the filters say so), not as an error of the pass.
    return undefined;
  }
}

/**
 * Usage of a node with nothing on it yet. Pass the fleet's shared `cluster` when building usage for
 * several nodes (computeUsage does); without it the node gets an index of its own.
 */
export function emptyUsage(node: Node, cluster?: ClusterIndex): NodeUsage {
  const c = cluster ?? new ClusterIndex();
  c.addNode(node);
  return {
    allocatable: parseAllocatable(node),
    requested: { cpu: 0, memory: 0 },
    nonZeroRequested: { cpu: 0, memory: 0 },
    pods: 0,
    hostPorts: [],
    nodeName: node.metadata.name,
    cluster: c,
  };
}

const soloIndexes = new WeakMap<NodeUsage, ClusterIndex>();

/** The usage's cluster index; a hand-built usage without one gets an index of just its node. */
export function clusterOf(usage: NodeUsage, node: Node): ClusterIndex {
  if (usage.cluster) return usage.cluster;
  let c = soloIndexes.get(usage);
  if (!c) {
    c = new ClusterIndex();
    c.addNode(node);
    soloIndexes.set(usage, c);
  }
  return c;
}

/**
 * Commits a pod to a node's usage (mutates `usage` and its cluster index). Terminated pods hold
 * nothing and are skipped.
 */
export function addPod(usage: NodeUsage, pod: Pod): void {
  if (isTerminated(pod)) return;
  const node = usage.nodeName ?? pod.spec.nodeName;
  if (usage.cluster && node !== undefined) usage.cluster.addPod(pod, node);
  const r = podRequests(pod);
  const nz = podNonZeroRequests(pod);
  usage.requested.cpu += r.cpu;
  usage.requested.memory += r.memory;
  usage.nonZeroRequested.cpu += nz.cpu;
  usage.nonZeroRequested.memory += nz.memory;
  usage.pods += 1;
  usage.hostPorts.push(...podHostPorts(pod));
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/** A pod that already names a node (set by the user) may only go there. */
export const nodeNameFilter: Filter = {
  name: 'NodeName',
  check(pod, node) {
    const want = pod.spec.nodeName;
    return want && want !== node.metadata.name ? [REASON.nodeName] : FITS;
  },
};

/**
 * Cordoned nodes take no new pods, unless the pod tolerates the node.kubernetes.io/unschedulable
 * NoSchedule taint (as DaemonSet pods do in Kubernetes).
 */
export const nodeUnschedulableFilter: Filter = {
  name: 'NodeUnschedulable',
  check(pod, node) {
    return node.spec?.unschedulable && !podToleratesTaint(pod, UNSCHEDULABLE_TAINT) ? [REASON.unschedulable] : FITS;
  },
};

/** Without a live agent nobody would start the pod, so only Ready nodes are candidates. */
export const nodeReadyFilter: Filter = {
  name: 'NodeReady',
  check(_pod, node) {
    return nodeReady(node) ? FITS : [REASON.notReady];
  },
};

function nodeMatchReasons(m: NodeMatch, generic: string): readonly string[] {
  if (m.ok) return FITS;
  return [m.arch !== undefined ? archReason(m.arch) : generic];
}

/**
 * Every nodeSelector pair must match a node label. This also covers architecture and OS pinning:
 * the registry labels nodes with kubernetes.io/arch and kubernetes.io/os. A wrong arch is reported
 * as such ("node(s) didn't match arch (needs arm64)"), anything else in kube-scheduler's words.
 */
export const nodeSelectorFilter: Filter = {
  name: 'NodeSelector',
  check(pod, node) {
    return nodeMatchReasons(matchNodeSelector(pod, node), REASON.nodeSelector);
  },
};

/**
 * Required node affinity: nodeSelectorTerms are ORed, the expressions of a term ANDed; operators
 * In/NotIn/Exists/DoesNotExist/Gt/Lt on labels, matchFields on metadata.name. Same reasons as the
 * nodeSelector (kube-scheduler merges the two).
 */
export const nodeAffinityFilter: Filter = {
  name: 'NodeAffinity',
  check(pod, node) {
    return nodeMatchReasons(matchRequiredNodeAffinity(pod, node), REASON.nodeAffinity);
  },
};

/**
 * NoSchedule and NoExecute taints must be tolerated; PreferNoSchedule only costs score. Reports the
 * first untolerated taint, as kube-scheduler does.
 */
export const taintTolerationFilter: Filter = {
  name: 'TaintToleration',
  check(pod, node) {
    const bad = untoleratedTaints(pod, node, ['NoSchedule', 'NoExecute']);
    return bad.length > 0 ? [taintReason(bad[0]!)] : FITS;
  },
};

/** Host device paths the pod's containers ask for (drover extension). */
export function podDevices(pod: Pod): string[] {
  const out: string[] = [];
  for (const c of pod.spec.containers) for (const d of c.devices ?? []) if (!out.includes(d.hostPath)) out.push(d.hostPath);
  return out;
}

/** Every requested device must be one the node's agent reported in status.devices. */
export const nodeDevicesFilter: Filter = {
  name: 'NodeDevices',
  check(pod, node, usage) {
    // Once per pod and decision, not once per node: a fresh list per node checked was garbage.
    const want = clusterOf(usage, node).cached(pod, 'devices', podDevices);
    if (want.length === 0) return FITS;
    const have = node.status?.devices ?? [];
    const missing = want.filter((d) => !have.includes(d));
    return missing.length > 0 ? [`${REASON.devices} (missing ${missing.join(', ')})`] : FITS;
  },
};

/** Required pod affinity: a matching pod must already run in the node's topology domain. */
export const podAffinityFilter: Filter = {
  name: 'PodAffinity',
  check(pod, node, usage) {
    if (!pod.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.length) return FITS;
    const cluster = clusterOf(usage, node);
    return satisfiesPodAffinity(interPodFilterState(pod, cluster), node.metadata.name, cluster) ? FITS : [REASON.podAffinity];
  },
};

/** Required pod anti-affinity: no pod the pod's terms select may run in the node's topology domain. */
export const podAntiAffinityFilter: Filter = {
  name: 'PodAntiAffinity',
  check(pod, node, usage) {
    if (!pod.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.length) return FITS;
    const cluster = clusterOf(usage, node);
    return satisfiesPodAntiAffinity(interPodFilterState(pod, cluster), node.metadata.name, cluster) ? FITS : [REASON.podAntiAffinity];
  },
};

/** The symmetric rule: existing pods' required anti-affinity may forbid the incoming pod. */
export const existingPodsAntiAffinityFilter: Filter = {
  name: 'ExistingPodsAntiAffinity',
  check(pod, node, usage) {
    const cluster = clusterOf(usage, node);
    if (cluster.antiAffinityPods.length === 0) return FITS;
    return satisfiesExistingPodsAntiAffinity(interPodFilterState(pod, cluster), node.metadata.name, cluster) ? FITS : [REASON.existingPodsAntiAffinity];
  },
};

/** A host port can be bound by one pod per node (per protocol and IP). */
export const nodePortsFilter: Filter = {
  name: 'NodePorts',
  check(pod, node, usage) {
    const want = clusterOf(usage, node).cached(pod, 'hostPorts', podHostPorts);
    if (want.length === 0) return FITS;
    for (const w of want) {
      if (usage.hostPorts.some((u) => portsConflict(u, w))) return [REASON.hostPorts];
    }
    return FITS;
  },
};

/**
 * Requests of the pods already on the node plus this pod must fit allocatable. Every shortfall is
 * reported, so a node short on both cpu and memory counts in both buckets, as in kube-scheduler.
 */
export const nodeResourcesFitFilter: Filter = {
  name: 'NodeResourcesFit',
  check(pod, node, usage) {
    const alloc = usage.allocatable;
    if (!alloc) return [REASON.noAllocatable];
    let reasons: string[] | undefined;
    if (usage.pods + 1 > alloc.pods) (reasons ??= []).push(REASON.pods);
    // Parsed once per pod and decision, not once per node.
    const r = clusterOf(usage, node).cached(pod, 'requests', podRequests);
    // A zero request never fails, even on an overcommitted node: the pod asks for nothing.
    if (r.cpu > 0 && r.cpu > alloc.cpu - usage.requested.cpu) (reasons ??= []).push(REASON.cpu);
    if (r.memory > 0 && r.memory > alloc.memory - usage.requested.memory) (reasons ??= []).push(REASON.memory);
    return reasons ?? FITS;
  },
};

/**
 * Default filter chain. Order matters only for the reported reason: evaluation stops at the first
 * filter that rejects a node (as kube-scheduler does), so a cordoned, not-ready node reports one
 * reason, and the cheap, definitive checks come before resource arithmetic. Inter-pod rules come
 * last: they read the fleet-wide index (cheap per node once the per-pod state is cached).
 */
export const defaultFilters: readonly Filter[] = [
  nodeNameFilter,
  nodeUnschedulableFilter,
  nodeReadyFilter,
  taintTolerationFilter,
  nodeSelectorFilter,
  nodeAffinityFilter,
  nodePortsFilter,
  nodeDevicesFilter,
  nodeResourcesFitFilter,
  podAffinityFilter,
  podAntiAffinityFilter,
  existingPodsAntiAffinityFilter,
];

/**
 * The checks that decide whether a node is *eligible* for a per-node workload (DaemonSet): label
 * and affinity matching, taints, host ports and devices, but not readiness, cordoning or resources
 * (a DaemonSet pod belongs on every eligible node whatever its current state).
 */
export const eligibilityFilters: readonly Filter[] = [
  taintTolerationFilter,
  nodeSelectorFilter,
  nodeAffinityFilter,
  nodePortsFilter,
  nodeDevicesFilter,
];

/** Runs filters in order; returns the first non-empty reason list, or [] when the node fits. */
export function runFilters(pod: Pod, node: Node, usage: NodeUsage, filters: readonly Filter[] = defaultFilters): readonly string[] {
  for (const f of filters) {
    const reasons = f.check(pod, node, usage);
    if (reasons.length > 0) return reasons;
  }
  return FITS;
}
