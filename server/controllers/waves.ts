/**
 * Waved rollouts of a DaemonSet (`spec.drover.rollout`), PURE: given the DaemonSet, its eligible
 * nodes with the daemon pod each runs, and the clock, which revision each node may run, whether the
 * current wave passed or failed its health gate, the `status.drover` to write, the events to record
 * and when to look again. The DaemonSet controller (daemonset.ts) only acts on what this decides.
 *
 * Revisions are pod-template hashes (the `controller-revision-hash` label). The stable revision is
 * the last one that completed; its template is kept in `status.drover.stableTemplate` (a DaemonSet
 * has no ReplicaSet history, and a user's PUT never overwrites status), so a failed wave can write it
 * back into `spec.template`. Every node runs either the stable or the target revision: nodes beyond
 * the current wave are never given the target.
 */
import { createHash } from 'node:crypto';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { CONTROLLER_REVISION_HASH as REVISION_LABEL, podTemplateHash } from '../../src/api/revisions.js';
import { selectorMatches } from '../../src/api/selector.js';
import type { PodTemplate } from '../../src/api/template.js';
import { effectiveWaves, GATE_DEFAULTS, waveLabel, type DaemonSet, type OfflinePolicy, type WavedRollout, type WavedRolloutStatus } from '../../src/api/workloads.js';
import { podReady, readyCondition } from './pods.js';


