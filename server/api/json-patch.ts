/**
 * JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7386) on plain JSON values.
 *
 * Written here rather than taken from a library: both RFCs are short, and the errors a user sees must
 * name the operation and the path that failed (`op 2 (remove /metadata/labels/x): ...`), which the
 * libraries' messages do not. Inputs are never modified; results are fresh values.
 */
import { isDeepStrictEqual } from 'node:util';
import { BadRequestError } from '../../src/util/errors.js';

/** Most operations one JSON patch may hold (Kubernetes' maxJSONPatchOperations). */
export const MAX_JSON_PATCH_OPERATIONS = 10_000;

/**
 * Most bytes (as JSON) all `copy` operations of one patch may duplicate: a few copies of the root into
 * itself would otherwise double the document each time (Kubernetes caps it too, AccumulatedCopySizeLimit).
 */
export const MAX_JSON_PATCH_COPY_BYTES = 9 * 1024 * 1024;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** One failed operation of a JSON patch: which one, and why. */
export class JsonPatchError extends BadRequestError {
  readonly index: number;
  readonly path: string;
  constructor(index: number, op: string, path: string, why: string) {
    super(`json patch op ${index} (${op} ${path}): ${why}`);
    this.index = index;
    this.path = path;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The reference tokens of a JSON pointer (RFC 6901): "" is the whole document, else "/a/b~1c" → ["a", "b/c"]. */
export function parsePointer(pointer: string): string[] {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) throw new Error(`"${pointer}" is not a JSON pointer (it must be empty or start with "/")`);
  return pointer
    .slice(1)
    .split('/')
    .map((t) => {
      if (/~[^01]|~$/.test(t)) throw new Error(`"${pointer}" has a "~" that is not "~0" or "~1"`);
      return t.replace(/~1/g, '/').replace(/~0/g, '~');
    });
}

/** An array index token: decimal digits without a leading zero (RFC 6901), within the array. */
function arrayIndex(token: string, length: number, forAdd: boolean): number {
  if (forAdd && token === '-') return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new Error(`"${token}" is not an array index`);
  const i = Number(token);
  if (i > length || (!forAdd && i === length)) throw new Error(`index ${i} is out of range (the array has ${length} elements)`);
  return i;
}

/** The container a pointer's last token lives in, walking from the document root. */
function parentOf(doc: Json, tokens: string[]): Json[] | { [k: string]: Json } {
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(t, cur.length, false)]!;
    else if (isObject(cur) && Object.hasOwn(cur, t)) cur = (cur as Record<string, Json>)[t]!;
    else throw new Error(`the path does not exist (no "${t}")`);
  }
  if (cur === null || typeof cur !== 'object') throw new Error('the parent of the path is not an object or array');
  return cur;
}

function get(doc: Json, tokens: string[]): Json {
  if (tokens.length === 0) return doc;
  const parent = parentOf(doc, tokens);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) return parent[arrayIndex(last, parent.length, false)]!;
  if (!Object.hasOwn(parent, last)) throw new Error(`the path does not exist (no "${last}")`);
  return (parent as Record<string, Json>)[last]!;
}

/** Returns the new document (the root may be replaced by an add at ""). */
function add(doc: Json, tokens: string[], value: Json): Json {
  if (tokens.length === 0) return value;
  const parent = parentOf(doc, tokens);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, true), 0, value);
  else (parent as Record<string, Json>)[last] = value;
  return doc;
}

function remove(doc: Json, tokens: string[]): Json {
  if (tokens.length === 0) throw new Error('the whole document cannot be removed');
  const parent = parentOf(doc, tokens);
  const last = tokens[tokens.length - 1]!;
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, false), 1);
  else {
    if (!Object.hasOwn(parent, last)) throw new Error(`the path does not exist (no "${last}")`);
    delete (parent as Record<string, Json>)[last];
  }
  return doc;
}

/**
 * Applies an RFC 6902 patch: every operation or none (the input is untouched on error). Throws a
 * JsonPatchError (400) naming the failing operation's index, op and path.
 */
export function applyJsonPatch(document: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw new BadRequestError('a json patch must be a JSON array of operations');
  if (patch.length > MAX_JSON_PATCH_OPERATIONS) throw new BadRequestError(`a json patch may hold at most ${MAX_JSON_PATCH_OPERATIONS} operations, got ${patch.length}`);
  let doc = structuredClone(document) as Json;
  let copied = 0;
  patch.forEach((raw, i) => {
    if (!isObject(raw)) throw new JsonPatchError(i, '?', '?', 'an operation must be an object');
    const op = raw.op;
    const path = raw.path;
    if (typeof op !== 'string') throw new JsonPatchError(i, '?', String(path), 'missing "op"');
    if (typeof path !== 'string') throw new JsonPatchError(i, op, '?', 'missing "path"');
    const fail = (why: string): never => {
      throw new JsonPatchError(i, op, path, why);
    };
    try {
      const tokens = parsePointer(path);
      const value = (): Json => (Object.hasOwn(raw, 'value') ? structuredClone(raw.value as Json) : fail('missing "value"'));
      const from = (): string[] => (typeof raw.from === 'string' ? parsePointer(raw.from) : fail('missing "from"'));
      switch (op) {
        case 'add':
          doc = add(doc, tokens, value());
          break;
        case 'remove':
          doc = remove(doc, tokens);
          break;
        case 'replace': {
          const v = value();
          get(doc, tokens);
          doc = tokens.length === 0 ? v : add(remove(doc, tokens), tokens, v);
          break;
        }
        case 'move': {
          const f = from();
          if (f.length < tokens.length && f.every((t, j) => tokens[j] === t)) fail(`"from" (${String(raw.from)}) cannot be moved into its own child`);
          const v = get(doc, f);
          doc = add(remove(doc, f), tokens, v);
          break;
        }
        case 'copy': {
          const v = get(doc, from());
          copied += JSON.stringify(v).length;
          if (copied > MAX_JSON_PATCH_COPY_BYTES) fail(`the copies of this patch add up to more than ${MAX_JSON_PATCH_COPY_BYTES} bytes`);
          doc = add(doc, tokens, structuredClone(v));
          break;
        }
        case 'test': {
          const expected = value();
          const actual = get(doc, tokens);
          if (!isDeepStrictEqual(actual, expected)) fail(`test failed: the value is ${JSON.stringify(actual)}, not ${JSON.stringify(expected)}`);
          break;
        }
        default:
          fail(`unknown op "${op}" (add, remove, replace, move, copy, test)`);
      }
    } catch (err) {
      if (err instanceof JsonPatchError) throw err;
      fail(err instanceof Error ? err.message : String(err));
    }
  });
  return doc;
}

/** Applies an RFC 7386 merge patch: objects merge key by key, null removes a key, anything else replaces. */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObject(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k], v);
  }
  return out;
}
