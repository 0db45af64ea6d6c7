/**
 * Scorers rank the nodes that passed every filter. Each returns 0..100 (higher is better); a node's
 * final score is the weighted sum. Pure functions of pod, node and the node's current usage.
 */
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { interPodAffinityScore, preferredNodeAffinityScore } from './affinity.js';
import { podGroupKey, ZONE_LABEL } from './cluster.js';
import { clusterOf, type NodeUsage, podNonZeroRequests } from './filters.js';
import { untoleratedTaints } from './taints.js';

export interface Scorer {
  name: string;
  weight: number;
  score(pod: Pod, node: Node, usage: NodeUsage): number;
}

/** Fraction (0..1) of `cap` used once the pod is added; a node with no capacity counts as full. */
function usedFraction(used: number, cap: number): number {
  if (cap <= 0) return 1;
  return Math.min(1, used / cap);
}

/**
 * What the pod adds to a node for scoring, once per pod and decision. Uses non-zero requests so pods
 * that request nothing still make a node look fuller, otherwise they would all pile onto one node.
 */
function scoringRequests(pod: Pod, node: Node, usage: NodeUsage): { cpu: number; memory: number } {
  return clusterOf(usage, node).cached(pod, 'nonZeroRequests', podNonZeroRequests);
}

/*
 * The two resource scorers below work out the fractions of cpu and memory in use if the pod lands
 * here in local variables: a { cpu, memory } object per node scored was, with the closures of the
 * per-pod caches, most of what a placement allocated (5,000 pods × 420 nodes).
 */

/** Prefer the node with the most free cpu and memory (mean free fraction), which spreads load. */
export const leastAllocated: Scorer = {
  name: 'LeastAllocated',
  weight: 1,
  score(pod, node, usage) {
    const alloc = usage.allocatable;
    if (!alloc) return 0;
    const r = scoringRequests(pod, node, usage);
    const cpu = usedFraction(usage.nonZeroRequested.cpu + r.cpu, alloc.cpu);
    const memory = usedFraction(usage.nonZeroRequested.memory + r.memory, alloc.memory);
    return ((1 - cpu + (1 - memory)) / 2) * 100;
  },
};

/**
 * Prefer nodes whose cpu and memory use stay close to each other, so a node does not end up with
 * all its cpu taken and memory stranded (or the reverse). For two resources the standard deviation
 * is half their difference.
 */
export const balancedAllocation: Scorer = {
  name: 'BalancedAllocation',
  weight: 1,
  score(pod, node, usage) {
    const alloc = usage.allocatable;
    if (!alloc) return 0;
    const r = scoringRequests(pod, node, usage);
    const cpu = usedFraction(usage.nonZeroRequested.cpu + r.cpu, alloc.cpu);
    const memory = usedFraction(usage.nonZeroRequested.memory + r.memory, alloc.memory);
    return (1 - Math.abs(cpu - memory) / 2) * 100;
  },
};

/**
 * Reduces an image reference to the form podman lists (`docker.io/library/nginx:latest`), so
 * `nginx` in a pod spec matches what the node reports.
 */
export function normalizeImage(ref: string): string {
  const known = normalized.get(ref);
  if (known !== undefined) return known;
  const name = normalizeImageUncached(ref);
  // A fleet runs few distinct images: the table stays small; a flood of distinct names only stops it growing.
  if (normalized.size < NORMALIZED_MAX) normalized.set(ref, name);
  return name;
}

const NORMALIZED_MAX = 4096;
const normalized = new Map<string, string>();

function normalizeImageUncached(ref: string): string {
  let name = ref.trim();
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  // The first path component is a registry only if it looks like a host (dot, port or localhost).
  const hasRegistry = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasRegistry) name = slash === -1 ? `docker.io/library/${name}` : `docker.io/${name}`;
  const lastSlash = name.lastIndexOf('/');
  const tail = name.slice(lastSlash + 1);
  if (!tail.includes(':') && !tail.includes('@')) name = `${name}:latest`;
  return name;
}

/**
 * A node's images as a set of normalized names. Nodes from the object cache are frozen: their set is made once,
 * not once per pod scored (5,000 pods × 420 nodes a placement).
 */
const imageSets = new WeakMap<readonly string[], Set<string>>();
function nodeImageSet(images: readonly string[]): Set<string> {
  let set = imageSets.get(images);
  if (set) return set;
  set = new Set(images.map(normalizeImage));
  if (Object.isFrozen(images)) imageSets.set(images, set);
  return set;
}

/** The pod's image names normalized, once per pod and decision. */
function podImages(pod: Pod): string[] {
  return pod.spec.containers.map((c) => normalizeImage(c.image));
}

/**
 * Prefer nodes that already hold the pod's images: on edge links a pull can take minutes. Scored
 * as the fraction of containers whose image is present. Weighted low so it decides between nodes
 * of similar load rather than piling every replica onto the one node that pulled the image first.
 */
