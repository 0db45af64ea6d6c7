import type { Command } from 'commander';
import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import type { Event } from '../api/event.js';
import type { Node } from '../api/node.js';
import type { Container, ContainerStatus, Pod } from '../api/pod.js';
import { formatCpu, formatMemory, parseCpu, parseMemory } from '../api/quantity.js';
import { ApiClient, CliError, FATAL_REASONS } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { age, formatTime, nodeMemoryText, nodeRoles, nodeStatusText, podStatusText, tabwrite } from './output.js';

/**
 * Builds `describe` text the way kubectl's PrefixWriter does: two spaces of indent per level,
 * cells separated by tabs, then one tabwriter pass so each block of `Key:  value` lines aligns.
 */
class Section {
  private readonly lines: string[] = [];
  line(level: number, ...cells: string[]): this {
    this.lines.push('  '.repeat(level) + cells.map((c) => c.replace(/[\t\n]/g, ' ')).join('\t'));
    return this;
  }
  /** `Labels:  a=b` with further entries aligned under the first, or `<none>`. */
  multiline(level: number, key: string, values: string[]): this {
    if (!values.length) return this.line(level, key, '<none>');
    values.forEach((v, i) => this.line(level, i === 0 ? key : '', v));
    return this;
  }
  rows(level: number, rows: string[][]): this {
    for (const r of rows) this.line(level, ...r);
    return this;
  }
  /** A header, its dashed underline, then the rows. */
  table(level: number, headers: string[], rows: string[][]): this {
    return this.rows(level, [headers, headers.map((h) => '-'.repeat(h.length)), ...rows]);
  }
  render(): string {
    return tabwrite(this.lines.join('\n') + '\n', { minwidth: 0, padding: 2 });
  }
}

