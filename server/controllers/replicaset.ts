import { randomInt } from 'node:crypto';
import type { Pod } from '../../src/api/pod.js';
import type { Node } from '../../src/api/node.js';
import { isControlledBy, templatesEqual } from '../../src/api/revisions.js';
import { jsonEqual } from '../../src/util/canonical-json.js';
import { deepCopy } from '../../src/util/deep-copy.js';
import { deepFreeze } from '../../src/util/deep-freeze.js';
import { parseObject } from '../../src/api/validate.js';
import { MAX_REPLICAS, type ReplicaSet } from '../../src/api/workloads.js';
import { errorMessage, isAlreadyExists, isNotFound } from '../../src/util/errors.js';
import type { ControllerDeps } from './deps.js';
import { podReady, readyCondition } from './pods.js';
import { countPods, isPodActive, isPodAvailable, nextAvailableAt } from './rollout.js';
import { ownerKeys, paceFor, splitKey, type Controller, type ReconcileResult } from './runner.js';
import { validStored } from './valid-stored.js';
import { isKind } from '../store/types.js';
import { PodWriteSteps, slowStartBatches } from './still-wanted.js';
import { NO_IMAGES } from '../desired/image-catalog.js';
import { GatedIndex, IMAGE_FETCH_FAILED, IMAGE_GATE_RECHECK_MS, imageGate, isGated, prefetchValue, servedImages, setPrefetch, withPrefetch, type GateVerdict } from './image-gate.js';

const COMPONENT = 'replicaset-controller';
const NAME_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** `${rs}-xxxxx`: 5 random lowercase alphanumerics, as Kubernetes' generateName. */
export function podNameFor(rsName: string): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += NAME_ALPHABET[randomInt(NAME_ALPHABET.length)];
  return `${rsName}-${s}`;
}

/**
 * A pod for a ReplicaSet, validated and defaulted exactly as one POSTed to the API would be:
 * template labels/annotations, controller ownerReference to the RS, status Pending (the scheduler
 * binds it).
 */
export function podFromTemplate(rs: ReplicaSet, name: string): Pod {
  const t = rs.spec.template;
  const owner = rs.metadata.uid ?? '';
  const version = rs.metadata.resourceVersion;
  const made = version !== undefined ? madeFrom.get(owner) : undefined;
  if (made && made.version === version && made.nameLength === name.length && generatedFor(rs.metadata.name, name)) {
    const pod = deepCopy(made.pod);
    pod.metadata.name = name;
    return pod;
  }
  const raw = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: rs.metadata.namespace ?? 'default',
      ...(t.metadata?.labels ? { labels: { ...t.metadata.labels } } : {}),
      ...(t.metadata?.annotations ? { annotations: { ...t.metadata.annotations } } : {}),
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: owner, controller: true, blockOwnerDeletion: true }],
    },
    // parseObject copies what it is given: the pod shares nothing with the template.
    spec: t.spec,
  };
  const pod = parseObject(raw).object as Pod;
  pod.status = { phase: 'Pending' };
  if (version !== undefined && owner !== '') {
    madeFrom.delete(owner);
    madeFrom.set(owner, { version, nameLength: name.length, pod: deepFreeze(deepCopy(pod)) });
    if (madeFrom.size > MADE_FROM_MAX) madeFrom.delete(madeFrom.keys().next().value!);
  }
  return pod;
}

/**
 * The last pod validated for each ReplicaSet (by uid), at the ReplicaSet's resourceVersion: a stored
 * version names its content exactly. The replicas made from one version differ only in their generated
 * name, the ReplicaSet's name and a suffix of one length and alphabet, valid or not alike: so one
 * validation serves all of them (a name of another shape is validated in full). Validating each of 5,000
 * replicas was 8 % of a placement's CPU.
 */
const madeFrom = new Map<string, { version: string; nameLength: number; pod: Pod }>();

