import type { Pod } from '../../src/api/pod.js';
import { POD_TEMPLATE_HASH, REVISION_ANNOTATION, isControlledBy, templatesEqual } from '../../src/api/revisions.js';
import { jsonEqual } from '../../src/util/canonical-json.js';
import { isAlreadyExists, isConflict, isNotFound } from '../../src/util/errors.js';
import type { Deployment, ReplicaSet } from '../../src/api/workloads.js';
import type { ControllerDeps } from './deps.js';
import { isGated } from './image-gate.js';
import { bumpedRevision, countPods, findNewReplicaSet, isPodActive, newReplicaSetFor, planRollout, type DeploymentStatus, type ReplicaSetView } from './rollout.js';
import { ownerKeys, paceFor, splitKey, type Controller, type ReconcileResult } from './runner.js';
import { validStored } from './valid-stored.js';
import { planDeploymentWaves, type DeploymentWavePlan } from './deployment-waves.js';
import { rolloutMoved, saveWaveProgress } from './wave-progress.js';

const COMPONENT = 'deployment-controller';

/**
 * The Deployment controller: one ReplicaSet per pod template (the revisions), rolled between with
 * RollingUpdate or Recreate as decided by the pure planRollout (rollout.ts); this file only reads,
 * writes and records events. ReplicaSet changes (including their status, written by the ReplicaSet
 * controller when pods change) map back to the owning Deployment.
 */
