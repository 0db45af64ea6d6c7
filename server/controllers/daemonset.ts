/**
 * DaemonSet controller: one pod per eligible node. Pods are bound directly (spec.nodeName set), so
 * the scheduler never sees them; node eligibility reuses the scheduler's feasibility filters minus
 * the ones Kubernetes' DaemonSet controller ignores (Ready, Unschedulable, resource fit).
 *
 * `planDaemonSet` is the pure decision (tested with plain values); the controller only does I/O.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, jsonEqual } from '../../src/util/canonical-json.js';
import { isNotFound } from '../../src/util/errors.js';
import { CONTROLLER_REVISION_HASH, podTemplateHash } from '../../src/api/revisions.js';
import type { Node } from '../../src/api/node.js';
import type { Pod, Toleration } from '../../src/api/pod.js';
import type { PodTemplate } from '../../src/api/template.js';
import { resolveIntOrPercent } from '../../src/api/template.js';
import type { DaemonSet } from '../../src/api/workloads.js';
import { eligibilityFilters, emptyUsage, type Filter, isTerminated, type NodeUsage, podHostPorts, runFilters } from '../scheduler/filters.js';
import { computeUsage } from '../scheduler/place.js';
import { isKind } from '../store/types.js';
import type { ControllerDeps } from './deps.js';
import { isOwnedBy, newOwnedPod, podReady, podWriter, readyCondition } from './pods.js';
import { type Controller, ownerKeys, splitKey } from './runner.js';
import { validStored } from './valid-stored.js';
import { PodWriteSteps, slowStartBatches } from './still-wanted.js';
import { planWaves, type WaveEvent, type WavePlan, type WaveNodeInput } from './waves.js';
import { rolloutMoved, saveWaveProgress } from './wave-progress.js';
import { NO_IMAGES, type ImageCatalog } from '../desired/image-catalog.js';
import { GatedIndex, IMAGE_FETCH_FAILED, IMAGE_GATE_RECHECK_MS, imageGate, isGated, prefetchValue, servedImages, setPrefetch, withPrefetch } from './image-gate.js';

/** Label carrying the hash of the template a pod was made from (Kubernetes' name for it). */
export const REVISION_LABEL = CONTROLLER_REVISION_HASH;

export type DaemonSetStatus = NonNullable<DaemonSet['status']>;

/** Scheduler filters a DaemonSet pod never has to pass (as in Kubernetes). */
const IGNORED_FILTERS = new Set(['NodeReady', 'NodeUnschedulable', 'NodeResourcesFit']);

/**
 * The filters deciding where a daemon pod belongs: the scheduler's `eligibilityFilters` (selector,
 * node affinity, taints, host ports, devices), or a given chain minus readiness, cordoning and
 * resource fit.
 */
export function daemonSetFilters(filters?: readonly Filter[]): Filter[] {
  return filters ? filters.filter((f) => !IGNORED_FILTERS.has(f.name)) : [...eligibilityFilters];
}

/**
 * Tolerations Kubernetes adds to every daemon pod, so a daemon keeps running on nodes that are
 * not ready, unreachable, under pressure or cordoned.
 */
export function daemonTolerations(spec: Pod['spec']): Toleration[] {
  const add: Toleration[] = [
    { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
    { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
    { key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' },
  ];
  if (spec.hostNetwork) add.push({ key: 'node.kubernetes.io/network-unavailable', operator: 'Exists', effect: 'NoSchedule' });
  const out = [...(spec.tolerations ?? [])];
  for (const t of add) if (!out.some((o) => o.key === t.key && o.effect === t.effect)) out.push(t);
  return out;
}

/** ms until a ready pod counts as available (0 = available now); undefined when not ready at all. */
function availableIn(p: Pod, minReadySeconds: number, now: number): number | undefined {
  const c = readyCondition(p);
  if (c?.status !== 'True') return undefined;
  if (minReadySeconds <= 0) return 0;
  const since = c.lastTransitionTime ? Date.parse(c.lastTransitionTime) : NaN;
  if (!Number.isFinite(since)) return 0;
  return Math.max(0, since + minReadySeconds * 1000 - now);
}

/**
 * The pod a DaemonSet would run on `node` (name left empty; the controller fills it in), from its
 * template or (a waved rollout's stable revision) from `template`.
 */
export function newDaemonPod(ds: DaemonSet, nodeName: string, hash = podTemplateHash(ds.spec.template), now = Date.now(), template: PodTemplate = ds.spec.template): Pod {
  const pod = newOwnedPod(template, { apiVersion: 'apps/v1', kind: 'DaemonSet', name: ds.metadata.name, namespace: ds.metadata.namespace, uid: ds.metadata.uid }, { [REVISION_LABEL]: hash });
  return {
    ...pod,
    spec: { ...pod.spec, nodeName, tolerations: daemonTolerations(pod.spec) },
    status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: new Date(now).toISOString() }] },
  };
}

