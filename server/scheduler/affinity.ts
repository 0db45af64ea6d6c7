/**
 * Node affinity (nodeSelector, required/preferred nodeSelectorTerms) and inter-pod affinity and
 * anti-affinity, with Kubernetes semantics. Matching helpers are pure; the inter-pod state for one
 * incoming pod is computed once against the `ClusterIndex` and cached until the index changes.
 */
import type { Node } from '../../src/api/node.js';
import type { NodeSelectorTerm, Pod, PodAffinityTerm } from '../../src/api/pod.js';
import { selectorMatches } from '../../src/api/selector.js';
import { type ClusterIndex, podNamespace } from './cluster.js';

export type NodeSelectorRequirement = NonNullable<NodeSelectorTerm['matchExpressions']>[number];

/** Labels that pin a CPU architecture (the beta one is still set by older tooling). */
export const ARCH_LABELS: readonly string[] = ['kubernetes.io/arch', 'beta.kubernetes.io/arch'];

const isArchKey = (k: string): boolean => ARCH_LABELS.includes(k);

/** Kubernetes integer parsing for Gt/Lt: a plain base-10 integer, nothing else. */
function parseIntStrict(s: string | undefined): number | undefined {
  if (s === undefined || !/^[-+]?\d+$/.test(s.trim())) return undefined;
  const n = Number(s.trim());
  return Number.isSafeInteger(n) ? n : undefined;
}

/** One requirement against a label (or field) map. */
export function requirementMatches(req: NodeSelectorRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, req.key);
  const value = has ? labels[req.key] : undefined;
  const values = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return has && values.includes(value!);
    case 'NotIn':
      return !has || !values.includes(value!);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      // Exactly one value, and both sides must be integers; anything else never matches.
      if (!has || values.length !== 1) return false;
      const have = parseIntStrict(value);
      const want = parseIntStrict(values[0]);
      if (have === undefined || want === undefined) return false;
      return req.operator === 'Gt' ? have > want : have < want;
    }
    default:
      return false;
  }
}

/** The node fields matchFields may name. Kubernetes supports only `metadata.name`. */
function nodeFields(node: Node): Record<string, string> {
  return { 'metadata.name': node.metadata.name };
}

/**
 * A term matches when all its matchExpressions (on labels) and matchFields (on fields) do. An
 * empty term matches no node, as in Kubernetes.
 */
export function nodeSelectorTermMatches(term: NodeSelectorTerm, node: Node): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  const labels = node.metadata.labels ?? {};
  for (const r of exprs) if (!requirementMatches(r, labels)) return false;
  if (fields.length > 0) {
    const f = nodeFields(node);
    for (const r of fields) if (!requirementMatches(r, f)) return false;
  }
  return true;
}

/** Terms are ORed: one matching term is enough. */
export function nodeSelectorTermsMatch(terms: readonly NodeSelectorTerm[], node: Node): boolean {
  return terms.some((t) => nodeSelectorTermMatches(t, node));
}

/** Human phrase for what an arch requirement accepts: "arm64", "arm64 or arm", "not amd64". */
function describeArch(req: NodeSelectorRequirement): string {
  const v = req.values ?? [];
  switch (req.operator) {
    case 'In':
      return v.join(' or ');
    case 'NotIn':
      return `not ${v.join('/')}`;
    case 'Exists':
      return 'an arch label';
    case 'DoesNotExist':
      return 'no arch label';
    default:
      return `${req.operator} ${v.join(',')}`;
  }
}

export type NodeMatch = { ok: true } | { ok: false; arch?: string };

/**
 * pod.spec.nodeSelector against a node. When the arch label is what fails, says which arch the
 * pod needs (`arch: 'arm64'`), so the caller can report the more useful arch reason.
 */
