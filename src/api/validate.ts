import type { z } from 'zod';
import { ValidationError, type FieldCause } from '../util/errors.js';
import { KINDS, schemaOf, type KindInfo, type KindMap, type KnownKind } from './kinds.js';
import type { ApiObject } from './meta.js';

/**
 * Fields that Kubernetes manifests commonly carry and drover accepts but does not act on (yet).
 * They are removed before strict validation and reported as warnings, so a manifest written for
 * Kubernetes applies unchanged while the user still learns what was ignored. Anything else unknown
 * is an error naming its path.
 */
const IGNORED: Record<string, string[]> = {
  metadata: ['managedFields', 'selfLink', 'generateName', 'finalizers', 'clusterName'],
  podSpec: [
    'dnsPolicy', 'dnsConfig', 'schedulerName', 'securityContext', 'serviceAccountName', 'serviceAccount',
    'automountServiceAccountToken', 'imagePullSecrets', 'priorityClassName', 'priority', 'enableServiceLinks',
    'preemptionPolicy', 'hostname', 'subdomain', 'initContainers', 'topologySpreadConstraints', 'readinessGates',
    'runtimeClassName', 'shareProcessNamespace', 'hostPID', 'hostIPC',
  ],
  container: [
    'terminationMessagePath', 'terminationMessagePolicy', 'securityContext', 'stdin', 'stdinOnce', 'tty', 'lifecycle',
    'volumeDevices', 'resizePolicy',
  ],
  workloadSpec: ['podManagementPolicy'],
};

/** Where the pod spec sits in each kind that carries one. */
export const POD_SPEC_PATH: Record<string, string[]> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
};

export interface ParsedObject<T = ApiObject> {
  object: T;
  kind: KindInfo;
  warnings: string[];
}

function zodCauses(err: z.ZodError, prefix = ''): FieldCause[] {
  return err.issues.map((i) => {
    const path = i.path.reduce<string>(
      (acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
      prefix,
    );
    let message = i.message;
    if (i.code === 'unrecognized_keys') {
      const keys = i.keys;
      return { field: keys.map((k) => (path ? `${path}.${k}` : k)).join(', '), message: 'unknown field' };
    }
    if (i.code === 'invalid_type' && /received undefined/.test(message)) message = 'required';
    return { field: path, message };
  });
}

function stripIgnored(obj: Record<string, unknown>, keys: string[], path: string, warnings: string[]): void {
  for (const k of keys) {
    if (k in obj) {
      warnings.push(`${path}.${k}: not supported by drover, ignored`);
      delete obj[k];
    }
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validate one object (from a manifest, the API or the wire). Returns the object with defaults
 * applied, or throws a ValidationError whose causes name each failing field.
 * `status` in a manifest is ignored: it belongs to the system.
 */
export function parseObject(raw: unknown, opts: { keepStatus?: boolean } = {}): ParsedObject {
  if (!isRecord(raw)) throw new ValidationError([{ field: '', message: 'an object is required' }]);
  const input = structuredClone(raw);
  const causes: FieldCause[] = [];
  if (typeof input.kind !== 'string') causes.push({ field: 'kind', message: 'required' });
  if (typeof input.apiVersion !== 'string') causes.push({ field: 'apiVersion', message: 'required' });
  if (causes.length) throw new ValidationError(causes);
  const kind = KINDS.find((k) => k.kind === input.kind);
  if (!kind) {
    throw new ValidationError([
      { field: 'kind', message: `unknown kind "${String(input.kind)}" (supported: ${KINDS.map((k) => k.kind).join(', ')})` },
    ]);
  }
  if (!kind.apiVersions.includes(input.apiVersion as string)) {
    throw new ValidationError([
      { field: 'apiVersion', message: `"${String(input.apiVersion)}" is not served for kind ${kind.kind} (use ${kind.apiVersions.join(' or ')})` },
    ]);
  }
  const warnings: string[] = [];
  if (isRecord(input.metadata)) stripIgnored(input.metadata, IGNORED.metadata!, 'metadata', warnings);
  if (!opts.keepStatus && 'status' in input) delete input.status;
  const podPath = POD_SPEC_PATH[kind.kind];
  if (podPath) {
    let spec: unknown = input;
    for (const k of podPath) spec = isRecord(spec) ? spec[k] : undefined;
    const at = podPath.join('.');
    if (isRecord(spec)) {
      stripIgnored(spec, IGNORED.podSpec!, at, warnings);
      if (Array.isArray(spec.containers)) {
        spec.containers.forEach((c, i) => {
          if (isRecord(c)) stripIgnored(c, IGNORED.container!, `${at}.containers[${i}]`, warnings);
        });
      }
    }
  }
  const result = kind.schema.safeParse(input);
  if (!result.success) throw new ValidationError(zodCauses(result.error), `invalid ${kind.kind}`);
  const object = result.data as ApiObject;
  if (kind.namespaced && !object.metadata.namespace) object.metadata.namespace = undefined;
  if (!kind.namespaced && object.metadata.namespace) delete object.metadata.namespace;
  return { object, kind, warnings };
}

/** Validate a wire payload with a schema; the error names the field. Used at MQTT boundaries. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ValidationError(zodCauses(r.error), `invalid ${what}`);
  return r.data;
}

/**
 * An object read back (from the store) checked against its kind's schema, typed by kind. The
 * ValidationError names the object, e.g. `invalid Deployment "default/web": spec.replicas: ...`.
 */
export function readValid<K extends KnownKind>(kind: K, obj: ApiObject): KindMap[K] {
  const ns = obj.metadata?.namespace;
  return parseWith(schemaOf(kind), obj, `${kind} "${ns ? `${ns}/` : ''}${obj.metadata?.name ?? ''}"`);
}
