import type { Command } from 'commander';
import { kindInfo, objectPath } from '../api/kinds.js';
import type { Node } from '../api/node.js';
import type { Pod } from '../api/pod.js';
import { parseCpu, parseMemory } from '../api/quantity.js';
import { ValidationError } from '../util/errors.js';
import { CliError } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, notFound, type CommandContext } from './context.js';
import { renderTable } from './output.js';

/** What agents report in `status.usage` of Nodes and Pods. */
export interface Usage {
  cpuMilli: number;
  memoryBytes: number;
  ts: string;
}

export function usageOf(o: { status?: unknown }): Usage | undefined {
  const u = (o.status as { usage?: Partial<Usage> } | undefined)?.usage;
  return u && typeof u.cpuMilli === 'number' && typeof u.memoryBytes === 'number' ? (u as Usage) : undefined;
}

/** kubectl top's units: CPU in millicores, memory in mebibytes. */
export function cpuText(milli: number): string {
  return `${Math.round(milli)}m`;
}

/**
 * kubectl's whole mebibytes, except below one: an idle busybox pod on a device really uses ~250 KiB
 * (measured with podman stats), which kubectl's floor shows as a meaningless `0Mi` for every pod.
 * `248Ki` is still a quantity scripts can parse.
 */
export function memoryText(bytes: number): string {
  if (bytes > 0 && bytes < 1024 * 1024) return `${Math.max(1, Math.floor(bytes / 1024))}Ki`;
  return `${Math.floor(bytes / (1024 * 1024))}Mi`;
}

function percent(used: number, total: number | undefined): string {
  return total && total > 0 ? `${Math.floor((used / total) * 100)}%` : '<unknown>';
}

function quantity(parse: (v: string) => number, v: string | undefined): number | undefined {
  if (!v) return undefined;
  try {
    return parse(v);
  } catch (err) {
    // A capacity the node reported in a form we cannot read: shown as <unknown>, not a failed command.
    if (err instanceof ValidationError) return undefined;
    throw err;
  }
}

export type SortBy = 'cpu' | 'memory' | undefined;

export function parseSortBy(v: string | undefined): SortBy {
  if (v === undefined || v === '') return undefined;
  if (v === 'cpu' || v === 'memory') return v;
  throw new CliError(`--sort-by accepts only cpu or memory, got "${v}"`);
}

function sortUsage<T>(items: Array<{ item: T; usage: Usage }>, by: SortBy): Array<{ item: T; usage: Usage }> {
  if (!by) return items;
  return [...items].sort((a, b) => (by === 'cpu' ? b.usage.cpuMilli - a.usage.cpuMilli : b.usage.memoryBytes - a.usage.memoryBytes));
}

/**
 * `top nodes`: percentages of allocatable (capacity when the agent reports no allocatable). Nodes
 * that have reported no usage come last with `<unknown>`, as in kubectl. undefined when no node has
 * reported any: the caller says metrics are not available.
 */
export function topNodesTable(nodes: Node[], sortBy?: SortBy): string | undefined {
  const measured = nodes.flatMap((n) => {
    const usage = usageOf(n);
    return usage ? [{ item: n, usage }] : [];
  });
  if (!measured.length) return undefined;
  const rows = sortUsage(measured, sortBy).map(({ item: n, usage }) => {
    const alloc = n.status?.allocatable ?? n.status?.capacity;
    return [
      n.metadata.name,
      cpuText(usage.cpuMilli),
      percent(usage.cpuMilli, quantity(parseCpu, alloc?.cpu)),
      memoryText(usage.memoryBytes),
      percent(usage.memoryBytes, quantity(parseMemory, alloc?.memory)),
    ];
  });
  for (const n of nodes) if (!usageOf(n)) rows.push([n.metadata.name, '<unknown>', '<unknown>', '<unknown>', '<unknown>']);
  return renderTable(['NAME', 'CPU(cores)', 'CPU%', 'MEMORY(bytes)', 'MEMORY%'], rows);
}

/** `top pods`: only pods with reported usage, as the metrics API only lists those. */
export function topPodsTable(pods: Pod[], opts: { allNamespaces?: boolean; sortBy?: SortBy } = {}): string | undefined {
  const measured = pods.flatMap((p) => {
    const usage = usageOf(p);
    return usage ? [{ item: p, usage }] : [];
  });
  if (!measured.length) return undefined;
  const rows = sortUsage(measured, opts.sortBy).map(({ item: p, usage }) => [
    ...(opts.allNamespaces ? [p.metadata.namespace ?? DEFAULT_NAMESPACE] : []),
    p.metadata.name,
    cpuText(usage.cpuMilli),
    memoryText(usage.memoryBytes),
  ]);
  return renderTable([...(opts.allNamespaces ? ['NAMESPACE'] : []), 'NAME', 'CPU(cores)', 'MEMORY(bytes)'], rows);
}