export function matchNodeSelector(pod: Pod, node: Node): NodeMatch {
  const sel = pod.spec.nodeSelector;
  if (!sel) return { ok: true };
  const labels = node.metadata.labels ?? {};
  let failed = false;
  for (const [k, v] of Object.entries(sel)) {
    if (Object.hasOwn(labels, k) && labels[k] === v) continue;
    if (isArchKey(k)) return { ok: false, arch: v };
    failed = true;
  }
  return failed ? { ok: false } : { ok: true };
}

/**
 * Required node affinity against a node. The failure is put down to arch when every term has an
 * arch requirement this node fails: then no other label could have made the node eligible.
 */
export function matchRequiredNodeAffinity(pod: Pod, node: Node): NodeMatch {
  const terms = pod.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
  if (!terms || terms.length === 0) return { ok: true };
  if (nodeSelectorTermsMatch(terms, node)) return { ok: true };
  const labels = node.metadata.labels ?? {};
  const wants: string[] = [];
  for (const t of terms) {
    const failingArch = (t.matchExpressions ?? []).filter((r) => isArchKey(r.key) && !requirementMatches(r, labels));
    if (failingArch.length === 0) return { ok: false };
    for (const r of failingArch) {
      const d = describeArch(r);
      if (!wants.includes(d)) wants.push(d);
    }
  }
  return { ok: false, arch: wants.join(' or ') };
}

/** Sum of the weights of the preferred node-affinity terms the node matches, and their total. */
export function preferredNodeAffinityScore(pod: Pod, node: Node): { matched: number; total: number } {
  const prefs = pod.spec.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution;
  let matched = 0;
  let total = 0;
  for (const p of prefs ?? []) {
    total += p.weight;
    if (nodeSelectorTermMatches(p.preference, node)) matched += p.weight;
  }
  return { matched, total };
}

// ---------------------------------------------------------------------------------------------
// Inter-pod affinity
// ---------------------------------------------------------------------------------------------

/**
 * Does `term` (declared by a pod in `ownerNs`) select `pod`? The pod must be in one of the term's
 * namespaces (default: the declaring pod's own) and match its labelSelector. A term without a
 * labelSelector selects nothing, as in Kubernetes (an empty selector `{}` selects everything).
 */
export function termMatchesPod(term: PodAffinityTerm, ownerNs: string, pod: Pod): boolean {
  if (!term.labelSelector) return false;
  const nss = term.namespaces && term.namespaces.length > 0 ? term.namespaces : [ownerNs];
  if (!nss.includes(podNamespace(pod))) return false;
  return selectorMatches(term.labelSelector, pod.metadata.labels);
}

function termNamespaces(term: PodAffinityTerm, ownerNs: string): Set<string> {
  return new Set(term.namespaces && term.namespaces.length > 0 ? term.namespaces : [ownerNs]);
}

/** topologyKey → topology value → count (or weight). */
type PairCounts = Map<string, Map<string, number>>;

function bump(m: PairCounts, key: string, value: string, by: number): void {
  let inner = m.get(key);
  if (!inner) m.set(key, (inner = new Map()));
  inner.set(value, (inner.get(value) ?? 0) + by);
}

function pairCount(m: PairCounts, key: string, value: string | undefined): number {
  return value === undefined ? 0 : (m.get(key)?.get(value) ?? 0);
}

/** Everything the required inter-pod filters need to know about one incoming pod. */
export interface InterPodFilterState {
  affinityTerms: PodAffinityTerm[];
  /** Domains holding a pod that matches all of the incoming pod's affinity terms. */
  affinityCounts: PairCounts;
  /** No pod anywhere matches; the incoming pod may then be the first of its group. */
  affinityNoneAnywhere: boolean;
  selfMatchesAffinity: boolean;
  antiAffinityTerms: PodAffinityTerm[];
  /** Domains holding a pod that one of the incoming pod's anti-affinity terms selects. */
  antiAffinityCounts: PairCounts;
  /** Domains where an existing pod's anti-affinity term selects the incoming pod. */
  existingAntiAffinityCounts: PairCounts;
}

