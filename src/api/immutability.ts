/**
 * Fields Kubernetes keeps immutable once an object exists, checked when a stored object is replaced
 * (PUT, PATCH, apply): a change is refused with Kubernetes' own wording instead of being stored (and,
 * for a pod, half applied by an agent that only recreates containers). Pure: the API calls
 * `assertMutable(stored, incoming)` with both objects validated and defaulted.
 *
 * Pod rules and text follow ValidatePodUpdate in kubernetes/kubernetes
 * pkg/apis/core/validation/validation.go (commit 000f26050b9b, `updatablePodSpecFields`): only the
 * containers' images, activeDeadlineSeconds (set, or lowered), tolerations (additions) and
 * terminationGracePeriodSeconds (negative → 1, which drover's schema never stores) may change.
 * apps/v1 keeps spec.selector of Deployments, ReplicaSets and DaemonSets; batch/v1 a Job's selector,
 * template, completions and completionMode ("field is immutable", apimachinery's FieldImmutableErrorMsg).
 */
import { canonicalJson } from '../util/canonical-json.js';
import { ValidationError, type FieldCause } from '../util/errors.js';
import { KINDS } from './kinds.js';
import type { ApiObject } from './meta.js';

/** Kubernetes' list, verbatim (joined with "," as validation.go does). */
export const UPDATABLE_POD_SPEC_FIELDS = [
  '`spec.containers[*].image`',
  '`spec.initContainers[*].image`',
  '`spec.activeDeadlineSeconds`',
  '`spec.tolerations` (only additions to existing tolerations)',
  '`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
];

export const POD_UPDATE_FORBIDDEN = `Forbidden: pod updates may not change fields other than ${UPDATABLE_POD_SPEC_FIELDS.join(',')}`;

/** apimachinery's FieldImmutableErrorMsg. */
const IMMUTABLE = 'field is immutable';

/** Per kind, the spec fields that never change after creation. */
const IMMUTABLE_SPEC_FIELDS: Record<string, string[]> = {
  Deployment: ['selector'],
  ReplicaSet: ['selector'],
  DaemonSet: ['selector'],
  Job: ['selector', 'template', 'completions', 'completionMode'],
};

type Json = unknown;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Empty lists and maps are the same as absent (a manifest's `env: []` against a stored object
 * without it): kubectl round trips must not read as changes.
 */
