import { CliError } from './client.js';

/**
 * kubectl's JSONPath templates (`-o jsonpath=...`, `custom-columns`, `--sort-by`): text with `{...}`
 * actions. An action is a path (`.items[*].metadata.name`, `$.a['b']`, `..name`, `[0]`, `[-1:]`,
 * `[0,2]`, `[?(@.status.phase=="Running")]`, `[*]`), a string literal (`{"\n"}`), or `range PATH` …
 * `end` around a sub-template run once per result. Several results of one path print space-separated;
 * strings print raw, other values as JSON. A missing key prints nothing (kubectl's default
 * --allow-missing-template-keys=true).
 */

type Step =
  | { t: 'field'; name: string }
  | { t: 'recursive'; name: string | '*' }
  | { t: 'wildcard' }
  | { t: 'index'; list: number[] }
  | { t: 'slice'; start?: number; end?: number; step?: number }
  | { t: 'keys'; list: string[] }
  | { t: 'filter'; left: Step[]; op?: string; right?: Step[] | string | number | boolean | null };

type Node =
  | { t: 'text'; text: string }
  | { t: 'path'; steps: Step[]; root: boolean }
  | { t: 'range'; steps: Step[]; root: boolean; body: Node[] };

export class JsonPath {
  private readonly nodes: Node[];

  constructor(readonly template: string) {
    this.nodes = parseTemplate(template);
  }

  /** The template applied to `data`, as kubectl prints it (no newline added). */
  execute(data: unknown): string {
    return run(this.nodes, data, data);
  }

  /** Each path action's results (for custom-columns and --sort-by): the values, not their text. */
  values(data: unknown): unknown[] {
    const out: unknown[] = [];
    for (const n of this.nodes) if (n.t === 'path') out.push(...evalPath(n.steps, data, data));
    return out;
  }
}

function fail(template: string, why: string): never {
  throw new CliError(`error parsing jsonpath ${template}: ${why}`);
}

function parseTemplate(template: string): Node[] {
  const root: Node[] = [];
  const stack: Node[][] = [root];
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{', i);
    if (open < 0) {
      stack.at(-1)!.push({ t: 'text', text: template.slice(i) });
      break;
    }
    if (open > i) stack.at(-1)!.push({ t: 'text', text: template.slice(i, open) });
    const close = findClose(template, open);
    const action = template.slice(open + 1, close).trim();
    i = close + 1;
    if (action === 'end') {
      if (stack.length === 1) fail(template, 'not in range, nothing to end');
      stack.pop();
      continue;
    }
    const range = /^range\s+(.*)$/.exec(action);
    if (range) {
      const { steps, root: fromRoot } = parsePath(template, range[1]!.trim());
      const node: Node = { t: 'range', steps, root: fromRoot, body: [] };
      stack.at(-1)!.push(node);
      stack.push(node.body);
      continue;
    }
    if (/^"/.test(action) || /^'/.test(action)) {
      stack.at(-1)!.push({ t: 'text', text: unquote(template, action) });
      continue;
    }
    const { steps, root: fromRoot } = parsePath(template, action);
    stack.at(-1)!.push({ t: 'path', steps, root: fromRoot });
  }
  if (stack.length > 1) fail(template, 'unclosed range (missing {end})');
  return root;
}

/** The `}` that closes the action opened at `open`, skipping quoted text. */
function findClose(template: string, open: number): number {
  let quote: string | undefined;
  for (let j = open + 1; j < template.length; j++) {
    const c = template[j]!;
    if (quote) {
      if (c === '\\') j++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '}') return j;
  }
  return fail(template, 'unclosed action');
}

function unquote(template: string, s: string): string {
  const q = s[0]!;
  if (s.length < 2 || s.at(-1) !== q) fail(template, `unterminated string ${s}`);
  return s.slice(1, -1).replace(/\\(.)/g, (_, c: string) => ({ n: '\n', t: '\t', r: '\r' })[c] ?? c);
}

