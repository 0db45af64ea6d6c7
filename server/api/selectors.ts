import type { ApiObject } from '../../src/api/meta.js';
import { BadRequestError } from '../../src/util/errors.js';

type Requirement = { key: string; op: '=' | '!='; value: string } | { key: string; op: 'exists' | '!exists' };

/** Equality-based label selectors as kubectl sends them: `app=web,tier!=db,env,!legacy`. */
export function parseLabelSelector(s: string | null): Requirement[] {
  if (!s) return [];
  return s.split(',').map((part) => {
    const p = part.trim();
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(p);
    if (m) return { key: m[1]!.trim(), op: m[2] === '!=' ? '!=' : '=', value: m[3]!.trim() };
    if (/^![^=!]+$/.test(p)) return { key: p.slice(1), op: '!exists' };
    if (/^[^=!]+$/.test(p)) return { key: p, op: 'exists' };
    throw new BadRequestError(`invalid label selector "${s}"`);
  });
}

export function matchesLabels(obj: ApiObject, reqs: Requirement[]): boolean {
  const labels = obj.metadata.labels ?? {};
  return reqs.every((r) => {
    const has = Object.hasOwn(labels, r.key);
    switch (r.op) {
      case '=': return labels[r.key] === r.value;
      case '!=': return labels[r.key] !== r.value;
      case 'exists': return has;
      case '!exists': return !has;
    }
  });
}

/** Field selectors over dotted paths: `involvedObject.name=web,involvedObject.kind=Pod`, `spec.nodeName=edge-1`. */
export function parseFieldSelector(s: string | null): Array<{ path: string[]; value: string; negate: boolean }> {
  if (!s) return [];
  return s.split(',').map((part) => {
    const m = /^([A-Za-z0-9_.]+)(==|=|!=)(.*)$/.exec(part.trim());
    if (!m) throw new BadRequestError(`invalid field selector "${s}"`);
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
