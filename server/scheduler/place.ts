/**
 * Placement: filter every node, score the survivors, pick the best. Pure — the scheduling loop
 * (scheduler.ts) owns all I/O and only acts on the decision made here.
 */
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { ClassRanking, type RankedFleet } from './class-ranking.js';
import { ClusterIndex, podGroupKey, ZONE_LABEL } from './cluster.js';
import type { UsageCarry } from './usage-carry.js';
import {
  addPod,
  defaultFilters,
  emptyUsage,
  existingPodsAntiAffinityFilter,
  type Filter,
  nodeAffinityFilter,
  nodeDevicesFilter,
  nodeNameFilter,
  nodePortsFilter,
  nodeReadyFilter,
  nodeResourcesFitFilter,
  nodeSelectorFilter,
  nodeUnschedulableFilter,
  type NodeUsage,
  podAffinityFilter,
  podAntiAffinityFilter,
  podDevices,
  podHostPorts,
  podNonZeroRequests,
  podRequests,
  reasonKey,
  runFilters,
  type SchedulingContext,
  taintTolerationFilter,
} from './filters.js';
import {
  balancedAllocation,
  defaultScorers,
  imageLocality,
  interPodAffinityPreferred,
  leastAllocated,
  nodeAffinityPreferred,
  pointsOf,
  type Scorer,
  scoreNode,
  taintTolerationPreferred,
  topologySpread,
  weightedSum,
} from './scorers.js';

export interface Placement {
  /** Chosen node; undefined when no node fits. */
  node?: string;
  /**
   * Why nodes were rejected: reason → number of nodes. A node may count under several reasons.
   * Keys are count keys (`reasonKey`): details such as "(needs arm64)" are left out here.
   */
  reasons: Map<string, number>;
  /** Per rejected node, its reasons in full, details included (e.g. "... arch (needs arm64)"). */
  nodeReasons: Map<string, readonly string[]>;
  /** kube-scheduler style summary when unplaced ("0/3 nodes are available: ..."); '' when placed. */
  message: string;
}

export interface PlaceOptions {
  filters?: readonly Filter[];
  scorers?: readonly Scorer[];
  /**
   * Share of a large fleet a decision looks at, as kube-scheduler's setting of that name: 0 or unset is
   * adaptive (feasibleNodesToFind), 100 every node. Replicas ranked in a batch (class-ranking.ts) always
   * get the best node of the whole fleet.
   */
  percentageOfNodesToScore?: number;
}