/** `${rsName}-` and a suffix of podNameFor's alphabet: a name valid exactly when another of its length is. */
function generatedFor(rsName: string, name: string): boolean {
  return name.startsWith(`${rsName}-`) && GENERATED_SUFFIX.test(name.slice(rsName.length + 1));
}
const GENERATED_SUFFIX = /^[a-z0-9]+$/;
const MADE_FROM_MAX = 256;

function podRankKey(p: Pod): [number, number, number, number, number, number] {
  const phaseRank: Record<string, number> = { Pending: 0, Unknown: 1, Running: 2 };
  const readySince = podReady(p) ? Date.parse(readyCondition(p)?.lastTransitionTime ?? '') || 0 : 0;
  const restarts = (p.status?.containerStatuses ?? []).reduce((s, c) => Math.max(s, c.restartCount ?? 0), 0);
  const created = Date.parse(p.metadata.creationTimestamp ?? '') || 0;
  return [
    p.spec.nodeName ? 1 : 0, // unscheduled first
    phaseRank[p.status?.phase ?? 'Pending'] ?? 0, // Pending < Unknown < Running
    podReady(p) ? 1 : 0, // not ready first
    -readySince, // ready for a shorter time first
    -restarts, // more restarts first
    -created, // newer first
  ];
}

/** Kubernetes' ActivePods ordering for scale-down: the pods to delete first come first. */
export function rankForDeletion(pods: Pod[]): Pod[] {
  return [...pods].sort((a, b) => {
    const ka = podRankKey(a);
    const kb = podRankKey(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i]! - kb[i]!;
    return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
  });
}

/**
 * The scale-down victims of an old ReplicaSet in a rollout to a template with server-served images: of
 * `count` pods to stop, those whose node already has the images go first (in rankForDeletion's order);
 * only if there are too few are pods held (`held`: they stay, annotated for prefetch, and the ReplicaSet
 * stays above its spec until their nodes report the images). Pods already held come first among those,
 * so a node that started fetching is not dropped for another. Pure.
 */
export function pickVictims(active: Pod[], count: number, verdict: (p: Pod) => GateVerdict): { victims: Pod[]; held: Array<{ pod: Pod; verdict: GateVerdict }> } {
  const ranked = rankForDeletion(active);
  const victims: Pod[] = [];
  const waiting: Array<{ pod: Pod; verdict: GateVerdict }> = [];
  for (const p of ranked) {
    if (victims.length >= count) break;
    const v = verdict(p);
    if (v.hold) waiting.push({ pod: p, verdict: v });
    else victims.push(p);
  }
  // Every pod looked at was needed: as many held as victims are missing, annotated ones first.
  const missing = count - victims.length;
  const held = waiting.sort((a, b) => Number(isGated(b.pod)) - Number(isGated(a.pod))).slice(0, Math.max(0, missing));
  return { victims, held };
}

/**
 * The ReplicaSet controller: keeps exactly spec.replicas active pods for each ReplicaSet (creates
 * from the template, deletes surplus in Kubernetes' order, replaces Failed/Succeeded pods) and
 * writes status (replicas, readyReplicas, availableReplicas, observedGeneration) when it changed.
 */