const EMPTY_FILTER_STATE: InterPodFilterState = {
  affinityTerms: [],
  affinityCounts: new Map(),
  affinityNoneAnywhere: true,
  selfMatchesAffinity: true,
  antiAffinityTerms: [],
  antiAffinityCounts: new Map(),
  existingAntiAffinityCounts: new Map(),
};

function computeFilterState(pod: Pod, cluster: ClusterIndex): InterPodFilterState {
  const ns = podNamespace(pod);
  const affinityTerms = pod.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
  const antiAffinityTerms = pod.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
  if (affinityTerms.length === 0 && antiAffinityTerms.length === 0 && cluster.antiAffinityPods.length === 0) return EMPTY_FILTER_STATE;

  const affinityCounts: PairCounts = new Map();
  if (affinityTerms.length > 0) {
    // Candidates must satisfy every term; the first term's namespaces bound the scan.
    const first = affinityTerms[0]!;
    for (const e of cluster.candidates(first.labelSelector, termNamespaces(first, ns))) {
      if (!affinityTerms.every((t) => termMatchesPod(t, ns, e.pod))) continue;
      for (const t of affinityTerms) {
        const v = cluster.topologyValue(e.node, t.topologyKey);
        if (v !== undefined) bump(affinityCounts, t.topologyKey, v, 1);
      }
    }
  }

  const antiAffinityCounts: PairCounts = new Map();
  for (const t of antiAffinityTerms) {
    for (const e of cluster.candidates(t.labelSelector, termNamespaces(t, ns))) {
      if (!termMatchesPod(t, ns, e.pod)) continue;
      const v = cluster.topologyValue(e.node, t.topologyKey);
      if (v !== undefined) bump(antiAffinityCounts, t.topologyKey, v, 1);
    }
  }

  const existingAntiAffinityCounts: PairCounts = new Map();
  for (const { entry: e, term: t } of cluster.antiAffinityTermsFor(pod)) {
    if (!termMatchesPod(t, e.namespace, pod)) continue;
    const v = cluster.topologyValue(e.node, t.topologyKey);
    if (v !== undefined) bump(existingAntiAffinityCounts, t.topologyKey, v, 1);
  }

  return {
    affinityTerms,
    affinityCounts,
    affinityNoneAnywhere: affinityCounts.size === 0,
    selfMatchesAffinity: affinityTerms.every((t) => termMatchesPod(t, ns, pod)),
    antiAffinityTerms,
    antiAffinityCounts,
    existingAntiAffinityCounts,
  };
}

export function interPodFilterState(pod: Pod, cluster: ClusterIndex): InterPodFilterState {
  return cluster.cached(pod, 'interPodFilter', computeFilterState);
}

/**
 * Required pod affinity: the node must carry every term's topologyKey, and each of those domains
 * must hold a pod matching all terms. Kubernetes' special case: when no such pod exists anywhere
 * and the incoming pod matches its own terms, it is the first of its group and may go anywhere
 * that has the topology labels.
 */
export function satisfiesPodAffinity(s: InterPodFilterState, node: string, cluster: ClusterIndex): boolean {
  if (s.affinityTerms.length === 0) return true;
  let podsExist = true;
  for (const t of s.affinityTerms) {
    const v = cluster.topologyValue(node, t.topologyKey);
    if (v === undefined) return false;
    if (pairCount(s.affinityCounts, t.topologyKey, v) <= 0) podsExist = false;
  }
  if (podsExist) return true;
  return s.affinityNoneAnywhere && s.selfMatchesAffinity;
}

/** Required anti-affinity: no selected pod in the node's domain. A node without the key never conflicts. */
export function satisfiesPodAntiAffinity(s: InterPodFilterState, node: string, cluster: ClusterIndex): boolean {
  for (const t of s.antiAffinityTerms) {
    if (pairCount(s.antiAffinityCounts, t.topologyKey, cluster.topologyValue(node, t.topologyKey)) > 0) return false;
  }
  return true;
}

