import type { ApiObject } from '../../src/api/meta.js';
import { parseSelector, requirementsMatch, type SelectorRequirement } from '../../src/api/selector.js';
import { BadRequestError } from '../../src/util/errors.js';

export type Requirement = SelectorRequirement;

/**
 * Label selectors as kubectl sends them, equality- and set-based: `app=web,tier!=db,env in (a,b),gpu,!legacy`.
 * The one parser of src/api/selector.ts (the CLI checks with the same one before sending); a bad
 * selector is a 400 naming the term.
 */
export function parseLabelSelector(s: string | null): Requirement[] {
  if (!s) return [];
  return parseSelector(s);
}

export function matchesLabels(obj: ApiObject, reqs: Requirement[]): boolean {
  return requirementsMatch(reqs, obj.metadata.labels);
}

/** Field selectors over dotted paths: `involvedObject.name=web,involvedObject.kind=Pod`, `spec.nodeName=edge-1`. */
export function parseFieldSelector(s: string | null): Array<{ path: string[]; value: string; negate: boolean }> {
  if (!s) return [];
  return s.split(',').map((part) => {
    const m = /^([A-Za-z0-9_.]+)(==|=|!=)(.*)$/.exec(part.trim());
    if (!m) throw new BadRequestError(`invalid field selector "${s}": "${part.trim()}" is not FIELD=VALUE, FIELD==VALUE or FIELD!=VALUE`);
    return { path: m[1]!.split('.'), value: m[3]!, negate: m[2] === '!=' };
  });
}

export function matchesFields(obj: ApiObject, reqs: ReturnType<typeof parseFieldSelector>): boolean {
  return reqs.every((r) => {
    let v: unknown = obj;
    for (const k of r.path) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
    const eq = String(v ?? '') === r.value;
    return r.negate ? !eq : eq;
  });
}
