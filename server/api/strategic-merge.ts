/**
 * Kubernetes' strategic merge patch (what `kubectl apply`, `edit`, `rollout restart|undo` send), after
 * apimachinery's pkg/util/strategicpatch/patch.go: objects merge field by field; lists with
 * patchStrategy "merge" merge by their patchMergeKey (or as a set of scalars); other lists are replaced;
 * null deletes. Directives honoured:
 * - `$patch: replace` in an object (the object replaces the live one) or as a list element (the list's
 *   other elements replace the live list); `$patch: delete` in an object (the field is removed) or as a
 *   list element with the merge key (that element is removed); `$patch: merge` (the default, accepted);
 * - `$setElementOrder/<list>`: the order of the merged list;
 * - `$deleteFromPrimitiveList/<list>`: scalars removed from a merged scalar list;
 * - `$retainKeys`: fields of the live object not listed are cleared (the patch may set only listed ones).
 * Two deliberate differences: `$patch: delete` on an object removes the field (Kubernetes leaves `{}`,
 * which is what its docs say it should not), and `$patch: merge` in an object is accepted as a no-op.
 */
import { BadRequestError } from '../../src/util/errors.js';
import { fieldMerge, itemMerge, type FieldMerge } from './patch-meta.js';

const DIRECTIVE = '$patch';
const RETAIN_KEYS = '$retainKeys';
const SET_ORDER = '$setElementOrder/';
const DELETE_FROM = '$deleteFromPrimitiveList/';

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function fail(path: string, why: string): never {
  throw new BadRequestError(`strategic merge patch: ${path || '(the object)'}: ${why}`);
}

const at = (path: string, key: string) => (path ? `${path}.${key}` : key);

/** Applies a strategic merge patch to `original` with the rules of `node` (kindMerge(kind) for an object). */
export function strategicMerge(original: unknown, patch: unknown, node: FieldMerge): unknown {
  if (!isObject(patch)) fail('', 'a strategic merge patch must be a JSON object');
  const merged = mergeObject(isObject(original) ? structuredClone(original) : {}, structuredClone(patch), node, '');
  return merged ?? {};
}

/** Drops directives from a value that is taken as is (a field the live object does not have yet). */
function withoutDirectives(v: unknown): { value: unknown; keep: boolean } {
  if (Array.isArray(v)) {
    const out: unknown[] = [];
    for (const x of v) {
      // A list element that is a directive ($patch: replace|delete|merge) is an instruction, not a value.
      if (isObject(x) && Object.hasOwn(x, DIRECTIVE)) continue;
      const r = withoutDirectives(x);
      if (r.keep) out.push(r.value);
    }
    return { value: out, keep: true };
  }
  if (!isObject(v)) return { value: v, keep: true };
  const directive = v[DIRECTIVE];
  if (directive === 'delete') return { value: undefined, keep: false };
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === DIRECTIVE || k === RETAIN_KEYS || k.startsWith(SET_ORDER) || k.startsWith(DELETE_FROM)) continue;
    if (x === null) continue;
    const r = withoutDirectives(x);
    if (r.keep) out[k] = r.value;
  }
  return { value: out, keep: true };
}

