import { stringify } from 'yaml';
import type { ConfigMap, ResourceQuota, Secret } from '../api/config.js';
import type { Event } from '../api/event.js';
import type { KindInfo } from '../api/kinds.js';
import type { ApiObject, Condition } from '../api/meta.js';
import type { Node } from '../api/node.js';
import type { Pod } from '../api/pod.js';
import type { EndpointSlice, Service } from '../api/service.js';
import { formatMemory } from '../api/quantity.js';
import { selectorString, type LabelSelector } from '../api/selector.js';
import type { DaemonSet, Deployment, Job, ReplicaSet } from '../api/workloads.js';
import { CliError } from './client.js';

export const OUTPUT_FORMATS = ['json', 'yaml', 'wide', 'name'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** `-o` value → format; undefined means the default table. */
export function parseOutputFormat(v: string | undefined): OutputFormat | undefined {
  if (v === undefined || v === '') return undefined;
  if ((OUTPUT_FORMATS as readonly string[]).includes(v)) return v as OutputFormat;
  throw new CliError(`unable to match a printer suitable for the output format "${v}", allowed formats are: ${OUTPUT_FORMATS.join(',')}`);
}

/**
 * A port of Go's text/tabwriter as kubectl configures it. Cells end with '\t'; the text after the
 * last tab of a line is not a column cell and is never padded. A column is aligned across a block
 * of consecutive lines that all have a cell in it, so `describe` sections line up on their own,
 * exactly as kubectl's output does.
 */
export function tabwrite(text: string, opts: { minwidth?: number; padding?: number } = {}): string {
  const minwidth = opts.minwidth ?? 0;
  const padding = opts.padding ?? 1;
  const endsWithNewline = text.endsWith('\n');
  const lines = (endsWithNewline ? text.slice(0, -1) : text).split('\n').map((l) => l.split('\t'));
  const out: string[] = lines.map(() => '');
  const widths: number[] = [];
  const len = (s: string): number => [...s].length;

  const writeLines = (line0: number, line1: number): void => {
    for (let i = line0; i < line1; i++) {
      const cells = lines[i]!;
      out[i] = cells.map((c, j) => (j < widths.length ? c + ' '.repeat(Math.max(0, widths[j]! - len(c))) : c)).join('');
    }
  };

  const format = (line0: number, line1: number): void => {
    const column = widths.length;
    for (let cur = line0; cur < line1; cur++) {
      if (column >= lines[cur]!.length - 1) continue;
      // This line starts a block of lines that all have a cell in `column`.
      writeLines(line0, cur);
      line0 = cur;
      let width = minwidth;
      for (; cur < line1; cur++) {
        const cells = lines[cur]!;
        if (column >= cells.length - 1) break;
        width = Math.max(width, len(cells[column]!) + padding);
      }
      widths.push(width);
      format(line0, cur);
      widths.pop();
      line0 = cur;
    }
    writeLines(line0, line1);
  };

  format(0, lines.length);
  return out.join('\n') + (endsWithNewline ? '\n' : '');
}

/** A table aligned like `kubectl get`: header row, columns padded by at least three spaces. */
export function renderTable(headers: string[], rows: string[][]): string {
  const text = [headers, ...rows].map((r) => r.map((c) => c.replace(/[\t\n]/g, ' ')).join('\t')).join('\n') + '\n';
  return tabwrite(text, { minwidth: 6, padding: 3 });
}

/** kubectl's HumanDuration: "5s", "3m10s", "45m", "2h30m", "20h", "4d3h", "30d", "2y". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

/** Age of an ISO timestamp relative to `now`, or `<unknown>` when absent or unparseable. */
export function age(ts: string | undefined, now: number): string {
  if (!ts) return '<unknown>';
  const t = Date.parse(ts);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

/** RFC 1123 with numeric zone in UTC, the format `kubectl describe` uses for timestamps. */
export function formatTime(ts: string | undefined): string {
  if (!ts) return '<unknown>';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return ts;
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

// ---- column derivations ----

/** STATUS as kubectl shows it: a container's waiting/terminated reason beats the pod's reason and phase. */
export function podStatusText(pod: Pod): string {
  let reason = pod.status?.reason || pod.status?.phase || 'Pending';
  // Walk backwards like kubectl so the first container with something to say wins.
  const statuses = pod.status?.containerStatuses ?? [];
  for (let i = statuses.length - 1; i >= 0; i--) {
    const cs = statuses[i]!;
    if (cs.state === 'waiting' && cs.reason) reason = cs.reason;
    else if (cs.state === 'terminated') reason = cs.reason || (cs.exitCode !== undefined ? `ExitCode:${cs.exitCode}` : 'Terminated');
  }
  if (pod.metadata.deletionTimestamp) reason = 'Terminating';
  // Its node is late with its reports (server condition StatusStale): shown, but flagged.
  if (pod.status?.conditions?.some((c) => c.type === 'StatusStale' && c.status === 'True')) reason += ',Stale';
  return reason;
}

/**
 * The pod's own address (status.podIP, which the agent fills for bridge-networked pods). A
 * host-network pod shares its node's address, so hostIP stands for it; never hostIP otherwise, or a
 * bridge pod would show the node's address as its own.
 */
export function podIP(pod: Pod): string | undefined {
  const st = pod.status as { podIP?: string; hostIP?: string } | undefined;
  return st?.podIP || (pod.spec?.hostNetwork ? st?.hostIP : undefined);
}

export function podReadyText(pod: Pod): string {
  // A pod whose node is lost (phase Unknown) is not known to be ready, whatever its containers last said.
  const ready = pod.status?.phase === 'Unknown' ? 0 : (pod.status?.containerStatuses ?? []).filter((c) => c.ready).length;
  return `${ready}/${pod.spec?.containers?.length ?? 0}`;
}

export function podRestarts(pod: Pod): number {
  return (pod.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0);
}

export function nodeStatusText(node: Node): string {
  const ready = node.status?.conditions?.find((c: Condition) => c.type === 'Ready')?.status;
  const base = ready === 'True' ? 'Ready' : ready === 'False' ? 'NotReady' : 'Unknown';
  // Its last report is older than a heartbeat and a half: shown, but flagged as possibly out of date.
  const stale = ready === 'True' && node.status?.conditions?.some((c: Condition) => c.type === 'HeartbeatLate' && c.status === 'True');
  // Its link keeps dropping (LinkDegraded): it may be Ready now, but its reports come and go.
  const degraded = node.status?.conditions?.some((c: Condition) => c.type === 'LinkDegraded' && c.status === 'True');
  const parts = [base, ...(stale ? ['Stale'] : []), ...(degraded ? ['Degraded'] : []), ...(node.spec?.unschedulable ? ['SchedulingDisabled'] : [])];
  return parts.join(',');
}

export function nodeRoles(node: Node): string {
  const prefix = 'node-role.kubernetes.io/';
  const roles = Object.keys(node.metadata.labels ?? {})
    .filter((k) => k.startsWith(prefix) && k.length > prefix.length)
    .map((k) => k.slice(prefix.length))
    .sort();
  return roles.length ? roles.join(',') : '<none>';
}

/** Capacity memory as agents report it is usually plain bytes; show those in binary units. */
export function nodeMemoryText(mem: string | undefined): string {
  if (!mem) return '<none>';
  return /^\d+$/.test(mem) ? formatMemory(Number(mem)) : mem;
}

function orNone(v: string | undefined): string {
  return v ? v : '<none>';
}

/** API group of a kind ('' for the core group), as in `deployment.apps/web`. */
function group(kind: KindInfo): string {
  return kind.groupVersion.includes('/') ? kind.groupVersion.split('/')[0]! : '';
}

/** The kind as kubectl names it in output: `pod`, `deployment.apps`. */
export function qualifiedSingular(kind: KindInfo): string {
  const g = group(kind);
  return g ? `${kind.singular}.${g}` : kind.singular;
}

/** The kind as kubectl names it in "not found" errors: `pods`, `deployments.apps`. */
export function qualifiedPlural(kind: KindInfo): string {
  const g = group(kind);
  return g ? `${kind.plural}.${g}` : kind.plural;
}

export function jobStatusText(job: Job): string {
  const cond = (t: string) => job.status?.conditions?.some((c) => c.type === t && c.status === 'True');
  if (cond('Complete')) return 'Complete';
  if (cond('Failed')) return 'Failed';
  if (job.spec.suspend) return 'Suspended';
  return 'Running';
}

function jobDuration(job: Job, now: number): string {
  const start = job.status?.startTime ? Date.parse(job.status.startTime) : NaN;
  if (Number.isNaN(start)) return '';
  const end = job.status?.completionTime ? Date.parse(job.status.completionTime) : now;
  return humanDuration(end - start);
}

/** `used/hard` pairs, kubectl's REQUEST and LIMIT columns of resource quotas. */
function quotaText(q: ResourceQuota, limits: boolean): string {
  const hard = q.spec.hard;
  return Object.keys(hard)
    .filter((k) => k.startsWith('limits.') === limits)
    .sort()
    .map((k) => `${k}: ${q.status?.used?.[k] ?? '0'}/${q.status?.hard?.[k] ?? String(hard[k as keyof typeof hard])}`)
    .join(', ');
}

interface TemplateOwner {
  spec: { selector?: LabelSelector; template: { spec: { containers: Array<{ name: string; image: string }> } } };
}

/** kubectl's wide columns for workloads: CONTAINERS IMAGES SELECTOR. */
function templateColumns(o: TemplateOwner): string[] {
  const cs = o.spec.template.spec.containers;
  return [cs.map((c) => c.name).join(','), cs.map((c) => c.image).join(','), o.spec.selector ? orNone(selectorString(o.spec.selector)) : '<none>'];
}

export interface TableOptions {
  wide?: boolean;
  /** Adds the NAMESPACE column (for `-A`). */
  allNamespaces?: boolean;
  now?: number;
  /** `-L key,...`: one column per label key, headed by the key's last segment in upper case. */
  labelColumns?: string[];
  /** `--show-labels`: a last LABELS column. */
  showLabels?: boolean;
}

/** kubectl's LABELS cell: `k=v` pairs sorted by key, `<none>` when there are none. */
export function labelsText(labels: Record<string, string> | undefined): string {
  const pairs = Object.keys(labels ?? {}).sort().map((k) => `${k}=${labels![k]}`);
  return pairs.length ? pairs.join(',') : '<none>';
}

interface Columns {
  headers: string[];
  wideHeaders?: string[];
  row(o: ApiObject, now: number): string[];
  wideRow?(o: ApiObject, now: number): string[];
}

const WORKLOAD_WIDE = ['CONTAINERS', 'IMAGES', 'SELECTOR'];

/** Columns written against one kind's type; `get` only hands a kind's table objects of that kind. */
function kindColumns<T>(c: { headers: string[]; wideHeaders?: string[]; row(o: T, now: number): string[]; wideRow?(o: T, now: number): string[] }): Columns {
  return c as unknown as Columns;
}

/** Per kind: the columns of `get`, as kubectl shows them, plus drover's node inventory. */
const COLUMNS: Record<string, Columns> = {
  Pod: kindColumns<Pod>({
    headers: ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE'],
    wideHeaders: ['IP', 'NODE'],
    row: (p, now) => [p.metadata.name, podReadyText(p), podStatusText(p), String(podRestarts(p)), age(p.metadata.creationTimestamp, now)],
    wideRow: (p) => [orNone(podIP(p)), orNone(p.spec?.nodeName)],
  }),
  Node: kindColumns<Node>({
    headers: ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION', 'ARCH', 'OS', 'CPU', 'MEMORY', 'RUNTIME'],
    wideHeaders: ['OS-IMAGE', 'KERNEL-VERSION', 'INTERNAL-IP', 'LAST-HEARD'],
    row: (n, now) => {
      const info = n.status?.nodeInfo;
      return [
        n.metadata.name, nodeStatusText(n), nodeRoles(n), age(n.metadata.creationTimestamp, now), orNone(info?.agentVersion),
        orNone(info?.architecture), orNone(info?.operatingSystem), orNone(n.status?.capacity?.cpu),
        nodeMemoryText(n.status?.capacity?.memory), orNone(info?.containerRuntimeVersion),
      ];
    },
    wideRow: (n, now) => [
        orNone(n.status?.nodeInfo?.osImage), orNone(n.status?.nodeInfo?.kernelVersion),
        orNone(n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address),
        n.status?.lastHeard ? age(n.status.lastHeard, now) : '<none>',
      ],
  }),
  Namespace: {
    headers: ['NAME', 'STATUS', 'AGE'],
    row: (o, now) => [o.metadata.name, (o.status as { phase?: string } | undefined)?.phase ?? 'Active', age(o.metadata.creationTimestamp, now)],
  },
  Event: kindColumns<Event>({
    headers: ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE'],
    row: (e, now) => [age(e.lastTimestamp, now), e.type, e.reason, `${e.involvedObject.kind.toLowerCase()}/${e.involvedObject.name}`, e.message],
  }),
  Deployment: kindColumns<Deployment>({
    headers: ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE'],
    wideHeaders: WORKLOAD_WIDE,
    row: (d, now) => {
      const st = d.status;
      return [d.metadata.name, `${st?.readyReplicas ?? 0}/${d.spec.replicas}`, String(st?.updatedReplicas ?? 0), String(st?.availableReplicas ?? 0), age(d.metadata.creationTimestamp, now)];
    },
    wideRow: templateColumns,
  }),
  ReplicaSet: kindColumns<ReplicaSet>({
    headers: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'AGE'],
    wideHeaders: WORKLOAD_WIDE,
    row: (r, now) => [r.metadata.name, String(r.spec.replicas), String(r.status?.replicas ?? 0), String(r.status?.readyReplicas ?? 0), age(r.metadata.creationTimestamp, now)],
    wideRow: templateColumns,
  }),
  DaemonSet: kindColumns<DaemonSet>({
    headers: ['NAME', 'DESIRED', 'CURRENT', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'NODE SELECTOR', 'AGE'],
    wideHeaders: WORKLOAD_WIDE,
    row: (d, now) => {
      const st = d.status;
      return [
        d.metadata.name, String(st?.desiredNumberScheduled ?? 0), String(st?.currentNumberScheduled ?? 0), String(st?.numberReady ?? 0),
        String(st?.updatedNumberScheduled ?? 0), String(st?.numberAvailable ?? 0),
        orNone(Object.entries(d.spec.template.spec.nodeSelector ?? {}).map(([k, v]) => `${k}=${v}`).join(',')), age(d.metadata.creationTimestamp, now),
      ];
    },
    wideRow: templateColumns,
  }),
  Job: kindColumns<Job>({
    headers: ['NAME', 'STATUS', 'COMPLETIONS', 'DURATION', 'AGE'],
    wideHeaders: WORKLOAD_WIDE,
    row: (j, now) => [j.metadata.name, jobStatusText(j), `${j.status?.succeeded ?? 0}/${j.spec.completions}`, jobDuration(j, now), age(j.metadata.creationTimestamp, now)],
    wideRow: templateColumns,
  }),
  ConfigMap: kindColumns<ConfigMap>({
    headers: ['NAME', 'DATA', 'AGE'],
    row: (c, now) => [c.metadata.name, String(Object.keys(c.data ?? {}).length + Object.keys(c.binaryData ?? {}).length), age(c.metadata.creationTimestamp, now)],
  }),
  Secret: kindColumns<Secret>({
    headers: ['NAME', 'TYPE', 'DATA', 'AGE'],
    row: (s, now) => [s.metadata.name, s.type ?? 'Opaque', String(Object.keys(s.data ?? {}).length), age(s.metadata.creationTimestamp, now)],
  }),
  // As kubectl prints them (pkg/printers/internalversion): PORT(S) 80/TCP or 80:30080/TCP, no external IPs on drover.
  Service: kindColumns<Service>({
    headers: ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE'],
    wideHeaders: ['SELECTOR'],
    row: (svc, now) => [
      svc.metadata.name, svc.spec.type ?? 'ClusterIP', svc.spec.clusterIP || '<none>', '<none>',
      orNone((svc.spec.ports ?? []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',')),
      age(svc.metadata.creationTimestamp, now),
    ],
    wideRow: (svc) => [orNone(Object.entries(svc.spec.selector ?? {}).map(([k, v]) => `${k}=${v}`).join(','))],
  }),
  EndpointSlice: kindColumns<EndpointSlice>({
    headers: ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE'],
    row: (es, now) => [es.metadata.name, es.addressType, slicePorts(es), sliceEndpoints(es), age(es.metadata.creationTimestamp, now)],
  }),
  ResourceQuota: kindColumns<ResourceQuota>({
    headers: ['NAME', 'AGE', 'REQUEST', 'LIMIT'],
    row: (q, now) => [q.metadata.name, age(q.metadata.creationTimestamp, now), quotaText(q, false), quotaText(q, true)],
  }),
};

/** kubectl's PORTS cell of an EndpointSlice: the port numbers, "<unset>" for a port without one. */
function slicePorts(es: EndpointSlice): string {
  const ports = es.ports ?? [];
  return ports.length ? ports.map((p) => (p.port === undefined ? '<unset>' : String(p.port))).join(',') : '<unset>';
}

/** kubectl's ENDPOINTS cell: the first three addresses, then "+ N more...". */
function sliceEndpoints(es: EndpointSlice): string {
  const addrs = (es.endpoints ?? []).flatMap((e) => e.addresses);
  if (addrs.length === 0) return '<none>';
  return addrs.slice(0, 3).join(',') + (addrs.length > 3 ? ` + ${addrs.length - 3} more...` : '');
}

const DEFAULT_COLUMNS: Columns = { headers: ['NAME', 'AGE'], row: (o, now) => [o.metadata.name, age(o.metadata.creationTimestamp, now)] };

/** The `get` table for a kind. */
export function tableFor(kind: KindInfo, items: ApiObject[], opts: TableOptions = {}): string {
  const { headers, rows } = tableParts(kind, items, opts);
  return renderTable(headers, rows);
}

/** Headers and cells of the `get` table, before alignment (watch output aligns rows as they come). */
export function tableParts(kind: KindInfo, items: ApiObject[], opts: TableOptions = {}): { headers: string[]; rows: string[][] } {
  const now = opts.now ?? Date.now();
  const cols = COLUMNS[kind.kind] ?? DEFAULT_COLUMNS;
  const wide = Boolean(opts.wide && cols.wideRow);
  const withNs = Boolean(opts.allNamespaces && kind.namespaced);
  if (kind.kind === 'Event') {
    items = [...items].sort((a, b) => String((a as Event).lastTimestamp).localeCompare(String((b as Event).lastTimestamp)));
  }
  const labelCols = opts.labelColumns ?? [];
  const headers = [
    ...(withNs ? ['NAMESPACE'] : []), ...cols.headers, ...(wide ? cols.wideHeaders ?? [] : []),
    ...labelCols.map((k) => k.split('/').at(-1)!.toUpperCase()), ...(opts.showLabels ? ['LABELS'] : []),
  ];
  const rows = items.map((o) => [
    ...(withNs ? [o.metadata.namespace ?? ''] : []), ...cols.row(o, now), ...(wide ? cols.wideRow!(o, now) : []),
    ...labelCols.map((k) => o.metadata.labels?.[k] ?? ''), ...(opts.showLabels ? [labelsText(o.metadata.labels)] : []),
  ]);
  return { headers, rows };
}

/** `-o name`: `pod/web`, `deployment.apps/web`. */
export function objectName(kind: KindInfo, name: string): string {
  return `${qualifiedSingular(kind)}/${name}`;
}

/** A list as kubectl prints it with -o json|yaml. */
export function asList(items: ApiObject[]): Record<string, unknown> {
  return { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } };
}

export function toJson(v: unknown): string {
  return JSON.stringify(v, null, 4) + '\n';
}

export function toYaml(v: unknown): string {
  // No line folding and unindented sequences: the shape kubectl users paste back into manifests.
  return stringify(v, { lineWidth: 0, indentSeq: false });
}

/** Render objects for `get`: one object when a name was given, otherwise a list. */
export function renderObjects(
  kind: KindInfo,
  objects: ApiObject[],
  format: OutputFormat | undefined,
  opts: { single: boolean; allNamespaces?: boolean; now?: number },
): string {
  switch (format) {
    case 'json':
      return toJson(opts.single ? objects[0] : asList(objects));
    case 'yaml':
      return toYaml(opts.single ? objects[0] : asList(objects));
    case 'name':
      return objects.map((o) => objectName(kind, o.metadata.name) + '\n').join('');
    default:
      return tableFor(kind, objects, { wide: format === 'wide', allNamespaces: opts.allNamespaces, now: opts.now });
  }
}
