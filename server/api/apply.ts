/**
 * Server-side apply (`kubectl apply --server-side`, PATCH application/apply-patch+yaml) and the field
 * ownership it rests on: metadata.managedFields, one entry per manager and operation, in Kubernetes'
 * FieldsV1 encoding (field-set.ts).
 *
 * What is implemented (a subset of structured-merge-diff, documented):
 * - apply merges the applied configuration into the live object: objects field by field, associative
 *   lists by their list-map keys (containers by name, ports by containerPort+protocol, ...; patch-meta.ts),
 *   set lists as sets, other lists and atomic structs (selectors, fieldRefs) replaced whole;
 * - a field another manager owns (Apply or Update) that the apply would change is a conflict: 409 listing
 *   every one, in Kubernetes' wording, unless force (then the field moves to the applier); the same value
 *   applied by two managers is shared;
 * - a field the manager applied before and omits now is removed, unless another manager owns it (or
 *   something under it);
 * - every other write (create, PUT, json/merge/strategic PATCH, /scale, /status) records an Update entry
 *   for its manager with the fields it changed (recordUpdate), taking them from their previous owners.
 * Not implemented: per-version conversion of field sets (drover has one version per kind), a
 * managedFields entry per subresource beyond `subresource: status|scale` on Update entries, and the
 * ordering of associative lists by the applier (live order is kept; new elements are appended).
 */
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { BadRequestError, DroverError, errorMessage, type FieldCause } from '../../src/util/errors.js';
import { describePath, elementsOf, fieldsOf, fromFieldsV1, compact, keyElement, keyOrUndefined, pathOf, removeAt, toFieldsV1, valueAt, type FieldSet } from './field-set.js';
import { fieldMerge, itemMerge, kindMerge, type FieldMerge } from './patch-meta.js';
import { assertJsonDepth } from './path.js';
import { deepCopy } from '../../src/util/deep-copy.js';

/** The shape this module reads and writes (ObjectMeta may not declare managedFields). */
interface Stored {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; managedFields?: unknown; [k: string]: unknown };
  [k: string]: unknown;
}

export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

/** Longest field manager name Kubernetes accepts. */
export const MAX_FIELD_MANAGER_LENGTH = 128;

/** 409: an apply would change fields other managers own. `causes` name each field and its manager. */
export class ApplyConflictError extends DroverError {
  readonly causes: Array<FieldCause & { type: 'FieldManagerConflict' }>;
  constructor(conflicts: Array<{ manager: string; path: string }>) {
    super(conflictMessage(conflicts), { code: 409, reason: 'Conflict' });
    this.causes = conflicts.map((c) => ({ type: 'FieldManagerConflict', message: `conflict with ${c.manager}`, field: describePath(c.path) }));
  }
}

