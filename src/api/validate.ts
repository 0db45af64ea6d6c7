import type { z } from 'zod';
import { ValidationError, type FieldCause } from '../util/errors.js';
import { KINDS, schemaOf, type KindInfo, type KindMap, type KnownKind } from './kinds.js';
import type { ApiObject } from './meta.js';
import { ignoredFields } from './warnings.js';

/**
 * Fields that Kubernetes manifests commonly carry and drover accepts but does not act on (yet).
 * They are removed before strict validation and reported as warnings, so a manifest written for
 * Kubernetes applies unchanged while the user still learns what was ignored. Anything else unknown
 * is an error naming its path.
 */
const IGNORED: Record<string, string[]> = {
  metadata: ['selfLink', 'generateName', 'finalizers', 'clusterName'],
  podSpec: [
    'dnsPolicy', 'dnsConfig', 'schedulerName', 'securityContext', 'serviceAccountName', 'serviceAccount',
    'automountServiceAccountToken', 'imagePullSecrets', 'priorityClassName', 'priority', 'enableServiceLinks',
    'preemptionPolicy', 'initContainers', 'topologySpreadConstraints', 'readinessGates',
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

/** A JSON value in words, for "got ..." (values only when `echo`: a Secret's data must not come back in an error). */
function describeValue(v: unknown, echo: boolean): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      return echo ? `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}` : 'a string';
    case 'number':
      return echo ? `the number ${v}` : 'a number';
    case 'boolean':
      return echo ? `the boolean ${v}` : 'a boolean';
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

/** What a zod type name means to someone writing YAML. */
const EXPECTED: Record<string, string> = {
  number: 'a number',
  int: 'an integer',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'an object (a map of fields)',
  record: 'an object (a map of fields)',
  null: 'null',
};

/** zod's own wording (as opposed to a message a schema gives): replaced by plain words. */
const ZOD_DEFAULT = /^(Invalid (input|option|string|number|key|element)|Too (small|big))\b/;

function plainMessage(i: z.core.$ZodIssue, echo: boolean): string {
  const input = (i as { input?: unknown }).input;
  // `{ error: 'required' }` on a schema labels every issue of it, a port above 65535 too: only a missing value is "required".
  const custom = i.message !== 'required' && !ZOD_DEFAULT.test(i.message);
  switch (i.code) {
    case 'invalid_type':
      if (input === undefined) return 'required';
      if (custom) return i.message;
      return `expected ${EXPECTED[i.expected] ?? i.expected}, got ${describeValue(input, echo)}`;
    case 'invalid_value': {
      if (custom) return i.message;
      // Kubernetes' wording for an enum value it does not know.
      const got = echo || typeof input !== 'string' ? JSON.stringify(input) : 'this value';
      return `Unsupported value: ${got}: supported values: ${i.values.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    case 'invalid_union': {
      if (input === undefined) return 'required';
      const expected = [...new Set(i.errors.flatMap((branch) => branch.filter((b) => b.code === 'invalid_type' && b.path.length === 0).map((b) => (b as { expected: string }).expected)))];
      if (expected.length) return `expected ${expected.map((e) => EXPECTED[e] ?? e).join(' or ')}, got ${describeValue(input, echo)}`;
      // Every branch took the type but refused the value: the first branch's reason says why.
      const first = i.errors.find((b) => b.length)?.[0];
      return first ? plainMessage(first, echo) : i.message;
    }
    case 'too_small':
    case 'too_big': {
      if (custom) return i.message;
      const bound = Number(i.code === 'too_small' ? i.minimum : i.maximum);
      const least = i.code === 'too_small' ? 'at least' : 'at most';
      if (i.origin === 'array') return `must have ${least} ${bound} item${bound === 1 ? '' : 's'}`;
      if (i.origin === 'string') return i.code === 'too_small' && bound === 1 ? 'must not be empty' : `must be ${least} ${bound} characters long`;
      return `must be ${least} ${bound}`;
    }
    case 'invalid_key':
    case 'invalid_element': {
      // The path already ends in the key; the inner issue says what is wrong with it (or its value).
      const inner = i.issues[0];
      return inner ? plainMessage(inner, echo) : i.message;
    }
    case 'invalid_format': {
      if (custom) return i.message;
      const f = i as { format: string; pattern?: string; prefix?: string; suffix?: string };
      if (f.format === 'starts_with') return `must start with ${JSON.stringify(f.prefix)}`;
      if (f.format === 'ends_with') return `must end with ${JSON.stringify(f.suffix)}`;
      if (f.format === 'regex' && f.pattern) return `must match ${f.pattern}`;
      return `must be a valid ${f.format}`;
    }
    default:
      return custom || input === undefined ? i.message : 'invalid value';
  }
}

/** The object fields a schema takes at `path` (through lists, maps, optionals, defaults, unions), for "did you mean". */
function knownKeys(schema: z.core.$ZodType | undefined, path: readonly PropertyKey[]): string[] {
  if (!schema) return [];
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  const inner = (s: unknown, rest: readonly PropertyKey[]) => knownKeys(s as z.core.$ZodType, rest);
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'nonoptional':
      return inner(def.innerType, path);
    case 'pipe':
      return inner(def.out, path);
    case 'union':
      return [...new Set((def.options as unknown[]).flatMap((o) => inner(o, path)))];
    case 'object': {
      const shape = def.shape as Record<string, unknown>;
      if (!path.length) return Object.keys(shape);
      return inner(shape[String(path[0])], path.slice(1));
    }
    case 'array':
      return path.length ? inner(def.element, path.slice(1)) : [];
    case 'record':
      return path.length ? inner(def.valueType, path.slice(1)) : [];
    default:
      return [];
  }
}

/** Edit distance, for spelling suggestions (short field names only: cheap). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** The known field an unknown one was probably meant to be: same letters but case, or one or two edits away. */
function suggestion(key: string, known: string[]): string | undefined {
  const lower = key.toLowerCase();
  const same = known.find((k) => k.toLowerCase() === lower);
  if (same) return same;
  if (key.length > 64) return undefined;
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = distance(lower, k.toLowerCase());
    if (d <= (k.length >= 5 ? 2 : 1) && (!best || d < best.d)) best = { k, d };
  }
  return best?.k;
}

/** Unknown fields that get a spelling suggestion, per error: a hostile body with thousands must not cost seconds. */
const MAX_SUGGESTIONS = 20;

function zodCauses(err: z.ZodError, prefix = '', echo = true, schema?: z.core.$ZodType): FieldCause[] {
  let suggestions = 0;
  return err.issues.map((i) => {
    const path = i.path.reduce<string>(
      (acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
      prefix,
    );
    if (i.code === 'unrecognized_keys') {
      const keys = i.keys;
      const guess = keys.length === 1 && suggestions++ < MAX_SUGGESTIONS ? suggestion(keys[0]!, knownKeys(schema, i.path)) : undefined;
      const hint = guess ? ` (did you mean "${guess}"?)` : '';
      return { field: keys.map((k) => (path ? `${path}.${k}` : k)).join(', '), message: `unknown field${hint}` };
    }
    return { field: path, message: plainMessage(i, echo) };
  });
}

function stripIgnored(obj: Record<string, unknown>, keys: string[], path: string, warnings: string[]): void {
  for (const k of keys) {
    if (!(k in obj)) continue;
    warnings.push(`${path}.${k}: not supported by drover, ignored`);
    delete obj[k];
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
  // structuredClone, not deepCopy: this is what a user sent (see src/util/deep-copy.ts).
  const input = structuredClone(raw);
  const causes: FieldCause[] = [];
  for (const f of ['kind', 'apiVersion'] as const) {
    if (input[f] === undefined) causes.push({ field: f, message: 'required' });
    else if (typeof input[f] !== 'string') causes.push({ field: f, message: `expected a string, got ${describeValue(input[f], true)}` });
  }
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
  // The caller's own values are quoted back ("got the string \"80\""), except a Secret's.
  const result = kind.schema.safeParse(input, { reportInput: true });
  if (!result.success) throw new ValidationError(zodCauses(result.error, '', kind.kind !== 'Secret', kind.schema), `invalid ${kind.kind}`);
  const object = result.data as ApiObject;
  // On the input as written (defaults not applied): only what the user set is worth a warning.
  warnings.push(...ignoredFields(input));
  if (kind.namespaced && !object.metadata.namespace) object.metadata.namespace = undefined;
  if (!kind.namespaced && object.metadata.namespace) delete object.metadata.namespace;
  return { object, kind, warnings };
}

/** Validate a wire payload with a schema; the error names the field. Used at MQTT boundaries. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  // Wire payloads carry Secret values: their errors name types, never values.
  const r = schema.safeParse(value, { reportInput: true });
  if (!r.success) throw new ValidationError(zodCauses(r.error, '', false, schema), `invalid ${what}`);
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