/** undefined: the object is deleted. Mutates and returns `original` (a private copy). */
function mergeObject(original: Obj, patch: Obj, node: FieldMerge, path: string): Obj | undefined {
  const directive = patch[DIRECTIVE];
  if (directive !== undefined) {
    if (directive === 'replace') return withoutDirectives(patch).value as Obj;
    if (directive === 'delete') return undefined;
    if (directive !== 'merge') fail(path, `unknown $patch directive ${JSON.stringify(directive)} (replace, delete or merge)`);
    delete patch[DIRECTIVE];
  }
  if (Object.hasOwn(patch, RETAIN_KEYS)) {
    const keep = patch[RETAIN_KEYS];
    delete patch[RETAIN_KEYS];
    if (!Array.isArray(keep) || !keep.every((k) => typeof k === 'string')) fail(path, '$retainKeys must be a list of field names');
    for (const [k, v] of Object.entries(patch)) {
      if (v === null || k.startsWith(SET_ORDER) || k.startsWith(DELETE_FROM)) continue;
      if (!keep.includes(k)) fail(at(path, k), 'the patch sets a field that its $retainKeys does not list');
    }
    for (const k of Object.keys(original)) if (!keep.includes(k)) delete original[k];
  }
  const orders: Array<[string, unknown]> = [];
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith(SET_ORDER)) {
      orders.push([key.slice(SET_ORDER.length), value]);
      continue;
    }
    if (key.startsWith(DELETE_FROM)) {
      const field = key.slice(DELETE_FROM.length);
      if (!Array.isArray(value)) fail(at(path, key), 'must be a list of the values to delete');
      const live = original[field];
      if (live === undefined) continue;
      if (!Array.isArray(live)) fail(at(path, field), 'is not a list, so $deleteFromPrimitiveList does not apply');
      const gone = new Set(value.map(canonical));
      original[field] = live.filter((x) => !gone.has(canonical(x)));
      continue;
    }
    if (key.startsWith('$')) fail(at(path, key), 'unknown directive');
    const p = at(path, key);
    const rules = fieldMerge(node, key);
    if (value === null) {
      delete original[key];
      continue;
    }
    const live = original[key];
    if (isObject(live) && isObject(value)) {
      const m = mergeObject(live, value, rules, p);
      if (m === undefined) delete original[key];
      else original[key] = m;
    } else if (Array.isArray(live) && Array.isArray(value) && rules.strategy?.split(',').includes('merge')) {
      original[key] = mergeList(live, value, rules, p);
    } else {
      const r = withoutDirectives(value);
      if (r.keep) original[key] = r.value;
      else delete original[key];
    }
  }
  for (const [field, order] of orders) applyOrder(original, field, order, fieldMerge(node, field), at(path, `$setElementOrder/${field}`));
  return original;
}

/** The identity of a list element: its merge key's value, or the scalar itself. */
function identity(v: unknown, mergeKey: string | undefined, path: string): unknown {
  if (!mergeKey) return v;
  if (!isObject(v)) fail(path, `elements must be objects (merged by "${mergeKey}")`);
  if (!Object.hasOwn(v, mergeKey)) fail(path, `element has no merge key "${mergeKey}"`);
  return v[mergeKey];
}

/** JSON with sorted keys: equal values, equal text (lookups by Map instead of pairwise deep compares). */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  return JSON.stringify(v) ?? 'undefined';
}

/** An element's identity as a Map key. */
function idKey(v: unknown, mergeKey: string | undefined, path: string): string {
  return canonical(identity(v, mergeKey, path));
}

/** Position of each identity in a list (the first, as Kubernetes' lookups find it). */
function positions(list: unknown[], mergeKey: string | undefined, path: string): Map<string, number> {
  const out = new Map<string, number>();
  list.forEach((x, i) => {
    const k = idKey(x, mergeKey, `${path}[${i}]`);
    if (!out.has(k)) out.set(k, i);
  });
  return out;
}

