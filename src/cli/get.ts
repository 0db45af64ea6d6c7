import type { Command } from 'commander';
import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { CliError, type ApiClient, type Query } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { asList, objectName, parseOutputFormat, renderObjects, renderTable, tableParts, toJson, toYaml, type OutputFormat } from './output.js';
import { watchObjects } from './watch.js';

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
    private readonly opts: { allNamespaces?: boolean; now?: () => number } = {},
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
        const { headers, rows } = tableParts(this.kind, objects, { wide: this.format === 'wide', allNamespaces: this.opts.allNamespaces, now: this.opts.now?.() });
        let out = '';
        if (!this.widths) {
          this.widths = headers.map((h, j) => Math.max(MIN_WIDTH, ...[h, ...rows.map((r) => r[j] ?? '')].map((c) => [...c].length + PADDING)));
          out += this.line(headers);
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

/** `get all` as kubectl prints it: one table per kind that has objects, names as `kind.group/name`. */
export function renderAll(
  lists: Array<{ kind: KindInfo; items: ApiObject[] }>,
  format: OutputFormat | undefined,
  opts: { allNamespaces?: boolean; now?: number } = {},
): string {
  const nonEmpty = lists.filter((l) => l.items.length);
  if (format === 'json') return toJson(asList(nonEmpty.flatMap((l) => l.items)));
  if (format === 'yaml') return toYaml(asList(nonEmpty.flatMap((l) => l.items)));
  if (format === 'name') return nonEmpty.flatMap((l) => l.items.map((o) => `${objectName(l.kind, o.metadata.name)}\n`)).join('');
  return nonEmpty
    .map(({ kind, items }) => {
      const { headers, rows } = tableParts(kind, items, { wide: format === 'wide', allNamespaces: opts.allNamespaces, now: opts.now });
      const col = headers.indexOf('NAME');
      return renderTable(headers, rows.map((r) => r.map((c, j) => (j === col ? objectName(kind, c) : c))));
    })
    .join('\n');
}

export function registerGet(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('get')
    .description('list objects of a kind, or show one (kinds: see `drover api-resources`)')
    .argument('<kind>', 'kind: plural, singular or short name (po, no, ns, deploy, ...), or kind/name')
    .argument('[name]', 'one object to show')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds', DEFAULT_NAMESPACE)
    .option('-A, --all-namespaces', 'list across all namespaces')
    .option('-l, --selector <selector>', 'label selector, e.g. app=web,tier!=db')
    .option('--field-selector <selector>', 'field selector, e.g. spec.nodeName=edge-1')
    .option('-o, --output <format>', 'json | yaml | wide | name')
    .option('-w, --watch', 'after listing, watch for changes and print each one')
    .option('--watch-only', 'watch for changes without listing first')
    .option('--limit <n>', 'at most this many objects (in name order); prints the --continue token for the rest')
    .option('--continue <token>', 'the page after the one that printed this token (with --limit)')
    .option('--chunk-size <n>', 'fetch long lists this many at a time (0: all at once)', String(DEFAULT_CHUNK_SIZE));
  addConnectionOptions(cmd).action(async (kindArg: string, nameArg: string | undefined, opts: GetOptions, command: Command) => {
    if (kindArg === 'all') {
      if (nameArg !== undefined) throw new CliError('get all lists every workload; name one with get KIND NAME');
      if (opts.watch || opts.watchOnly) throw new CliError('watch is only supported on individual resources and resource collections, not "all"');
      const format = parseOutputFormat(opts.output);
      const client = ctx.client(command);
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      const lists = [];
      const chunk = wholeNumber('--chunk-size', opts.chunkSize, 0) ?? DEFAULT_CHUNK_SIZE;
      for (const k of ALL_KINDS.map(kindInfo)) {
        const list = await listInChunks(client, objectPath(k, opts.allNamespaces ? undefined : ns), { labelSelector: opts.selector, fieldSelector: opts.fieldSelector }, chunk || 0);
        lists.push({ kind: k, items: list.items });
      }
      if (!lists.some((l) => l.items.length) && format !== 'json' && format !== 'yaml') {
        ctx.io.stderr(opts.allNamespaces ? 'No resources found\n' : `No resources found in ${ns} namespace.\n`);
        return;
      }
      ctx.io.stdout(renderAll(lists, format, { allNamespaces: opts.allNamespaces }));
      return;
    }
    const targets = parseResourceArgs(nameArg === undefined ? [kindArg] : [kindArg, nameArg]);
    if (targets.length !== 1) throw new CliError('get shows one object at a time');
    const { kind, name } = targets[0]!;
    const format = parseOutputFormat(opts.output);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    const allNamespaces = Boolean(opts.allNamespaces) && kind.namespaced && !name;

    if (opts.watch || opts.watchOnly) {
      const fieldSelector = [opts.fieldSelector, name ? `metadata.name=${name}` : undefined].filter(Boolean).join(',') || undefined;
      const collection = objectPath(kind, allNamespaces ? undefined : ns);
      const list = await client.get<ObjectList>(collection, { labelSelector: opts.selector, fieldSelector });
      const items = list?.items ?? [];
      if (name && !items.length) throw notFound(kind, name);
      const printer = new WatchPrinter(kind, format, { allNamespaces });
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

    if (name) {
      const obj = await client.getOptional<ApiObject>(objectPath(kind, ns, name));
      if (!obj) throw notFound(kind, name);
      ctx.io.stdout(renderObjects(kind, [obj], format, { single: true }));
      return;
    }

    const limit = wholeNumber('--limit', opts.limit, 1);
    const chunkSize = wholeNumber('--chunk-size', opts.chunkSize, 0) ?? DEFAULT_CHUNK_SIZE;
    const collection = objectPath(kind, allNamespaces ? undefined : ns);
    const query = { labelSelector: opts.selector, fieldSelector: opts.fieldSelector };
    let items: ApiObject[];
    let next: { token: string; remaining?: number } | undefined;
    if (limit !== undefined) {
      const page = await client.get<ObjectList>(collection, { ...query, limit, continue: opts.continue });
      items = (page?.items ?? []).sort(byNamespaceName);
      if (page?.metadata?.continue) next = { token: page.metadata.continue, remaining: page.metadata.remainingItemCount };
    } else if (chunkSize > 0) {
      items = (await listInChunks(client, collection, query, chunkSize, opts.continue)).items;
    } else {
      items = ((await client.get<ObjectList>(collection, { ...query, continue: opts.continue }))?.items ?? []).sort(byNamespaceName);
    }
    if (!items.length && (format === undefined || format === 'wide' || format === 'name')) {
      ctx.io.stderr(kind.namespaced && !allNamespaces ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
      return;
    }
    if ((format === 'json' || format === 'yaml') && next) {
      // The token where a script finds it, as in the API's own list.
      const list = { ...asList(items), metadata: { resourceVersion: '', continue: next.token, ...(next.remaining !== undefined ? { remainingItemCount: next.remaining } : {}) } };
      ctx.io.stdout(format === 'json' ? toJson(list) : toYaml(list));
      return;
    }
    ctx.io.stdout(renderObjects(kind, items, format, { single: false, allNamespaces }));
    if (next) {
      const more = next.remaining !== undefined ? `${next.remaining} more` : 'more';
      const flags = [allNamespaces ? '-A' : kind.namespaced && ns !== DEFAULT_NAMESPACE ? `-n ${ns}` : '', opts.selector ? `-l '${opts.selector}'` : '', opts.fieldSelector ? `--field-selector '${opts.fieldSelector}'` : ''].filter(Boolean);
      ctx.io.stderr(`(${more}; next page: drover get ${kind.plural}${flags.map((f) => ` ${f}`).join('')} --limit ${limit} --continue ${next.token})\n`);
    }
  });
}
