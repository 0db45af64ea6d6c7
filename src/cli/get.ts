import type { Command } from 'commander';
import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { parseSelector } from '../api/selector.js';
import { CliError, FATAL_REASONS, type ApiClient, type Query } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, ErrorList, notFound, parseResourceArgs, resolveKind, type CommandContext } from './context.js';
import { customColumnCell, JsonPath, parseCustomColumns, sortByPath, sortPath } from './jsonpath.js';
import { asList, objectName, parseOutputFormat, renderTable, tableParts, toJson, toYaml, type OutputFormat } from './output.js';
import { watchObjects } from './watch.js';
import { getImages } from './image.js';

interface GetOptions {
  namespace?: string;
  allNamespaces?: boolean;
  selector?: string;
  fieldSelector?: string;
  output?: string;
  watch?: boolean;
  watchOnly?: boolean;
  limit?: string;
  continue?: string;
  chunkSize?: string;
  showLabels?: boolean;
  labelColumns?: string[];
  sortBy?: string;
  /** false with --no-headers. */
  headers?: boolean;
}

interface ObjectList {
  metadata?: { resourceVersion?: string; continue?: string; remainingItemCount?: number };
  items?: ApiObject[];
}

/** kubectl's --chunk-size default: a list of 10,000 nodes comes in pages of this many, not one answer. */
export const DEFAULT_CHUNK_SIZE = 500;

function wholeNumber(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new CliError(`${flag} must be a whole number of at least ${min}, got "${v}"`);
  return n;
}