const NOT_AVAILABLE = 'metrics not available yet';

/** The server's metrics.k8s.io lists: agents' latest reported use, kept in the server's memory. */
interface MetricsList {
  items?: Array<{ metadata: { name: string; namespace?: string }; timestamp: string; usage: { cpu: string; memory: string } }>;
}
const METRICS_NODES = '/apis/metrics.k8s.io/v1beta1/nodes';
const METRICS_PODS = '/apis/metrics.k8s.io/v1beta1/pods';

/** Puts each object's reported use into `status.usage`, where the tables read it. */
export function withMetrics<T extends { metadata: { name: string; namespace?: string }; status?: unknown }>(items: T[], list: MetricsList | undefined): T[] {
  const byKey = new Map((list?.items ?? []).map((m) => [`${m.metadata.namespace ?? ''}/${m.metadata.name}`, m]));
  return items.map((o) => {
    const m = byKey.get(`${o.metadata.namespace ?? ''}/${o.metadata.name}`);
    if (!m) return o;
    return { ...o, status: { ...(o.status as object), usage: { cpuMilli: parseCpu(m.usage.cpu), memoryBytes: parseMemory(m.usage.memory), ts: m.timestamp } } };
  });
}

export function registerTop(program: Command, ctx: CommandContext): void {
  const top = program.command('top').description('show CPU and memory use of nodes or pods, as reported by the agents');

  const nodes = top
    .command('node')
    .alias('nodes')
    .alias('no')
    .description('CPU and memory use of nodes')
    .argument('[name]', 'one node')
    .option('-l, --selector <selector>', 'label selector')
    .option('--sort-by <field>', 'cpu or memory');
  addConnectionOptions(nodes).action(async (name: string | undefined, opts: { selector?: string; sortBy?: string }, command: Command) => {
    const sortBy = parseSortBy(opts.sortBy);
    const client = ctx.client(command);
    const kind = kindInfo('Node');
    let items: Node[];
    if (name) {
      const n = await client.getOptional<Node>(objectPath(kind, undefined, name));
      if (!n) throw notFound(kind, name);
      items = [n];
    } else {
      items = (await client.get<{ items?: Node[] }>(objectPath(kind, undefined), { labelSelector: opts.selector }))?.items ?? [];
      if (!items.length) {
        ctx.io.stderr('No resources found\n');
        return;
      }
    }
    const table = topNodesTable(withMetrics(items, await client.get<MetricsList>(METRICS_NODES)), sortBy);
    if (!table) throw new CliError(NOT_AVAILABLE);
    ctx.io.stdout(table);
  });

  const pods = top
    .command('pod')
    .alias('pods')
    .alias('po')
    .description('CPU and memory use of pods')
    .argument('[name]', 'one pod')
    .option('-n, --namespace <namespace>', 'namespace', DEFAULT_NAMESPACE)
    .option('-A, --all-namespaces', 'across all namespaces')
    .option('-l, --selector <selector>', 'label selector')
    .option('--sort-by <field>', 'cpu or memory');
  addConnectionOptions(pods).action(
    async (name: string | undefined, opts: { namespace?: string; allNamespaces?: boolean; selector?: string; sortBy?: string }, command: Command) => {
      const sortBy = parseSortBy(opts.sortBy);
      const client = ctx.client(command);
      const kind = kindInfo('Pod');
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      let items: Pod[];
      if (name) {
        const p = await client.getOptional<Pod>(objectPath(kind, ns, name));
        if (!p) throw notFound(kind, name);
        items = [p];
      } else {
        items = (await client.get<{ items?: Pod[] }>(objectPath(kind, opts.allNamespaces ? undefined : ns), { labelSelector: opts.selector }))?.items ?? [];
        if (!items.length) {
          ctx.io.stderr(opts.allNamespaces ? 'No resources found\n' : `No resources found in ${ns} namespace.\n`);
          return;
        }
      }
      const metrics = await client.get<MetricsList>(opts.allNamespaces && !name ? METRICS_PODS : `/apis/metrics.k8s.io/v1beta1/namespaces/${encodeURIComponent(ns)}/pods`);
      const table = topPodsTable(withMetrics(items, metrics), { allNamespaces: !name && opts.allNamespaces, sortBy });
      if (!table) throw new CliError(NOT_AVAILABLE);
      ctx.io.stdout(table);
    },
  );
}
