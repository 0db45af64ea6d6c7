/**
 * How the DaemonSet and Deployment controllers store a waved rollout's progress: before any pod or
 * ReplicaSet is written (so nothing of wave k+1 exists unless wave k's pass is on record), in one
 * atomic patch with the stable template written back on a rollback, and only onto the template it was
 * planned for (a newer one is for the next pass). The events are recorded once the patch landed.
 */
import { podTemplateHash } from '../../src/api/revisions.js';
import type { PodTemplate } from '../../src/api/template.js';
import { isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Store } from '../store/types.js';
import type { WavedRolloutStatus } from '../../src/api/workloads.js';
import type { WaveEvent } from './waves.js';

type WavedKind = 'DaemonSet' | 'Deployment';

/**
 * Whether a pass moved the rollout (started, passed a wave, completed, rolled back, superseded): only
 * then is the progress stored ahead of the pod writes. Counts and messages go with the status written
 * at the end of the pass, so a fleet's pods turning Ready one by one cost one write per pass, not two.
 */
export function rolloutMoved(prev: WavedRolloutStatus | undefined, next: WavedRolloutStatus): boolean {
  const key = (r: WavedRolloutStatus | undefined) => (r ? [r.phase, r.wave, r.targetRevision, r.stableRevision, r.waveStartedAt].join('|') : '');
  return key(prev) !== key(next);
}

export interface WaveProgress {
  /** The object's status (as stored, maybe none) with the rollout's part set. */
  status: (cur: unknown) => unknown;
  rollback?: { template: PodTemplate };
  events: WaveEvent[];
}

/** Stores the progress; false when the object is gone or its template changed since it was read. */
export async function saveWaveProgress(
  deps: { store: Store; log: Logger; record: (type: WaveEvent['type'], reason: string, message: string) => Promise<void> },
  obj: { kind: WavedKind; metadata: { namespace?: string; name: string; uid?: string }; spec: { template: PodTemplate } },
  progress: WaveProgress,
): Promise<boolean> {
  const { namespace = '', name, uid } = obj.metadata;
  const target = podTemplateHash(obj.spec.template);
  const saved = await deps.store
    .patch(obj.kind, namespace, name, (cur) => {
      const o = cur as unknown as { metadata: { uid?: string }; spec: { template: PodTemplate }; status?: unknown };
      if (o.metadata.uid !== uid || podTemplateHash(o.spec.template) !== target) return undefined;
      o.status = progress.status(o.status);
      if (progress.rollback) o.spec.template = structuredClone(progress.rollback.template);
      return cur;
    })
    .catch((err) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
  if (!saved) return false;
  for (const e of progress.events) {
    deps.log.info({ kind: obj.kind, namespace, name, reason: e.reason, msg: e.message }, 'waved rollout');
    await deps.record(e.type, e.reason, e.message);
  }
  return true;
}