/** namespace/name order, the order pages come in; also for servers that do not page. */
export function byNamespaceName(a: ApiObject, b: ApiObject): number {
  const x = a.metadata.namespace ?? '';
  const y = b.metadata.namespace ?? '';
  return x < y ? -1 : x > y ? 1 : a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/**
 * The whole list, fetched `chunkSize` at a time as kubectl does (`limit` + `continue`), starting after
 * `from` if given; sorted by namespace/name. A server that does not page answers everything at once.
 */
export async function listInChunks(client: ApiClient, path: string, query: Query, chunkSize: number, from?: string): Promise<{ items: ApiObject[]; resourceVersion?: string }> {
  const items: ApiObject[] = [];
  let token = from;
  let resourceVersion: string | undefined;
  const seen = new Set<string>();
  for (;;) {
    const page = await client.get<ObjectList>(path, { ...query, limit: chunkSize, continue: token });
    items.push(...(page?.items ?? []));
    resourceVersion ??= page?.metadata?.resourceVersion;
    token = page?.metadata?.continue || undefined;
    if (!token) break;
    // A token handed out twice would loop forever.
    if (seen.has(token)) throw new CliError(`the server repeated a continue token while listing ${path}`);
    seen.add(token);
  }
  return { items: items.sort(byNamespaceName), resourceVersion };
}

const MIN_WIDTH = 6;
const PADDING = 3;

/**
 * Output of `get -w`: the table header once, then one row per change, aligned to the columns of
 * the first batch like kubectl's watch output (a longer cell pushes only its own row). JSON and
 * YAML print each object; `-o name` its name.
 */
export class WatchPrinter {
  private widths: number[] | undefined;
  private printed = 0;

  constructor(
    private readonly kind: KindInfo,
    private readonly format: OutputFormat | undefined,
    private readonly opts: { allNamespaces?: boolean; now?: () => number; labelColumns?: string[]; showLabels?: boolean; noHeaders?: boolean } = {},
  ) {}

  /** Text for a batch of objects (the initial list, or one event's object). */
  print(objects: ApiObject[]): string {
    if (!objects.length) return '';
    switch (this.format) {
      case 'json':
        return objects.map((o) => toJson(o)).join('');
      case 'yaml':
        return objects.map((o) => `${this.printed++ ? '---\n' : ''}${toYaml(o)}`).join('');
      case 'name':
        return objects.map((o) => `${objectName(this.kind, o.metadata.name)}\n`).join('');
      default: {
        const { headers, rows } = tableParts(this.kind, objects, {
          wide: this.format === 'wide', allNamespaces: this.opts.allNamespaces, now: this.opts.now?.(), labelColumns: this.opts.labelColumns, showLabels: this.opts.showLabels,
        });
        let out = '';
        if (!this.widths) {
          this.widths = headers.map((h, j) => Math.max(MIN_WIDTH, ...[h, ...rows.map((r) => r[j] ?? '')].map((c) => [...c].length + PADDING)));
          if (!this.opts.noHeaders) out += this.line(headers);
        }
        for (const r of rows) out += this.line(r);
        return out;
      }
    }
  }

  private line(cells: string[]): string {
    const w = this.widths!;
    return (
      cells
        .map((c, j) => {
          const cell = c.replace(/[\t\n]/g, ' ');
          if (j === cells.length - 1) return cell;
          const len = [...cell].length;
          return cell + ' '.repeat(len + PADDING > w[j]! ? PADDING : w[j]! - len);
        })
        .join('') + '\n'
    );
  }
}

/** What `get all` lists, in kubectl's order (the workloads and their pods). */
export const ALL_KINDS = ['Pod', 'DaemonSet', 'Deployment', 'ReplicaSet', 'Job'];

/** `-o` of `get`: the plain formats, or a JSONPath template, or custom columns. */
export type GetOutput =
  | { format: OutputFormat | undefined }
  | { format: 'jsonpath'; path: JsonPath }
  | { format: 'custom-columns'; columns: Array<{ header: string; path: JsonPath }> };

export function parseGetOutput(v: string | undefined): GetOutput {
  const m = /^(jsonpath|custom-columns)=([\s\S]*)$/.exec(v ?? '');
  if (m?.[1] === 'jsonpath') {
    if (!m[2]) throw new CliError('jsonpath template format specified but no template given');
    return { format: 'jsonpath', path: new JsonPath(m[2]) };
  }
  if (m?.[1] === 'custom-columns') return { format: 'custom-columns', columns: parseCustomColumns(m[2]!) };
  if (v === 'jsonpath' || v === 'custom-columns') throw new CliError(`${v} format specified but no ${v === 'jsonpath' ? 'template' : 'custom columns'} given: use -o ${v}=...`);
  try {
    return { format: parseOutputFormat(v) };
  } catch (err) {
    if (err instanceof CliError) throw new CliError(`${err.message},jsonpath=...,custom-columns=...`, { cause: err });
    throw err;
  }
}

export interface GetPrintOptions {
  /** One object was named (and one kind): json/yaml/jsonpath print it, not a List. */
  single?: boolean;
  /** Names as `kind/name` (several kinds, or `get all`), as kubectl does. */
  withKind?: boolean;
  allNamespaces?: boolean;
  labelColumns?: string[];
  showLabels?: boolean;
  noHeaders?: boolean;
  sortBy?: JsonPath;
  now?: number;
}

/**
 * What `get` prints for the objects it found, grouped by kind: one table per kind that has objects
 * (separated by a blank line, like kubectl), or one List for json/yaml/jsonpath, one name per line,
 * or custom columns over all of them.
 */
export function renderGet(groups: Array<{ kind: KindInfo; items: ApiObject[] }>, output: GetOutput, opts: GetPrintOptions = {}): string {
  const nonEmpty = groups.filter((g) => g.items.length).map((g) => ({ kind: g.kind, items: opts.sortBy ? sortByPath(g.items, opts.sortBy) : g.items }));
  const all = nonEmpty.flatMap((g) => g.items);
  switch (output.format) {
    case 'json':
      return toJson(opts.single ? all[0] : asList(all));
    case 'yaml':
      return toYaml(opts.single ? all[0] : asList(all));
    case 'jsonpath':
      return output.path.execute(opts.single ? all[0] : asList(all));
    case 'name':
      return nonEmpty.flatMap((g) => g.items.map((o) => `${objectName(g.kind, o.metadata.name)}\n`)).join('');
    case 'custom-columns': {
      const rows = all.map((o) => output.columns.map((c) => customColumnCell(c.path, o)));
      const table = renderTable(output.columns.map((c) => c.header), rows);
      return opts.noHeaders ? table.split('\n').slice(1).join('\n') : table;
    }
    default:
      return nonEmpty
        .map(({ kind, items }) => {
          const { headers, rows } = tableParts(kind, items, {
            wide: output.format === 'wide', allNamespaces: opts.allNamespaces, now: opts.now, labelColumns: opts.labelColumns, showLabels: opts.showLabels,
          });
          const col = headers.indexOf('NAME');
          const named = opts.withKind ? rows.map((r) => r.map((c, j) => (j === col ? objectName(kind, c) : c))) : rows;
          const table = renderTable(headers, named);
          return opts.noHeaders ? table.slice(table.indexOf('\n') + 1) : table;
        })
        .join(opts.noHeaders ? '' : '\n');
  }
}

/** `get all` as kubectl prints it: one table per kind that has objects, names as `kind.group/name`. */
export function renderAll(
  lists: Array<{ kind: KindInfo; items: ApiObject[] }>,
  format: OutputFormat | undefined,
  opts: { allNamespaces?: boolean; now?: number } = {},
): string {
  return renderGet(lists, { format }, { ...opts, withKind: true });
}

/** `-L app,tier` (repeatable) → label keys. */
function labelColumns(values: string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((k) => k.trim()).filter(Boolean);
}

function collect(value: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), value];
}

