/**
 * What the DaemonSet and Job controllers do alike with the pods they own: name them as Kubernetes'
 * generateName does, build them from the owner's template with a controller ownerReference, tell
 * their own pods apart, and create / delete them with the matching events.
 */
import { randomInt } from 'node:crypto';
import type { Condition } from '../../src/api/meta.js';
import type { Pod } from '../../src/api/pod.js';
import type { PodTemplate } from '../../src/api/template.js';
import { errorMessage, isAlreadyExists, isNotFound } from '../../src/util/errors.js';
import type { InvolvedObject } from '../events/recorder.js';
import type { ControllerDeps } from './deps.js';
import { deepCopy } from '../../src/util/deep-copy.js';

const SUFFIX_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/** `${base}-xxxxx` as Kubernetes' generateName does (base cut to 58 characters). */
export function generateName(base: string): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += SUFFIX_ALPHABET[randomInt(SUFFIX_ALPHABET.length)];
  const b = base.length > 58 ? base.slice(0, 58) : base;
  return `${b}-${s}`;
}

/** The pod has a controller ownerReference to `uid` (never, without a uid). */
export function isOwnedBy(p: Pod, uid: string | undefined): boolean {
  return !!uid && (p.metadata.ownerReferences ?? []).some((r) => r.controller && r.uid === uid);
}

/** The Ready condition of frozen pods (the object cache's), found once: controllers count every pod on each pass. */
const readyOf = new WeakMap<readonly Condition[], Condition | null>();

export function readyCondition(p: Pod): Condition | undefined {
  const conditions = p.status?.conditions;
  if (!conditions) return undefined;
  const known = readyOf.get(conditions);
  if (known !== undefined) return known ?? undefined;
  const ready = conditions.find((c) => c.type === 'Ready');
  if (Object.isFrozen(conditions)) readyOf.set(conditions, ready ?? null);
  return ready;
}

export function podReady(p: Pod): boolean {
  return readyCondition(p)?.status === 'True';
}

/** The owner a pod's controller ownerReference names. */
export interface PodOwner {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

/**
 * A pod from `template` (name left empty; the controller fills it in): the template's labels plus
 * `labels`, its annotations, a controller ownerReference to `owner`, status Pending.
 */
export function newOwnedPod(template: PodTemplate, owner: PodOwner, labels: Record<string, string>): Pod {
  const t = deepCopy(template);
  const meta: Pod['metadata'] = {
    name: '',
    namespace: owner.namespace ?? 'default',
    labels: { ...t.metadata.labels, ...labels },
    ownerReferences: [{ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid ?? '', controller: true, blockOwnerDeletion: true }],
  };
  if (t.metadata.annotations) meta.annotations = t.metadata.annotations;
  return { apiVersion: 'v1', kind: 'Pod', metadata: meta, spec: t.spec, status: { phase: 'Pending' } };
}

export interface PodWriter {
  /** An event about the owner, from the controller's component. */
  record(type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
  /** The same, not waited for (EventRecorder.emit): per-pod events of a batch of pod writes. */
  emit(type: 'Normal' | 'Warning', reason: string, message: string): void;
  /**
   * Stores `pod` under a generated name `${base}-xxxxx`, drawing a new one on a name clash (up to 5
   * times). A failure is recorded as a FailedCreate event and thrown.
   */
  create(pod: Pod, base: string): Promise<Pod>;
  /** Deletes a pod; false when it was already gone. */
  delete(namespace: string, name: string): Promise<boolean>;
}

export function podWriter(deps: Pick<ControllerDeps, 'store' | 'events'>, involved: InvolvedObject, component: string): PodWriter {
  const { store, events } = deps;
  const record: PodWriter['record'] = (type, reason, message) => events.record({ involved, type, reason, message, component });
  return {
    record,
    emit: (type, reason, message) => events.emit({ involved, type, reason, message, component }),
    async create(pod, base) {
      for (let attempt = 0; ; attempt++) {
        pod.metadata.name = generateName(base);
        try {
          return await store.create(pod);
        } catch (err) {
          if (isAlreadyExists(err) && attempt < 5) continue;
          await record('Warning', 'FailedCreate', `Error creating: ${errorMessage(err)}`);
          throw err;
        }
      }
    },
    async delete(namespace, name) {
      try {
        await store.delete('Pod', namespace, name);
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    },
  };
}