/** Identity of a pod across copies: uid when the store assigned one, else namespace/name. */
export function podKey(p: Pod): string {
  return p.metadata.uid ?? `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
}

/**
 * Per-node usage from the bound, non-terminated pods. Every node in the context gets an entry, even
 * an empty one; pods bound to nodes not in the context are ignored (nothing to place there).
 */
export function computeUsage(ctx: SchedulingContext): Map<string, NodeUsage> {
  const usage = new Map<string, NodeUsage>();
  // One index for the fleet: every node's usage shares it, so inter-pod rules see all pods.
  const cluster = new ClusterIndex();
  for (const n of ctx.nodes) usage.set(n.metadata.name, emptyUsage(n, cluster));
  for (const p of ctx.pods) {
    const u = p.spec.nodeName ? usage.get(p.spec.nodeName) : undefined;
    if (u) addPod(u, p);
  }
  return usage;
}

/**
 * "0/5 nodes are available: 2 Insufficient memory, 1 node(s) were not ready." Reasons that differ
 * only in a trailing detail are counted together under their `reasonKey`.
 */
export function formatMessage(total: number, reasons: Map<string, number>): string {
  if (total === 0) return '0/0 nodes are available: no nodes registered.';
  const merged = new Map<string, number>();
  for (const [r, c] of reasons) merged.set(reasonKey(r), (merged.get(reasonKey(r)) ?? 0) + c);
  const parts = [...merged.entries()]
    // Count descending, then reason by code point so the text never depends on the locale.
    .sort(([a, ca], [b, cb]) => cb - ca || (a < b ? -1 : a > b ? 1 : 0))
    .map(([r, c]) => `${c} ${r}`);
  return `0/${total} nodes are available: ${parts.join(', ')}.`;
}

/** Fleets up to this size have every node filtered and scored for every pod. */
export const MIN_FEASIBLE_NODES = 100;

/**
 * How many feasible nodes a decision looks for before it stops, as kube-scheduler's adaptive
 * percentageOfNodesToScore: all of a small fleet; in a large one 50 % less 1 % per 125 nodes, at least
 * 5 % and at least MIN_FEASIBLE_NODES (1,000 nodes: 420; 5,000: 500). A pass over thousands of pods
 * then costs a fraction of filtering and scoring every node for each; the start rotates (scheduleBatch)
 * so that every node gets its turn. A pod no node fits is still checked against all of them (its message
 * counts every node).
 */
export function feasibleNodesToFind(total: number, percentageOfNodesToScore = 0): number {
  if (total <= MIN_FEASIBLE_NODES || percentageOfNodesToScore >= 100) return total;
  const percent = percentageOfNodesToScore > 0 ? percentageOfNodesToScore : Math.max(5, 50 - Math.floor(total / 125));
  return Math.max(MIN_FEASIBLE_NODES, Math.floor((total * percent) / 100));
}

/**
 * Filters and scorers whose answer depends only on the pod's spec and the node, never on what is
 * already placed: a batch asks them once per node for each class of pods (Nomad's computed node
 * class, turned around), not once per pod. Replicas of one template are one class, so 5,000 of
 * them cost the fleet one pass of these checks instead of 5,000 × 420 nodes. Only the default
 * filters and scorers are known to be static (identity): any other one is run for every pod.
 */
const STATIC_FILTERS: ReadonlySet<Filter> = new Set([nodeNameFilter, nodeUnschedulableFilter, nodeReadyFilter, taintTolerationFilter, nodeSelectorFilter, nodeAffinityFilter]);
const STATIC_SCORERS: ReadonlySet<Scorer> = new Set([imageLocality, nodeAffinityPreferred, taintTolerationPreferred]);

/** What the static checks read of a pod, as one string: pods with equal classes get equal static answers. */
function podClass(pod: Pod): string {
  const known = classes.get(pod);
  if (known !== undefined) return known;
  const s = pod.spec;
  const c = JSON.stringify([s.nodeName ?? null, s.tolerations ?? null, s.nodeSelector ?? null, s.affinity?.nodeAffinity ?? null, s.containers.map((x) => x.image)]);
  if (Object.isFrozen(pod)) classes.set(pod, c);
  return c;
}
const classes = new WeakMap<Pod, string>();

/** One node's static answers for one pod class: its reasons (none when it passes) and their count keys, its static score once asked. */
interface StaticVerdict {
  reasons: readonly string[];
  keys: readonly string[];
  /** Micro-points (weightedSum). */
  score?: number;
}

function staticVerdict(pod: Pod, node: Node, u: NodeUsage, filters: readonly Filter[]): StaticVerdict {
  const reasons = runFilters(pod, node, u, filters);
  return { reasons, keys: reasons.length > 0 ? [...new Set(reasons.map(reasonKey))] : reasons };
}

/** A batch's split of the chain: the leading static filters (answered ahead), the rest (per pod), and the scorers likewise. */
interface ChainSplit {
  staticFilters: readonly Filter[];
  dynamicFilters: readonly Filter[];
  staticScorers: readonly Scorer[];
  dynamicScorers: readonly Scorer[];
}

function splitChain(opts: PlaceOptions): ChainSplit {
  const filters = opts.filters ?? defaultFilters;
  const scorers = opts.scorers ?? defaultScorers;
  // Only a leading run of static filters may be answered ahead: evaluation stops at the first filter
  // that rejects, so the reason reported must stay the one the chain in order would give.
  let lead = 0;
  while (lead < filters.length && STATIC_FILTERS.has(filters[lead]!)) lead++;
  return {
    staticFilters: filters.slice(0, lead),
    dynamicFilters: filters.slice(lead),
    staticScorers: scorers.filter((x) => STATIC_SCORERS.has(x)),
    dynamicScorers: scorers.filter((x) => !STATIC_SCORERS.has(x)),
  };
}

/** One pod class's static answers in a batch: the chain's split, and a verdict per node index (made when first asked). */
interface ClassAnswers {
  split: ChainSplit;
  verdicts: Array<StaticVerdict | undefined>;
}

/**
 * The core decision against precomputed usage; shared by `place` and `scheduleBatch`. Nodes are taken
 * from index `start` on (wrapping). With `known` (a batch, for a class of several pods), static answers
 * come from it.
 */
function decide(pod: Pod, nodes: readonly Node[], usage: Map<string, NodeUsage>, opts: PlaceOptions, start = 0, known?: ClassAnswers): Placement {
  const filters = opts.filters ?? defaultFilters;
  const scorers = opts.scorers ?? defaultScorers;
  const reasons = new Map<string, number>();
  const nodeReasons = new Map<string, readonly string[]>();
  const want = feasibleNodesToFind(nodes.length, opts.percentageOfNodesToScore);
  let best: { name: string; score: number } | undefined;
  let feasible = 0;
  let examined = 0;
  for (; examined < nodes.length && feasible < want; examined++) {
    const i = (start + examined) % nodes.length;
    const node = nodes[i]!;
    const name = node.metadata.name;
    const u = usage.get(name) ?? emptyUsage(node);
    const v = known ? (known.verdicts[i] ??= staticVerdict(pod, node, u, known.split.staticFilters)) : undefined;
    const staticFailed = v !== undefined && v.reasons.length > 0;
    const failed = v ? (staticFailed ? v.reasons : runFilters(pod, node, u, known!.split.dynamicFilters)) : runFilters(pod, node, u, filters);
    if (failed.length > 0) {
      nodeReasons.set(name, failed);
      for (const r of staticFailed ? v.keys : new Set(failed.map(reasonKey))) reasons.set(r, (reasons.get(r) ?? 0) + 1);
      continue;
    }
    const score = v ? pointsOf((v.score ??= weightedSum(pod, node, u, known!.split.staticScorers)) + weightedSum(pod, node, u, known!.split.dynamicScorers)) : scoreNode(pod, node, u, scorers);
    feasible++;
    // Equal scores go to the lexically smallest name, so the same inputs always give the same node.
    if (!best || score > best.score || (score === best.score && name < best.name)) best = { name, score };
  }
  if (best) return { node: best.name, reasons, nodeReasons, message: '' };
  return { reasons, nodeReasons, message: formatMessage(nodes.length, reasons) };
}

/**
 * Chooses a node for one pod. If the pod itself is in `ctx.pods` (e.g. already bound and being
 * re-checked) it is left out of the usage so it does not compete with itself.
 */
export function place(pod: Pod, ctx: SchedulingContext, opts: PlaceOptions = {}): Placement {
  const self = podKey(pod);
  const usage = computeUsage({ nodes: ctx.nodes, pods: ctx.pods.filter((p) => podKey(p) !== self) });
  return decide(pod, ctx.nodes, usage, opts);
}

export interface BatchResult {
  pod: Pod;
  node?: string;
  message: string;
}

/*
 * Ranking a class of replicas (class-ranking.ts) is exact only while a placed pod changes the standing of
 * its own node alone, or of its zone's nodes alike. These checks read one node's pods, or nothing at all for
 * a pod without inter-pod terms in a fleet where no placed pod has any (rankableFleet); the two fleet-wide
 * scorers are handled by the ranking's tiers (spreading: the group's count on the node, and the node's zone)
 * or are 0 everywhere (inter-pod affinity, under the same conditions).
 */
const NODE_LOCAL_FILTERS: ReadonlySet<Filter> = new Set([nodePortsFilter, nodeDevicesFilter, nodeResourcesFitFilter, podAffinityFilter, podAntiAffinityFilter, existingPodsAntiAffinityFilter]);
const NODE_LOCAL_SCORERS: ReadonlySet<Scorer> = new Set([leastAllocated, balancedAllocation]);
const FLEET_SCORERS: ReadonlySet<Scorer> = new Set([interPodAffinityPreferred, topologySpread]);

function rankableChain(split: ChainSplit): boolean {
  return split.dynamicFilters.every((f) => NODE_LOCAL_FILTERS.has(f)) && split.dynamicScorers.every((x) => NODE_LOCAL_SCORERS.has(x) || FLEET_SCORERS.has(x));
}

/** No placed pod pulls or pushes others: one placement moves one node (and its zone's spreading score). */
function rankableFleet(cluster: ClusterIndex): boolean {
  return cluster.antiAffinityPods.length === 0 && cluster.scoringTermPods.length === 0;
}

/**
 * Pods with equal keys are interchangeable to every check: their static class, spreading group, requests,
 * host ports and devices. Undefined for a pod with inter-pod terms, whose placement moves other nodes.
 */
function rankKey(pod: Pod): string | undefined {
  const a = pod.spec.affinity;
  if (a?.podAffinity || a?.podAntiAffinity) return undefined;
  return `${podClass(pod)}\n${JSON.stringify([podGroupKey(pod) ?? null, podRequests(pod), podNonZeroRequests(pod), podHostPorts(pod), podDevices(pod)])}`;
}

/** At most this many classes are ranked in one batch. */
export const MAX_RANKED_CLASSES = 32;

/**
 * The classes worth a ranking: one costs a look at every node, then every node that takes a pod of the batch
 * (of any class) once more. So a class is ranked only when its pods would together look at twice the fleet
 * or more one by one, and only the MAX_RANKED_CLASSES largest: thousands of small Deployments pending at once
 * would otherwise cost a ranking each, and each of them every placement of the batch.
 */
function chooseRanked(keys: ReadonlyArray<string | undefined>, nodes: number, percentage?: number): ReadonlySet<string> {
  const count = new Map<string, number>();
  for (const k of keys) if (k !== undefined) count.set(k, (count.get(k) ?? 0) + 1);
  const least = Math.max(2, Math.ceil((2 * nodes) / Math.max(1, feasibleNodesToFind(nodes, percentage))));
  const worth = [...count].filter(([, n]) => n >= least).sort((a, b) => b[1] - a[1]);
  return new Set(worth.slice(0, MAX_RANKED_CLASSES).map(([k]) => k));
}

/** The fleet as a ranking of `pod`'s class sees it, answering as `decide` would for that pod. */
function rankedFleet(pod: Pod, nodes: readonly Node[], usage: Map<string, NodeUsage>, known: ClassAnswers): RankedFleet {
  const { staticFilters, dynamicFilters, staticScorers, dynamicScorers } = known.split;
  const localScorers = dynamicScorers.filter((x) => NODE_LOCAL_SCORERS.has(x));
  const group = podGroupKey(pod);
  const cluster = usage.get(nodes[0]!.metadata.name)!.cluster!;
  const at = (i: number) => {
    const node = nodes[i]!;
    const u = usage.get(node.metadata.name)!;
    const v = (known.verdicts[i] ??= staticVerdict(pod, node, u, staticFilters));
    return { node, u, v };
  };
  return {
    size: nodes.length,
    name: (i) => nodes[i]!.metadata.name,
    standing(i) {
      const { node, u, v } = at(i);
      if (v.reasons.length > 0 || runFilters(pod, node, u, dynamicFilters).length > 0) return undefined;
      // Micro-points (weightedSum): the tier's common part adds the same integer to each, so this order is the final one.
      const local = (v.score ??= weightedSum(pod, node, u, staticScorers)) + weightedSum(pod, node, u, localScorers);
      const name = node.metadata.name;
      const onNode = group === undefined ? 0 : (cluster.groups.get(group)?.byNode.get(name) ?? 0);
      // Spreading scores nodes alike by their count of the group and, in a zoned fleet, their zone's count; a
      // node without a zone there is its own zone, scored by its count alone (like every other such node).
      if (!cluster.zoned) return { local, tier: onNode };
      const zone = cluster.topologyValue(name, ZONE_LABEL);
      return { local, tier: zone === undefined ? `-\0${onNode}` : `z:${zone}\0${onNode}` };
    },
    score(i) {
      const { node, u, v } = at(i);
      return pointsOf((v.score ??= weightedSum(pod, node, u, staticScorers)) + weightedSum(pod, node, u, dynamicScorers));
    },
  };
}

/**
 * Places pods one by one in the given order, committing each placed pod to its node's usage so
 * later pods see it. Pods of the batch that also appear in `ctx.pods` are excluded from the initial
 * usage to avoid counting them twice. With `carry` the usage starts from the last batch's (usage-carry.ts).
 */
export function scheduleBatch(pods: Pod[], ctx: SchedulingContext, opts: PlaceOptions = {}, carry?: UsageCarry): BatchResult[] {
  const batch = new Set(pods.map(podKey));
  const usage = carry ? carry.usageFor(ctx.nodes, ctx.pods, batch) : computeUsage({ nodes: ctx.nodes, pods: ctx.pods.filter((p) => !batch.has(podKey(p))) });
  // Where the next decision starts looking: one node further each time, so the windows of a large fleet
  // slide over it and replicas spread over every node (moving on by the nodes examined, as kube-scheduler
  // does, left a tenth of 1,000 nodes empty while others got two of 1,000 replicas).
  let start = 0;
  // Answers are kept only for classes of two pods or more: 1,000 pods pinned one per node, each its own
  // class and each looking at every node, would otherwise hold a million of them until the batch ends.
  const podClasses = pods.map(podClass);
  const count = new Map<string, number>();
  for (const c of podClasses) count.set(c, (count.get(c) ?? 0) + 1);
  const split = splitChain(opts);
  const answers = new Map<string, ClassAnswers>();
  // Replicas are ranked when the chain and the fleet allow it (see rankableChain), every node has its usage
  // in the fleet's one index, and their class is among the largest of the batch (chooseRanked).
  const cluster = ctx.nodes.length > 0 ? usage.get(ctx.nodes[0]!.metadata.name)?.cluster : undefined;
  let rankable = cluster !== undefined && rankableChain(split) && ctx.nodes.every((n) => usage.get(n.metadata.name)?.cluster === cluster);
  const rankKeys = rankable ? pods.map(rankKey) : [];
  const ranked = chooseRanked(rankKeys, ctx.nodes.length, opts.percentageOfNodesToScore);
  const rankings = new Map<string, ClassRanking>();
  const changes: number[] = [];
  // Only a batch with a ranked class logs which nodes took pods (a lone pod's pass builds no index of the fleet).
  const index = ranked.size > 0 ? new Map(ctx.nodes.map((n, i) => [n.metadata.name, i])) : undefined;
  return pods.map((pod, j) => {
    const c = podClasses[j]!;
    let known = answers.get(c);
    if (!known && count.get(c)! > 1) answers.set(c, (known = { split, verdicts: new Array(ctx.nodes.length) }));
    // A pod with inter-pod terms placed earlier in the batch ends ranking for the rest of it.
    rankable &&= rankableFleet(cluster!);
    const k = rankable ? rankKeys[j] : undefined;
    let node: string | undefined;
    let message = '';
    if (k !== undefined && known && ranked.has(k)) {
      let ranking = rankings.get(k);
      if (!ranking) rankings.set(k, (ranking = new ClassRanking(rankedFleet(pod, ctx.nodes, usage, known), changes)));
      const i = ranking.best();
      if (i !== undefined) node = ctx.nodes[i]!.metadata.name;
    }
    // Unranked, or ranked and fitting nowhere: the full decision (which also words the reasons).
    if (node === undefined) {
      const d = decide(pod, ctx.nodes, usage, opts, start, known);
      node = d.node;
      message = d.message;
    }
    start = (start + 1) % Math.max(1, ctx.nodes.length);
    if (node !== undefined) {
      if (carry) carry.placed(pod, node);
      else addPod(usage.get(node)!, pod);
      if (index) changes.push(index.get(node)!);
    }
    return node !== undefined ? { pod, node, message } : { pod, message };
  });
}
