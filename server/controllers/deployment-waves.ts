/**
 * Waved rollouts of a Deployment (`spec.drover.rollout`), PURE. A Deployment's pods are not tied to
 * nodes, so a wave is a count of replicas of the new revision: `nodes: N` → N replicas, `percent: P`
 * → ⌈P % of spec.replicas⌉. The rolling update (rollout.ts) runs as usual but never scales the new
 * ReplicaSet beyond the current wave's count (`cap`); the old ones keep the rest. Each wave passes the
 * same health gate as a DaemonSet's (waves.ts `podFailure`); a failed one writes the stable revision's
 * template back (the ReplicaSet history keeps it: the stable revision is the pod-template-hash of the
 * last rollout that completed, in status.drover.rollout.stableRevision).
 */
import type { Pod } from '../../src/api/pod.js';
import { POD_TEMPLATE_HASH, podTemplateHash } from '../../src/api/revisions.js';
import type { PodTemplate } from '../../src/api/template.js';
import { effectiveWaves, GATE_DEFAULTS, waveLabel, type Deployment, type ReplicaSet, type RolloutWave, type WavedRolloutStatus } from '../../src/api/workloads.js';
import { podReady, readyCondition } from './pods.js';
import { imageWaitText, isPodActive, type ImageWait } from './rollout.js';
import { ms, podFailure, resumeRollout, supersededByStable, type WaveEvent } from './waves.js';

export interface DeploymentWavePlan {
  /** Most replicas the new ReplicaSet may have now; undefined = no limit (nothing being rolled). */
  cap?: number;
  rollout: WavedRolloutStatus;
  /** The gate failed: write this template (the stable revision's) into spec.template. */
  rollback?: { template: PodTemplate; revision: string };
  events: WaveEvent[];
  requeueAfterMs?: number;
}

export interface DeploymentWaveInput {
  deployment: Deployment;
  /** The ReplicaSet of the current template (undefined until created). */
  newReplicaSet?: ReplicaSet;
  /** Every ReplicaSet the Deployment controls (for the stable revision's template). */
  replicaSets: readonly ReplicaSet[];
  /** The new ReplicaSet's pods. */
  newPods: readonly Pod[];
  now: number;
  /** Old pods kept until their nodes have the new revision's served images ("image ready": not yet). */
  imageWait?: ImageWait;
}

const hashOfRs = (rs: ReplicaSet | undefined) => rs?.metadata.labels?.[POD_TEMPLATE_HASH];

/** Replicas of the new revision wave `w` allows. */
export function waveReplicas(w: RolloutWave, replicas: number): number {
  const n = w.nodes ?? Math.ceil(((w.percent ?? 100) * replicas) / 100);
  return Math.min(replicas, n);
}

/** The template of a revision as `rollout undo` writes it back: without the pod-template-hash label. */
function templateOf(rs: ReplicaSet): PodTemplate {
  const t = structuredClone(rs.spec.template);
  if (t.metadata?.labels) {
    delete t.metadata.labels[POD_TEMPLATE_HASH];
    if (!Object.keys(t.metadata.labels).length) delete t.metadata.labels;
  }
  return t;
}

