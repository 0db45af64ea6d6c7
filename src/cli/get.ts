import type { Command } from 'commander';
import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { CliError } from './client.js';
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
}

interface ObjectList {
  metadata?: { resourceVersion?: string };
  items?: ApiObject[];
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
    .option('--watch-only', 'watch for changes without listing first');
  addConnectionOptions(cmd).action(async (kindArg: string, nameArg: string | undefined, opts: GetOptions, command: Command) => {
    if (kindArg === 'all') {
      if (nameArg !== undefined) throw new CliError('get all lists every workload; name one with get KIND NAME');
      if (opts.watch || opts.watchOnly) throw new CliError('watch is only supported on individual resources and resource collections, not "all"');
      const format = parseOutputFormat(opts.output);
      const client = ctx.client(command);
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      const lists = [];
      for (const k of ALL_KINDS.map(kindInfo)) {
        const list = await client.get<ObjectList>(objectPath(k, opts.allNamespaces ? undefined : ns), { labelSelector: opts.selector, fieldSelector: opts.fieldSelector });
        lists.push({ kind: k, items: list?.items ?? [] });
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

    const list = await client.get<ObjectList>(objectPath(kind, allNamespaces ? undefined : ns), { labelSelector: opts.selector, fieldSelector: opts.fieldSelector });
    const items = list?.items ?? [];
    if (!items.length && (format === undefined || format === 'wide' || format === 'name')) {
      ctx.io.stderr(kind.namespaced && !allNamespaces ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
      return;
    }
    ctx.io.stdout(renderObjects(kind, items, format, { single: false, allNamespaces }));
  });
}