function parsePath(template: string, text: string): { steps: Step[]; root: boolean } {
  let s = text;
  let root = false;
  if (s.startsWith('$')) {
    root = true;
    s = s.slice(1);
  }
  const steps: Step[] = [];
  let i = 0;
  const ident = (): string => {
    const m = /^[^.[\]\s()]+/.exec(s.slice(i));
    return m ? ((i += m[0].length), m[0]) : '';
  };
  while (i < s.length) {
    if (s.startsWith('..', i)) {
      i += 2;
      if (s[i] === '*') {
        i++;
        steps.push({ t: 'recursive', name: '*' });
      } else {
        const name = ident();
        if (!name) fail(template, `expected a field name after ".." in ${text}`);
        steps.push({ t: 'recursive', name });
      }
    } else if (s[i] === '.') {
      i++;
      if (s[i] === '*') {
        i++;
        steps.push({ t: 'wildcard' });
      } else {
        const name = ident();
        // `{.}` is the current object itself.
        if (name) steps.push({ t: 'field', name });
      }
    } else if (s[i] === '[') {
      const close = matchingBracket(template, s, i);
      steps.push(parseBracket(template, s.slice(i + 1, close).trim()));
      i = close + 1;
    } else if (i === 0 && /[A-Za-z_@]/.test(s[i]!)) {
      // `metadata.name` without the leading dot, as custom-columns and --sort-by accept.
      const name = ident();
      if (name !== '@') steps.push({ t: 'field', name });
    } else {
      fail(template, `unrecognized character "${s[i]}" in ${text}`);
    }
  }
  return { steps, root };
}

function matchingBracket(template: string, s: string, open: number): number {
  let depth = 0;
  let quote: string | undefined;
  for (let j = open; j < s.length; j++) {
    const c = s[j]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '[') depth++;
    else if (c === ']' && --depth === 0) return j;
  }
  return fail(template, `unclosed "[" in ${s}`);
}