export function planDeploymentWaves(input: DeploymentWaveInput): DeploymentWavePlan {
  const { deployment: d, now } = input;
  const cfg = d.spec.drover!.rollout!;
  const replicas = d.spec.replicas ?? 1;
  const gate = { ...GATE_DEFAULTS, ...cfg.gate };
  const prev = d.status?.drover?.rollout;
  const target = hashOfRs(input.newReplicaSet) ?? podTemplateHash(d.spec.template, d.status?.collisionCount);
  // First sight: the revision the Deployment has now is the baseline.
  const stable = prev?.stableRevision ?? target;
  const waves = effectiveWaves(cfg);
  const nth = (w: number) => `wave ${w + 1}/${waves.length} (${waveLabel(waves[w], 'replica')})`;
  const events: WaveEvent[] = [];
  const pods = input.newPods.filter(isPodActive);
  const ready = pods.filter(podReady).length;
  const base = { waves: waves.length, targetRevision: target, stableRevision: stable };

  if (target === stable) {
    const counts = { updated: pods.length, ready, pending: Math.max(0, replicas - ready), offline: 0, failed: 0, total: replicas };
    if (prev?.phase === 'RolledBack' && prev.stableRevision === stable) return { rollout: { ...prev, counts }, events };
    events.push(...supersededByStable(prev, stable, nth));
    return { rollout: { ...base, phase: 'Complete', wave: waves.length - 1, counts, message: `revision ${target} on ${ready} of ${replicas} replicas` }, events };
  }

  const start = resumeRollout(prev, { target, stable, now, waves: waves.length, nth, paused: !!d.spec.paused, firstWave: `${waveReplicas(waves[0]!, replicas)} replicas` });
  const { fresh } = start;
  let { wave, waveStartedAt } = start;
  events.push(...start.events);

  if (d.spec.paused) {
    const cap = fresh ? 0 : waveReplicas(waves[wave]!, replicas);
    const counts = { updated: pods.length, ready, pending: Math.max(0, cap - ready), offline: 0, failed: 0, total: replicas };
    return { cap, rollout: { ...base, phase: 'Paused', wave, counts, message: `paused at ${nth(wave)} (spec.paused)`, waveStartedAt: new Date(waveStartedAt).toISOString() }, events };
  }

  const readyMs = gate.readySeconds * 1000;
  const timeoutMs = gate.timeoutSeconds * 1000;
  for (;;) {
    const cap = waveReplicas(waves[wave]!, replicas);
    const failed: string[] = [];
    let settled = 0;
    let unready = 0;
    let warmingUntil = 0;
    let wake: number | undefined;
    const at = (t: number) => {
      if (t > now) wake = wake === undefined ? t - now : Math.min(wake, t - now);
    };
    for (const p of pods) {
      const since = Math.max(waveStartedAt, ms(p.metadata.creationTimestamp) ?? waveStartedAt);
      const why = podFailure(p, since, timeoutMs, now);
      if (why) {
        failed.push(`${p.metadata.name}${p.spec.nodeName ? ` on ${p.spec.nodeName}` : ''}: ${why}`);
        continue;
      }
      if (!podReady(p)) {
        unready++;
        at(since + timeoutMs);
        continue;
      }
      const readySince = ms(readyCondition(p)?.lastTransitionTime) ?? now;
      if (now - readySince >= readyMs) settled++;
      else {
        warmingUntil = Math.max(warmingUntil, readySince + readyMs);
        at(readySince + readyMs);
      }
    }
    const counts = { updated: pods.length, ready, pending: Math.max(0, cap - ready - failed.length), offline: 0, failed: failed.length, total: replicas };
    const ratio = cap ? failed.length / cap : 0;
    if (failed.length > 0 && ratio > gate.maxFailureRatio) {
      const why = `${nth(wave)} failed its gate: ${failed.length} of ${cap} pods failed (max failure ratio ${gate.maxFailureRatio}): ${failed.slice(0, 20).join(', ')}`;
      const stableRs = input.replicaSets.find((rs) => hashOfRs(rs) === stable);
      const started = new Date(waveStartedAt).toISOString();
      if (!stableRs) {
        // Nothing to go back to (history trimmed): hold the wave, say so.
        events.push({ type: 'Warning', reason: 'RolloutWaveFailed', message: `${why}; the stable revision ${stable} is no longer in the history: holding the rollout` });
        return { cap, rollout: { ...base, phase: 'Failed', wave, counts, message: `${why}; stable revision ${stable} not in history`, waveStartedAt: started }, events };
      }
      events.push({ type: 'Warning', reason: 'RolloutWaveFailed', message: why });
      events.push({ type: 'Warning', reason: 'RolledBack', message: `rolled back from revision ${target} to the stable revision ${stable} (spec.template written back)` });
      return { cap, rollout: { ...base, phase: 'RolledBack', wave, counts, message: `rolled back: ${why}`, waveStartedAt: started }, rollback: { template: templateOf(stableRs), revision: stable }, events };
    }
    const pass = pods.length >= cap && settled + failed.length === pods.length;
    if (pass && wave === waves.length - 1) {
      events.push({ type: 'Normal', reason: 'RolloutComplete', message: `revision ${target} passed all ${waves.length} waves; it is now the stable revision` });
      return { rollout: { ...base, stableRevision: target, phase: 'Complete', wave, counts, message: `revision ${target} on ${ready} of ${replicas} replicas` }, events };
    }
    if (pass) {
      events.push({ type: 'Normal', reason: 'RolloutWavePassed', message: `${nth(wave)} passed its gate (${settled} of ${cap} replicas ready); starting ${nth(wave + 1)}: ${waveReplicas(waves[wave + 1]!, replicas)} replicas` });
      wave++;
      waveStartedAt = now;
      continue;
    }
    let message = `waiting: ${cap - pods.length} replica${cap - pods.length === 1 ? '' : 's'} of the new revision to be created`;
    if (pods.length >= cap) message = unready === 0 && warmingUntil ? `waiting: pods Ready for ${gate.readySeconds}s` : `waiting: pods to become Ready (timeout ${gate.timeoutSeconds}s)`;
    const images = imageWaitText(input.imageWait);
    if (images) message += `; ${images}`;
    return {
      cap,
      rollout: {
        ...base,
        phase: 'Progressing',
        wave,
        counts,
        message,
        waveStartedAt: new Date(waveStartedAt).toISOString(),
        ...(warmingUntil && unready === 0 ? { waitingUntil: new Date(warmingUntil).toISOString() } : {}),
      },
      events,
      ...(wake !== undefined ? { requeueAfterMs: wake + 100 } : {}),
    };
  }
}
