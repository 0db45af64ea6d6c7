/**
 * Deployment rollout logic, in Kubernetes' shape and PURE (no I/O, clock injected): pod-template
 * hashing, revision bookkeeping, one step of RollingUpdate / Recreate, proportional scaling while
 * paused, history cleanup, and the Deployment status with its Progressing / Available conditions.
 * The controllers (deployment.ts, replicaset.ts) own all reads and writes and only act on what
 * these functions decide.
 */
import type { Condition } from '../../src/api/meta.js';
import type { Pod } from '../../src/api/pod.js';
import {
  CHANGE_CAUSE_ANNOTATION,
  POD_TEMPLATE_HASH,
  REVISION_ANNOTATION,
  podTemplateHash,
  maxRevision,
  revisionOf,
  templatesEqual,
} from '../../src/api/revisions.js';
import { resolveIntOrPercent } from '../../src/api/template.js';
import type { Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { podReady, readyCondition } from './pods.js';

export type DeploymentStatus = NonNullable<Deployment['status']>;
/** A Deployment condition carries Kubernetes' lastUpdateTime: when the rollout last made progress. */
export type DeploymentCondition = Condition & { lastUpdateTime?: string };

// ---------------------------------------------------------------------------------------------
// Pod-template hash and revisions
// ---------------------------------------------------------------------------------------------

/** The ReplicaSet (among the Deployment's) whose template is the Deployment's current one. */
export function findNewReplicaSet(deploy: Deployment, replicaSets: ReplicaSet[]): ReplicaSet | undefined {
  // Oldest first, like Kubernetes: with duplicates, the older one wins deterministically.
  return sortByCreation(replicaSets).find((rs) => templatesEqual(rs.spec.template, deploy.spec.template));
}

/**
 * The ReplicaSet a Deployment needs for its current template (not yet stored: no uid, no
 * resourceVersion): name `${deploy}-${hash}`, template labels + pod-template-hash, selector + hash,
 * controller ownerReference, revision = max + 1, 0 replicas (the rollout scales it).
 */
export function newReplicaSetFor(deploy: Deployment, replicaSets: ReplicaSet[]): ReplicaSet {
  const hash = podTemplateHash(deploy.spec.template, deploy.status?.collisionCount);
  const template = structuredClone(deploy.spec.template);
  template.metadata = { ...template.metadata, labels: { ...template.metadata?.labels, [POD_TEMPLATE_HASH]: hash } };
  delete template.metadata.creationTimestamp;
  const selector = structuredClone(deploy.spec.selector);
  selector.matchLabels = { ...selector.matchLabels, [POD_TEMPLATE_HASH]: hash };
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: {
      name: `${deploy.metadata.name}-${hash}`,
      namespace: deploy.metadata.namespace,
      labels: { ...deploy.spec.template.metadata?.labels, [POD_TEMPLATE_HASH]: hash },
      annotations: {
        [REVISION_ANNOTATION]: String(maxRevision(replicaSets) + 1),
        // Kept per revision, as Kubernetes does, so `rollout history` shows why each one was made.
        ...(deploy.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION] ? { [CHANGE_CAUSE_ANNOTATION]: deploy.metadata.annotations[CHANGE_CAUSE_ANNOTATION] } : {}),
      },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: deploy.metadata.name, uid: deploy.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
    },
    spec: { replicas: 0, selector, template, minReadySeconds: deploy.spec.minReadySeconds ?? 0 },
  };
}

/**
 * The revision the (existing) new ReplicaSet must carry: a rollback to an old template reuses that
 * template's ReplicaSet and moves it to max(other revisions) + 1. undefined = already right.
 */
export function bumpedRevision(newRS: ReplicaSet, replicaSets: ReplicaSet[]): number | undefined {
  const othersMax = maxRevision(replicaSets.filter((rs) => rs.metadata.name !== newRS.metadata.name));
  const cur = revisionOf(newRS);
  return cur > othersMax ? undefined : othersMax + 1;
}

