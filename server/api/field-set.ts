/**
 * Sets of field paths as Kubernetes' server-side apply keeps them per manager (structured-merge-diff's
 * fieldpath.Set), and their FieldsV1 encoding in metadata.managedFields:
 *   `f:<field>` an object field, `k:{"name":"web"}` an element of an associative list (its keys, sorted),
 *   `v:<json>` an element of a set list, `.` inside a node that is itself a member as well as a parent.
 * A path is stored as its elements joined by "\n" (no element holds a raw newline: keys and values are JSON).
 */
import { BadRequestError } from '../../src/util/errors.js';
import { fieldMerge, itemMerge, type FieldMerge } from './patch-meta.js';

export type FieldSet = Set<string>;

const SEP = '\n';

export function pathOf(elements: string[]): string {
  return elements.join(SEP);
}

export function elementsOf(path: string): string[] {
  return path === '' ? [] : path.split(SEP);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** JSON with object keys sorted, as structured-merge-diff writes key and value elements. */
function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${sortedJson(v[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

/** The key element of an associative list's element: its list-map keys (defaults filled in), sorted. */
export function keyElement(item: unknown, rules: FieldMerge, whereOf: string | (() => string)): string {
  const where = () => (typeof whereOf === 'string' ? whereOf : whereOf());
  if (!isObject(item)) throw new BadRequestError(`${where()}: elements must be objects (a list keyed by ${rules.listMapKeys!.join(', ')})`);
  const key: Record<string, unknown> = {};
  for (const k of rules.listMapKeys!) {
    const v = item[k] ?? rules.keyDefaults?.[k];
    if (v === undefined || v === null) throw new BadRequestError(`${where()}: element has no key field "${k}"`);
    key[k] = v;
  }
  return `k:${sortedJson(key)}`;
}

/** Where a path points, for messages: `.spec.template.spec.containers[name="web"].image` (Kubernetes' form). */
export function describePath(path: string): string {
  return elementsOf(path)
    .map((e) => {
      if (e.startsWith('f:')) return `.${e.slice(2)}`;
      if (e.startsWith('k:')) {
        const key = JSON.parse(e.slice(2)) as Record<string, unknown>;
        return `[${Object.entries(key).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
      }
      if (e.startsWith('v:')) return `[=${e.slice(2)}]`;
      return e;
    })
    .join('');
}

/**
 * The paths a value sets (structured-merge-diff's ToFieldSet): leaves, atomic values, empty objects,
 * and the elements of associative and set lists. With `compounds`, every object path with content is
 * a member too (what an Update records for a field it created, shown as `.`).
 */
export function fieldsOf(value: unknown, rules: FieldMerge, opts: { compounds?: boolean; strict?: boolean } = {}, prefix: string[] = [], out: FieldSet = new Set()): FieldSet {
  const add = (p: string[]) => out.add(pathOf(p));
  if (rules.atomic || value === null || typeof value !== 'object') {
    if (prefix.length) add(prefix);
    return out;
  }
  if (Array.isArray(value)) {
    if (rules.listMapKeys) {
      const items = itemMerge(rules);
      const seen = new Set<string>();
      value.forEach((item, i) => {
        // Spelled out only for an error: describing the path costs more than the walk.
        const where = () => `${describePath(pathOf(prefix))}[${i}]`;
        // A stored object may hold what an applied configuration may not (two env entries of one name):
        // ownership is then recorded once, for the first.
        const key = opts.strict ? keyElement(item, rules, where) : keyOrUndefined(item, rules);
        if (key === undefined) return;
        if (seen.has(key)) {
          if (opts.strict) throw new BadRequestError(`${where()}: duplicate element ${describePath(key)} (each key may appear once)`);
          return;
        }
        seen.add(key);
        const p = [...prefix, key];
        add(p);
        fieldsOf(item, items, opts, p, out);
      });
    } else if (rules.set) {
      for (const v of value) add([...prefix, `v:${sortedJson(v)}`]);
    } else if (prefix.length) add(prefix);
    return out;
  }
  const entries = Object.entries(value);
  if ((entries.length === 0 || opts.compounds) && prefix.length) add(prefix);
  for (const [k, v] of entries) fieldsOf(v, fieldMerge(rules, k), opts, [...prefix, `f:${k}`], out);
  return out;
}

/** keyElement, or undefined for an element that has no key (never matched by any path). */
export function keyOrUndefined(item: unknown, rules: FieldMerge): string | undefined {
  try {
    return keyElement(item, rules, '');
  } catch (err) {
    if (err instanceof BadRequestError) return undefined;
    throw err;
  }
}

/**
 * Each list's elements by their key element (k:...) or set value (v:...), built once per list: a path
 * lookup is then a walk of its depth, not a scan of every list on the way.
 */
const listIndex = new WeakMap<unknown[], Map<string, number>>();

function indexOf(list: unknown[], element: string, rules: FieldMerge): number {
  let idx = listIndex.get(list);
  if (!idx) {
    idx = new Map();
    list.forEach((x, i) => {
      const k = rules.listMapKeys ? keyOrUndefined(x, rules) : `v:${sortedJson(x)}`;
      if (k !== undefined && !idx!.has(k)) idx!.set(k, i);
    });
    listIndex.set(list, idx);
  }
  return idx.get(element) ?? -1;
}

/** The value at a path, or undefined where the object has nothing there. */
export function valueAt(obj: unknown, path: string, rules: FieldMerge): unknown {
  let cur: unknown = obj;
  let r = rules;
  for (const e of elementsOf(path)) {
    if (e.startsWith('f:')) {
      if (!isObject(cur)) return undefined;
      const k = e.slice(2);
      cur = Object.hasOwn(cur, k) ? cur[k] : undefined;
      r = fieldMerge(r, k);
    } else if (e.startsWith('k:') || e.startsWith('v:')) {
      if (!Array.isArray(cur) || (e.startsWith('k:') && !r.listMapKeys)) return undefined;
      const i = indexOf(cur, e, r);
      cur = i >= 0 ? cur[i] : undefined;
      if (e.startsWith('k:')) r = itemMerge(r);
    } else return undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** Removes what a path names from an object (a field, a list element, a set value); mutates `obj`. */
export function removeAt(obj: unknown, path: string, rules: FieldMerge): void {
  const els = elementsOf(path);
  if (els.length === 0) return;
  const parentPath = pathOf(els.slice(0, -1));
  const parent = parentPath === '' ? obj : valueAt(obj, parentPath, rules);
  const last = els[els.length - 1]!;
  if (last.startsWith('f:') && isObject(parent)) delete parent[last.slice(2)];
  else if (Array.isArray(parent)) {
    let parentRules = rules;
    for (const e of els.slice(0, -1)) parentRules = e.startsWith('f:') ? fieldMerge(parentRules, e.slice(2)) : itemMerge(parentRules);
    const i = indexOf(parent, last, parentRules);
    // Marked, not spliced: other paths into the same list keep their positions; compact() drops the marks.
    if (i >= 0) parent[i] = REMOVED;
  }
}

/** What removeAt leaves in a list until compact() runs. */
const REMOVED = Symbol('removed');

/** Drops the elements removeAt marked, everywhere in the object; mutates `obj`. */
export function compact(obj: unknown): void {
  if (Array.isArray(obj)) {
    for (let i = obj.length - 1; i >= 0; i--) if (obj[i] === REMOVED) obj.splice(i, 1);
    obj.forEach(compact);
  } else if (isObject(obj)) for (const v of Object.values(obj)) compact(v);
}

/** FieldsV1 (the JSON tree in managedFields) of a set. */
export function toFieldsV1(set: FieldSet): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  const members: Array<Record<string, unknown>> = [];
  for (const p of set) {
    let node = root;
    for (const e of elementsOf(p)) node = (node[e] ??= {}) as Record<string, unknown>;
    members.push(node);
  }
  // A member that is also a parent says so with "." (sortTree puts it first).
  for (const node of members) {
    for (const _ in node) {
      node['.'] = {};
      break;
    }
  }
  return sortTree(root);
}

function sortTree(node: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(node).sort((a, b) => (a === '.' ? -1 : b === '.' ? 1 : a < b ? -1 : a > b ? 1 : 0))) out[k] = sortTree(node[k] as Record<string, unknown>);
  return out;
}

/** The set a FieldsV1 tree holds; 400 naming the entry for anything that is not one. */
export function fromFieldsV1(tree: unknown, where: string): FieldSet {
  const out: FieldSet = new Set();
  const walk = (node: unknown, prefix: string[]) => {
    if (!isObject(node)) throw new BadRequestError(`${where}: fieldsV1 must be nested objects`);
    const keys = Object.keys(node);
    if (keys.length === 0 || keys.includes('.')) {
      if (prefix.length) out.add(pathOf(prefix));
    }
    for (const k of keys) {
      if (k === '.') continue;
      if (!/^[fkvi]:/.test(k)) throw new BadRequestError(`${where}: fieldsV1 key ${JSON.stringify(k)} is not f:, k:, v: or i:`);
      walk(node[k], [...prefix, k]);
    }
  };
  walk(tree, []);
  return out;
}

/** Paths of `set` that lie under (or are) `path`. */
export function isUnder(candidate: string, path: string): boolean {
  return candidate === path || candidate.startsWith(path + SEP);
}
