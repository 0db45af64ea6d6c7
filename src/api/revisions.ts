/**
 * Deployment revisions, as both the Deployment controller and the CLI (`rollout history`,
 * `rollout undo`) read them: the annotations Kubernetes uses, pod templates compared without the
 * pod-template-hash label, revision numbers, and the template `rollout undo` puts back. Pure.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, jsonEqual } from '../util/canonical-json.js';
import { DroverError, NotFoundError } from '../util/errors.js';
import type { PodTemplate } from './template.js';
import type { Deployment, ReplicaSet } from './workloads.js';

/** Written by the Deployment controller on the Deployment and each of its ReplicaSets. */
export const REVISION_ANNOTATION = 'deployment.kubernetes.io/revision';
/** Why a revision was made; kept per revision (on each ReplicaSet), as Kubernetes does. */
export const CHANGE_CAUSE_ANNOTATION = 'kubernetes.io/change-cause';
/** The label carrying the hash of the template a DaemonSet's pod was made from (Kubernetes' name for it). */
export const CONTROLLER_REVISION_HASH = 'controller-revision-hash';
/** The label (and selector term) that tells a Deployment's ReplicaSets and their pods apart. */
export const POD_TEMPLATE_HASH = 'pod-template-hash';

/** The template as it is compared and hashed: without the pod-template-hash label and creationTimestamp. */
export function comparableTemplate(t: PodTemplate): PodTemplate {
  const c = structuredClone(t);
  if (c.metadata) {
    delete c.metadata.creationTimestamp;
    if (c.metadata.labels) {
      delete c.metadata.labels[POD_TEMPLATE_HASH];
      if (Object.keys(c.metadata.labels).length === 0) delete c.metadata.labels;
    }
  }
  return c;
}

/** Same template, ignoring the pod-template-hash label (Kubernetes' EqualIgnoreHash). */
export function templatesEqual(a: PodTemplate, b: PodTemplate): boolean {
  return jsonEqual(comparableTemplate(a), comparableTemplate(b));
}

const SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

/**
 * The one pod-template hash, for Deployments (the `pod-template-hash` label and ReplicaSet name) and
 * DaemonSets (their revision label): 10 label-safe characters; key order, a pod-template-hash label
 * already present and creationTimestamp do not matter; a collision count (Deployment
 * status.collisionCount) moves it to a fresh value.
 */
export function podTemplateHash(template: PodTemplate, collisionCount?: number): string {
  const h = createHash('sha256').update(canonicalJson(comparableTemplate(template)));
  if (collisionCount) h.update(`/${collisionCount}`);
  const bytes = h.digest();
  let out = '';
  for (let i = 0; i < 10; i++) out += SAFE_ALPHABET[bytes[i]! % SAFE_ALPHABET.length];
  return out;
}

/** The revision number an object (ReplicaSet or Deployment) carries (0 when none). */
export function revisionOf(obj: { metadata: { annotations?: Record<string, string> } }): number {
  const v = Number(obj.metadata.annotations?.[REVISION_ANNOTATION]);
  return Number.isInteger(v) && v > 0 ? v : 0;
}

export function maxRevision(replicaSets: ReplicaSet[]): number {
  return replicaSets.reduce((m, rs) => Math.max(m, revisionOf(rs)), 0);
}

/** Whether `obj` is controlled by `owner` (ownerReference with controller: true and the owner's uid). */
export function isControlledBy(obj: { metadata: { ownerReferences?: Array<{ uid: string; controller?: boolean; kind: string }> } }, owner: { kind: string; metadata: { uid?: string } }): boolean {
  return (obj.metadata.ownerReferences ?? []).some((r) => r.controller === true && r.kind === owner.kind && r.uid === owner.metadata.uid);
}

/**
 * The Deployment's ReplicaSets that carry a revision, oldest revision first. Controlled by it means
 * a controller ownerReference to its uid (to its name for a Deployment without a uid).
 */
export function revisionsOf(d: Deployment, replicaSets: ReplicaSet[]): ReplicaSet[] {
  return replicaSets
    .filter((rs) => (d.metadata.uid ? isControlledBy(rs, d) : (rs.metadata.ownerReferences ?? []).some((o) => o.controller && o.kind === 'Deployment' && o.name === d.metadata.name)))
    .filter((rs) => revisionOf(rs) > 0)
    .sort((a, b) => revisionOf(a) - revisionOf(b));
}

export type UndoChoice =
  | { ok: true; target: ReplicaSet; revision: number; template: PodTemplate }
  | { ok: false; reason: 'RevisionNotFound' | 'NoHistory' };

/**
 * `rollout undo`: the revision to go back to — `toRevision`, or (0 / undefined) the highest revision
 * below the current one (the Deployment's revision annotation, else the revision whose template it
 * runs) — and its template without the pod-template-hash label, ready to put into the Deployment.
 */
export function chooseUndo(d: Deployment, replicaSets: ReplicaSet[], toRevision?: number): UndoChoice {
  const revisions = revisionsOf(d, replicaSets);
  let target: ReplicaSet | undefined;
  if (toRevision) {
    target = revisions.find((rs) => revisionOf(rs) === toRevision);
    if (!target) return { ok: false, reason: 'RevisionNotFound' };
  } else {
    let current = revisionOf(d);
    if (!current) {
      const running = revisions.find((rs) => templatesEqual(rs.spec.template, d.spec.template));
      current = running ? revisionOf(running) : 0;
    }
    target = revisions.filter((rs) => revisionOf(rs) < (current || Infinity)).at(-1);
    if (!target) return { ok: false, reason: 'NoHistory' };
  }
  const template = structuredClone(target.spec.template);
  if (template.metadata?.labels) {
    delete template.metadata.labels[POD_TEMPLATE_HASH];
    if (!Object.keys(template.metadata.labels).length) delete template.metadata.labels;
  }
  return { ok: true, target, revision: revisionOf(target), template };
}

/** chooseUndo's template, or the API's errors: NotFound for a missing revision, BadRequest without history. */
export function rollbackTemplate(d: Deployment, replicaSets: ReplicaSet[], toRevision?: number): PodTemplate {
  const choice = chooseUndo(d, replicaSets, toRevision);
  if (choice.ok) return choice.template;
  if (choice.reason === 'RevisionNotFound') throw new NotFoundError(`revision ${toRevision} of deployments "${d.metadata.name}"`);
  throw new DroverError(`no rollout history found for deployments "${d.metadata.name}"`, { code: 400, reason: 'BadRequest' });
}