// ---------------------------------------------------------------------------------------------
// Pods: active / ready / available
// ---------------------------------------------------------------------------------------------

/** Counts toward a ReplicaSet: not terminated and not being deleted. */
export function isPodActive(p: Pod): boolean {
  const phase = p.status?.phase;
  return phase !== 'Succeeded' && phase !== 'Failed' && !p.metadata.deletionTimestamp;
}

/** Ready for at least minReadySeconds (from the Ready condition's lastTransitionTime). */
export function isPodAvailable(p: Pod, minReadySeconds: number, now: number): boolean {
  if (!podReady(p)) return false;
  if (!minReadySeconds) return true;
  const since = Date.parse(readyCondition(p)?.lastTransitionTime ?? '');
  return Number.isFinite(since) ? since + minReadySeconds * 1000 <= now : false;
}

/** When a ready-but-not-yet-available pod becomes available (ms epoch), or undefined. */
export function nextAvailableAt(pods: Pod[], minReadySeconds: number, now: number): number | undefined {
  if (!minReadySeconds) return undefined;
  let next: number | undefined;
  for (const p of pods) {
    if (!isPodActive(p) || !podReady(p) || isPodAvailable(p, minReadySeconds, now)) continue;
    const since = Date.parse(readyCondition(p)?.lastTransitionTime ?? '');
    if (!Number.isFinite(since)) continue;
    const at = since + minReadySeconds * 1000;
    if (next === undefined || at < next) next = at;
  }
  return next;
}

export interface PodCounts {
  /** Active (non-terminated) pods. */
  pods: number;
  ready: number;
  available: number;
}

export function countPods(pods: Pod[], minReadySeconds: number, now: number): PodCounts {
  const active = pods.filter(isPodActive);
  return {
    pods: active.length,
    ready: active.filter(podReady).length,
    available: active.filter((p) => isPodAvailable(p, minReadySeconds, now)).length,
  };
}

// ---------------------------------------------------------------------------------------------
// The rollout step
// ---------------------------------------------------------------------------------------------

/** One ReplicaSet of the Deployment with the live counts of its pods. */
export interface ReplicaSetView extends PodCounts {
  rs: ReplicaSet;
}

export interface RolloutInput {
  deployment: Deployment;
  /** Every ReplicaSet the Deployment controls, the new one included when it exists. */
  replicaSets: ReplicaSetView[];
  /** ms epoch. */
  now: number;
  /** The new ReplicaSet was created in this sync (Progressing reason NewReplicaSetCreated). */
  newReplicaSetCreated?: boolean;
  /**
   * A waved rollout's current wave (deployment-waves.ts): the new ReplicaSet is scaled up to at most
   * this many replicas, and the old ones keep the rest of spec.replicas.
   */
  newReplicaSetCap?: number;
  /** A waved rollout's stable ReplicaSet (the last revision that completed): scaled down last. */
  stableReplicaSet?: string;
  /** Old pods kept until their nodes have the new template's served images (image-gate.ts), for the status message. */
  imageWait?: ImageWait;
}

/** Old pods a rollout keeps because their nodes have not loaded the new image yet (PREFETCH_ANNOTATION). */
export interface ImageWait {
  pods: number;
  /** Their nodes, sorted. */
  nodes: string[];
}

/** ", waiting for the new image on 2 nodes (edge-a, edge-b)": why a rollout held by images has not moved. */
export function imageWaitText(w: ImageWait | undefined): string {
  if (!w || w.pods === 0) return '';
  const shown = w.nodes.slice(0, 5).join(', ') + (w.nodes.length > 5 ? ` and ${w.nodes.length - 5} more` : '');
  return `${w.pods} old pod${w.pods === 1 ? '' : 's'} kept until ${w.nodes.length === 1 ? 'its node has' : 'their nodes have'} the new image (${shown})`;
}

export interface ScaleAction {
  name: string;
  from: number;
  to: number;
}