/** Symmetry: no existing pod whose anti-affinity selects the incoming pod shares a domain with the node. */
export function satisfiesExistingPodsAntiAffinity(s: InterPodFilterState, node: string, cluster: ClusterIndex): boolean {
  if (s.existingAntiAffinityCounts.size === 0) return true;
  for (const [key, values] of s.existingAntiAffinityCounts) {
    const v = cluster.topologyValue(node, key);
    if (v !== undefined && (values.get(v) ?? 0) > 0) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Preferred inter-pod affinity (scoring)
// ---------------------------------------------------------------------------------------------

/** kube-scheduler's hardPodAffinityWeight: how much an existing pod's required affinity attracts. */
export const HARD_POD_AFFINITY_WEIGHT = 1;

export interface InterPodScoreState {
  /** topologyKey → value → summed weight (affinity positive, anti-affinity negative). */
  weights: PairCounts;
  /** Raw score range over the known nodes, for normalizing to 0..100. */
  min: number;
  max: number;
}

const EMPTY_SCORE_STATE: InterPodScoreState = { weights: new Map(), min: 0, max: 0 };

function rawInterPodScore(weights: PairCounts, node: string, cluster: ClusterIndex): number {
  let sum = 0;
  for (const [key, values] of weights) {
    const v = cluster.topologyValue(node, key);
    if (v !== undefined) sum += values.get(v) ?? 0;
  }
  return sum;
}

function computeScoreState(pod: Pod, cluster: ClusterIndex): InterPodScoreState {
  const ns = podNamespace(pod);
  const aff = pod.spec.affinity;
  const prefAff = aff?.podAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
  const prefAnti = aff?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
  if (prefAff.length === 0 && prefAnti.length === 0 && cluster.scoringTermPods.length === 0) return EMPTY_SCORE_STATE;

  const weights: PairCounts = new Map();
  // The incoming pod's own preferences: every matching pod in a domain adds (or removes) weight.
  const own = (terms: typeof prefAff, sign: number): void => {
    for (const { weight, podAffinityTerm: t } of terms) {
      for (const e of cluster.candidates(t.labelSelector, termNamespaces(t, ns))) {
        if (!termMatchesPod(t, ns, e.pod)) continue;
        const v = cluster.topologyValue(e.node, t.topologyKey);
        if (v !== undefined) bump(weights, t.topologyKey, v, sign * weight);
      }
    }
  };
  own(prefAff, 1);
  own(prefAnti, -1);
  // Symmetry: existing pods whose terms select the incoming pod pull it toward (or push it away
  // from) their own domain.
  for (const e of cluster.scoringTermPods) {
    const a = e.pod.spec.affinity;
    const add = (t: PodAffinityTerm, w: number): void => {
      if (!termMatchesPod(t, e.namespace, pod)) return;
      const v = cluster.topologyValue(e.node, t.topologyKey);
      if (v !== undefined) bump(weights, t.topologyKey, v, w);
    };
    for (const t of a?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []) add(t, HARD_POD_AFFINITY_WEIGHT);
    for (const p of a?.podAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []) add(p.podAffinityTerm, p.weight);
    for (const p of a?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []) add(p.podAffinityTerm, -p.weight);
  }
  if (weights.size === 0) return EMPTY_SCORE_STATE;
  let min = Infinity;
  let max = -Infinity;
  for (const node of cluster.nodeLabels.keys()) {
    const s = rawInterPodScore(weights, node, cluster);
    if (s < min) min = s;
    if (s > max) max = s;
  }
  return { weights, min, max };
}

/** Preferred inter-pod affinity for one node, min-max normalized over the fleet to 0..100. */
export function interPodAffinityScore(pod: Pod, node: string, cluster: ClusterIndex): number {
  const s = cluster.cached(pod, 'interPodScore', computeScoreState);
  if (s.max === s.min) return 0;
  const raw = rawInterPodScore(s.weights, node, cluster);
  return ((raw - s.min) / (s.max - s.min)) * 100;
}