export interface NodeFit {
  /** A new daemon pod may be placed on the node. */
  shouldRun: boolean;
  /** A daemon pod already there may stay (only NoExecute taints or a node that stopped matching evict). */
  shouldContinueRunning: boolean;
  /** Why not, when !shouldRun. */
  reasons: readonly string[];
}

/**
 * Does this DaemonSet belong on this node? `usage` must leave out the DaemonSet's own pods, so its
 * host ports do not collide with themselves.
 */
export function nodeShouldRunDaemonPod(ds: DaemonSet, node: Node, usage = emptyUsage(node), filters: readonly Filter[] = daemonSetFilters(), probe: Pod = newDaemonPod(ds, '', 'x', 0)): NodeFit {
  // One probe pod per plan, placed on each node in turn (building it per node was a tenth of a plan).
  const pod: Pod = { ...probe, spec: { ...probe.spec, nodeName: node.metadata.name } };
  const reasons = runFilters(pod, node, usage, filters);
  if (reasons.length === 0) return { shouldRun: true, shouldContinueRunning: true, reasons };
  // A running daemon is only evicted by what would evict any running pod: a NoExecute taint it
  // does not tolerate, or a node that no longer matches its selector or affinity. NoSchedule taints
  // and host ports taken meanwhile only keep new pods away.
  const taints = (node.spec?.taints ?? []).filter((t) => t.effect === 'NoExecute');
  const stay: Node = { ...node, spec: { ...node.spec, taints } };
  const cont = runFilters(pod, stay, emptyUsage(node), filters.filter((f) => f.name !== 'NodePorts'));
  return { shouldRun: false, shouldContinueRunning: cont.length === 0, reasons };
}

export interface DaemonSetPlan {
  hash: string;
  /** Nodes that get a new pod from the current template. */
  create: string[];
  /** Pods to delete, with why (for logs). */
  delete: Array<{ pod: Pod; reason: string }>;
  status: DaemonSetStatus;
  /** Look again after this long (a ready pod turning available after minReadySeconds). */
  requeueAfterMs?: number;
  /** Waved rollout: nodes that get a new pod of the stable revision (not the current template). */
  createStable?: { hash: string; template: PodTemplate; nodes: string[] };
  /** Waved rollout: its decision (status.drover, rollback, events), when spec.drover.rollout is set. */
  waves?: Pick<WavePlan, 'drover' | 'rollback'> & { events: WaveEvent[] };
  /**
   * Old pods the rollout would stop but keeps, their node lacking a served image of the replacement
   * (image-gate.ts): each gets PREFETCH_ANNOTATION = `annotation`; `failure` when the node's transfer failed.
   */
  hold: HeldPod[];
  /**
   * Pods carrying PREFETCH_ANNOTATION that no rollout holds this pass, with what it should say now: removed
   * (undefined) when nothing is to replace the pod any more (the rollout was undone, its node left the wave);
   * the images of the template still to replace it otherwise (the pod waits for its turn).
   */
  reannotate: Array<{ pod: Pod; value?: string }>;
}

export interface HeldPod {
  pod: Pod;
  annotation: string;
  missing: string[];
  failure?: string;
}

function creationMs(p: Pod): number {
  const t = p.metadata.creationTimestamp ? Date.parse(p.metadata.creationTimestamp) : NaN;
  return Number.isFinite(t) ? t : 0;
}