export function replicaSetController(deps: ControllerDeps): Controller {
  const { store, events, logger, now } = deps;
  const catalog = deps.images ?? NO_IMAGES;
  const log = logger.child({ controller: 'replicaset' });
  /** ReplicaSets holding a pod for an image its node lacks: that node's image report wakes them (and only them). */
  const gated = new GatedIndex();
  /** Per ReplicaSet, the failed-transfer message last recorded per held pod (uid): one Warning per cause. */
  const reported = new Map<string, Map<string, string>>();
  const valid = validStored({ events, logger: log }, COMPONENT);
  /** Per ReplicaSet creating pods over several passes: the slow-start batch size its last pass reached, all writes succeeding. */
  const warm = new Map<string, { uid?: string; size: number }>();

  const record = (rs: ReplicaSet, type: 'Normal' | 'Warning', reason: string, message: string) =>
    events.record({ involved: { kind: 'ReplicaSet', namespace: rs.metadata.namespace, name: rs.metadata.name, uid: rs.metadata.uid }, type, reason, message, component: COMPONENT });

  // Per-pod Normal events are not waited for: each batch of pod writes would wait for a second commit.
  const emit = (rs: ReplicaSet, type: 'Normal' | 'Warning', reason: string, message: string) =>
    events.emit({ involved: { kind: 'ReplicaSet', namespace: rs.metadata.namespace, name: rs.metadata.name, uid: rs.metadata.uid }, type, reason, message, component: COMPONENT });

  async function deletePod(rs: ReplicaSet, p: Pod): Promise<boolean> {
    try {
      await store.delete('Pod', p.metadata.namespace ?? 'default', p.metadata.name);
    } catch (err) {
      if (isNotFound(err)) return true;
      await record(rs, 'Warning', 'FailedDelete', `Error deleting pod ${p.metadata.name}: ${errorMessage(err)}`);
      throw err;
    }
    emit(rs, 'Normal', 'SuccessfulDelete', `Deleted pod: ${p.metadata.name}`);
    return true;
  }

  async function createPod(rs: ReplicaSet): Promise<Pod> {
    for (let attempt = 0; ; attempt++) {
      const name = podNameFor(rs.metadata.name);
      let pod: Pod;
      try {
        pod = podFromTemplate(rs, name);
        const created = await store.create(pod);
        emit(rs, 'Normal', 'SuccessfulCreate', `Created pod: ${name}`);
        return created;
      } catch (err) {
        if (isAlreadyExists(err) && attempt < 5) continue;
        await record(rs, 'Warning', 'FailedCreate', `Error creating: ${errorMessage(err)}`);
        throw err;
      }
    }
  }

  /**
   * The served images a rollout replaces this ReplicaSet's pods with: those of its Deployment's template
   * when it is an old revision of a Deployment that is rolling (not paused). Empty otherwise: a plain
   * scale-down, a standalone ReplicaSet, registry images — none of them is ever held.
   */
  async function rolloutImages(rs: ReplicaSet): Promise<{ images: string[]; deployment?: { name: string; uid?: string } }> {
    const ref = (rs.metadata.ownerReferences ?? []).find((r) => r.controller && r.kind === 'Deployment');
    if (!ref) return { images: [] };
    const d = await store.get('Deployment', rs.metadata.namespace ?? 'default', ref.name);
    if (!d || (ref.uid && d.metadata.uid !== ref.uid) || d.metadata.deletionTimestamp || d.spec.paused) return { images: [] };
    if (templatesEqual(rs.spec.template, d.spec.template)) return { images: [] };
    return { images: servedImages(d.spec.template.spec, catalog), deployment: { name: d.metadata.name, uid: d.metadata.uid } };
  }

  async function reportFailures(key: string, rs: ReplicaSet, deployment: { name: string; uid?: string } | undefined, held: Array<{ pod: Pod; verdict: GateVerdict }>): Promise<void> {
    const prev = reported.get(key);
    const next = new Map<string, string>();
    const ns = rs.metadata.namespace;
    for (const { pod, verdict } of held) {
      if (!verdict.failure) continue;
      const uid = pod.metadata.uid ?? pod.metadata.name;
      next.set(uid, verdict.failure);
      if (prev?.get(uid) === verdict.failure) continue;
      const message = `${verdict.failure}; pod ${pod.metadata.name} keeps running until the image is there (the node retries)`;
      const involved = [
        { kind: 'Pod', namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid },
        { kind: 'ReplicaSet', namespace: ns, name: rs.metadata.name, uid: rs.metadata.uid },
        ...(deployment ? [{ kind: 'Deployment', namespace: ns, name: deployment.name, uid: deployment.uid }] : []),
      ];
      for (const o of involved) await events.record({ involved: o, type: 'Warning', reason: IMAGE_FETCH_FAILED, message, component: COMPONENT });
    }
    if (next.size) reported.set(key, next);
    else reported.delete(key);
  }

  async function reconcile(key: string, signal?: AbortSignal): Promise<ReconcileResult | void> {
    const { namespace, name } = splitKey(key);
    const raw = await store.get('ReplicaSet', namespace, name);
    if (!raw || raw.metadata.deletionTimestamp) {
      gated.set(key, []);
      reported.delete(key);
      warm.delete(key);
      return;
    }
    const rs = await valid('ReplicaSet', raw);
    if (!rs) return;
    const t = now();
    const minReady = rs.spec.minReadySeconds ?? 0;
    const owned = (await store.list('Pod', namespace)).items.filter((p) => isControlledBy(p, rs));

    // Every pod written is a step: the ReplicaSet and its Deployment must still be what was read, and at
    // most MAX_POD_WRITES_PER_STEP are written before the next pass.
    // Carried over only for the same ReplicaSet (uid): one deleted and made again under its name starts at 1.
    const carried = warm.get(key);
    warm.delete(key);
    const steps = new PodWriteSteps(store, rs, signal, carried && carried.uid === rs.metadata.uid ? carried.size : 1);

    // Terminated pods do not count; they are removed so their replacement can take their place.
    const terminated = owned.filter((x) => !isPodActive(x) && !x.metadata.deletionTimestamp);
    await slowStartBatches(steps, terminated.length, (i) => deletePod(rs, terminated[i]!));
    let active = owned.filter(isPodActive);

    const maxReplicas = deps.maxReplicas ?? MAX_REPLICAS;
    const want = Math.min(rs.spec.replicas ?? 0, maxReplicas);
    if (want < (rs.spec.replicas ?? 0) && active.length < want) {
      await record(rs, 'Warning', 'ReplicasCapped', `spec.replicas ${rs.spec.replicas} is above the server's limit of ${maxReplicas}; running ${maxReplicas}`);
    }
    const diff = active.length - want;
    let more = false;
    // The image gate (issue 15): only looked at when pods are to go or some carry a prefetch request.
    const rollout = deps.images && (diff > 0 || active.some(isGated)) ? await rolloutImages(rs) : { images: [] };
    let held: Array<{ pod: Pod; verdict: GateVerdict }> = [];
    if (diff < 0) {
      // Side by side in slow-start batches: the store commits each batch's writes together, and the
      // scheduler and the agents get the first pods while the rest are written.
      const created = await slowStartBatches(steps, -diff, () => createPod(rs));
      more = created.length < -diff;
      // Every create of this pass succeeded and more are to come: the next pass goes on at the size reached.
      if (more && !steps.stopped) warm.set(key, { uid: rs.metadata.uid, size: steps.reached });
      active = [...active, ...created];
      log.debug({ rs: key, created: created.length }, 'created pods');
    } else if (diff > 0) {
      let victims: Pod[];
      if (rollout.images.length) {
        const names = new Set(active.flatMap((p) => (p.spec.nodeName ? [p.spec.nodeName] : [])));
        const nodes = new Map<string, Node | undefined>();
        // A few nodes one by one; a ReplicaSet spread over a fleet reads the Node list once.
        if (names.size > 32) for (const n of (await store.list('Node')).items) nodes.set(n.metadata.name, n);
        else for (const n of names) nodes.set(n, await store.get('Node', '', n));
        const pick = pickVictims(active, diff, (p) => imageGate(p, rollout.images, catalog, nodes.get(p.spec.nodeName ?? '')));
        victims = pick.victims;
        held = pick.held;
        gated.set(key, held.map((h) => h.pod.spec.nodeName!));
        for (const n of nodes.values()) if (n) gated.seen(n);
      } else victims = rankForDeletion(active).slice(0, diff);
      const deleted: Pod[] = await slowStartBatches(steps, victims.length, async (i) => (await deletePod(rs, victims[i]!), victims[i]!));
      more = deleted.length < victims.length;
      const gone = new Set(deleted.map((p) => p.metadata.uid));
      active = active.filter((p) => !gone.has(p.metadata.uid));
      log.debug({ rs: key, deleted: deleted.length, held: held.length }, 'deleted surplus pods');
    }
    if (!held.length) gated.set(key, []);
    // Held pods ask their node to fetch the images; a pod no rollout holds any more (the ReplicaSet became the
    // current revision again, the Deployment was paused) loses the request. Pods of an old revision keep
    // theirs, brought up to the newest template's images: they are still to be replaced.
    const heldUids = new Set(held.map((h) => h.pod.metadata.uid));
    const prefetch = prefetchValue(rollout.images);
    const annotate = active
      .filter((p) => heldUids.has(p.metadata.uid) || isGated(p))
      .map((pod) => ({ pod, value: prefetch }))
      .filter((a) => withPrefetch(a.pod, a.value) !== undefined);
    if (!steps.stopped && annotate.length) {
      const done = await slowStartBatches(steps, annotate.length, (i) => setPrefetch(store, annotate[i]!.pod, annotate[i]!.value));
      if (done.length < annotate.length) more = true;
      const fresh = held.filter((h) => annotate.some((a) => a.pod === h.pod));
      if (fresh.length) log.info({ rs: key, pods: fresh.map((h) => `${h.pod.metadata.name}@${h.pod.spec.nodeName}`) }, 'old pods kept until their nodes have the new image');
    }
    await reportFailures(key, rs, rollout.deployment, held);
    if (steps.stopped) {
      log.info({ rs: key, why: steps.stopped }, 'replicaset reconcile stopped');
      return;
    }

    const counts = countPods(active, minReady, t);
    const templateLabels = rs.spec.template.metadata?.labels ?? {};
    const fullyLabeled = active.filter((p) => Object.entries(templateLabels).every(([k, v]) => p.metadata.labels?.[k] === v)).length;
    const status = {
      replicas: counts.pods,
      fullyLabeledReplicas: fullyLabeled,
      readyReplicas: counts.ready,
      availableReplicas: active.filter((p) => isPodAvailable(p, minReady, t)).length,
      observedGeneration: rs.metadata.generation,
    };
    if (!jsonEqual(status, rs.status ?? {})) {
      try {
        await store.patch('ReplicaSet', namespace, name, (cur) => {
          if (cur.metadata.uid !== rs.metadata.uid) return undefined;
          if (jsonEqual(status, cur.status ?? {})) return undefined;
          // observedGeneration is the generation read above: a newer spec gets its own reconcile.
          return { ...cur, status };
        });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }

    // Thousands of replicas: their pods' status changes wake this pass at most every paceMs (a spec change at once).
    const paceMs = paceFor(want);
    // A batch done, more to do: the next pass comes at once (after the other keys queued meanwhile).
    if (more) return { requeueAfterMs: 0, paceMs };
    const at = nextAvailableAt(active, minReady, t);
    const next = Math.min(at !== undefined ? Math.max(0, at - t) + 50 : Infinity, held.length ? IMAGE_GATE_RECHECK_MS : Infinity);
    return Number.isFinite(next) ? { requeueAfterMs: next, paceMs } : { paceMs };
  }

  return {
    name: 'replicaset',
    kind: 'ReplicaSet',
    watches: [
      { kind: 'Pod', keys: (obj) => ownerKeys(obj, 'ReplicaSet') },
      // Only the ReplicaSets holding a pod on that node, and only when its loaded images or failed
      // transfers changed: a fleet's heartbeats cost a map lookup each.
      { kind: 'Node', keys: (obj, type) => gated.changed(type === 'DELETED' || !isKind(obj, 'Node') ? undefined : obj, obj.metadata.name) },
    ],
    reconcile,
  };
}