export function deploymentController(deps: ControllerDeps): Controller {
  const { store, events, logger, now } = deps;
  const log = logger.child({ controller: 'deployment' });
  const valid = validStored({ events, logger: log }, COMPONENT);

  const record = (d: Deployment, type: 'Normal' | 'Warning', reason: string, message: string) =>
    events.record({ involved: { kind: 'Deployment', namespace: d.metadata.namespace, name: d.metadata.name, uid: d.metadata.uid }, type, reason, message, component: COMPONENT });

  /** The ReplicaSet for the current template: created (0 replicas), or reused with its revision bumped (rollback). */
  async function syncNewReplicaSet(d: Deployment, owned: ReplicaSet[]): Promise<{ owned: ReplicaSet[]; created: boolean }> {
    const ns = d.metadata.namespace ?? 'default';
    const existing = findNewReplicaSet(d, owned);
    if (existing) {
      const rev = bumpedRevision(existing, owned);
      const minReady = d.spec.minReadySeconds ?? 0;
      if (rev === undefined && (existing.spec.minReadySeconds ?? 0) === minReady) return { owned, created: false };
      const updated = await store.patch('ReplicaSet', ns, existing.metadata.name, (rs) => {
        if (rs.metadata.uid !== existing.metadata.uid) return undefined;
        if (rev !== undefined) rs.metadata.annotations = { ...rs.metadata.annotations, [REVISION_ANNOTATION]: String(rev) };
        rs.spec.minReadySeconds = minReady;
        return rs;
      });
      if (!updated) return { owned, created: false };
      if (rev !== undefined) log.info({ deployment: `${ns}/${d.metadata.name}`, rs: existing.metadata.name, revision: rev }, 'reusing replica set for the current template');
      return { owned: owned.map((rs) => (rs.metadata.uid === updated.metadata.uid ? updated : rs)), created: false };
    }
    if (d.spec.paused) return { owned, created: false };
    const want = newReplicaSetFor(d, owned);
    try {
      const created = await store.create(want);
      log.info({ deployment: `${ns}/${d.metadata.name}`, rs: created.metadata.name }, 'created new replica set');
      return { owned: [...owned, created], created: true };
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      const clash = await store.get('ReplicaSet', ns, want.metadata.name);
      if (clash && isControlledBy(clash, d) && templatesEqual(clash.spec.template, d.spec.template)) return { owned: [...owned, clash], created: false };
      // Someone else's ReplicaSet holds the name: move to the next hash (Kubernetes' collisionCount).
      await store.patch('Deployment', ns, d.metadata.name, (dep) => {
        if (dep.metadata.uid !== d.metadata.uid) return undefined;
        dep.status = { ...(dep.status ?? { replicas: 0, updatedReplicas: 0, readyReplicas: 0, availableReplicas: 0, unavailableReplicas: 0 }), collisionCount: (dep.status?.collisionCount ?? 0) + 1 };
        return dep;
      });
      throw err;
    }
  }

  async function reconcile(key: string): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const raw = await store.get('Deployment', namespace, name);
    if (!raw || raw.metadata.deletionTimestamp) return;
    const d = await valid('Deployment', raw);
    if (!d) return;
    const t = now();
    const listed: ReplicaSet[] = [];
    for (const rs of (await store.list('ReplicaSet', namespace)).items) {
      if (!isControlledBy(rs, d) || rs.metadata.deletionTimestamp) continue;
      const ok = await valid('ReplicaSet', rs);
      // Rolling without one of the revisions would misjudge the whole rollout (and could re-create
      // the invalid one under a new name): wait until it is fixed or deleted, which brings us back.
      if (!ok) return;
      listed.push(ok);
    }
    const { owned, created } = await syncNewReplicaSet(d, listed);
    const pods = (await store.list('Pod', namespace)).items;
    const minReady = d.spec.minReadySeconds ?? 0;
    // Pods by the ReplicaSet controlling them, in one pass over the namespace's pods (not one per ReplicaSet).
    const byReplicaSet = new Map<string, Pod[]>();
    for (const p of pods) {
      const ref = (p.metadata.ownerReferences ?? []).find((r) => r.controller === true && r.kind === 'ReplicaSet');
      if (!ref) continue;
      const list = byReplicaSet.get(ref.uid);
      if (list) list.push(p);
      else byReplicaSet.set(ref.uid, [p]);
    }
    const views: ReplicaSetView[] = owned.map((rs) => ({ rs, ...countPods(byReplicaSet.get(rs.metadata.uid ?? '') ?? [], minReady, t) }));

    // Old pods a rollout keeps until their nodes have the new image (the ReplicaSet controller holds them).
    const newRsNow = findNewReplicaSet(d, owned);
    const held = pods.filter((p) => isGated(p) && isPodActive(p) && owned.some((rs) => rs !== newRsNow && isControlledBy(p, rs)));
    const imageWait = held.length ? { pods: held.length, nodes: [...new Set(held.map((p) => p.spec.nodeName ?? ''))].filter(Boolean).sort() } : undefined;

    // A waved rollout: its progress (a wave passed, a rollback with the stable template written back)
    // is stored before any ReplicaSet is scaled, so the new one never outgrows a wave not on record.
    let waves: DeploymentWavePlan | undefined;
    if (d.spec.drover?.rollout) {
      const newRS = findNewReplicaSet(d, owned);
      waves = planDeploymentWaves({ deployment: d, newReplicaSet: newRS, replicaSets: owned, newPods: newRS ? pods.filter((p) => isControlledBy(p, newRS)) : [], now: t, imageWait });
      if (waves.rollback || rolloutMoved(d.status?.drover?.rollout, waves.rollout)) {
        const rollout = waves.rollout;
        const empty: DeploymentStatus = { replicas: 0, updatedReplicas: 0, readyReplicas: 0, availableReplicas: 0, unavailableReplicas: 0 };
        const progress = { status: (cur: unknown) => ({ ...((cur as DeploymentStatus | undefined) ?? empty), drover: { rollout } }), rollback: waves.rollback, events: waves.events };
        if (!(await saveWaveProgress({ store, log, record: (type, reason, message) => record(d, type, reason, message) }, d, progress))) return;
        // The template written back is a spec change: it queues the pass that rolls back.
        if (waves.rollback) return;
      }
    }

    const stableRS = waves ? owned.find((rs) => rs.metadata.labels?.[POD_TEMPLATE_HASH] === waves!.rollout.stableRevision)?.metadata.name : undefined;
    const plan = planRollout({ deployment: d, replicaSets: views, now: t, newReplicaSetCreated: created, newReplicaSetCap: waves?.cap, stableReplicaSet: stableRS, imageWait });
    if (waves) plan.status.drover = { rollout: waves.rollout };
    if (waves?.requeueAfterMs !== undefined) plan.requeueAfterMs = Math.min(plan.requeueAfterMs ?? Infinity, waves.requeueAfterMs);

    for (const s of plan.scale) {
      const rs = owned.find((x) => x.metadata.name === s.name)!;
      const done = await store.patch('ReplicaSet', namespace, s.name, (next) => {
        if (next.metadata.uid !== rs.metadata.uid || next.spec.replicas === s.to) return undefined;
        next.spec.replicas = s.to;
        return next;
      });
      if (done) {
        log.info({ deployment: key, rs: s.name, from: s.from, to: s.to }, 'scaled replica set');
        await record(d, 'Normal', 'ScalingReplicaSet', `Scaled ${s.to > s.from ? 'up' : 'down'} replica set ${s.name} to ${s.to}`);
      }
    }

    for (const n of plan.deletions) {
      const rs = owned.find((x) => x.metadata.name === n)!;
      try {
        // Only the version we judged empty: a ReplicaSet scaled up meanwhile stays.
        await store.delete('ReplicaSet', namespace, n, { resourceVersion: rs.metadata.resourceVersion });
        log.info({ deployment: key, rs: n }, 'deleted old replica set beyond revisionHistoryLimit');
      } catch (err) {
        if (!isNotFound(err) && !isConflict(err)) throw err;
      }
    }

    const revision = plan.revision;
    const annotationChanged = revision !== undefined && d.metadata.annotations?.[REVISION_ANNOTATION] !== revision;
    if (annotationChanged || !jsonEqual(plan.status, d.status ?? {})) {
      try {
        await store.patch('Deployment', namespace, name, (dep) => {
          if (dep.metadata.uid !== d.metadata.uid) return undefined;
          if (revision !== undefined) dep.metadata.annotations = { ...dep.metadata.annotations, [REVISION_ANNOTATION]: revision };
          // A collision bump since our read is kept.
          const collisionCount = Math.max(plan.status.collisionCount ?? 0, dep.status?.collisionCount ?? 0) || undefined;
          dep.status = { ...plan.status, ...(collisionCount !== undefined ? { collisionCount } : {}) };
          return dep;
        });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const prevReason = d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason;
      const progressing = plan.status.conditions?.find((c) => c.type === 'Progressing');
      if (progressing?.reason === 'ProgressDeadlineExceeded' && prevReason !== 'ProgressDeadlineExceeded') {
        await record(d, 'Warning', 'ProgressDeadlineExceeded', progressing.message ?? 'progress deadline exceeded');
      }
    }

    // Thousands of replicas: their ReplicaSets' status changes wake this pass at most every paceMs (a spec change at once).
    const paceMs = paceFor(d.spec.replicas ?? 1);
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs, paceMs } : { paceMs };
  }

  return {
    name: 'deployment',
    kind: 'Deployment',
    watches: [{ kind: 'ReplicaSet', keys: (obj) => ownerKeys(obj, 'Deployment') }],
    reconcile,
  };
}