export interface RolloutPlan {
  /** Name of the ReplicaSet for the current template (undefined while paused with a changed template). */
  newReplicaSet?: string;
  /** spec.replicas changes for this step (only ReplicaSets whose count changes). */
  scale: ScaleAction[];
  /** Old, empty ReplicaSets beyond revisionHistoryLimit, to delete. */
  deletions: string[];
  /** The Deployment status after this step's observation. */
  status: DeploymentStatus;
  /** The Deployment's revision annotation value (the new ReplicaSet's revision). */
  revision?: string;
  /** Look again after this long (progress deadline check). */
  requeueAfterMs?: number;
}

function specReplicas(rs: ReplicaSet): number {
  return rs.spec.replicas ?? 0;
}

function sortByCreation<T extends ReplicaSet>(rss: T[]): T[] {
  return [...rss].sort((a, b) => {
    const ta = a.metadata.creationTimestamp ?? '';
    const tb = b.metadata.creationTimestamp ?? '';
    return ta !== tb ? (ta < tb ? -1 : 1) : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
  });
}

/** maxSurge (rounded up) and maxUnavailable (rounded down) resolved against replicas; never both 0. */
export function resolveFenceposts(deploy: Deployment): { maxSurge: number; maxUnavailable: number } {
  const replicas = deploy.spec.replicas ?? 1;
  const strategy = deploy.spec.strategy;
  if (strategy?.type === 'Recreate') return { maxSurge: 0, maxUnavailable: replicas };
  const ru = strategy?.rollingUpdate;
  const maxSurge = resolveIntOrPercent(ru?.maxSurge ?? '25%', replicas, true, 0);
  let maxUnavailable = resolveIntOrPercent(ru?.maxUnavailable ?? '25%', replicas, false, 0);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable: Math.min(maxUnavailable, replicas) };
}

/** Pods that must be available for the Deployment to count as Available. Recreate: all of them. */
export function minAvailable(deploy: Deployment): number {
  const replicas = deploy.spec.replicas ?? 1;
  if (deploy.spec.strategy?.type === 'Recreate') return replicas;
  return Math.max(0, replicas - resolveFenceposts(deploy).maxUnavailable);
}

/**
 * The counts the step logic works with. Pods beyond spec.replicas are about to be deleted by the
 * ReplicaSet controller (not-ready ones first), so an RS never counts more available than its spec;
 * and an RS occupies max(spec, live pods) towards the surge limit until its surplus is gone.
 */
interface Work {
  name: string;
  spec: number;
  pods: number;
  available: number;
  created: string;
  revision: number;
}

function work(v: ReplicaSetView): Work {
  const spec = specReplicas(v.rs);
  return { name: v.rs.metadata.name, spec, pods: v.pods, available: Math.min(v.available, spec), created: v.rs.metadata.creationTimestamp ?? '', revision: revisionOf(v.rs) };
}

const occupied = (w: Work) => Math.max(w.spec, w.pods);

/** Kubernetes' reconcileNewReplicaSet: scale the new RS up within maxSurge, or down to replicas. */
function rollingScaleNew(deploy: Deployment, newRS: Work, all: Work[], cap?: number): number | undefined {
  const replicas = deploy.spec.replicas ?? 1;
  const want = Math.min(replicas, cap ?? replicas);
  if (newRS.spec === want) return undefined;
  if (newRS.spec > want) return want;
  const { maxSurge } = resolveFenceposts(deploy);
  const current = all.reduce((s, w) => s + occupied(w), 0);
  const maxTotal = replicas + maxSurge;
  if (current >= maxTotal) return undefined;
  const up = Math.min(maxTotal - current, want - newRS.spec);
  return up > 0 ? newRS.spec + up : undefined;
}