function parseBracket(template: string, inner: string): Step {
  if (inner === '*') return { t: 'wildcard' };
  if (inner.startsWith('?')) {
    const m = /^\?\((.*)\)$/.exec(inner);
    if (!m) fail(template, `invalid filter [${inner}]`);
    const expr = m![1]!.trim();
    const cmp = /^(@[^=!<>]*?)\s*(==|!=|<=|>=|<|>|=~)\s*(.+)$/.exec(expr);
    const operand = (e: string): Step[] => parsePath(template, e.replace(/^@/, '')).steps;
    if (!cmp) return { t: 'filter', left: operand(expr) };
    return { t: 'filter', left: operand(cmp[1]!), op: cmp[2]!, right: literal(template, cmp[3]!.trim()) };
  }
  if (/^['"]/.test(inner)) return { t: 'keys', list: inner.split(',').map((k) => unquote(template, k.trim())) };
  if (inner.includes(':')) {
    const parts = inner.split(':').map((p) => p.trim());
    const num = (p: string | undefined): number | undefined => (p === undefined || p === '' ? undefined : int(template, p));
    return { t: 'slice', start: num(parts[0]), end: num(parts[1]), step: num(parts[2]) };
  }
  return { t: 'index', list: inner.split(',').map((p) => int(template, p.trim())) };
}

function int(template: string, p: string): number {
  if (!/^-?\d+$/.test(p)) fail(template, `"${p}" is not an array index`);
  return Number(p);
}

function literal(template: string, v: string): Step[] | string | number | boolean | null {
  if (/^['"]/.test(v)) return unquote(template, v);
  if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (v === 'true' || v === 'false') return v === 'true';
  if (v === 'null') return null;
  return parsePath(template, v.replace(/^@/, '')).steps;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function evalPath(steps: Step[], cur: unknown, root: unknown, fromRoot = false): unknown[] {
  let vals: unknown[] = [fromRoot ? root : cur];
  for (const step of steps) {
    const next: unknown[] = [];
    for (const v of vals) next.push(...applyStep(step, v, root));
    vals = next;
  }
  return vals;
}

function applyStep(step: Step, v: unknown, root: unknown): unknown[] {
  switch (step.t) {
    case 'field':
      return isObject(v) && Object.hasOwn(v, step.name) ? [v[step.name]] : [];
    case 'keys':
      return isObject(v) ? step.list.filter((k) => Object.hasOwn(v, k)).map((k) => v[k]) : [];
    case 'wildcard':
      return Array.isArray(v) ? v : isObject(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
    case 'index': {
      if (!Array.isArray(v)) return [];
      return step.list.flatMap((n) => {
        const i = n < 0 ? v.length + n : n;
        return i >= 0 && i < v.length ? [v[i]] : [];
      });
    }
    case 'slice': {
      if (!Array.isArray(v)) return [];
      const norm = (n: number | undefined, dflt: number): number => (n === undefined ? dflt : n < 0 ? Math.max(0, v.length + n) : Math.min(n, v.length));
      const out: unknown[] = [];
      const stepBy = step.step && step.step > 0 ? step.step : 1;
      for (let i = norm(step.start, 0); i < norm(step.end, v.length); i += stepBy) out.push(v[i]);
      return out;
    }
    case 'recursive': {
      const out: unknown[] = [];
      const walk = (x: unknown): void => {
        if (isObject(x)) {
          for (const k of Object.keys(x)) {
            if (step.name === '*' || k === step.name) out.push(x[k]);
          }
          for (const k of Object.keys(x)) walk(x[k]);
        } else if (Array.isArray(x)) {
          for (const e of x) {
            if (step.name === '*') out.push(e);
            walk(e);
          }
        }
      };
      walk(v);
      return out;
    }
    case 'filter': {
      const items = Array.isArray(v) ? v : [];
      return items.filter((item) => {
        const left = evalPath(step.left, item, root);
        if (step.op === undefined) return left.length > 0 && left[0] !== false && left[0] !== null;
        if (!left.length) return false;
        const right = Array.isArray(step.right) ? evalPath(step.right, item, root)[0] : step.right;
        return compare(left[0], step.op, right);
      });
    }
  }
}

function compare(a: unknown, op: string, b: unknown): boolean {
  if (op === '=~') return typeof a === 'string' && typeof b === 'string' && new RegExp(b).test(a);
  const [x, y] = typeof a === 'number' || typeof b === 'number' ? [Number(a), Number(b)] : [a, b];
  switch (op) {
    case '==': return x === y || String(x) === String(y);
    case '!=': return !(x === y || String(x) === String(y));
    case '<': return (x as number) < (y as number);
    case '>': return (x as number) > (y as number);
    case '<=': return (x as number) <= (y as number);
    case '>=': return (x as number) >= (y as number);
  }
  return false;
}

/** A value as kubectl's JSONPath prints it: strings raw, everything else as JSON. */
export function jsonPathText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === undefined) return '';
  return JSON.stringify(v);
}

function run(nodes: Node[], cur: unknown, root: unknown): string {
  let out = '';
  for (const n of nodes) {
    if (n.t === 'text') out += n.text;
    else if (n.t === 'path') out += evalPath(n.steps, cur, root, n.root).map(jsonPathText).join(' ');
    else {
      for (const v of evalPath(n.steps, cur, root, n.root)) {
        // kubectl ranges over each element of a single array result.
        for (const item of Array.isArray(v) && n.steps.at(-1)?.t === 'field' ? v : [v]) out += run(n.body, item, root);
      }
    }
  }
  return out;
}

/** `-o custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[*].image` → header and path per column. */
export function parseCustomColumns(spec: string): Array<{ header: string; path: JsonPath }> {
  if (!spec.trim()) throw new CliError('custom-columns format specified but no custom columns given');
  return splitTopLevel(spec).map((part) => {
    const i = part.indexOf(':');
    if (i <= 0) throw new CliError(`unexpected custom-columns spec: ${part}, expected <header>:<json-path-expr>`);
    const path = part.slice(i + 1).trim();
    return { header: part.slice(0, i), path: new JsonPath(path.startsWith('{') ? path : `{${path.replace(/^\.?/, '.')}}`) };
  });
}

/** Commas that separate columns, not those inside `[...]` (`[0,1]`). */
function splitTopLevel(spec: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of spec) {
    if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    if (c === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.filter((p) => p.length);
}

/** A cell of a custom column: results joined by ",", `<none>` when there is none (as kubectl). */
export function customColumnCell(path: JsonPath, obj: unknown): string {
  const vals = path.values(obj).flatMap((v) => (Array.isArray(v) ? v : [v])).filter((v) => v !== undefined && v !== null);
  return vals.length ? vals.map(jsonPathText).join(',') : '<none>';
}

/** `--sort-by=.metadata.name` or `{.status.startTime}` → a path; kubectl wraps a bare one in braces. */
export function sortPath(expr: string): JsonPath {
  const e = expr.trim();
  if (!e) throw new CliError('--sort-by needs a JSONPath expression, e.g. .metadata.name');
  return new JsonPath(e.startsWith('{') ? e : `{${e.replace(/^\.?/, '.')}}`);
}

/**
 * Objects sorted by a path's value as kubectl's --sort-by does: numbers by value, quantities and
 * timestamps as written (RFC 3339 sorts as text), other values as text; objects without the field first.
 */
export function sortByPath<T>(items: readonly T[], path: JsonPath): T[] {
  const key = (o: T): unknown => path.values(o)[0];
  return [...items].sort((a, b) => {
    const x = key(a);
    const y = key(b);
    if (x === undefined || y === undefined) return x === undefined ? (y === undefined ? 0 : -1) : 1;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    const [sx, sy] = [jsonPathText(x), jsonPathText(y)];
    return sx < sy ? -1 : sx > sy ? 1 : 0;
  });
}
