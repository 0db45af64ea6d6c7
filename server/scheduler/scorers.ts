/**
 * Scorers rank the nodes that passed every filter. Each returns 0..100 (higher is better); a node's
 * final score is the weighted sum. Pure functions of pod, node and the node's current usage.
 */
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { type NodeUsage, podNonZeroRequests } from './filters.js';

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
 * Fractions of cpu and memory in use if the pod lands here. Uses non-zero requests so pods that
 * request nothing still make a node look fuller, otherwise they would all pile onto one node.
 */
function fractionsAfter(pod: Pod, usage: NodeUsage): { cpu: number; memory: number } | undefined {
  const alloc = usage.allocatable;
  if (!alloc) return undefined;
  const r = podNonZeroRequests(pod);
  return {
    cpu: usedFraction(usage.nonZeroRequested.cpu + r.cpu, alloc.cpu),
    memory: usedFraction(usage.nonZeroRequested.memory + r.memory, alloc.memory),
  };
}

/** Prefer the node with the most free cpu and memory (mean free fraction), which spreads load. */
export const leastAllocated: Scorer = {
  name: 'LeastAllocated',
  weight: 1,
  score(pod, _node, usage) {
    const f = fractionsAfter(pod, usage);
    if (!f) return 0;
    return ((1 - f.cpu + (1 - f.memory)) / 2) * 100;
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
  score(pod, _node, usage) {
    const f = fractionsAfter(pod, usage);
    if (!f) return 0;
    return (1 - Math.abs(f.cpu - f.memory) / 2) * 100;
  },
};

/**
 * Reduces an image reference to the form podman lists (`docker.io/library/nginx:latest`), so
 * `nginx` in a pod spec matches what the node reports.
 */
export function normalizeImage(ref: string): string {
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
 * Prefer nodes that already hold the pod's images: on edge links a pull can take minutes. Scored
 * as the fraction of containers whose image is present. Weighted low so it decides between nodes
 * of similar load rather than piling every replica onto the one node that pulled the image first.
 */
export const imageLocality: Scorer = {
  name: 'ImageLocality',
  weight: 0.2,
  score(pod, node) {
    const images = node.status?.images;
    if (!images || images.length === 0) return 0;
    const have = new Set(images.map(normalizeImage));
    const containers = pod.spec.containers;
    const present = containers.filter((c) => have.has(normalizeImage(c.image))).length;
    return (present / containers.length) * 100;
  },
};

export const defaultScorers: readonly Scorer[] = [leastAllocated, balancedAllocation, imageLocality];

/**
 * Weighted sum of all scorers. Rounded to 1e-6 so nodes that are equal on paper compare equal
 * despite floating-point noise, and ties then fall to the deterministic name order.
 */
export function scoreNode(pod: Pod, node: Node, usage: NodeUsage, scorers: readonly Scorer[] = defaultScorers): number {
  let total = 0;
  for (const s of scorers) total += s.weight * Math.max(0, Math.min(100, s.score(pod, node, usage)));
  return Math.round(total * 1e6) / 1e6;
}