/** Container waiting reasons that count a pod of the new revision as failed at once. */
export const FAILING_REASONS = new Set(['CrashLoopBackOff', 'ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'CreateContainerConfigError', 'RunContainerError', 'ErrImageNeverPull']);

/** Offline node names listed in a status or an event message, at most. */
const NAMES_SHOWN = 20;

export interface WaveNodeInput {
  node: Node;
  /** The daemon pod kept on the node (the controller's pick among its live pods), if any. */
  pod?: Pod;
  /**
   * The target revision runs server-served images (issue 15): whether the node has loaded them all. A node
   * without them keeps its old pod (image-gate.ts) and is not done until it has fetched them.
   */
  imageReady?: boolean;
}

/** What a node should run: a revision (hash + template), or keep whatever it runs (paused). */
export type NodeDesire = { hash: string; template: PodTemplate } | 'keep';

export interface WaveEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface WavePlan {
  /** Per eligible node. */
  desired: Map<string, NodeDesire>;
  /** `status.drover` as it should be stored. */
  drover: { rollout: WavedRolloutStatus; stableTemplate: PodTemplate };
  /** The gate failed: write the stable template back into spec.template (with the status, at once). */
  rollback?: { template: PodTemplate; wave: number; failed: string[] };
  events: WaveEvent[];
  requeueAfterMs?: number;
}

export function nodeOnline(n: Node): boolean {
  return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
}

function orderKey(seed: string, name: string): string {
  return createHash('sha256').update(`${seed}/${name}`).digest('hex');
}

/**
 * The cumulative node set of each wave, in rollout order. Nodes are taken in a stable order: those a
 * selector wave names first (wave by wave), then the rest by a hash of the DaemonSet's uid and the
 * node name — the same every pass while the fleet is the same, and a different canary per DaemonSet.
 * `nodes: N` holds the first N nodes, `percent: P` ⌈P % of all eligible nodes⌉, `selector` adds the
 * nodes it matches.
 */
export function waveSets(ds: DaemonSet, cfg: WavedRollout, nodes: readonly Node[]): string[][] {
  const seed = ds.metadata.uid ?? `${ds.metadata.namespace}/${ds.metadata.name}`;
  const hashed = [...nodes].sort((a, b) => {
    const ka = orderKey(seed, a.metadata.name);
    const kb = orderKey(seed, b.metadata.name);
    return ka < kb ? -1 : ka > kb ? 1 : a.metadata.name < b.metadata.name ? -1 : 1;
  });
  const waves = effectiveWaves(cfg);
  const order: string[] = [];
  const placed = new Set<string>();
  for (const w of waves) {
    if (!w.selector) continue;
    for (const n of hashed) {
      if (!placed.has(n.metadata.name) && selectorMatches(w.selector, n.metadata.labels)) {
        placed.add(n.metadata.name);
        order.push(n.metadata.name);
      }
    }
  }
  for (const n of hashed) if (!placed.has(n.metadata.name)) order.push(n.metadata.name);

  const total = nodes.length;
  const cur = new Set<string>();
  const sets: string[][] = [];
  for (const w of waves) {
    if (w.selector) {
      for (const n of hashed) if (selectorMatches(w.selector, n.metadata.labels)) cur.add(n.metadata.name);
    } else {
      const want = w.nodes ?? Math.ceil(((w.percent ?? 100) * total) / 100);
      for (const name of order) {
        if (cur.size >= want) break;
        cur.add(name);
      }
    }
    sets.push(order.filter((n) => cur.has(n)));
  }
  return sets;
}

const hashOf = (p: Pod | undefined) => p?.metadata.labels?.[REVISION_LABEL];

/** ms epoch of an ISO time, undefined when absent or unreadable. */
export function ms(iso: string | undefined): number | undefined {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t : undefined;
}

const underWay = (r: WavedRolloutStatus | undefined): r is WavedRolloutStatus => r?.phase === 'Progressing' || r?.phase === 'Paused';

/** A rollout under way ends when its template is put back to the stable one by hand (`apply` of the old one). */
export function supersededByStable(prev: WavedRolloutStatus | undefined, stable: string, nth: (w: number) => string): WaveEvent[] {
  if (!underWay(prev) || prev.targetRevision === stable) return [];
  return [{ type: 'Normal', reason: 'RolloutSuperseded', message: `revision ${prev.targetRevision} superseded at ${nth(prev.wave)} by the stable revision ${stable}` }];
}

/**
 * Where a rollout of `target` stands: the wave and its start from the last status when it is the same
 * rollout still under way, else wave 1 from now (a new revision supersedes one under way; one that
 * completed or was rolled back and is applied again is a new attempt), with the events that say so.
 */
export function resumeRollout(
  prev: WavedRolloutStatus | undefined,
  o: { target: string; stable: string; now: number; waves: number; nth: (w: number) => string; paused: boolean; firstWave: string },
): { fresh: boolean; wave: number; waveStartedAt: number; events: WaveEvent[] } {
  if (underWay(prev) && prev.targetRevision === o.target) {
    return { fresh: false, wave: Math.min(prev.wave, o.waves - 1), waveStartedAt: ms(prev.waveStartedAt) ?? o.now, events: [] };
  }
  const events: WaveEvent[] = [];
  if (underWay(prev)) {
    events.push({ type: 'Normal', reason: 'RolloutSuperseded', message: `revision ${prev.targetRevision} superseded at ${o.nth(prev.wave)} by revision ${o.target}; starting again from wave 1 (stable: ${o.stable})` });
  }
  if (!o.paused) events.push({ type: 'Normal', reason: 'RolloutStarted', message: `rolling out revision ${o.target} in ${o.waves} waves (stable: ${o.stable}); ${o.nth(0)}: ${o.firstWave}` });
  return { fresh: true, wave: 0, waveStartedAt: o.now, events };
}

/** Why a pod of the new revision counts as failed, or undefined. `since`: when it was due to start. */
export function podFailure(p: Pod, since: number, timeoutMs: number, now: number): string | undefined {
  if (p.status?.phase === 'Failed') return `pod Failed${p.status.reason ? ` (${p.status.reason})` : ''}`;
  for (const c of p.status?.containerStatuses ?? []) {
    if (c.state === 'waiting' && c.reason && FAILING_REASONS.has(c.reason)) return `${c.name}: ${c.reason}${c.message ? ` (${c.message.slice(0, 200)})` : ''}`;
  }
  if (!podReady(p) && now - since >= timeoutMs) return `not Ready within ${Math.round(timeoutMs / 1000)}s`;
  return undefined;
}

const list = (names: string[]) => (names.length > NAMES_SHOWN ? `${names.slice(0, NAMES_SHOWN).join(', ')} and ${names.length - NAMES_SHOWN} more` : names.join(', '));

interface GateVerdict {
  verdict: 'pass' | 'fail' | 'wait';
  /** Failed nodes with why ("node/pod: reason"). */
  failed: string[];
  offline: string[];
  updated: number;
  ready: number;
  pending: number;
  /** Why it waits (status message). */
  why: string;
  waitingUntil?: number;
  /** ms until something changes by the clock alone (readySeconds reached, a timeout). */
  wakeInMs?: number;
}

/**
 * The health gate of one wave over its cumulative node set: every updated pod Ready for readySeconds,
 * and at most maxFailureRatio of the wave's (online) pods failed — Failed, crash-looping, unable to
 * pull, or not Ready within timeoutSeconds of the wave's start. Offline nodes: `wait` and `skip` leave
 * them out of the gate, `block` holds it until they are back and ready.
 */
function evaluateGate(set: string[], byName: Map<string, WaveNodeInput>, target: string, cfg: WavedRollout, waveStart: number, now: number): GateVerdict {
  const gate = { ...GATE_DEFAULTS, ...cfg.gate };
  const policy: OfflinePolicy = cfg.offlineNodes ?? 'wait';
  const readyMs = gate.readySeconds * 1000;
  const timeoutMs = gate.timeoutSeconds * 1000;
  const v: GateVerdict = { verdict: 'wait', failed: [], offline: [], updated: 0, ready: 0, pending: 0, why: '' };
  let gated = 0;
  let settled = 0;
  let notUpdated = 0;
  /** Of those, nodes still fetching the target's served images: their old pod stays until the image is there. */
  let fetching = 0;
  let unready = 0;
  let warmingUntil = 0;
  const wake = (at: number) => {
    const d = at - now;
    if (d > 0) v.wakeInMs = v.wakeInMs === undefined ? d : Math.min(v.wakeInMs, d);
  };
  for (const name of set) {
    const n = byName.get(name);
    if (!n) continue;
    const pod = n.pod;
    const updated = hashOf(pod) === target;
    const ready = updated && podReady(pod!);
    if (updated) v.updated++;
    if (ready) v.ready++;
    if (!nodeOnline(n.node)) {
      v.offline.push(name);
      if (!ready) v.pending++;
      continue;
    }
    gated++;
    if (!updated) {
      notUpdated++;
      if (n.imageReady === false) fetching++;
      v.pending++;
      continue;
    }
    // Due from the wave's start, the pod's creation or the node's return, whichever is last: a pod
    // replaced while its node was offline (`wait`) gets the whole timeout once the node is back.
    const back = ms(n.node.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime) ?? 0;
    const since = Math.max(waveStart, ms(pod!.metadata.creationTimestamp) ?? waveStart, back);
    const why = podFailure(pod!, since, timeoutMs, now);
    if (why) {
      v.failed.push(`${name}/${pod!.metadata.name}: ${why}`);
      settled++;
      continue;
    }
    if (!ready) {
      v.pending++;
      unready++;
      wake(since + timeoutMs);
      continue;
    }
    const readySince = ms(readyCondition(pod!)?.lastTransitionTime) ?? now;
    if (now - readySince >= readyMs) settled++;
    else {
      warmingUntil = Math.max(warmingUntil, readySince + readyMs);
      wake(readySince + readyMs);
    }
  }
  const ratio = gated ? v.failed.length / gated : 0;
  if (v.failed.length > 0 && ratio > gate.maxFailureRatio) {
    v.verdict = 'fail';
    v.why = `${v.failed.length} of ${gated} pods failed (max failure ratio ${gate.maxFailureRatio}): ${list(v.failed)}`;
    return v;
  }
  const blocked = policy === 'block' && v.offline.length > 0;
  if (settled === gated && !blocked) {
    v.verdict = 'pass';
    return v;
  }
  if (notUpdated > 0) v.why = `waiting: ${notUpdated} pod${notUpdated === 1 ? '' : 's'} to be replaced${fetching ? ` (${fetching} node${fetching === 1 ? '' : 's'} fetching the new image)` : ''}`;
  else if (unready > 0) v.why = `waiting: pods to become Ready (timeout ${gate.timeoutSeconds}s)`;
  else if (warmingUntil > 0) {
    v.why = `waiting: pods Ready for ${gate.readySeconds}s`;
    v.waitingUntil = warmingUntil;
  } else if (blocked) v.why = `blocked: offline nodes of this wave (offlineNodes: block): ${list(v.offline)}`;
  if (blocked && !v.why.startsWith('blocked')) v.why += `; blocked by offline nodes: ${list(v.offline)}`;
  return v;
}

export interface WaveInput {
  ds: DaemonSet;
  /** Eligible nodes (those the DaemonSet belongs on) with their kept pod. */
  nodes: readonly WaveNodeInput[];
  now: number;
}

/** The waved-rollout decision for one DaemonSet that has spec.drover.rollout. Pure. */
export function planWaves(input: WaveInput): WavePlan {
  const { ds, now } = input;
  const cfg = ds.spec.drover!.rollout!;
  const paused = ds.spec.drover?.paused === true;
  const policy: OfflinePolicy = cfg.offlineNodes ?? 'wait';
  const prev = ds.status?.drover;
  const prevRollout = prev?.rollout;
  const target = podTemplateHash(ds.spec.template);
  const targetRev = { hash: target, template: ds.spec.template };
  // First sight: what the DaemonSet says now is the baseline (waves apply to the changes after it).
  let stableTemplate = prev?.stableTemplate ?? ds.spec.template;
  let stable = podTemplateHash(stableTemplate);
  const stableRev = () => ({ hash: stable, template: stableTemplate });

  const waves = effectiveWaves(cfg);
  const nodeList = input.nodes.map((n) => n.node);
  const sets = waveSets(ds, cfg, nodeList);
  const byName = new Map(input.nodes.map((n) => [n.node.metadata.name, n]));
  const all = input.nodes.map((n) => n.node.metadata.name);
  const events: WaveEvent[] = [];
  const desired = new Map<string, NodeDesire>();
  const nth = (w: number) => `wave ${w + 1}/${waves.length} (${waveLabel(waves[w])})`;

  const counts = (set: string[], hash: string) => {
    const offline = set.filter((n) => !nodeOnline(byName.get(n)!.node));
    let updated = 0;
    let ready = 0;
    for (const n of all) {
      const p = byName.get(n)!.pod;
      if (hashOf(p) === hash) {
        updated++;
        if (podReady(p!)) ready++;
      }
    }
    const pending = set.filter((n) => {
      const p = byName.get(n)!.pod;
      return !(hashOf(p) === hash && podReady(p!));
    }).length;
    return { offline, c: { updated, ready, pending, offline: offline.length, failed: 0, total: all.length } };
  };

  // ---- settled states: nothing to roll (the target is the stable revision) ----
  if (target === stable) {
    for (const n of all) desired.set(n, paused ? 'keep' : stableRev());
    const rolledBack = prevRollout?.phase === 'RolledBack' && prevRollout.stableRevision === stable;
    const { offline, c } = counts(all, stable);
    const shown = offline.length ? { offlineNodes: offline.slice(0, NAMES_SHOWN) } : {};
    const rollout: WavedRolloutStatus = rolledBack
      ? { ...prevRollout, counts: c, ...shown }
      : {
          phase: 'Complete',
          wave: waves.length - 1,
          waves: waves.length,
          targetRevision: target,
          stableRevision: stable,
          counts: c,
          message: `revision ${target} on ${c.updated} of ${c.total} nodes`,
          ...shown,
        };
    if (rolledBack && !offline.length) delete rollout.offlineNodes;
    events.push(...supersededByStable(prevRollout, stable, nth));
    return { desired, drover: { rollout, stableTemplate }, events };
  }

  // ---- a rollout of `target` ----
  const start = resumeRollout(prevRollout, { target, stable, now, waves: waves.length, nth, paused, firstWave: `${sets[0]!.length} nodes` });
  const { fresh } = start;
  let { wave, waveStartedAt } = start;
  events.push(...start.events);

  const base = { waves: waves.length, targetRevision: target, stableRevision: stable };
  let rollout: WavedRolloutStatus | undefined;
  let rollback: WavePlan['rollback'];
  let requeueAfterMs: number | undefined;

  if (paused) {
    // Paused holds the wave: no pod is replaced, no gate decides; a node without a pod gets the
    // revision its place in the wave says (the target only for a rollout already under way).
    const set = new Set(fresh ? [] : sets[wave]);
    for (const n of all) desired.set(n, byName.get(n)!.pod ? 'keep' : set.has(n) ? targetRev : stableRev());
    const { offline, c } = counts(sets[wave]!, target);
    rollout = { ...base, phase: 'Paused', wave, counts: c, message: `paused at ${nth(wave)} (spec.drover.paused)`, waveStartedAt: new Date(waveStartedAt).toISOString(), ...(offline.length ? { offlineNodes: offline.slice(0, NAMES_SHOWN) } : {}) };
    return { desired, drover: { rollout, stableTemplate }, events };
  }

  for (;;) {
    const set = sets[wave]!;
    const v = evaluateGate(set, byName, target, cfg, waveStartedAt, now);
    const counts = { updated: 0, ready: 0, pending: v.pending, offline: v.offline.length, failed: v.failed.length, total: all.length };
    for (const n of all) {
      const p = byName.get(n)!.pod;
      if (hashOf(p) === target) {
        counts.updated++;
        if (podReady(p!)) counts.ready++;
      }
    }
    const offlineNodes = v.offline.length ? { offlineNodes: v.offline.slice(0, NAMES_SHOWN) } : {};
    if (v.verdict === 'fail') {
      const failedNodes = v.failed.map((f) => f.slice(0, f.indexOf('/')));
      const why = `${nth(wave)} failed its gate: ${v.why}`;
      events.push({ type: 'Warning', reason: 'RolloutWaveFailed', message: why });
      events.push({ type: 'Warning', reason: 'RolledBack', message: `rolled back from revision ${target} to the stable revision ${stable} (spec.template written back); nodes beyond ${nth(wave)} never ran ${target}` });
      rollback = { template: stableTemplate, wave, failed: failedNodes };
      rollout = { ...base, phase: 'RolledBack', wave, counts, message: `rolled back: ${why}`, waveStartedAt: new Date(waveStartedAt).toISOString(), ...offlineNodes };
      for (const n of all) desired.set(n, stableRev());
      break;
    }
    if (v.verdict === 'pass' && wave === waves.length - 1) {
      events.push({ type: 'Normal', reason: 'RolloutComplete', message: `revision ${target} passed all ${waves.length} waves; it is now the stable revision` });
      stableTemplate = ds.spec.template;
      stable = target;
      for (const n of all) desired.set(n, targetRev);
      rollout = { ...base, stableRevision: target, phase: 'Complete', wave, counts, message: `revision ${target} on ${counts.updated} of ${counts.total} nodes`, ...offlineNodes };
      break;
    }
    if (v.verdict === 'pass') {
      events.push({ type: 'Normal', reason: 'RolloutWavePassed', message: `${nth(wave)} passed its gate (${v.ready} of ${set.length} nodes updated and ready); starting ${nth(wave + 1)}: ${sets[wave + 1]!.length} nodes` });
      wave++;
      waveStartedAt = now;
      continue;
    }
    // Waiting in this wave: its nodes run the target (an offline node with `skip` keeps what it has),
    // every other node the stable revision.
    const inWave = new Set(set);
    for (const n of all) {
      const { node, pod } = byName.get(n)!;
      if (!inWave.has(n)) desired.set(n, stableRev());
      else if (policy === 'skip' && !nodeOnline(node)) desired.set(n, pod ? 'keep' : stableRev());
      else desired.set(n, targetRev);
    }
    rollout = {
      ...base,
      phase: 'Progressing',
      wave,
      counts,
      message: v.why || 'waiting',
      waveStartedAt: new Date(waveStartedAt).toISOString(),
      ...(v.waitingUntil ? { waitingUntil: new Date(v.waitingUntil).toISOString() } : {}),
      ...offlineNodes,
    };
    if (v.wakeInMs !== undefined) requeueAfterMs = v.wakeInMs + 100;
    break;
  }
  return { desired, drover: { rollout, stableTemplate }, ...(rollback ? { rollback } : {}), events, ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}) };
}