/**
 * Kubernetes' reconcileOldReplicaSets: clean up unhealthy old pods, then scale old RSs down within
 * maxUnavailable, both within maxScaledDown = all pods - minAvailable - unavailable pods of the new RS.
 *
 * One deliberate difference: Kubernetes' cleanupUnhealthyReplicas spends that budget on the oldest
 * ReplicaSet first; here the most recently superseded revision goes first. On a rollover (a new
 * template while the previous rollout is still under way) that is the intermediate revision, whose
 * not-ready pods usually never ran, while the oldest revision's not-ready pods are usually the
 * serving set cut off for a while (its node offline). Spending the budget on the oldest first left
 * the intermediate revision's Pending pod in place, and a node that came back ran it for a moment
 * before the newest revision replaced it; this way a returning node runs the newest revision only,
 * and the oldest keeps its pods until newer ones are available.
 */
function rollingScaleOld(deploy: Deployment, newRS: Work, old: Work[], cap?: number, stable?: string): Map<string, number> {
  const out = new Map<string, number>();
  const replicas = deploy.spec.replicas ?? 1;
  const oldTotal = old.reduce((s, w) => s + w.spec, 0);
  if (oldTotal === 0) return out;
  // A waved rollout's wave: the old revisions keep what the new one may not take yet.
  let room = cap === undefined ? Infinity : oldTotal - (replicas - Math.min(replicas, cap));
  if (room <= 0) return out;
  const { maxUnavailable } = resolveFenceposts(deploy);
  const minAvail = replicas - maxUnavailable;
  const all = [newRS, ...old];
  // Counted by spec, as Kubernetes does: a pod on its way out (spec already lowered) adds no budget,
  // so cleanup never runs ahead of the deletions it already asked for.
  const allPods = all.reduce((s, w) => s + w.spec, 0);
  const newUnavailable = Math.max(0, newRS.spec - newRS.available);
  const maxScaledDown = allPods - minAvail - newUnavailable;
  if (maxScaledDown <= 0) return out;
  // A waved rollout keeps its stable revision to the last: a superseded intermediate one goes first.
  const oldestFirst = [...old].sort((a, b) => Number(a.name === stable) - Number(b.name === stable) || byAge(a, b));
  const spec = new Map(oldestFirst.map((w) => [w.name, w.spec]));
  // 1. Old pods that are not available are the first to go (no availability lost): newest revision first.
  let cleaned = 0;
  for (const w of [...oldestFirst].reverse()) {
    if (cleaned >= maxScaledDown) break;
    const s = spec.get(w.name)!;
    if (s === 0 || s === w.available) continue;
    const n = Math.min(maxScaledDown - cleaned, s - w.available, room);
    if (n <= 0) break;
    spec.set(w.name, s - n);
    cleaned += n;
    room -= n;
  }
  // 2. Then available old pods, oldest first, as long as minAvailable stays available.
  const availableNow = all.reduce((s, w) => s + Math.min(w.available, w === newRS ? w.spec : spec.get(w.name)!), 0);
  if (availableNow > minAvail) {
    let budget = availableNow - minAvail;
    for (const w of oldestFirst) {
      if (budget <= 0) break;
      const s = spec.get(w.name)!;
      if (s === 0) continue;
      const n = Math.min(s, budget, room);
      if (n <= 0) break;
      spec.set(w.name, s - n);
      budget -= n;
      room -= n;
    }
  }
  for (const w of oldestFirst) if (spec.get(w.name)! !== w.spec) out.set(w.name, spec.get(w.name)!);
  return out;
}

/** Older revision first (creation time for equal revisions). */
function byAge(a: Work, b: Work): number {
  return a.revision - b.revision || (a.created < b.created ? -1 : a.created > b.created ? 1 : 0);
}