/** Best first: updated, then available, then ready, then oldest (name breaks ties). */
function rankPods(pods: Pod[], hash: string, minReady: number, now: number): Pod[] {
  const score = (p: Pod) => (p.metadata.labels?.[REVISION_LABEL] === hash ? 4 : 0) + (availableIn(p, minReady, now) === 0 ? 2 : 0) + (podReady(p) ? 1 : 0);
  return [...pods].sort((a, b) => score(b) - score(a) || creationMs(a) - creationMs(b) || (a.metadata.name < b.metadata.name ? -1 : 1));
}

/**
 * The whole decision for one DaemonSet, given every node and every pod (all owners: other pods'
 * host ports count). Pure.
 */
export function planDaemonSet(ds: DaemonSet, nodes: readonly Node[], pods: readonly Pod[], opts: { now?: number; filters?: readonly Filter[]; images?: ImageCatalog } = {}): DaemonSetPlan {
  const now = opts.now ?? Date.now();
  const catalog = opts.images ?? NO_IMAGES;
  const filters = daemonSetFilters(opts.filters);
  const hash = podTemplateHash(ds.spec.template);
  const minReady = ds.spec.minReadySeconds ?? 0;
  const uid = ds.metadata.uid;
  const ns = ds.metadata.namespace ?? 'default';
  const isOwn = (p: Pod) => (p.metadata.namespace ?? 'default') === ns && isOwnedBy(p, uid);

  const own = pods.filter((p) => isOwn(p) && !p.metadata.deletionTimestamp);
  const probe = newDaemonPod(ds, '', 'x', 0);
  let unused: NodeUsage | undefined;
  // Of the default filters only host ports read what else runs on a node: without host ports the fleet's
  // usage (every pod of every node, a tenth of a plan at 6,000 pods) is not built at all.
  const usage = opts.filters || podHostPorts(probe).length > 0 ? computeUsage({ nodes: [...nodes], pods: pods.filter((p) => !isOwn(p)) }) : undefined;
  const byNode = new Map<string, Pod[]>();
  const del: DaemonSetPlan['delete'] = [];
  const nodeNames = new Set(nodes.map((n) => n.metadata.name));
  for (const p of own) {
    const n = p.spec.nodeName;
    if (!n || !nodeNames.has(n)) {
      del.push({ pod: p, reason: n ? `node ${n} no longer exists` : 'pod is not bound to a node' });
      continue;
    }
    byNode.set(n, [...(byNode.get(n) ?? []), p]);
  }

  const strategy = ds.spec.updateStrategy?.type ?? 'RollingUpdate';
  const create: string[] = [];
  const status: DaemonSetStatus = {
    desiredNumberScheduled: 0,
    currentNumberScheduled: 0,
    numberReady: 0,
    updatedNumberScheduled: 0,
    numberAvailable: 0,
    numberMisscheduled: 0,
    observedGeneration: ds.metadata.generation,
  };
  let requeue: number | undefined;
  const wake = (ms: number) => {
    if (ms > 0) requeue = requeue === undefined ? ms : Math.min(requeue, ms);
  };

  /** Nodes that should run the daemon, with the pod kept there (if any). */
  const wanted: Array<{ node: string; kept?: Pod; others: Pod[] }> = [];
  for (const node of [...nodes].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1))) {
    const name = node.metadata.name;
    // Without a usage map no filter reads usage: one shared empty one (building one per node was 5 % of a restart).
    const fit = nodeShouldRunDaemonPod(ds, node, usage ? (usage.get(name) ?? emptyUsage(node)) : (unused ??= emptyUsage(node)), filters, probe);
    const onNode = byNode.get(name) ?? [];
    if (!fit.shouldRun && onNode.length > 0) status.numberMisscheduled += 1;
    if (!fit.shouldContinueRunning) {
      for (const p of onNode) del.push({ pod: p, reason: `node ${name} no longer matches (${fit.reasons.join(', ')})` });
      continue;
    }
    // A daemon pod that terminated (it should never: restartPolicy Always) is replaced.
    const live: Pod[] = [];
    for (const p of onNode) {
      if (isTerminated(p)) del.push({ pod: p, reason: `pod ${p.status?.phase}` });
      else live.push(p);
    }
    if (!fit.shouldRun) continue;
    status.desiredNumberScheduled += 1;
    if (live.length === 0) {
      create.push(name);
      continue;
    }
    const [kept, ...others] = rankPods(live, hash, minReady, now);
    wanted.push({ node: name, kept, others });
    status.currentNumberScheduled += 1;
    if (podReady(kept!)) status.numberReady += 1;
    const avail = availableIn(kept!, minReady, now);
    if (avail === 0) status.numberAvailable += 1;
    else if (avail !== undefined) wake(avail + 100);
    if (kept!.metadata.labels?.[REVISION_LABEL] === hash) status.updatedNumberScheduled += 1;
  }

  // The image gate: an old pod the rollout would stop stays (annotated for prefetch) while its node lacks a
  // served image of the template replacing it. Registry images are never gated (servedImages is empty).
  const byName = new Map(nodes.map((n) => [n.metadata.name, n]));
  const hold: HeldPod[] = [];
  const servedOf = new Map<PodTemplate, string[]>();
  const served = (t: PodTemplate) => servedOf.get(t) ?? (servedOf.set(t, servedImages(t.spec, catalog)), servedOf.get(t)!);
  const gate = (p: Pod, template: PodTemplate) => imageGate(p, served(template), catalog, byName.get(p.spec.nodeName ?? ''));
  /** Stops `p` for `template`'s pod, unless the gate holds it; true when stopped. */
  const replace = (p: Pod, reason: string, template: PodTemplate): boolean => {
    const v = gate(p, template);
    if (v.hold) {
      hold.push({ pod: p, annotation: v.annotation!, missing: v.missing, ...(v.failure ? { failure: v.failure } : {}) });
      return false;
    }
    del.push({ pod: p, reason });
    return true;
  };
  /** `replacing(p)`: the template that is to replace pod p, if one is. */
  const finish = (plan: Omit<DaemonSetPlan, 'hold' | 'reannotate'>, replacing: (p: Pod) => PodTemplate | undefined): DaemonSetPlan => {
    const going = new Set([...plan.delete.map((d) => d.pod.metadata.uid), ...hold.map((h) => h.pod.metadata.uid)]);
    const reannotate: DaemonSetPlan['reannotate'] = [];
    for (const p of own) {
      if (going.has(p.metadata.uid) || !isGated(p)) continue;
      const t = replacing(p);
      const value = t ? prefetchValue(served(t)) : undefined;
      if (withPrefetch(p, value) !== undefined) reannotate.push({ pod: p, ...(value ? { value } : {}) });
    }
    if (hold.length) plan.requeueAfterMs = Math.min(plan.requeueAfterMs ?? Infinity, IMAGE_GATE_RECHECK_MS);
    return { ...plan, hold, reannotate };
  };

  if (ds.spec.drover?.rollout) {
    const targetServed = served(ds.spec.template);
    const inputs: WaveNodeInput[] = [
      ...create.map((n) => ({ node: byName.get(n)! })),
      ...wanted.map((w) => {
        const waiting = w.kept!.metadata.labels?.[REVISION_LABEL] !== hash ? gate(w.kept!, ds.spec.template).missing : [];
        return { node: byName.get(w.node)!, pod: w.kept, ...(targetServed.length ? { imageReady: waiting.length === 0 } : {}) };
      }),
    ];
    const wp = planWaves({ ds, nodes: inputs, now });
    const targetCreate: string[] = [];
    let stable: DaemonSetPlan['createStable'];
    for (const n of create) {
      const d = wp.desired.get(n);
      if (d === undefined || d === 'keep' || d.hash === hash) targetCreate.push(n);
      else (stable ??= { hash: d.hash, template: d.template, nodes: [] }).nodes.push(n);
    }
    for (const w of wanted) {
      const d = wp.desired.get(w.node);
      const rev = d && d !== 'keep' ? d : undefined;
      const want = rev?.hash;
      // Of two pods on a node (a replacement racing its predecessor), the one of the wanted revision stays.
      const onNode = [w.kept!, ...w.others];
      const keep = onNode.find((p) => want !== undefined && p.metadata.labels?.[REVISION_LABEL] === want) ?? w.kept!;
      for (const p of onNode) if (p !== keep) del.push({ pod: p, reason: 'duplicate daemon pod' });
      const has = keep.metadata.labels?.[REVISION_LABEL];
      if (rev && has !== rev.hash) replace(keep, `waved rollout: revision ${has} → ${rev.hash}`, rev.template);
    }
    if (wp.requeueAfterMs !== undefined) wake(wp.requeueAfterMs);
    status.drover = wp.drover;
    const out = {
      hash,
      create: targetCreate,
      delete: del,
      status,
      ...(stable ? { createStable: stable } : {}),
      waves: { drover: wp.drover, events: wp.events, ...(wp.rollback ? { rollback: wp.rollback } : {}) },
      ...(requeue !== undefined ? { requeueAfterMs: requeue } : {}),
    };
    // A pod waits for the revision its node is to run, when that is not the one it runs.
    return finish(out, (p) => {
      const d = wp.desired.get(p.spec.nodeName ?? '');
      return d && d !== 'keep' && p.metadata.labels?.[REVISION_LABEL] !== d.hash ? d.template : undefined;
    });
  }

  const isNew = (p: Pod) => p.metadata.labels?.[REVISION_LABEL] === hash;
  const isAvailable = (p: Pod) => availableIn(p, minReady, now) === 0;
  const rolling = strategy === 'RollingUpdate';
  const ru = ds.spec.updateStrategy?.rollingUpdate;
  const desired = status.desiredNumberScheduled;
  const maxSurge = rolling ? resolveIntOrPercent(ru?.maxSurge, desired, true, 0) : 0;
  let maxUnavailable = rolling ? resolveIntOrPercent(ru?.maxUnavailable, desired, true, 1) : 0;
  if (rolling && maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;

  if (rolling && maxSurge > 0) {
    // Surge: start the new pod next to the old one, remove the old one once the new one is available.
    let surging = wanted.filter((w) => isNew(w.kept!) && w.others.some((p) => !isNew(p))).length;
    for (const w of wanted) {
      const kept = w.kept!;
      if (isNew(kept)) {
        const avail = isAvailable(kept);
        for (const p of w.others) {
          if (isNew(p)) del.push({ pod: p, reason: 'duplicate daemon pod' });
          else if (avail) del.push({ pod: p, reason: 'replaced by an updated pod' });
        }
        continue;
      }
      for (const p of w.others) del.push({ pod: p, reason: 'duplicate daemon pod' });
      if (!isAvailable(kept)) create.push(w.node);
      else if (surging < maxSurge) {
        create.push(w.node);
        surging += 1;
      }
    }
  } else {
    for (const w of wanted) for (const p of w.others) del.push({ pod: p, reason: 'duplicate daemon pod' });
    if (rolling) {
      // Nodes already short of an available daemon count against the budget.
      let unavailable = create.length + wanted.filter((w) => !isAvailable(w.kept!)).length;
      const old = wanted.filter((w) => !isNew(w.kept!));
      for (const w of old.filter((x) => !isAvailable(x.kept!))) replace(w.kept!, 'out of date (and unavailable)', ds.spec.template);
      for (const w of old.filter((x) => isAvailable(x.kept!))) {
        if (unavailable < maxUnavailable) {
          // A held pod stays available: it spends none of the budget, and the next node's turn comes.
          if (replace(w.kept!, 'out of date', ds.spec.template)) unavailable += 1;
          continue;
        }
        // Beyond the budget: a node that lacks the image starts fetching now, so its turn does not wait for it.
        const v = gate(w.kept!, ds.spec.template);
        if (v.hold) hold.push({ pod: w.kept!, annotation: v.annotation!, missing: v.missing, ...(v.failure ? { failure: v.failure } : {}) });
      }
    }
  }

  return finish({ hash, create, delete: del, status, ...(requeue !== undefined ? { requeueAfterMs: requeue } : {}) }, (p) => (strategy !== 'OnDelete' && !isNew(p) ? ds.spec.template : undefined));
}