function normalize(v: Json): Json {
  if (Array.isArray(v)) return v.length ? v.map(normalize) : undefined;
  if (isRecord(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const n = normalize(x);
      if (n !== undefined) out[k] = n;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return v;
}

const same = (a: Json, b: Json) => canonicalJson(normalize(a)) === canonicalJson(normalize(b));

/** Paths (spec.x.y, spec.list[i]) where `a` and `b` differ, shallowest first, at most `max`. */
function differences(a: Json, b: Json, path: string, out: string[], max = 8): void {
  if (out.length >= max || same(a, b)) return;
  // Into lists of objects (containers, volumes) but not of strings: "command" says more than "command[0]".
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every(isRecord)) {
    a.forEach((x, i) => differences(x, b[i], `${path}[${i}]`, out, max));
    return;
  }
  if (isRecord(a) && isRecord(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) differences(a[k], b[k], `${path}.${k}`, out, max);
    return;
  }
  out.push(path);
}

/** A value as an error message shows it, cut short. */
function shown(v: Json): string {
  const s = v === undefined ? 'null' : JSON.stringify(v);
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

type Toleration = Record<string, unknown>;

/** Kubernetes' validateOnlyAddedTolerations: each old toleration must remain, tolerationSeconds aside. */
function removedTolerations(next: Toleration[], old: Toleration[]): FieldCause[] {
  const key = (t: Toleration) => canonicalJson(normalize({ ...t, tolerationSeconds: undefined }));
  const kept = new Set(next.map(key));
  return old.some((t) => !kept.has(key(t))) ? [{ field: 'spec.tolerations', message: 'Forbidden: existing toleration can not be modified except its tolerationSeconds' }] : [];
}

function podChanges(oldSpec: Record<string, unknown>, newSpec: Record<string, unknown>): FieldCause[] {
  const causes: FieldCause[] = [];
  const oldC = (oldSpec.containers as Array<Record<string, unknown>> | undefined) ?? [];
  const newC = (newSpec.containers as Array<Record<string, unknown>> | undefined) ?? [];
  if (oldC.length !== newC.length) return [{ field: 'spec.containers', message: 'Forbidden: pod updates may not add or remove containers' }];

  const oldAds = oldSpec.activeDeadlineSeconds as number | undefined;
  const newAds = newSpec.activeDeadlineSeconds as number | undefined;
  if (newAds !== undefined && oldAds !== undefined && oldAds < newAds) {
    return [{ field: 'spec.activeDeadlineSeconds', message: `Invalid value: ${newAds}: must be less than or equal to previous value` }];
  }
  if (newAds === undefined && oldAds !== undefined) {
    causes.push({ field: 'spec.activeDeadlineSeconds', message: 'Invalid value: "null": must not update from a positive integer to nil value' });
  }
  causes.push(...removedTolerations((newSpec.tolerations as Toleration[] | undefined) ?? [], (oldSpec.tolerations as Toleration[] | undefined) ?? []));

  // What may change is set back to the stored values; anything still different is a forbidden change.
  const munged: Record<string, unknown> = {
    ...newSpec,
    containers: newC.map((c, i) => ({ ...c, image: oldC[i]!.image })),
    activeDeadlineSeconds: oldAds,
    tolerations: oldSpec.tolerations,
  };
  if (!same(munged, oldSpec)) {
    const changed: string[] = [];
    differences(oldSpec, munged, 'spec', changed);
    // Kubernetes follows the sentence with a Go diff of the specs; drover names the changed fields.
    causes.push({ field: 'spec', message: `${POD_UPDATE_FORBIDDEN}\n  changed: ${changed.join(', ')}` });
  }
  return causes;
}

/**
 * What `next` changes of the fields `old` may not change, as causes naming each field (empty: the
 * update is allowed). Both are objects of the same kind, validated (defaults applied).
 */
export function immutableChanges(stored: ApiObject, next: ApiObject): FieldCause[] {
  if (stored.kind !== next.kind) return [];
  // Defaults a later drover added to the schema are applied to the stored object too, so they do not read as changes.
  const reparsed = KINDS.find((k) => k.kind === stored.kind)?.schema.safeParse(stored);
  const old = reparsed?.success ? (reparsed.data as ApiObject) : stored;
  const oldSpec = isRecord(old.spec) ? old.spec : {};
  const newSpec = isRecord(next.spec) ? next.spec : {};
  if (next.kind === 'Pod') return podChanges(oldSpec, newSpec);
  return (IMMUTABLE_SPEC_FIELDS[next.kind] ?? [])
    .filter((f) => !same(oldSpec[f], newSpec[f]))
    .map((f) => ({ field: `spec.${f}`, message: `Invalid value: ${shown(newSpec[f])}: ${IMMUTABLE}` }));
}

/** How Kubernetes names the object in the error: `Pod "nginx"`, `Deployment.apps "web"`, `Job.batch "pi"`. */
function resourceName(obj: ApiObject): string {
  const gv = KINDS.find((k) => k.kind === obj.kind)?.groupVersion ?? 'v1';
  const group = gv.includes('/') ? gv.split('/')[0] : '';
  return `${obj.kind}${group ? `.${group}` : ''} "${obj.metadata.name}"`;
}

/**
 * Throws a ValidationError (422) when `next` changes an immutable field of `old`; its message is
 * Kubernetes': `Pod "nginx" is invalid: spec: Forbidden: pod updates may not change fields other than ...`.
 */
export function assertMutable(old: ApiObject, next: ApiObject): void {
  const causes = immutableChanges(old, next);
  if (causes.length) throw new ValidationError(causes, `${resourceName(next)} is invalid`);
}