/** Kubernetes' text (apiserver fieldmanager/internal/conflict.go), so kubectl's advice around it reads right. */
function conflictMessage(conflicts: Array<{ manager: string; path: string }>): string {
  if (conflicts.length === 1) return `Apply failed with 1 conflict: conflict with ${conflicts[0]!.manager}: ${describePath(conflicts[0]!.path)}`;
  const byManager = new Map<string, string[]>();
  for (const c of conflicts) byManager.set(c.manager, [...(byManager.get(c.manager) ?? []), describePath(c.path)]);
  const lines = [...byManager.keys()].sort().flatMap((m) => [`conflicts with ${m}:`, ...byManager.get(m)!.map((p) => `- ${p}`)]);
  return `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
}

/** How Kubernetes names a manager in a conflict: `"kubectl-client-side-apply" using apps/v1` for an Update one. */
function managerLabel(e: ManagedFieldsEntry): string {
  let s = JSON.stringify(e.manager);
  if (e.subresource) s += ` with subresource ${JSON.stringify(e.subresource)}`;
  return e.operation === 'Update' ? `${s} using ${e.apiVersion}` : s;
}

/**
 * The field manager of a request: ?fieldManager, else Kubernetes' default, the User-Agent up to its
 * first "/" ("kubectl" for "kubectl/v1.32.0 (linux/amd64) kubernetes/..."). 400 for a name over 128
 * characters or with control characters.
 */
export function fieldManagerOf(query: URLSearchParams, userAgent?: string): string {
  const given = query.get('fieldManager');
  if (given !== null) return checkManager(given);
  const fromAgent = (userAgent ?? '').split('/')[0]!.trim();
  return checkManager(fromAgent || 'unknown', true);
}

/** Server-side apply needs ?fieldManager (Kubernetes: "PATCH ... apply-patch+yaml requires fieldManager"). */
export function requireFieldManager(query: URLSearchParams): string {
  const given = query.get('fieldManager');
  if (!given) throw new BadRequestError('fieldManager is required for apply requests (application/apply-patch+yaml): add ?fieldManager=NAME');
  return checkManager(given);
}

function checkManager(name: string, truncate = false): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new BadRequestError('fieldManager must not contain control characters');
  if (name.length > MAX_FIELD_MANAGER_LENGTH) {
    if (truncate) return name.slice(0, MAX_FIELD_MANAGER_LENGTH);
    throw new BadRequestError(`fieldManager must be at most ${MAX_FIELD_MANAGER_LENGTH} characters, got ${name.length}`);
  }
  if (name === '') throw new BadRequestError('fieldManager must not be empty');
  return name;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** RFC 3339 in seconds, as Kubernetes writes managedFields times. */
function timeOf(now: string | Date): string {
  const d = new Date(now);
  if (Number.isNaN(d.getTime())) throw new BadRequestError(`not a time: ${String(now)}`);
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Metadata the system keeps: never owned, never applied. */
const SYSTEM_METADATA = ['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'managedFields', 'selfLink'];

/** The part of an object that field ownership covers: its spec and metadata (main resource) or its status. */
function ownable(obj: unknown, scope: 'main' | 'status' | 'all'): Record<string, unknown> {
  if (!isObject(obj)) return {};
  if (scope === 'status') return obj.status === undefined ? {} : { status: obj.status };
  // A view, not a copy: every caller only reads it (a deep copy per call was most of recording a create's fields).
  const out: Record<string, unknown> = { ...obj };
  delete out.apiVersion;
  delete out.kind;
  if (isObject(out.metadata)) {
    const metadata: Record<string, unknown> = { ...out.metadata };
    for (const k of SYSTEM_METADATA) delete metadata[k];
    if (Object.keys(metadata).length === 0) delete out.metadata;
    else out.metadata = metadata;
  }
  if (scope === 'main') delete out.status;
  return out;
}

/** Every proper ancestor of the paths of a set. */
function ancestorsOf(set: FieldSet): Set<string> {
  const out = new Set<string>();
  for (const p of set) {
    const els = elementsOf(p);
    for (let i = 1; i < els.length; i++) out.add(pathOf(els.slice(0, i)));
  }
  return out;
}

function decodeEntries(raw: unknown): Array<{ entry: ManagedFieldsEntry; set: FieldSet }> {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new BadRequestError('metadata.managedFields must be a list');
  return raw.map((e, i) => {
    const where = `metadata.managedFields[${i}]`;
    if (!isObject(e)) throw new BadRequestError(`${where}: must be an object`);
    if (typeof e.manager !== 'string' || (e.operation !== 'Apply' && e.operation !== 'Update')) throw new BadRequestError(`${where}: needs a manager and an operation (Apply or Update)`);
    if (e.fieldsType !== undefined && e.fieldsType !== 'FieldsV1') throw new BadRequestError(`${where}.fieldsType: only FieldsV1 is supported`);
    const entry: ManagedFieldsEntry = {
      manager: e.manager,
      operation: e.operation,
      apiVersion: typeof e.apiVersion === 'string' ? e.apiVersion : '',
      time: typeof e.time === 'string' ? e.time : '',
      fieldsType: 'FieldsV1',
      fieldsV1: isObject(e.fieldsV1) ? e.fieldsV1 : {},
      ...(typeof e.subresource === 'string' && e.subresource ? { subresource: e.subresource } : {}),
    };
    return { entry, set: fromFieldsV1(entry.fieldsV1, where) };
  });
}

function encodeEntries(entries: Array<{ entry: ManagedFieldsEntry; set: FieldSet }>): ManagedFieldsEntry[] {
  return entries.filter((e) => e.set.size > 0).map(({ entry, set }) => ({ ...entry, fieldsV1: toFieldsV1(set) }));
}

/** Keeps in each entry only paths the object still has (a field removed by any write is owned by nobody). */
function pruneToPresent(entries: Array<{ entry: ManagedFieldsEntry; set: FieldSet }>, obj: unknown, rules: FieldMerge): void {
  const present = fieldsOf(ownable(obj, 'all'), rules, { compounds: true });
  for (const e of entries) for (const p of [...e.set]) if (!present.has(p)) e.set.delete(p);
}

/** The paths whose value `next` sets differently from `prev` (added or changed; compounds created included). */
function changedFields(prev: unknown, next: unknown, rules: FieldMerge, prefix: string[] = [], out: FieldSet = new Set()): FieldSet {
  if (isDeepStrictEqual(prev, next) || next === undefined) return out;
  if (prev === undefined) return fieldsOf(next, rules, { compounds: true }, prefix, out);
  if (!rules.atomic && isObject(prev) && isObject(next)) {
    for (const [k, v] of Object.entries(next)) changedFields(prev[k], v, fieldMerge(rules, k), [...prefix, `f:${k}`], out);
    return out;
  }
  if (!rules.atomic && Array.isArray(prev) && Array.isArray(next) && (rules.listMapKeys || rules.set)) {
    if (rules.set) {
      const had = new Set(prev.map((x) => JSON.stringify(x)));
      for (const v of next) if (!had.has(JSON.stringify(v))) fieldsOf([v], rules, {}, prefix, out);
      return out;
    }
    const items = itemMerge(rules);
    const before = new Map(prev.map((x) => [keyOrUndefined(x, rules), x]));
    for (const x of next) {
      const k = keyOrUndefined(x, rules);
      if (k !== undefined) changedFields(before.get(k), x, items, [...prefix, k], out);
    }
    return out;
  }
  if (prefix.length) out.add(pathOf(prefix));
  if (isObject(next) && !rules.atomic) fieldsOf(next, rules, { compounds: true }, prefix, out);
  return out;
}

/**
 * Records a write other than apply: `next` with its managedFields, where `manager`'s Update entry
 * gains the fields this write changed and every other entry loses them. `old` undefined: a create (the
 * manager owns everything it set). A `next` whose managedFields differ from the stored ones sets them
 * (Kubernetes: a client may reset them; `[]` clears all).
 */
export function recordUpdate<T extends object>(old: T | undefined, next: T, manager: string, now: string | Date, subresource?: 'status' | 'scale'): T {
  // `next` has passed validation (the API admits every write before it records it): plain data, no cycles.
  const out = deepCopy(next) as T & Stored;
  const prevObj = old as (T & Stored) | undefined;
  const rules = kindMerge(out.kind);
  const incoming = out.metadata?.managedFields as unknown;
  const stored = prevObj?.metadata?.managedFields as unknown;
  const base = incoming === undefined || isDeepStrictEqual(incoming, stored) ? stored : incoming;
  const entries = decodeEntries(base);
  const scope = subresource === 'status' ? 'status' : 'main';
  const changed = changedFields(prevObj ? ownable(prevObj, scope) : undefined, ownable(out, scope), rules);
  if (changed.size > 0) {
    for (const e of entries) for (const p of changed) e.set.delete(p);
    const mine = entries.find((e) => e.entry.manager === manager && e.entry.operation === 'Update' && (e.entry.subresource ?? '') === (subresource ?? ''));
    const apiVersion = String(out.apiVersion);
    if (mine) {
      for (const p of changed) mine.set.add(p);
      Object.assign(mine.entry, { time: timeOf(now), apiVersion });
    } else {
      entries.push({ entry: { manager, operation: 'Update', apiVersion, time: timeOf(now), fieldsType: 'FieldsV1', fieldsV1: {}, ...(subresource ? { subresource } : {}) }, set: changed });
    }
  }
  // A create that brought no entries of its own has only the one made here, from what it sets: nothing to prune.
  if (old !== undefined || base !== undefined) pruneToPresent(entries, out, rules);
  const encoded = encodeEntries(entries);
  if (out.metadata) {
    if (encoded.length) out.metadata.managedFields = encoded;
    else delete out.metadata.managedFields;
  }
  return out;
}

/** The applied configuration merged into the live object (structured-merge-diff's merge, for these rules). */
function mergeApplied(live: unknown, applied: unknown, rules: FieldMerge, where: string): unknown {
  if (rules.atomic || !isObject(applied) && !Array.isArray(applied)) return structuredClone(applied);
  if (Array.isArray(applied)) {
    if (!Array.isArray(live)) return structuredClone(applied);
    if (rules.listMapKeys) {
      const items = itemMerge(rules);
      const out = structuredClone(live);
      const at = new Map<string, number>();
      out.forEach((y, n) => {
        const k = keyOrUndefined(y, rules);
        if (k !== undefined && !at.has(k)) at.set(k, n);
      });
      const seen = new Set<string>();
      applied.forEach((x, i) => {
        const k = keyElement(x, rules, `${where}[${i}]`);
        if (seen.has(k)) throw new BadRequestError(`${where}[${i}]: duplicate element ${describePath(k)} (each key may appear once)`);
        seen.add(k);
        const j = at.get(k);
        if (j !== undefined) out[j] = mergeApplied(out[j], x, items, `${where}[${i}]`);
        else out.push(structuredClone(x));
      });
      return out;
    }
    if (rules.set) {
      const out = structuredClone(live);
      const have = new Set(out.map((x) => JSON.stringify(x)));
      for (const v of applied) if (!have.has(JSON.stringify(v))) out.push(structuredClone(v));
      return out;
    }
    return structuredClone(applied);
  }
  if (!isObject(live)) return structuredClone(applied);
  const out = structuredClone(live);
  for (const [k, v] of Object.entries(applied)) out[k] = mergeApplied(live[k], v, fieldMerge(rules, k), where ? `${where}.${k}` : k);
  return out;
}

/** Nulls in an applied configuration say "not set" (kubectl writes `creationTimestamp: null`). */
function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (!isObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = withoutNulls(x);
  return out;
}

/** The applied configuration from the body: YAML or JSON text, or already parsed. */
function appliedObject(applied: unknown): Record<string, unknown> {
  let value = applied;
  if (typeof applied === 'string' || Buffer.isBuffer(applied)) {
    const text = applied.toString();
    try {
      value = parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
    } catch (err) {
      throw new BadRequestError(`the applied configuration is not valid YAML or JSON: ${errorMessage(err)}`, err);
    }
  }
  assertJsonDepth(value);
  if (!isObject(value)) throw new BadRequestError('the applied configuration must be an object (one manifest)');
  return withoutNulls(value) as Record<string, unknown>;
}

export interface ApplyOptions {
  fieldManager: string;
  force: boolean;
  /** The kind of the path (the body must say the same). */
  kind: string;
  now: string | Date;
}

/**
 * Server-side apply of `applied` (the parsed body, or its YAML/JSON text) onto `current` (undefined:
 * the object does not exist yet and is created from the configuration). Returns the object to store,
 * with metadata.managedFields; throws ApplyConflictError (409) unless force, BadRequestError (400)
 * for a configuration that is not one object of this kind and name.
 */
export function serverSideApply<T extends object>(current: T | undefined, applied: unknown, opts: ApplyOptions): T {
  const manager = checkManager(opts.fieldManager);
  const cfg = appliedObject(applied);
  if (typeof cfg.apiVersion !== 'string' || !cfg.apiVersion) throw new BadRequestError('apiVersion must be set in the applied configuration');
  if (cfg.kind !== opts.kind) throw new BadRequestError(`the applied configuration is a ${typeof cfg.kind === 'string' ? cfg.kind : '(no kind)'}, but the path is for ${opts.kind}`);
  const meta = isObject(cfg.metadata) ? cfg.metadata : undefined;
  if (typeof meta?.name !== 'string' || !meta.name) throw new BadRequestError('metadata.name must be set in the applied configuration');
  if (meta.managedFields !== undefined) throw new BadRequestError('metadata.managedFields must not be set in an applied configuration');
  const rules = kindMerge(opts.kind);
  const appliedSet = fieldsOf(ownable(cfg, 'main'), rules, { strict: true });
  const time = timeOf(opts.now);
  const entryOf = (): ManagedFieldsEntry => ({ manager, operation: 'Apply', apiVersion: cfg.apiVersion as string, time, fieldsType: 'FieldsV1', fieldsV1: {} });

  if (current === undefined) {
    const created = structuredClone(cfg) as unknown as Stored;
    delete created.status;
    const entries = [{ entry: entryOf(), set: appliedSet }];
    pruneToPresent(entries, created, rules);
    created.metadata.managedFields = encodeEntries(entries);
    return created as unknown as T;
  }

  const live = current as unknown as Stored;
  if (meta.name !== live.metadata.name) throw new BadRequestError(`the name of the applied configuration (${meta.name}) does not match the object's (${live.metadata.name})`);
  if (meta.namespace !== undefined && meta.namespace !== live.metadata.namespace) throw new BadRequestError(`the namespace of the applied configuration (${String(meta.namespace)}) does not match the object's (${live.metadata.namespace ?? ''})`);
  const entries = decodeEntries(live.metadata.managedFields);
  const mineIndex = entries.findIndex((e) => e.entry.manager === manager && e.entry.operation === 'Apply');
  const previous = mineIndex >= 0 ? entries[mineIndex]!.set : new Set<string>();
  const others = entries.filter((_, i) => i !== mineIndex);

  // The applied values over the live object; the identity stays the stored one.
  const liveBody = structuredClone(live) as Record<string, unknown>;
  delete (liveBody.metadata as Record<string, unknown>).managedFields;
  const merged = mergeApplied(liveBody, ownable(cfg, 'main'), rules, '') as Stored;

  // Conflicts: a leaf of the configuration that another manager owns and whose value would change.
  const appliedParents = ancestorsOf(appliedSet);
  const leaves = [...appliedSet].filter((p) => !appliedParents.has(p));
  const conflicts: Array<{ manager: string; path: string; owner: { entry: ManagedFieldsEntry; set: FieldSet } }> = [];
  // Every other entry counts, the applier's own Update entries too (Kubernetes keys managers by name,
  // operation and subresource: `kubectl scale` without --field-manager is "kubectl" with subresource scale).
  for (const o of others) {
    for (const p of leaves) {
      if (o.set.has(p) && !isDeepStrictEqual(valueAt(liveBody, p, rules), valueAt(merged, p, rules))) conflicts.push({ manager: managerLabel(o.entry), path: p, owner: o });
    }
  }
  if (conflicts.length > 0 && !opts.force) throw new ApplyConflictError(conflicts);
  for (const c of conflicts) c.owner.set.delete(c.path);

  // Fields this manager applied before and leaves out now go, unless someone else still owns them (or
  // something under them). The key fields of a list element that stays are part of it, never removed alone.
  const othersOwn = new Set<string>();
  for (const o of others) for (const p of o.set) othersOwn.add(p);
  for (const p of ancestorsOf(othersOwn)) othersOwn.add(p);
  const dropped = new Set([...previous].filter((p) => !appliedSet.has(p) && !appliedParents.has(p) && !othersOwn.has(p)));
  for (const p of dropped) {
    // Removing a field removes what is under it: only the outermost dropped paths are removed.
    if (elementsOf(p).some((_, i) => i > 0 && dropped.has(pathOf(elementsOf(p).slice(0, i))))) continue;
    const els = elementsOf(p);
    const parent = els.slice(0, -1);
    const last = els[els.length - 1]!;
    const item = parent[parent.length - 1];
    if (item?.startsWith('k:') && last.startsWith('f:') && Object.hasOwn(JSON.parse(item.slice(2)) as object, last.slice(2)) && !dropped.has(pathOf(parent))) continue;
    removeAt(merged, p, rules);
  }
  compact(merged);

  const mine = { entry: entryOf(), set: appliedSet };
  const all = mineIndex >= 0 ? entries.map((e, i) => (i === mineIndex ? mine : e)) : [...entries, mine];
  pruneToPresent(all, merged, rules);
  merged.metadata.managedFields = encodeEntries(all);
  return merged as unknown as T;
}