function statusEqual(a: unknown, b: DaemonSetStatus): boolean {
  return jsonEqual(a ?? {}, b);
}

const COMPONENT = 'daemonset-controller';

/**
 * A node's facts that daemon pod placement depends on, as one comparable string: the digest of their
 * canonical JSON. Kept per node, and the JSON itself is a rope of a few hundred pieces in V8 (~2-3 KB per
 * node, 1,000 nodes ~3 MiB of the server's heap; the digest is 43 characters). Readiness is not one of
 * them (daemon pods tolerate not-ready and unreachable nodes): only a waved rollout's gate reads it.
 */
export function placementFacts(n: Node): string {
  const facts = canonicalJson({ labels: n.metadata.labels ?? {}, taints: n.spec?.taints ?? [], unschedulable: !!n.spec?.unschedulable, allocatable: n.status?.allocatable ?? {}, devices: n.status?.devices ?? [] });
  return createHash('sha256').update(facts).digest('base64url');
}

export interface NodeFacts {
  placement: string;
  ready: string | undefined;
}

export const nodeFacts = (n: Node): NodeFacts => ({ placement: placementFacts(n), ready: n.status?.conditions?.find((c) => c.type === 'Ready')?.status });

/**
 * Which DaemonSets a node change concerns: every one when placement facts changed, only those in a waved
 * rollout (whose gates count offline nodes) when only readiness did, none for a heartbeat. After a server
 * restart a thousand nodes turn Ready one by one: each turn re-planned every DaemonSet over every node and
 * pod, 39 % of the restarted server's CPU at 1,000 agents (bench/scale.ts profile).
 */