export const imageLocality: Scorer = {
  name: 'ImageLocality',
  weight: 0.2,
  score(pod, node, usage) {
    const images = node.status?.images;
    if (!images || images.length === 0) return 0;
    const have = nodeImageSet(images);
    // The pod's names normalized once per decision, not once per node scored.
    const wanted = clusterOf(usage, node).cached(pod, 'images', podImages);
    let present = 0;
    for (const w of wanted) if (have.has(w)) present++;
    return (present / wanted.length) * 100;
  },
};

/**
 * Preferred node affinity: the weights of the preference terms this node matches, as a share of
 * all the pod's preference weights. A pod without preferences scores 0 everywhere.
 */
export const nodeAffinityPreferred: Scorer = {
  name: 'NodeAffinityPreferred',
  weight: 2,
  score(pod, node) {
    const { matched, total } = preferredNodeAffinityScore(pod, node);
    return total > 0 ? (matched / total) * 100 : 0;
  },
};

/**
 * Preferred pod affinity and anti-affinity (and, symmetrically, existing pods' preferences and
 * required affinity toward this pod): summed weights per topology domain, min-max normalized over
 * the fleet so the most attractive domain scores 100 and the most repellent 0.
 */
export const interPodAffinityPreferred: Scorer = {
  name: 'InterPodAffinity',
  weight: 2,
  score(pod, node, usage) {
    return interPodAffinityScore(pod, node.metadata.name, clusterOf(usage, node));
  },
};

/** How much one more group pod on the node itself weighs against one more in its zone. */
const NODE_IN_ZONE_FACTOR = 0.5;

/**
 * Spreads replicas of one group (same first ownerReference, else same labels) across zones when
 * the fleet's nodes carry topology.kubernetes.io/zone, else across nodes: the fewer group pods
 * already in the node's domain, the higher the score. With zones the node's own count still
 * counts at half weight, so within a zone replicas go to different nodes, but zone balance comes
 * first (a zone one short beats a fresh node in a fuller zone); a node without a zone label is its
 * own zone. Score = 100 × (1 − load / max load), so the emptiest domain gets 100. Weighted above
 * the resource scorers so a 10-replica group over 5 zones lands 2/2/2/2/2 even when the zones
 * differ in size. Pods that belong to no group score 0 everywhere.
 */
export const topologySpread: Scorer = {
  name: 'TopologySpread',
  weight: 2,
  score(pod, node, usage) {
    const key = podGroupKey(pod);
    if (key === undefined) return 0;
    const cluster = clusterOf(usage, node);
    const g = cluster.groups.get(key);
    if (!g) return 100;
    const name = node.metadata.name;
    const onNode = g.byNode.get(name) ?? 0;
    let load = onNode;
    let maxLoad = g.maxNode;
    if (cluster.zoned) {
      const zone = cluster.topologyValue(name, ZONE_LABEL);
      load = (zone === undefined ? onNode : (g.byZone.get(zone) ?? 0)) + NODE_IN_ZONE_FACTOR * onNode;
      maxLoad = Math.max(g.maxZone, g.maxNode) + NODE_IN_ZONE_FACTOR * g.maxNode;
    }
    return maxLoad === 0 ? 100 : (1 - load / maxLoad) * 100;
  },
};

/**
 * PreferNoSchedule taints the pod does not tolerate cost score: 100 with none, 50 with one, 33 with
 * two... Weighted so an untainted node of similar load always wins.
 */
export const taintTolerationPreferred: Scorer = {
  name: 'TaintToleration',
  weight: 3,
  score(pod, node) {
    return 100 / (1 + untoleratedTaints(pod, node, ['PreferNoSchedule']).length);
  },
};

export const defaultScorers: readonly Scorer[] = [
  leastAllocated,
  balancedAllocation,
  imageLocality,
  nodeAffinityPreferred,
  interPodAffinityPreferred,
  topologySpread,
  taintTolerationPreferred,
];

/**
 * Weighted sum of some scorers, each clamped to 0..100, in micro-points: each scorer's part is rounded to an
 * integer count of 1e-6 points before it is added. Integer sums are exact in any order and any grouping, so a
 * node's score is the same whether its scorers are summed in one go, split into static and dynamic parts
 * (place.ts), or ranked by parts (class-ranking.ts), and nodes equal on paper compare equal despite
 * floating-point noise (their ties then fall to the deterministic name order).
 */
export function weightedSum(pod: Pod, node: Node, usage: NodeUsage, scorers: readonly Scorer[]): number {
  let total = 0;
  for (const s of scorers) total += Math.round(s.weight * Math.max(0, Math.min(100, s.score(pod, node, usage))) * 1e6);
  return total;
}

/** Micro-points (weightedSum, or a sum of them) as points: exact to 1e-6, in the same order. */
export function pointsOf(microPoints: number): number {
  return microPoints / 1e6;
}

/** Weighted sum of all scorers, in points (to 1e-6). */
export function scoreNode(pod: Pod, node: Node, usage: NodeUsage, scorers: readonly Scorer[] = defaultScorers): number {
  return pointsOf(weightedSum(pod, node, usage, scorers));
}