function labelList(m: Record<string, string> | undefined): string[] {
  return Object.entries(m ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
}

function annotationList(m: Record<string, string> | undefined): string[] {
  return Object.entries(m ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}: ${v}`);
}

/** Events about one object, oldest first. */
export async function eventsFor(client: ApiClient, involved: { kind: string; name: string; namespace?: string; uid?: string }): Promise<Event[]> {
  const list = await client.get<{ items?: Event[] }>(objectPath(kindInfo('Event'), involved.namespace ?? DEFAULT_NAMESPACE), {
    fieldSelector: `involvedObject.kind=${involved.kind},involvedObject.name=${involved.name}`,
  });
  // Filtered again here: also drops events of an earlier object that had the same name (other uid).
  return (list?.items ?? [])
    .filter((e) => e.involvedObject?.kind === involved.kind && e.involvedObject.name === involved.name)
    .filter((e) => !involved.uid || !e.involvedObject.uid || e.involvedObject.uid === involved.uid)
    .sort((a, b) => String(a.lastTimestamp).localeCompare(String(b.lastTimestamp)));
}

export function describeEvents(s: Section, events: Event[] | undefined, now: number): void {
  if (!events) return;
  if (!events.length) {
    s.line(0, 'Events:', '<none>');
    return;
  }
  s.line(0, 'Events:');
  // kubectl underlines Age with four dashes; copied so scripts that parse describe output keep working.
  s.line(1, 'Type', 'Reason', 'Age', 'From', 'Message');
  s.rows(
    1,
    [['----', '------', '----', '----', '-------'], ...events.map((e) => [
      e.type,
      e.reason,
      e.count > 1 ? `${age(e.lastTimestamp, now)} (x${e.count} over ${age(e.firstTimestamp, now)})` : age(e.lastTimestamp, now),
      e.source?.host ? `${e.source.component}, ${e.source.host}` : (e.source?.component ?? ''),
      e.message,
    ])],
  );
}

function containerState(s: Section, cs: ContainerStatus): void {
  const state = cs.state[0]!.toUpperCase() + cs.state.slice(1);
  s.line(2, 'State:', state);
  if (cs.reason) s.line(3, 'Reason:', cs.reason);
  if (cs.message) s.line(3, 'Message:', cs.message);
  if (cs.state === 'terminated' && cs.exitCode !== undefined) s.line(3, 'Exit Code:', String(cs.exitCode));
  if (cs.startedAt && cs.state !== 'waiting') s.line(3, 'Started:', formatTime(cs.startedAt));
  if (cs.finishedAt && cs.state === 'terminated') s.line(3, 'Finished:', formatTime(cs.finishedAt));
  s.line(2, 'Ready:', cs.ready ? 'True' : 'False');
  s.line(2, 'Restart Count:', String(cs.restartCount));
}

function describeContainer(s: Section, c: Container, cs: ContainerStatus | undefined): void {
  s.line(1, `${c.name}:`);
  if (cs?.containerID) s.line(2, 'Container ID:', cs.containerID);
  s.line(2, 'Image:', c.image);
  for (const p of c.ports ?? []) {
    s.line(2, 'Port:', `${p.containerPort}/${p.protocol ?? 'TCP'}`);
    if (p.hostPort) s.line(2, 'Host Port:', `${p.hostPort}/${p.protocol ?? 'TCP'}`);
  }
  if (c.command?.length) {
    s.line(2, 'Command:');
    for (const a of c.command) s.line(3, a);
  }
  if (c.args?.length) {
    s.line(2, 'Args:');
    for (const a of c.args) s.line(3, a);
  }
  if (cs) containerState(s, cs);
  for (const [title, list] of [['Limits:', c.resources?.limits], ['Requests:', c.resources?.requests]] as const) {
    const entries = Object.entries(list ?? {}).filter(([, v]) => v !== undefined);
    if (!entries.length) continue;
    s.line(2, title);
    for (const [k, v] of entries) s.line(3, `${k}:`, String(v));
  }
  if (c.env?.length) {
    s.line(2, 'Environment:');
    for (const e of c.env) s.line(3, `${e.name}:`, e.value ?? '');
  } else {
    s.line(2, 'Environment:', '<none>');
  }
}

export function describePod(pod: Pod, events: Event[] | undefined, now = Date.now()): string {
  const s = new Section();
  const st = pod.status;
  s.line(0, 'Name:', pod.metadata.name);
  s.line(0, 'Namespace:', pod.metadata.namespace ?? DEFAULT_NAMESPACE);
  s.line(0, 'Node:', pod.spec.nodeName ? (st?.hostIP ? `${pod.spec.nodeName}/${st.hostIP}` : pod.spec.nodeName) : '<none>');
  if (st?.startTime) s.line(0, 'Start Time:', formatTime(st.startTime));
  s.multiline(0, 'Labels:', labelList(pod.metadata.labels));
  s.multiline(0, 'Annotations:', annotationList(pod.metadata.annotations));
  s.line(0, 'Status:', pod.metadata.deletionTimestamp ? 'Terminating' : (st?.phase ?? 'Pending'));
  if (st?.reason) s.line(0, 'Reason:', st.reason);
  if (st?.message) s.line(0, 'Message:', st.message);
  if (st?.hostIP) s.line(0, 'IP:', st.hostIP);
  s.line(0, 'Restart Policy:', pod.spec.restartPolicy ?? 'Always');
  s.line(0, 'Containers:');
  const statuses = new Map((st?.containerStatuses ?? []).map((cs) => [cs.name, cs]));
  for (const c of pod.spec.containers ?? []) describeContainer(s, c, statuses.get(c.name));
  if (st?.conditions?.length) {
    s.line(0, 'Conditions:');
    s.line(1, 'Type', 'Status');
    for (const c of st.conditions) s.line(1, c.type, c.status);
  }
  s.multiline(0, 'Node-Selectors:', labelList(pod.spec.nodeSelector));
  describeEvents(s, events, now);
  return s.render();
}

function sumResources(pod: Pod, which: 'requests' | 'limits'): { cpu: string; memory: string } {
  let cpu = 0;
  let mem = 0;
  for (const c of pod.spec.containers ?? []) {
    const r = c.resources?.[which];
    // Values came through validation, but a tolerant describe beats a crash on one odd pod.
    try {
      if (r?.cpu !== undefined) cpu += parseCpu(r.cpu);
      if (r?.memory !== undefined) mem += parseMemory(r.memory);
    } catch {
      /* ignored: shown as 0 */
    }
  }
  return { cpu: formatCpu(cpu), memory: mem ? formatMemory(mem) : '0' };
}

export function describeNode(node: Node, pods: Pod[], events: Event[] | undefined, now = Date.now()): string {
  const s = new Section();
  const st = node.status;
  s.line(0, 'Name:', node.metadata.name);
  s.line(0, 'Roles:', nodeRoles(node));
  s.multiline(0, 'Labels:', labelList(node.metadata.labels));
  s.multiline(0, 'Annotations:', annotationList(node.metadata.annotations));
  s.line(0, 'CreationTimestamp:', formatTime(node.metadata.creationTimestamp));
  s.line(0, 'Status:', nodeStatusText(node));
  s.line(0, 'Unschedulable:', node.spec?.unschedulable ? 'true' : 'false');
  s.line(0, 'Last Heard:', st?.lastHeard ? `${formatTime(st.lastHeard)} (${age(st.lastHeard, now)} ago)` : '<never>');
  if (st?.conditions?.length) {
    s.line(0, 'Conditions:');
    s.table(
      1,
      ['Type', 'Status', 'LastHeartbeatTime', 'LastTransitionTime', 'Reason', 'Message'],
      st.conditions.map((c) => [
        c.type, c.status, c.lastHeartbeatTime ? formatTime(c.lastHeartbeatTime) : '', c.lastTransitionTime ? formatTime(c.lastTransitionTime) : '',
        c.reason ?? '', c.message ?? '',
      ]),
    );
  } else {
    s.line(0, 'Conditions:', '<none>');
  }
  if (st?.addresses?.length) {
    s.line(0, 'Addresses:');
    for (const a of st.addresses) s.line(1, `${a.type}:`, a.address);
  }
  for (const [title, list] of [['Capacity:', st?.capacity], ['Allocatable:', st?.allocatable]] as const) {
    if (!list) continue;
    s.line(0, title);
    s.line(1, 'cpu:', list.cpu);
    s.line(1, 'memory:', nodeMemoryText(list.memory));
    s.line(1, 'pods:', list.pods);
  }
  const info = st?.nodeInfo;
  if (info) {
    s.line(0, 'System Info:');
    s.line(1, 'Kernel Version:', info.kernelVersion);
    s.line(1, 'OS Image:', info.osImage);
    s.line(1, 'Operating System:', info.operatingSystem);
    s.line(1, 'Architecture:', info.architecture);
    if (info.cpuModel) s.line(1, 'CPU Model:', info.cpuModel);
    s.line(1, 'Container Runtime Version:', info.containerRuntimeVersion);
    s.line(1, 'Agent Version:', info.agentVersion);
    s.line(1, 'Contract Version:', String(info.contractVersion));
    s.line(1, 'Boot ID:', info.bootID);
  }
  const active = pods.filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
  s.line(0, 'Non-terminated Pods:', `(${active.length} in total)`);
  if (active.length) {
    s.table(
      1,
      ['Namespace', 'Name', 'Status', 'CPU Requests', 'CPU Limits', 'Memory Requests', 'Memory Limits', 'Age'],
      active.map((p) => {
        const req = sumResources(p, 'requests');
        const lim = sumResources(p, 'limits');
        return [p.metadata.namespace ?? DEFAULT_NAMESPACE, p.metadata.name, podStatusText(p), req.cpu, lim.cpu, req.memory, lim.memory, age(p.metadata.creationTimestamp, now)];
      }),
    );
  }
  describeEvents(s, events, now);
  return s.render();
}

export function describeGeneric(obj: ApiObject): string {
  const s = new Section();
  s.line(0, 'Name:', obj.metadata.name);
  if (obj.metadata.namespace) s.line(0, 'Namespace:', obj.metadata.namespace);
  s.multiline(0, 'Labels:', labelList(obj.metadata.labels));
  s.multiline(0, 'Annotations:', annotationList(obj.metadata.annotations));
  if (obj.kind === 'Namespace') {
    s.line(0, 'Status:', (obj.status as { phase?: string } | undefined)?.phase ?? 'Active');
  } else if (obj.kind === 'Event') {
    const e = obj as unknown as Event;
    s.line(0, 'Involved Object:', `${e.involvedObject.kind.toLowerCase()}/${e.involvedObject.name}`);
    s.line(0, 'Type:', e.type);
    s.line(0, 'Reason:', e.reason);
    s.line(0, 'Message:', e.message);
    s.line(0, 'Source:', e.source?.host ? `${e.source.component}, ${e.source.host}` : (e.source?.component ?? ''));
    s.line(0, 'First Seen:', formatTime(e.firstTimestamp));
    s.line(0, 'Last Seen:', formatTime(e.lastTimestamp));
    s.line(0, 'Count:', String(e.count));
  } else {
    s.line(0, 'CreationTimestamp:', formatTime(obj.metadata.creationTimestamp));
  }
  return s.render();
}

/**
 * Events are an extra for describe: when they cannot be listed, say so on stderr and still
 * describe the object. Failures that break every request (unreachable, unauthorized) propagate.
 */
async function optionalEvents(ctx: CommandContext, load: () => Promise<Event[]>): Promise<Event[] | undefined> {
  try {
    return await load();
  } catch (err) {
    if (err instanceof CliError && FATAL_REASONS.has(err.reason)) throw err;
    ctx.warn(`cannot list events: ${(err as Error).message}`);
    return undefined;
  }
}

async function describeOne(ctx: CommandContext, client: ApiClient, kind: KindInfo, name: string, ns: string): Promise<string> {
  const obj = await client.getOptional<ApiObject>(objectPath(kind, ns, name));
  if (!obj) throw notFound(kind, name);
  const involved = { kind: kind.kind, name, namespace: kind.namespaced ? ns : DEFAULT_NAMESPACE, uid: obj.metadata.uid };
  switch (kind.kind) {
    case 'Pod':
      return describePod(obj as unknown as Pod, await optionalEvents(ctx, () => eventsFor(client, involved)));
    case 'Node': {
      const pods = await client.get<{ items?: Pod[] }>(objectPath(kindInfo('Pod'), undefined), { fieldSelector: `spec.nodeName=${name}` });
      const onNode = (pods?.items ?? []).filter((p) => p.spec?.nodeName === name);
      return describeNode(obj as unknown as Node, onNode, await optionalEvents(ctx, () => eventsFor(client, involved)));
    }
    default:
      return describeGeneric(obj);
  }
}

export function registerDescribe(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('describe')
    .description('show an object in detail, with its recent events')
    .argument('<kind>', 'kind (pod, node, namespace, event), or kind/name')
    .argument('[names...]', 'objects to describe')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds', DEFAULT_NAMESPACE);
  addConnectionOptions(cmd).action(async (kindArg: string, names: string[], opts: { namespace?: string }, command: Command) => {
    const targets = parseResourceArgs([kindArg, ...names]);
    if (targets.some((t) => !t.name)) throw new CliError(`you must specify the name of the ${targets[0]!.kind.singular} to describe`);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    const parts: string[] = [];
    for (const t of targets) parts.push(await describeOne(ctx, client, t.kind, t.name!, ns));
    ctx.io.stdout(parts.join('\n\n'));
  });
}
