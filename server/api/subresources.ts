/**
 * The /scale and /status subresources as Kubernetes serves them: /scale shows a workload as an
 * autoscaling/v1 Scale (what `kubectl scale` and autoscalers read and write) and changes only its
 * spec.replicas; /status changes only the status, whatever else the body holds. Pure: the caller reads,
 * validates (parseObject) and stores.
 */
import type { ApiObject } from '../../src/api/meta.js';
import { KINDS } from '../../src/api/kinds.js';
import { selectorString, type LabelSelector } from '../../src/api/selector.js';
import { BadRequestError, ConflictError, ValidationError } from '../../src/util/errors.js';

/** The kinds with a /scale subresource (Kubernetes' Deployment and ReplicaSet; it has no jobs/scale). */
export const SCALABLE_KINDS: ReadonlySet<string> = new Set(['Deployment', 'ReplicaSet']);

export interface Scale {
  apiVersion: 'autoscaling/v1';
  kind: 'Scale';
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; creationTimestamp?: string };
  spec: { replicas: number };
  status: { replicas: number; selector?: string };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** How Kubernetes names an object in a Conflict message: `deployments.apps "web"`. */
function what(obj: ApiObject): string {
  const k = KINDS.find((x) => x.kind === obj.kind);
  const group = k && k.groupVersion.includes('/') ? `.${k.groupVersion.split('/')[0]}` : '';
  return `${k?.plural ?? obj.kind.toLowerCase()}${group} "${obj.metadata.name}"`;
}

/** A body's metadata.resourceVersion, when it sets one, must be the stored one (Kubernetes' precondition). */
function assertResourceVersion(obj: ApiObject, body: Record<string, unknown>): void {
  const rv = isObject(body.metadata) ? body.metadata.resourceVersion : undefined;
  if (rv !== undefined && rv !== '' && String(rv) !== obj.metadata.resourceVersion) throw new ConflictError(what(obj), String(rv), obj.metadata.resourceVersion ?? '');
}

/** The body must be about this object: same name (and kind, when it says one). */
function assertSameObject(obj: ApiObject, body: Record<string, unknown>, kind: string): void {
  if (body.kind !== undefined && body.kind !== kind) throw new BadRequestError(`the body is a ${String(body.kind)}, but this path takes a ${kind}`);
  const name = isObject(body.metadata) ? body.metadata.name : undefined;
  if (name !== undefined && name !== obj.metadata.name) throw new BadRequestError(`the name of the object (${String(name)}) does not match the name in the path (${obj.metadata.name})`);
}

/** GET .../scale: the workload as an autoscaling/v1 Scale. */
export function scaleOf(obj: ApiObject): Scale {
  if (!SCALABLE_KINDS.has(obj.kind)) throw new BadRequestError(`${obj.kind} has no scale subresource (only ${[...SCALABLE_KINDS].join(', ')})`);
  const spec = (obj.spec ?? {}) as { replicas?: number; selector?: LabelSelector };
  const status = (obj.status ?? {}) as { replicas?: number };
  const m = obj.metadata;
  return {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: { name: m.name, ...(m.namespace ? { namespace: m.namespace } : {}), ...(m.uid ? { uid: m.uid } : {}), ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}), ...(m.creationTimestamp ? { creationTimestamp: m.creationTimestamp } : {}) },
    spec: { replicas: spec.replicas ?? 1 },
    status: { replicas: status.replicas ?? 0, ...(spec.selector ? { selector: selectorString(spec.selector) } : {}) },
  };
}

/**
 * PUT .../scale (and PATCH, through scaleOf → applyPatch → here): the workload with spec.replicas from
 * the Scale; nothing else changes. 400 for a body that is not a Scale of this object, 422 naming
 * spec.replicas when it is not a whole number from 0, 409 on a stale resourceVersion.
 */
export function withScale<T extends ApiObject>(obj: T, scale: unknown): T {
  scaleOf(obj);
  if (!isObject(scale)) throw new BadRequestError('the body must be an autoscaling/v1 Scale object');
  assertSameObject(obj, scale, 'Scale');
  if (scale.apiVersion !== undefined && scale.apiVersion !== 'autoscaling/v1') throw new BadRequestError(`Scale apiVersion must be autoscaling/v1, got ${JSON.stringify(scale.apiVersion)}`);
  assertResourceVersion(obj, scale);
  const replicas = isObject(scale.spec) ? scale.spec.replicas : undefined;
  if (replicas === undefined) throw new ValidationError([{ field: 'spec.replicas', message: 'required' }], 'invalid Scale');
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
    throw new ValidationError([{ field: 'spec.replicas', message: `must be a whole number from 0, got ${JSON.stringify(replicas)}` }], 'invalid Scale');
  }
  const out = structuredClone(obj);
  out.spec = { ...(out.spec as object), replicas };
  return out;
}

/**
 * PUT .../status (and PATCH, applied to the whole object then passed here): the stored object with the
 * body's status; its spec and metadata are ignored, as Kubernetes' status strategies do.
 */
export function withStatus<T extends ApiObject>(obj: T, body: unknown): T {
  if (!isObject(body)) throw new BadRequestError(`the body must be a ${obj.kind} object`);
  assertSameObject(obj, body, obj.kind);
  assertResourceVersion(obj, body);
  const out = structuredClone(obj);
  if (body.status === undefined || body.status === null) delete out.status;
  else out.status = structuredClone(body.status);
  return out;
}
