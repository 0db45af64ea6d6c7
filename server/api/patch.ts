/**
 * PATCH of a stored object, by the patch type its Content-Type names, as Kubernetes' API server offers
 * it: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch (Kubernetes' own, with
 * the list merge keys of patch-meta.ts) and server-side apply (apply.ts). Pure: the caller reads the
 * stored object, validates what comes back with the kind's schema, and stores it.
 */
import { KINDS } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { BadRequestError, errorMessage } from '../../src/util/errors.js';
import { applyJsonPatch, applyMergePatch } from './json-patch.js';
import { kindMerge } from './patch-meta.js';
import { assertJsonDepth } from './path.js';
import { duplicateKey, UnsupportedMediaTypeError } from './respond.js';
import { strategicMerge } from './strategic-merge.js';

export { patchMetaPaths, type PatchMeta } from './patch-meta.js';

/** The patch types of PATCH bodies other than server-side apply (see apply.ts). */
export type PatchType = 'json' | 'merge' | 'strategic';

/** The media types of each patch type, as Kubernetes names them. */
export const PATCH_CONTENT_TYPES: Readonly<Record<string, PatchType | 'apply'>> = {
  'application/json-patch+json': 'json',
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
  'application/apply-patch+yaml': 'apply',
};

/** The patch type of a Content-Type header (parameters such as charset ignored); undefined for any other. */
export function patchTypeOf(contentType: string | undefined): PatchType | 'apply' | undefined {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return Object.hasOwn(PATCH_CONTENT_TYPES, media) ? PATCH_CONTENT_TYPES[media] : undefined;
}

/** 415 for a PATCH whose Content-Type is no patch type, naming the ones accepted. */
export function unsupportedPatchType(contentType: string | undefined): UnsupportedMediaTypeError {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return new UnsupportedMediaTypeError(`the body of a PATCH must be one of ${Object.keys(PATCH_CONTENT_TYPES).join(', ')}; got ${media ? `"${media}"` : 'no Content-Type'}`);
}

/** A patch body as JSON: parsed, at most MAX_JSON_DEPTH deep, no key named twice in one object. */
export function parsePatchJson(body: string | Buffer): unknown {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`the patch is not valid JSON: ${errorMessage(err)}`, err);
  }
  assertJsonDepth(value);
  const dup = duplicateKey(text);
  if (dup) throw new BadRequestError(`the patch names the key ${JSON.stringify(dup.key)} twice in one object (at ${dup.path})`);
  return value;
}

/**
 * The object after a json, merge or strategic patch (already parsed); `kind` picks the strategic merge
 * keys. `current` is not modified. Throws BadRequestError naming the failing operation or field, and
 * when the patch would change what identifies the object.
 */
export function applyPatch<T extends object>(current: T, patch: unknown, type: PatchType, kind: string): T {
  let result: unknown;
  if (type === 'json') result = applyJsonPatch(current, patch);
  else {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      throw new BadRequestError(`a ${type === 'merge' ? 'merge' : 'strategic merge'} patch must be a JSON object, got ${Array.isArray(patch) ? 'a list' : JSON.stringify(patch)}`);
    }
    result = type === 'merge' ? applyMergePatch(current, patch) : strategicMerge(current, patch, kindMerge(kind));
  }
  assertSameIdentity(current, result);
  return result as T;
}

/** applyPatch from the raw body and its Content-Type: 415 for a type that is not json, merge or strategic. */
export function patchObject(current: ApiObject, body: string | Buffer, contentType: string | undefined): ApiObject {
  const type = patchTypeOf(contentType);
  if (type === undefined) throw unsupportedPatchType(contentType);
  if (type === 'apply') throw new BadRequestError('a server-side apply (application/apply-patch+yaml) is not a patch of this kind: use serverSideApply');
  return applyPatch(current, parsePatchJson(body), type, current.kind);
}

function field(obj: unknown, ...path: string[]): unknown {
  let cur = obj;
  for (const p of path) cur = cur !== null && typeof cur === 'object' && !Array.isArray(cur) ? (cur as Record<string, unknown>)[p] : undefined;
  return cur;
}

/**
 * A patch changes an object's content, never which object it is: apiVersion, kind, metadata.name and
 * metadata.namespace stay as stored (Kubernetes refuses the same, so a patch cannot rename or move).
 */
export function assertSameIdentity(current: object, result: unknown): void {
  if (result === null || typeof result !== 'object' || Array.isArray(result)) throw new BadRequestError('the patched object is not a JSON object');
  const r = result as Record<string, unknown>;
  const c = current as Record<string, unknown>;
  // The same kind under another of its accepted apiVersions (apps/v1 for drover.io/v1) is the same object.
  if (r.apiVersion !== c.apiVersion && KINDS.find((k) => k.kind === c.kind)?.apiVersions.includes(String(r.apiVersion))) r.apiVersion = c.apiVersion;
  for (const path of [['apiVersion'], ['kind'], ['metadata', 'name'], ['metadata', 'namespace']]) {
    const before = field(current, ...path);
    const after = field(result, ...path);
    if (before !== after) {
      throw new BadRequestError(`${path.join('.')}: a patch may not change it (${JSON.stringify(before ?? null)} → ${JSON.stringify(after ?? null)})`);
    }
  }
}