function mergeList(live: unknown[], patch: unknown[], rules: FieldMerge, path: string): unknown[] {
  const mergeKey = rules.mergeKey;
  const elementRules = itemMerge(rules);
  const original = live;
  if (!mergeKey) {
    // A list of scalars merged as a set: live values, then the patch's new ones, in the patch's order.
    if (patch.some((x) => isObject(x) || Array.isArray(x))) fail(path, 'a merged list of scalars cannot hold objects or lists');
    const merged = [...original];
    const have = new Set(merged.map(canonical));
    for (const v of patch) {
      const k = canonical(v);
      if (!have.has(k)) {
        have.add(k);
        merged.push(v);
      }
    }
    return ordered(merged, patch, original, undefined, path);
  }
  const deleted = new Set<string>();
  const items: Obj[] = [];
  let replace = false;
  patch.forEach((el, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(el)) fail(p, `elements must be objects (merged by "${mergeKey}")`);
    const directive = el[DIRECTIVE];
    if (directive === undefined) return void items.push(el);
    if (directive === 'delete') {
      if (!Object.hasOwn(el, mergeKey)) fail(p, `$patch: delete needs the merge key "${mergeKey}"`);
      deleted.add(canonical(el[mergeKey]));
    } else if (directive === 'replace') replace = true;
    else if (directive === 'merge') {
      const rest = { ...el };
      delete rest[DIRECTIVE];
      if (Object.keys(rest).length > 0) items.push(rest);
    } else fail(p, `unknown $patch directive ${JSON.stringify(directive)} (replace, delete or merge)`);
  });
  if (replace) return items.map((x) => withoutDirectives(x).value);
  const base: Array<unknown | typeof GONE> = original.filter((x, j) => !deleted.has(idKey(x, mergeKey, `${path}[${j}]`)));
  const at = positions(base, mergeKey, path);
  items.forEach((el, i) => {
    const id = identity(el, mergeKey, `${path}[${i}]`);
    const k = canonical(id);
    const j = at.get(k);
    if (j !== undefined && base[j] !== GONE) {
      const m = mergeObject(structuredClone(base[j]) as Obj, el, elementRules, `${path}[${mergeKey}=${JSON.stringify(id)}]`);
      base[j] = m === undefined ? GONE : m;
    } else if (j === undefined) {
      at.set(k, base.length);
      base.push(withoutDirectives(el).value);
    }
  });
  return ordered(base.filter((x) => x !== GONE), items, original, mergeKey, path);
}

/** Marks an element a nested `$patch: delete` removed, so positions stay valid until the end. */
const GONE = Symbol('gone');

/**
 * The order Kubernetes gives a merged list (normalizeElementOrder): the elements the patch names in the
 * patch's order, the others in the live order, interleaved by where they stood in the live list.
 */
function ordered(merged: unknown[], patchOrder: unknown[], liveOrder: unknown[], mergeKey: string | undefined, path: string): unknown[] {
  const key = (v: unknown) => idKey(v, mergeKey, path);
  const inPatch = positions(patchOrder, mergeKey, path);
  const inLive = positions(liveOrder, mergeKey, path);
  const sortBy = (xs: unknown[], order: Map<string, number>) =>
    xs
      .map((v, i) => ({ v, i, o: order.get(key(v)) ?? -1 }))
      .sort((a, b) => (a.o >= 0 && b.o >= 0 ? a.o - b.o : a.i - b.i))
      .map((x) => x.v);
  const patchItems = sortBy(merged.filter((v) => inPatch.has(key(v))), inPatch);
  const serverOnly = sortBy(
    merged.filter((v) => !inPatch.has(key(v))),
    inLive,
  );
  const out: unknown[] = [];
  let i = 0;
  let j = 0;
  while (i < serverOnly.length || j < patchItems.length) {
    if (j >= patchItems.length) out.push(serverOnly[i++]);
    else if (i >= serverOnly.length) out.push(patchItems[j++]);
    else {
      const li = inLive.get(key(serverOnly[i])) ?? -1;
      const ri = inLive.get(key(patchItems[j])) ?? -1;
      if (li >= 0 && ri >= 0 && li < ri) out.push(serverOnly[i++]);
      else out.push(patchItems[j++]);
    }
  }
  return out;
}

/** `$setElementOrder/<field>`: the merged list in that order, elements it does not name kept in live order. */
function applyOrder(obj: Obj, field: string, order: unknown, rules: FieldMerge, path: string): void {
  if (!Array.isArray(order)) fail(path, 'must be a list');
  const list = obj[field];
  if (list === undefined) return;
  if (!Array.isArray(list)) fail(path, `${field} is not a list`);
  const mergeKey = rules.mergeKey;
  const keys = order.map((x, i) => (mergeKey && isObject(x) ? identity(x, mergeKey, `${path}[${i}]`) : x));
  const wantedKeys = new Set(keys.map(canonical));
  const named = (v: unknown, i: number) => wantedKeys.has(idKey(v, mergeKey, `${path}[${i}]`));
  const inOrder = list.filter(named);
  const others = list.filter((v, i) => !named(v, i));
  const wanted = (mergeKey ? keys.map((k) => ({ [mergeKey]: k })) : keys) as unknown[];
  obj[field] = ordered([...inOrder, ...others], wanted, list, mergeKey, path);
}