/** Kubernetes' proportional scaling (used while paused): spread a replicas change over the active RSs. */
function proportionalScale(deploy: Deployment, newRS: Work | undefined, all: Work[]): Map<string, number> {
  const out = new Map<string, number>();
  const replicas = deploy.spec.replicas ?? 1;
  const active = all.filter((w) => w.spec > 0);
  if (active.length <= 1) {
    // One active RS (or none: the new one, else the latest) takes the whole count.
    const target = active[0] ?? newRS ?? [...all].sort((a, b) => b.revision - a.revision || (a.created < b.created ? 1 : -1))[0];
    if (target && target.spec !== replicas) out.set(target.name, replicas);
    return out;
  }
  const total = active.reduce((s, w) => s + w.spec, 0);
  const toAdd = replicas - total;
  if (toAdd === 0) return out;
  // Scaling up: biggest (then newest) first; down: biggest (then oldest) first; the rest goes to the first.
  const order = [...active].sort((a, b) => b.spec - a.spec || (toAdd > 0 ? (a.created < b.created ? 1 : -1) : a.created < b.created ? -1 : 1));
  let added = 0;
  const next = new Map(order.map((w) => [w.name, w.spec]));
  for (const w of order) {
    const share = toAdd > 0 ? Math.floor((w.spec * toAdd) / total) : -Math.min(w.spec, Math.floor((w.spec * -toAdd) / total));
    const capped = toAdd > 0 ? Math.min(share, toAdd - added) : Math.max(share, toAdd - added);
    next.set(w.name, w.spec + capped);
    added += capped;
  }
  // Leftover: to the first RS that can take it.
  for (const w of order) {
    if (added === toAdd) break;
    const cur = next.get(w.name)!;
    const delta = toAdd > 0 ? toAdd - added : Math.max(toAdd - added, -cur);
    next.set(w.name, cur + delta);
    added += delta;
  }
  for (const w of order) if (next.get(w.name) !== w.spec) out.set(w.name, next.get(w.name)!);
  return out;
}

/** Old ReplicaSets beyond revisionHistoryLimit that hold nothing: oldest revisions first. */
export function historyToDelete(deploy: Deployment, newRSName: string | undefined, views: ReplicaSetView[]): string[] {
  const limit = deploy.spec.revisionHistoryLimit ?? 10;
  const old = views.filter((v) => v.rs.metadata.name !== newRSName && !v.rs.metadata.deletionTimestamp);
  const diff = old.length - limit;
  if (diff <= 0) return [];
  const sorted = [...old].sort((a, b) => revisionOf(a.rs) - revisionOf(b.rs) || ((a.rs.metadata.creationTimestamp ?? '') < (b.rs.metadata.creationTimestamp ?? '') ? -1 : 1));
  const out: string[] = [];
  for (const v of sorted.slice(0, diff)) {
    const settled = (v.rs.status?.observedGeneration ?? 0) >= (v.rs.metadata.generation ?? 0);
    if (specReplicas(v.rs) === 0 && v.pods === 0 && (v.rs.status?.replicas ?? 0) === 0 && settled) out.push(v.rs.metadata.name);
  }
  return out;
}

function findCondition(status: DeploymentStatus | undefined, type: string): DeploymentCondition | undefined {
  return status?.conditions?.find((c) => c.type === type) as DeploymentCondition | undefined;
}

/** A condition whose lastTransitionTime only moves when its status does. */
function setCondition(prev: DeploymentCondition | undefined, next: Omit<DeploymentCondition, 'lastTransitionTime'>, nowIso: string): DeploymentCondition {
  const c: DeploymentCondition = { ...next, lastTransitionTime: prev && prev.status === next.status ? prev.lastTransitionTime ?? nowIso : nowIso };
  if (c.lastUpdateTime === undefined) delete c.lastUpdateTime;
  return c;
}

export interface StatusInput {
  deployment: Deployment;
  replicaSets: ReplicaSetView[];
  newReplicaSet?: string;
  now: number;
  newReplicaSetCreated?: boolean;
  imageWait?: ImageWait;
}

/**
 * The Deployment status (Kubernetes' calculateStatus + syncRolloutStatus): counts from the live
 * pods, Available from minAvailable, Progressing from whether anything moved since the last
 * written status — and ProgressDeadlineExceeded once nothing has for progressDeadlineSeconds.
 */