export function nodeChangeWakes(prev: NodeFacts | undefined, next: NodeFacts): 'all' | 'waved' | 'none' {
  if (!prev || prev.placement !== next.placement) return 'all';
  return prev.ready !== next.ready ? 'waved' : 'none';
}

export function daemonSetController(deps: ControllerDeps): Controller {
  const { store, logger } = deps;
  const log = logger.child({ controller: 'daemonset' });
  const valid = validStored({ events: deps.events, logger: log }, COMPONENT);
  /** Keys of the DaemonSets seen by reconcile: a node change concerns every one of them. */
  const known = new Set<string>();
  /** Keys of the DaemonSets in a waved rollout (spec.drover.rollout): node readiness is part of their gates. */
  const waved = new Set<string>();
  /** Per node, what decides whether a daemon pod belongs there, as last seen. */
  const placement = new Map<string, NodeFacts>();
  /** DaemonSets holding an old pod for an image its node lacks: that node's image report wakes them. */
  const gated = new GatedIndex();
  /** Per DaemonSet, the failed-transfer message last recorded per held pod (uid): one Warning each, not one per pass. */
  const reported = new Map<string, Map<string, string>>();

  /** A Warning per held pod whose node reported its transfer failed, on the pod and its owner, once per cause. */
  async function reportFailures(key: string, hold: HeldPod[], record: (type: 'Warning', reason: string, message: string, pod?: Pod) => Promise<void>): Promise<void> {
    const prev = reported.get(key);
    const next = new Map<string, string>();
    for (const h of hold) {
      if (!h.failure) continue;
      const uid = h.pod.metadata.uid ?? h.pod.metadata.name;
      next.set(uid, h.failure);
      if (prev?.get(uid) === h.failure) continue;
      const message = `${h.failure}; pod ${h.pod.metadata.name} keeps running until the image is there (the node retries)`;
      await record('Warning', IMAGE_FETCH_FAILED, message, h.pod);
      await record('Warning', IMAGE_FETCH_FAILED, message);
    }
    if (next.size) reported.set(key, next);
    else reported.delete(key);
  }

  return {
    name: 'daemonset',
    kind: 'DaemonSet',
    watches: [
      // A plan looks at every node and pod: the status reports of a fleet's daemon pods (all of them at once after
      // a server restart) are gathered into one pass a second, not one pass each.
      { kind: 'Pod', keys: (o) => ownerKeys(o, 'DaemonSet'), coalesceMs: 1000 },
      // Every DaemonSet is reconciled at start (resync) and on each of its own changes, so `known`
      // holds every DaemonSet the store has by the time a node change matters.
      // Only changes that can change where daemon pods belong: a heartbeat's lastHeard refresh on
      // each of a thousand nodes would otherwise keep every DaemonSet reconciling all the time.
      // Coalesced too: after a server restart every node's first change came with no facts to compare (the map
      // below starts empty) and woke every DaemonSet, one whole-fleet plan after the other for as long as nodes
      // kept reconnecting (2,000 agents: 37 % of the restarted server's CPU, bench/scale.ts profile).
      {
        kind: 'Node',
        coalesceMs: 1000,
        keys: (o, type) => {
          const node = o.metadata.name;
          if (type === 'DELETED') {
            placement.delete(node);
            gated.changed(undefined, node);
            return [...known];
          }
          if (!isKind(o, 'Node')) return [];
          const facts = nodeFacts(o);
          const wakes = nodeChangeWakes(placement.get(node), facts);
          placement.set(node, facts);
          // A node that loaded an image (or failed to) wakes the DaemonSets holding a pod there for it.
          const images = gated.changed(o, node);
          const keys = wakes === 'all' ? [...known] : wakes === 'waved' ? [...waved] : [];
          return images.length ? [...new Set([...keys, ...images])] : keys;
        },
      },
    ],
    async reconcile(key, signal) {
      const { namespace, name } = splitKey(key);
      const raw = await store.get('DaemonSet', namespace, name);
      if (!raw) {
        // Its pods go with the garbage collector (ownerReferences).
        known.delete(key);
        waved.delete(key);
        gated.set(key, []);
        reported.delete(key);
        return;
      }
      known.add(key);
      const ds = await valid('DaemonSet', raw);
      if (!ds) return;
      if (ds.spec.drover?.rollout) waved.add(key);
      else waved.delete(key);
      const involved = { kind: 'DaemonSet', namespace, name, uid: ds.metadata.uid };
      const nodes = (await store.list('Node')).items;
      const pods = (await store.list('Pod')).items;
      const now = deps.now();
      const plan = planDaemonSet(ds, nodes, pods, { now, images: deps.images });
      // What this pass planned with is what a node's next change is compared to: a node this process never saw
      // change (all of them after a restart) then wakes the DaemonSets only if its placement facts really moved.
      for (const n of nodes) if (!placement.has(n.metadata.name)) placement.set(n.metadata.name, nodeFacts(n));
      gated.set(key, plan.hold.map((h) => h.pod.spec.nodeName!));
      if (plan.hold.length) for (const n of nodes) gated.seen(n);

      const writer = podWriter(deps, involved, COMPONENT);

      // A waved rollout's progress (a wave passed, a rollback) is stored before any pod is written:
      // no node of wave k+1 gets the new revision unless wave k's pass is on record, and a rollback
      // writes the stable template back together with the status that explains it.
      const waves = plan.waves;
      if (waves && (waves.rollback || rolloutMoved(ds.status?.drover?.rollout, waves.drover.rollout))) {
        const progress = { status: (cur: unknown) => ({ ...((cur as DaemonSetStatus | undefined) ?? plan.status), drover: waves.drover }), rollback: waves.rollback, events: waves.events };
        if (!(await saveWaveProgress({ store, log, record: writer.record }, ds, progress))) return;
        // The template written back is a spec change: it queues the pass that replaces the wave's pods.
        if (waves.rollback) return;
      }

      // Each pod written is a step: the DaemonSet must still be the one planned for, and a pass writes at
      // most MAX_POD_WRITES_PER_STEP pods (a fleet of thousands of nodes); the rest come next pass.
      const steps = new PodWriteSteps(store, ds, signal);
      // A waved rollout over a fleet replaces hundreds of pods: one Event per pass names them, so the
      // events that say how the rollout goes are not pushed out of the per-object cap by pod events.
      const batched = waves ? { deleted: [] as string[], created: [] as string[] } : undefined;
      const recordPod = (reason: 'SuccessfulCreate' | 'SuccessfulDelete', pod: string) => {
        if (batched) (reason === 'SuccessfulCreate' ? batched.created : batched.deleted).push(pod);
        else writer.emit('Normal', reason, `${reason === 'SuccessfulCreate' ? 'Created' : 'Deleted'} pod: ${pod}`);
      };
      let written = 0;
      for (const d of plan.delete) {
        if (!(await steps.next())) break;
        written++;
        const pn = d.pod.metadata.name;
        if (!(await writer.delete(namespace, pn))) continue;
        log.info({ ds: key, pod: pn, node: d.pod.spec.nodeName, reason: d.reason }, 'deleted daemon pod');
        recordPod('SuccessfulDelete', pn);
      }

      // Held pods get their prefetch request (the publisher lists the images for their node); pods no rollout
      // holds any more lose it. One write each, only when the annotation differs.
      const annotate = [...plan.hold.map((h) => ({ pod: h.pod, value: h.annotation as string | undefined })), ...plan.reannotate].filter((a) => withPrefetch(a.pod, a.value) !== undefined);
      if (written === plan.delete.length) {
        const done = await slowStartBatches(steps, annotate.length, (i) => setPrefetch(store, annotate[i]!.pod, annotate[i]!.value));
        if (done.length < annotate.length) return steps.exhausted ? { requeueAfterMs: 0 } : undefined;
        for (const h of plan.hold) if (annotate.some((a) => a.pod === h.pod)) log.info({ ds: key, pod: h.pod.metadata.name, node: h.pod.spec.nodeName, images: h.missing }, 'old daemon pod kept until its node has the new image');
      }
      await reportFailures(key, plan.hold, (type, reason, message, pod) =>
        pod ? deps.events.record({ involved: { kind: 'Pod', namespace, name: pod.metadata.name, uid: pod.metadata.uid }, type, reason, message, component: COMPONENT }) : writer.record(type, reason, message),
      );

      // Creates go in slow-start batches (1, 2, 4 … as the ReplicaSet controller's): group commit then syncs
      // a batch's pods and events together instead of one fsync after the other per node (1,000 daemon pods
      // took 33 s under load one at a time), and a template that fails fails one write, not a thousand.
      if (written === plan.delete.length) {
        const made = await slowStartBatches(steps, plan.create.length, async (i) => {
          const node = plan.create[i]!;
          const created = await writer.create(newDaemonPod(ds, node, plan.hash, now), name);
          log.info({ ds: key, pod: created.metadata.name, node }, 'created daemon pod');
          recordPod('SuccessfulCreate', created.metadata.name);
          return created;
        });
        written += made.length;
      }
      const stable = plan.createStable;
      if (stable && written === plan.delete.length + plan.create.length) {
        const made = await slowStartBatches(steps, stable.nodes.length, async (i) => {
          const node = stable.nodes[i]!;
          const created = await writer.create(newDaemonPod(ds, node, stable.hash, now, stable.template), name);
          log.info({ ds: key, pod: created.metadata.name, node, revision: stable.hash }, 'created daemon pod of the stable revision');
          recordPod('SuccessfulCreate', created.metadata.name);
          return created;
        });
        written += made.length;
      }
      if (batched) {
        const names = (l: string[]) => (l.length > 10 ? `${l.slice(0, 10).join(', ')} and ${l.length - 10} more` : l.join(', '));
        if (batched.deleted.length) await writer.record('Normal', 'SuccessfulDelete', `Deleted ${batched.deleted.length} pod${batched.deleted.length === 1 ? '' : 's'}: ${names(batched.deleted)}`);
        if (batched.created.length) await writer.record('Normal', 'SuccessfulCreate', `Created ${batched.created.length} pod${batched.created.length === 1 ? '' : 's'}: ${names(batched.created)}`);
      }
      if (written < plan.delete.length + plan.create.length + (stable?.nodes.length ?? 0)) {
        if (steps.stopped) log.info({ ds: key, why: steps.stopped }, 'daemonset reconcile stopped');
        return steps.exhausted ? { requeueAfterMs: 0 } : undefined;
      }

      if (!statusEqual(raw.status, plan.status)) {
        await store
          .patch('DaemonSet', namespace, name, (cur) => {
            if (cur.metadata.uid !== ds.metadata.uid || statusEqual(cur.status, plan.status)) return undefined;
            cur.status = plan.status;
            return cur;
          })
          .catch((err) => {
            if (!isNotFound(err)) throw err;
          });
      }
      return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
    },
  };
}