/** A selector checked here with the server's own parser, so a typo fails before any request. */
export function checkSelector(s: string | undefined): string | undefined {
  if (s) parseSelector(s);
  return s;
}

export function registerGet(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('get')
    .description('list objects of one or more kinds, or show some (kinds: see `drover api-resources`)')
    .argument('<kind>', 'kind: plural, singular or short name (po, no, ns, deploy, ...); several with commas (po,deploy); or kind/name')
    .argument('[names...]', 'objects to show')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds', DEFAULT_NAMESPACE)
    .option('-A, --all-namespaces', 'list across all namespaces')
    .option('-l, --selector <selector>', "label selector, e.g. app=web,tier!=db or 'env in (prod,staging),!legacy'")
    .option('--field-selector <selector>', 'field selector, e.g. spec.nodeName=edge-1')
    .option('-o, --output <format>', 'json | yaml | wide | name | jsonpath=TEMPLATE | custom-columns=HEADER:PATH,...')
    .option('--show-labels', 'add a LABELS column')
    .option('-L, --label-columns <keys>', 'a column per label key (comma-separated, repeatable)', collect)
    .option('--sort-by <path>', 'sort by a JSONPath field, e.g. .metadata.name or {.status.startTime}')
    .option('--no-headers', 'print no header row')
    .option('-w, --watch', 'after listing, watch for changes and print each one')
    .option('--watch-only', 'watch for changes without listing first')
    .option('--limit <n>', 'at most this many objects (in name order); prints the --continue token for the rest')
    .option('--continue <token>', 'the page after the one that printed this token (with --limit)')
    .option('--chunk-size <n>', 'fetch long lists this many at a time (0: all at once)', String(DEFAULT_CHUNK_SIZE));
  addConnectionOptions(cmd).action(async (kindArg: string, nameArgs: string[], opts: GetOptions, command: Command) => {
    // The server's image store (issue 15) is no Kubernetes kind: its own route and table (src/cli/image.ts).
    if (kindArg === 'images' || kindArg === 'image') return getImages(ctx, ctx.client(command), nameArgs, opts);
    const output = parseGetOutput(opts.output);
    const format = output.format === 'jsonpath' || output.format === 'custom-columns' ? undefined : output.format;
    const print: GetPrintOptions = {
      labelColumns: labelColumns(opts.labelColumns),
      showLabels: opts.showLabels,
      noHeaders: opts.headers === false,
      sortBy: opts.sortBy !== undefined ? sortPath(opts.sortBy) : undefined,
    };
    checkSelector(opts.selector);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    const chunk = wholeNumber('--chunk-size', opts.chunkSize, 0) ?? DEFAULT_CHUNK_SIZE;
    const query = { labelSelector: opts.selector, fieldSelector: opts.fieldSelector };
    const noneFound = (namespaced: boolean): void => {
      ctx.io.stderr(namespaced && !opts.allNamespaces ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
    };
    // Table-like output says so on stderr when nothing matched; json/yaml print an empty List.
    const quietWhenEmpty = output.format !== 'json' && output.format !== 'yaml' && output.format !== 'jsonpath';

    if (kindArg === 'all' || kindArg.split(',').includes('all')) {
      if (nameArgs.length) throw new CliError('get all lists every workload; name one with get KIND NAME');
      if (opts.watch || opts.watchOnly) throw new CliError('watch is only supported on individual resources and resource collections, not "all"');
      const kinds = kindArg.split(',').flatMap((k) => (k === 'all' ? ALL_KINDS.map(kindInfo) : [resolveKind(k)]));
      const lists = [];
      for (const k of [...new Map(kinds.map((k) => [k.kind, k])).values()]) {
        const list = await listInChunks(ctx.client(command), objectPath(k, opts.allNamespaces && k.namespaced ? undefined : k.namespaced ? ns : undefined), query, chunk || 0);
        lists.push({ kind: k, items: list.items });
      }
      if (!lists.some((l) => l.items.length) && quietWhenEmpty) return noneFound(true);
      ctx.io.stdout(renderGet(lists, output, { ...print, withKind: true, allNamespaces: opts.allNamespaces }));
      return;
    }

    // `pod/a deploy/b`, `pods a b`, `po,deploy` or `po,deploy web`.
    let targets: Array<{ kind: KindInfo; name?: string }>;
    if (kindArg.includes('/')) targets = parseResourceArgs([kindArg, ...nameArgs]);
    else {
      if (nameArgs.some((n) => n.includes('/'))) parseResourceArgs([kindArg, ...nameArgs]);
      const kinds = kindArg.split(',').filter(Boolean).map(resolveKind);
      if (!kinds.length) throw new CliError('you must specify the type of resource to get');
      targets = kinds.flatMap((kind) => (nameArgs.length ? nameArgs.map((name) => ({ kind, name })) : [{ kind }]));
    }
    const kindsAsked = [...new Map(targets.map((t) => [t.kind.kind, t.kind])).values()];
    const client = ctx.client(command);

    if (opts.watch || opts.watchOnly) {
      if (kindsAsked.length !== 1 || targets.length !== 1) throw new CliError('you may only specify a single resource type and at most one name with --watch');
      if (output.format === 'jsonpath' || output.format === 'custom-columns') throw new CliError(`-o ${output.format} is not supported with --watch`);
      const { kind, name } = targets[0]!;
      const allNamespaces = Boolean(opts.allNamespaces) && kind.namespaced && !name;
      const fieldSelector = [opts.fieldSelector, name ? `metadata.name=${name}` : undefined].filter(Boolean).join(',') || undefined;
      const collection = objectPath(kind, allNamespaces ? undefined : ns);
      const list = await client.get<ObjectList>(collection, { labelSelector: opts.selector, fieldSelector });
      const items = list?.items ?? [];
      if (name && !items.length) throw notFound(kind, name);
      const printer = new WatchPrinter(kind, format, { allNamespaces, labelColumns: print.labelColumns, showLabels: print.showLabels, noHeaders: print.noHeaders });
      if (!opts.watchOnly) ctx.io.stdout(printer.print(items));
      for await (const ev of watchObjects(client, kind, {
        namespace: allNamespaces ? undefined : ns,
        labelSelector: opts.selector,
        fieldSelector,
        resourceVersion: list?.metadata?.resourceVersion,
        signal: ctx.interrupted(),
      })) {
        ctx.io.stdout(printer.print([ev.object]));
      }
      return;
    }

    const withKind = kindsAsked.length > 1;
    if (targets.every((t) => t.name)) {
      // Named objects: those found are printed, each one missing is an error at the end (kubectl's way).
      const groups = new Map<string, { kind: KindInfo; items: ApiObject[] }>();
      const errors = new ErrorList();
      for (const t of targets) {
        const path = objectPath(t.kind, ns, t.name!);
        try {
          const obj = await client.getOptional<ApiObject>(path);
          if (!obj) throw notFound(t.kind, t.name!);
          const g = groups.get(t.kind.kind) ?? { kind: t.kind, items: [] };
          g.items.push(obj);
          groups.set(t.kind.kind, g);
        } catch (err) {
          if (err instanceof CliError && FATAL_REASONS.has(err.reason)) throw err;
          errors.add(err);
        }
      }
      const found = [...groups.values()];
      if (found.length) ctx.io.stdout(renderGet(found, output, { ...print, withKind, single: targets.length === 1 }));
      errors.throwIfAny();
      return;
    }
    if (targets.length > 1 && kindsAsked.length !== targets.length) throw new CliError('name the objects of every kind, or of none');

    const limit = wholeNumber('--limit', opts.limit, 1);
    const groups: Array<{ kind: KindInfo; items: ApiObject[] }> = [];
    let next: { token: string; remaining?: number } | undefined;
    for (const kind of kindsAsked) {
      const allNamespaces = Boolean(opts.allNamespaces) && kind.namespaced;
      const collection = objectPath(kind, allNamespaces ? undefined : ns);
      let items: ApiObject[];
      if (limit !== undefined) {
        if (kindsAsked.length > 1) throw new CliError('--limit pages one kind at a time');
        const page = await client.get<ObjectList>(collection, { ...query, limit, continue: opts.continue });
        items = (page?.items ?? []).sort(byNamespaceName);
        if (page?.metadata?.continue) next = { token: page.metadata.continue, remaining: page.metadata.remainingItemCount };
      } else if (chunk > 0) {
        items = (await listInChunks(client, collection, query, chunk, opts.continue)).items;
      } else {
        items = ((await client.get<ObjectList>(collection, { ...query, continue: opts.continue }))?.items ?? []).sort(byNamespaceName);
      }
      groups.push({ kind, items });
    }
    const allNamespaces = Boolean(opts.allNamespaces) && kindsAsked.some((k) => k.namespaced);
    if (!groups.some((g) => g.items.length) && quietWhenEmpty) return noneFound(kindsAsked.some((k) => k.namespaced));
    if ((format === 'json' || format === 'yaml') && output.format === format && next) {
      // The token where a script finds it, as in the API's own list.
      const items = groups[0]!.items;
      const list = { ...asList(items), metadata: { resourceVersion: '', continue: next.token, ...(next.remaining !== undefined ? { remainingItemCount: next.remaining } : {}) } };
      ctx.io.stdout(format === 'json' ? toJson(list) : toYaml(list));
      return;
    }
    ctx.io.stdout(renderGet(groups, output, { ...print, withKind, allNamespaces }));
    if (next) {
      const kind = kindsAsked[0]!;
      const more = next.remaining !== undefined ? `${next.remaining} more` : 'more';
      const flags = [allNamespaces ? '-A' : kind.namespaced && ns !== DEFAULT_NAMESPACE ? `-n ${ns}` : '', opts.selector ? `-l '${opts.selector}'` : '', opts.fieldSelector ? `--field-selector '${opts.fieldSelector}'` : ''].filter(Boolean);
      ctx.io.stderr(`(${more}; next page: drover get ${kind.plural}${flags.map((f) => ` ${f}`).join('')} --limit ${limit} --continue ${next.token})\n`);
    }
  });
}