export function deploymentStatus(input: StatusInput): { status: DeploymentStatus; requeueAfterMs?: number } {
  const { deployment: d, replicaSets: views, now } = input;
  const prev = d.status;
  const nowIso = new Date(now).toISOString();
  const replicas = d.spec.replicas ?? 1;
  const newView = views.find((v) => v.rs.metadata.name === input.newReplicaSet);
  const total = views.reduce((s, v) => s + v.pods, 0);
  const updated = newView?.pods ?? 0;
  const ready = views.reduce((s, v) => s + v.ready, 0);
  const available = views.reduce((s, v) => s + v.available, 0);
  const status: DeploymentStatus = {
    observedGeneration: d.metadata.generation,
    replicas: total,
    updatedReplicas: updated,
    readyReplicas: ready,
    availableReplicas: available,
    unavailableReplicas: Math.max(0, replicas - available),
    ...(prev?.collisionCount !== undefined ? { collisionCount: prev.collisionCount } : {}),
  };

  const prevAvailable = findCondition(prev, 'Available');
  const isAvailable = available >= minAvailable(d);
  const availableCond = setCondition(
    prevAvailable,
    isAvailable
      ? { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.', lastUpdateTime: nowIso }
      : { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.', lastUpdateTime: nowIso },
    nowIso,
  );
  // Keep the update time when nothing about the condition changed, so an idle sync writes nothing.
  if (prevAvailable && prevAvailable.status === availableCond.status && prevAvailable.reason === availableCond.reason) availableCond.lastUpdateTime = prevAvailable.lastUpdateTime ?? nowIso;

  const prevProgressing = findCondition(prev, 'Progressing');
  const rsName = input.newReplicaSet ?? '';
  const deadlineMs = (d.spec.progressDeadlineSeconds ?? 600) * 1000;
  let progressing: DeploymentCondition;
  let requeueAfterMs: number | undefined;
  const complete = updated === replicas && total === replicas && available === replicas && (newView ? specReplicas(newView.rs) === replicas : replicas === 0);
  const keep = (c: DeploymentCondition): DeploymentCondition => ({ ...c });
  if (d.spec.paused) {
    progressing =
      prevProgressing?.reason === 'DeploymentPaused'
        ? keep(prevProgressing)
        : setCondition(prevProgressing, { type: 'Progressing', status: 'Unknown', reason: 'DeploymentPaused', message: 'Deployment is paused', lastUpdateTime: nowIso }, nowIso);
  } else if (complete) {
    progressing =
      prevProgressing?.reason === 'NewReplicaSetAvailable' && prevProgressing.message === `ReplicaSet "${rsName}" has successfully progressed.`
        ? keep(prevProgressing)
        : setCondition(prevProgressing, { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: `ReplicaSet "${rsName}" has successfully progressed.`, lastUpdateTime: nowIso }, nowIso);
  } else {
    const oldBefore = (prev?.replicas ?? 0) - (prev?.updatedReplicas ?? 0);
    const oldNow = total - updated;
    const moved =
      updated > (prev?.updatedReplicas ?? 0) ||
      oldNow < oldBefore ||
      ready > (prev?.readyReplicas ?? 0) ||
      available > (prev?.availableReplicas ?? 0) ||
      // A new spec (new template, scale, resume) starts the clock afresh.
      (d.metadata.generation ?? 0) > (prev?.observedGeneration ?? 0) ||
      prevProgressing?.reason === 'DeploymentPaused';
    if (input.newReplicaSetCreated) {
      progressing = setCondition(prevProgressing, { type: 'Progressing', status: 'True', reason: 'NewReplicaSetCreated', message: `Created new replica set "${rsName}"`, lastUpdateTime: nowIso }, nowIso);
    } else if (moved || !prevProgressing) {
      progressing = setCondition(prevProgressing, { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: `ReplicaSet "${rsName}" is progressing.`, lastUpdateTime: nowIso }, nowIso);
    } else if (prevProgressing.reason === 'ProgressDeadlineExceeded') {
      progressing = keep(prevProgressing);
    } else if (prevProgressing.reason === 'NewReplicaSetAvailable') {
      // A completed rollout that lost a pod is not "stuck": Kubernetes keeps the condition.
      progressing = keep(prevProgressing);
    } else {
      const since = Date.parse(prevProgressing.lastUpdateTime ?? prevProgressing.lastTransitionTime ?? '');
      const deadline = (Number.isFinite(since) ? since : now) + deadlineMs;
      if (now >= deadline) {
        // Held by images: the old pods keep running (never stopped for a missing image); the message says why.
        const images = imageWaitText(input.imageWait);
        progressing = setCondition(prevProgressing, { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: `ReplicaSet "${rsName}" has timed out progressing.${images ? ` ${images}.` : ''}`, lastUpdateTime: nowIso }, nowIso);
      } else {
        progressing = keep(prevProgressing);
      }
    }
    if (progressing.status === 'True') {
      const since = Date.parse(progressing.lastUpdateTime ?? progressing.lastTransitionTime ?? nowIso);
      requeueAfterMs = Math.max(0, (Number.isFinite(since) ? since : now) + deadlineMs - now) + 100;
    }
  }
  // Kubernetes lists Available first, then Progressing; other condition types are kept.
  const others = (prev?.conditions ?? []).filter((c) => c.type !== 'Available' && c.type !== 'Progressing');
  status.conditions = [availableCond, progressing, ...others];
  return { status, requeueAfterMs };
}

/**
 * One sync of a Deployment: which ReplicaSets to scale to what (one rollout step), which old ones to
 * delete, the status to write and when to look again. The caller has already created the new
 * ReplicaSet for the current template (unless paused) and passes it in `replicaSets`.
 */
export function planRollout(input: RolloutInput): RolloutPlan {
  const d = input.deployment;
  const replicas = d.spec.replicas ?? 1;
  const views = input.replicaSets;
  const newRS = findNewReplicaSet(
    d,
    views.map((v) => v.rs),
  );
  const works = views.map(work);
  const newW = newRS ? works.find((w) => w.name === newRS.metadata.name) : undefined;
  const oldW = works.filter((w) => w !== newW);
  let changes = new Map<string, number>();

  if (d.spec.paused) {
    changes = proportionalScale(d, newW, works);
  } else if (d.spec.strategy?.type === 'Recreate') {
    if (oldW.some((w) => w.spec > 0)) {
      for (const w of oldW) if (w.spec > 0) changes.set(w.name, 0);
    } else if (oldW.every((w) => w.pods === 0) && newW && newW.spec !== replicas) {
      changes.set(newW.name, replicas);
    }
  } else if (newW) {
    const up = rollingScaleNew(d, newW, works, input.newReplicaSetCap);
    if (up !== undefined) changes.set(newW.name, up);
    else changes = rollingScaleOld(d, newW, oldW, input.newReplicaSetCap, input.stableReplicaSet);
  }

  const scale: ScaleAction[] = [];
  for (const w of works) {
    const to = changes.get(w.name);
    if (to !== undefined && to !== w.spec) scale.push({ name: w.name, from: w.spec, to });
  }

  const { status, requeueAfterMs } = deploymentStatus({
    deployment: d,
    replicaSets: views,
    newReplicaSet: newRS?.metadata.name,
    now: input.now,
    newReplicaSetCreated: input.newReplicaSetCreated,
    imageWait: input.imageWait,
  });

  const complete = status.conditions?.find((c) => c.type === 'Progressing')?.reason === 'NewReplicaSetAvailable';
  const deletions = scale.length === 0 && (complete || d.spec.paused) ? historyToDelete(d, newRS?.metadata.name, views) : [];

  return {
    newReplicaSet: newRS?.metadata.name,
    scale,
    deletions,
    status,
    revision: newRS && revisionOf(newRS) > 0 ? String(revisionOf(newRS)) : d.metadata.annotations?.[REVISION_ANNOTATION],
    requeueAfterMs,
  };
}
