import { z } from 'zod';
import { BadRequestError } from '../util/errors.js';

export const labelSelectorRequirement = z.strictObject({
  key: z.string(),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
  values: z.array(z.string()).optional(),
});

export const labelSelector = z.strictObject({
  matchLabels: z.record(z.string(), z.string()).optional(),
  matchExpressions: z.array(labelSelectorRequirement).optional(),
});
export type LabelSelector = z.infer<typeof labelSelector>;

/** Kubernetes label-selector semantics; an empty selector matches everything. */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  if (!sel) return true;
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    const vals = e.values ?? [];
    switch (e.operator) {
      case 'In': if (!has || !vals.includes(l[e.key]!)) return false; break;
      case 'NotIn': if (has && vals.includes(l[e.key]!)) return false; break;
      case 'Exists': if (!has) return false; break;
      case 'DoesNotExist': if (has) return false; break;
    }
  }
  return true;
}

/** A selector as the `labelSelector` query string kubectl sends (matchLabels only, plus set-based). */
export function selectorString(sel: LabelSelector): string {
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) {
    if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator.toLowerCase()} (${(e.values ?? []).join(',')})`);
  }
  return parts.join(',');
}

// ---- selectors as text (`-l`, `?labelSelector=`): one parser for the CLI and the server ----

/** One term of a label selector as typed: `app=web`, `tier!=db`, `env in (a,b)`, `env notin (c)`, `gpu`, `!legacy`, `rev>3`. */
export type SelectorRequirement =
  | { key: string; operator: 'Equals' | 'NotEquals'; value: string }
  | { key: string; operator: 'In' | 'NotIn'; values: string[] }
  | { key: string; operator: 'Exists' | 'DoesNotExist' }
  | { key: string; operator: 'GreaterThan' | 'LessThan'; value: number };

type Token = { kind: 'id' | 'op' | '(' | ')' | ',' | 'end'; text: string; at: number };

/** Characters that end an identifier; whitespace too. */
const SPECIAL = new Set(['!', '=', '(', ')', ',', '<', '>']);

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '(' || c === ')' || c === ',') { out.push({ kind: c, text: c, at: i }); i++; continue; }
    if (c === '=' || c === '!') {
      const two = s.slice(i, i + 2);
      if (two === '==' || two === '!=') { out.push({ kind: 'op', text: two, at: i }); i += 2; continue; }
      out.push({ kind: 'op', text: c, at: i }); i++; continue;
    }
    if (c === '<' || c === '>') { out.push({ kind: 'op', text: c, at: i }); i++; continue; }
    let j = i;
    while (j < s.length && !SPECIAL.has(s[j]!) && !/\s/.test(s[j]!)) j++;
    out.push({ kind: 'id', text: s.slice(i, j), at: i });
    i = j;
  }
  out.push({ kind: 'end', text: '', at: s.length });
  return out;
}

const NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a label key (Kubernetes' qualified name: optional DNS prefix, `/`, name of at most 63), or undefined. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const [prefix, name] = slash >= 0 ? [key.slice(0, slash), key.slice(slash + 1)] : [undefined, key];
  if (prefix !== undefined && (!prefix || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `the prefix "${prefix}" of label key "${key}" must be a DNS subdomain (lower case letters, digits, '-', '.')`;
  if (!name) return `label key "${key}" has an empty name`;
  if (name.length > 63) return `label key "${key}" is longer than 63 characters`;
  if (!NAME.test(name)) return `label key "${key}" must start and end with a letter or digit and hold only letters, digits, '-', '_' and '.'`;
  return undefined;
}

/** Why `value` is not a label value (empty, or at most 63 letters, digits, '-', '_', '.' starting and ending alphanumeric), or undefined. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '') return undefined;
  if (value.length > 63) return `label value "${value}" is longer than 63 characters`;
  if (!NAME.test(value)) return `label value "${value}" must start and end with a letter or digit and hold only letters, digits, '-', '_' and '.'`;
  return undefined;
}

/**
 * Parses a label selector as kubectl and the Kubernetes API take it. Commas inside `in (...)` and
 * `notin (...)` belong to the value set, not to the list of terms. Throws BadRequestError naming
 * the term that is wrong and why; the empty selector is no requirement (matches everything).
 */
export function parseSelector(text: string): SelectorRequirement[] {
  const toks = tokenize(text);
  let p = 0;
  const peek = (): Token => toks[p]!;
  const next = (): Token => toks[p++]!;
  const out: SelectorRequirement[] = [];
  let termStart = 0;
  const fail = (why: string): never => {
    // The term runs from its start to the first comma at or after the token that failed.
    const end = toks.slice(Math.max(0, p - 1)).find((t) => (t.kind === ',' || t.kind === 'end') && t.at >= termStart)?.at ?? text.length;
    const term = text.slice(termStart, end).trim();
    throw new BadRequestError(`invalid label selector "${text}": ${term ? `in "${term}"` : 'an empty term'}: ${why}`);
  };
  const key = (): string => {
    const t = next();
    if (t.kind !== 'id') return fail(t.kind === 'end' ? 'expected a label key' : `expected a label key, found "${t.text}"`);
    const problem = labelKeyProblem(t.text);
    if (problem) return fail(problem);
    return t.text;
  };
  const value = (): string => {
    const t = peek();
    if (t.kind !== 'id') return '';
    next();
    const problem = labelValueProblem(t.text);
    if (problem) return fail(problem);
    return t.text;
  };
  if (peek().kind === 'end') return out;
  for (;;) {
    termStart = peek().at;
    const t = peek();
    if (t.kind === 'op' && t.text === '!') {
      next();
      out.push({ key: key(), operator: 'DoesNotExist' });
    } else {
      const k = key();
      const op = peek();
      if (op.kind === ',' || op.kind === 'end') {
        out.push({ key: k, operator: 'Exists' });
      } else if (op.kind === 'op' && (op.text === '=' || op.text === '==' || op.text === '!=')) {
        next();
        const v = value();
        out.push({ key: k, operator: op.text === '!=' ? 'NotEquals' : 'Equals', value: v });
      } else if (op.kind === 'op' && (op.text === '<' || op.text === '>')) {
        next();
        const v = next();
        if (v.kind !== 'id' || !/^-?\d+$/.test(v.text)) fail(`"${op.text}" needs a whole number after it`);
        out.push({ key: k, operator: op.text === '>' ? 'GreaterThan' : 'LessThan', value: Number(v.text) });
      } else if (op.kind === 'id' && (op.text === 'in' || op.text === 'notin')) {
        next();
        if (next().kind !== '(') fail(`expected "(" after "${op.text}"`);
        const values: string[] = [];
        for (;;) {
          values.push(value());
          const sep = next();
          if (sep.kind === ')') break;
          if (sep.kind !== ',') fail(sep.kind === 'end' ? `missing ")" after the values of "${k}"` : `expected "," or ")" in the values of "${k}", found "${sep.text}"`);
        }
        out.push({ key: k, operator: op.text === 'in' ? 'In' : 'NotIn', values });
      } else {
        fail(`expected one of =, ==, !=, in, notin after "${k}", found "${op.text}"`);
      }
    }
    const sep = next();
    if (sep.kind === 'end') return out;
    if (sep.kind !== ',') fail(`expected "," between terms, found "${sep.text}"`);
  }
}

/** Whether `labels` satisfy every requirement (Kubernetes semantics: `!=` and `notin` match a missing key). */
export function requirementsMatch(reqs: readonly SelectorRequirement[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.operator) {
      case 'Equals': return has && v === r.value;
      case 'NotEquals': return !has || v !== r.value;
      case 'In': return has && r.values.includes(v!);
      case 'NotIn': return !has || !r.values.includes(v!);
      case 'Exists': return has;
      case 'DoesNotExist': return !has;
      case 'GreaterThan': return has && /^-?\d+$/.test(v!) && Number(v) > r.value;
      case 'LessThan': return has && /^-?\d+$/.test(v!) && Number(v) < r.value;
    }
  });
}
