import type { Command } from 'commander';
import type { ConfigMap, ResourceQuota, Secret } from '../api/config.js';
import type { Event } from '../api/event.js';
import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import type { Node, Taint } from '../api/node.js';
import type { Container, ContainerStatus, EnvVar, Pod, PodSpec, Probe, Toleration, Volume } from '../api/pod.js';
import { formatCpu, formatMemory, parseCpu, parseMemory } from '../api/quantity.js';
import { parseSelector, selectorString, type LabelSelector } from '../api/selector.js';
import type { PodTemplate } from '../api/template.js';
import { effectiveWaves, GATE_DEFAULTS, waveLabel, type DaemonSet, type Deployment, type Job, type ReplicaSet, type WavedRollout, type WavedRolloutStatus } from '../api/workloads.js';
import { ValidationError } from '../util/errors.js';
import { ApiClient, CliError, FATAL_REASONS } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { byNamespaceName } from './get.js';
import { age, formatTime, jobStatusText, nodeMemoryText, nodeRoles, nodeStatusText, podIP, podStatusText, tabwrite } from './output.js';

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
  /** Raw text lines (ConfigMap values), never aligned. */
  text(s: string): this {
    for (const l of s.replace(/\n$/, '').split('\n')) this.lines.push(l.replace(/\t/g, '    '));
    return this;
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

function header(s: Section, obj: ApiObject, opts: { namespace?: boolean; created?: boolean } = {}): void {
  s.line(0, 'Name:', obj.metadata.name);
  if (opts.namespace ?? true) s.line(0, 'Namespace:', obj.metadata.namespace ?? DEFAULT_NAMESPACE);
  if (opts.created) s.line(0, 'CreationTimestamp:', formatTime(obj.metadata.creationTimestamp));
  s.multiline(0, 'Labels:', labelList(obj.metadata.labels));
  s.multiline(0, 'Annotations:', annotationList(obj.metadata.annotations));
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
  s.rows(1, [
    ['----', '------', '----', '----', '-------'],
    ...events.map((e) => [
      e.type,
      e.reason,
      e.count > 1 ? `${age(e.lastTimestamp, now)} (x${e.count} over ${age(e.firstTimestamp, now)})` : age(e.lastTimestamp, now),
      e.source?.host ? `${e.source.component}, ${e.source.host}` : (e.source?.component ?? ''),
      e.message,
    ]),
  ]);
}

// ---- pods and pod templates ----

function containerState(s: Section, level: number, cs: ContainerStatus): void {
  s.line(level, 'State:', cs.state[0]!.toUpperCase() + cs.state.slice(1));
  if (cs.reason) s.line(level + 1, 'Reason:', cs.reason);
  if (cs.message) s.line(level + 1, 'Message:', cs.message);
  if (cs.state === 'terminated' && cs.exitCode !== undefined) s.line(level + 1, 'Exit Code:', String(cs.exitCode));
  if (cs.startedAt && cs.state !== 'waiting') s.line(level + 1, 'Started:', formatTime(cs.startedAt));
  if (cs.finishedAt && cs.state === 'terminated') s.line(level + 1, 'Finished:', formatTime(cs.finishedAt));
  s.line(level, 'Ready:', cs.ready ? 'True' : 'False');
  s.line(level, 'Restart Count:', String(cs.restartCount));
}

/** kubectl's one-line probe: `http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3`. */
export function probeText(p: Probe): string {
  let action = '';
  if (p.httpGet) action = `http-get ${p.httpGet.scheme.toLowerCase()}://${p.httpGet.host ?? ''}:${p.httpGet.port}${p.httpGet.path}`;
  else if (p.tcpSocket) action = `tcp-socket ${p.tcpSocket.host ?? ''}:${p.tcpSocket.port}`;
  else if (p.exec) action = `exec [${p.exec.command.join(' ')}]`;
  return `${action} delay=${p.initialDelaySeconds}s timeout=${p.timeoutSeconds}s period=${p.periodSeconds}s #success=${p.successThreshold} #failure=${p.failureThreshold}`;
}

function envValue(e: EnvVar): string {
  const from = e.valueFrom;
  if (from?.configMapKeyRef) return `<set to the key '${from.configMapKeyRef.key}' of config map '${from.configMapKeyRef.name}'>  Optional: ${Boolean(from.configMapKeyRef.optional)}`;
  if (from?.secretKeyRef) return `<set to the key '${from.secretKeyRef.key}' in secret '${from.secretKeyRef.name}'>  Optional: ${Boolean(from.secretKeyRef.optional)}`;
  if (from?.fieldRef) return ` (${from.fieldRef.apiVersion ?? 'v1'}:${from.fieldRef.fieldPath})`;
  return e.value ?? '';
}

function describeContainer(s: Section, level: number, c: Container, cs: ContainerStatus | undefined): void {
  const l = level + 1;
  s.line(level, `${c.name}:`);
  if (cs?.containerID) s.line(l, 'Container ID:', cs.containerID);
  s.line(l, 'Image:', c.image);
  if (c.imagePullPolicy) s.line(l, 'Image Pull Policy:', c.imagePullPolicy);
  for (const p of c.ports ?? []) {
    s.line(l, 'Port:', `${p.containerPort}/${p.protocol ?? 'TCP'}`);
    if (p.hostPort) s.line(l, 'Host Port:', `${p.hostPort}/${p.protocol ?? 'TCP'}`);
  }
  for (const [title, list] of [['Command:', c.command], ['Args:', c.args]] as const) {
    if (!list?.length) continue;
    s.line(l, title);
    for (const a of list) s.line(l + 1, a);
  }
  if (cs) containerState(s, l, cs);
  for (const [title, list] of [['Limits:', c.resources?.limits], ['Requests:', c.resources?.requests]] as const) {
    const entries = Object.entries(list ?? {}).filter(([, v]) => v !== undefined);
    if (!entries.length) continue;
    s.line(l, title);
    for (const [k, v] of entries) s.line(l + 1, `${k}:`, String(v));
  }
  for (const [title, p] of [['Liveness:', c.livenessProbe], ['Readiness:', c.readinessProbe], ['Startup:', c.startupProbe]] as const) {
    if (p) s.line(l, title, probeText(p));
  }
  if (c.envFrom?.length) {
    s.line(l, 'Environment Variables from:');
    for (const f of c.envFrom) {
      const [name, kind, optional] = f.configMapRef
        ? [f.configMapRef.name, 'ConfigMap', f.configMapRef.optional]
        : [f.secretRef?.name ?? '', 'Secret', f.secretRef?.optional];
      s.line(l + 1, name, `${kind}${f.prefix ? ` with prefix '${f.prefix}'` : ''}`, `Optional: ${Boolean(optional)}`);
    }
  }
  if (c.env?.length) {
    s.line(l, 'Environment:');
    for (const e of c.env) s.line(l + 1, `${e.name}:`, envValue(e));
  } else {
    s.line(l, 'Environment:', '<none>');
  }
  if (c.volumeMounts?.length) {
    s.line(l, 'Mounts:');
    for (const m of c.volumeMounts) s.line(l + 1, `${m.mountPath} from ${m.name} (${m.readOnly ? 'ro' : 'rw'}${m.subPath ? `,path="${m.subPath}"` : ''})`);
  } else {
    s.line(l, 'Mounts:', '<none>');
  }
  if (c.devices?.length) {
    s.line(l, 'Devices:');
    for (const d of c.devices) s.line(l + 1, `${d.hostPath} -> ${d.containerPath ?? d.hostPath} (${d.permissions ?? 'rwm'})`);
  }
}

function describeVolumes(s: Section, level: number, volumes: Volume[] | undefined): void {
  if (!volumes?.length) {
    s.line(level, 'Volumes:', '<none>');
    return;
  }
  s.line(level, 'Volumes:');
  for (const v of volumes) {
    const l = level + 2;
    s.line(level + 1, `${v.name}:`);
    if (v.hostPath) {
      s.line(l, 'Type:', 'HostPath (bare host directory volume)');
      s.line(l, 'Path:', v.hostPath.path);
      s.line(l, 'HostPathType:', v.hostPath.type ?? '');
    } else if (v.configMap) {
      s.line(l, 'Type:', 'ConfigMap (a volume populated by a ConfigMap)');
      s.line(l, 'Name:', v.configMap.name);
      s.line(l, 'Optional:', String(Boolean(v.configMap.optional)));
    } else if (v.secret) {
      s.line(l, 'Type:', 'Secret (a volume populated by a Secret)');
      s.line(l, 'SecretName:', v.secret.secretName);
      s.line(l, 'Optional:', String(Boolean(v.secret.optional)));
    } else {
      s.line(l, 'Type:', "EmptyDir (a temporary directory that shares a pod's lifetime)");
      s.line(l, 'Medium:', v.emptyDir?.medium ?? '');
      s.line(l, 'SizeLimit:', v.emptyDir?.sizeLimit !== undefined ? String(v.emptyDir.sizeLimit) : '<unset>');
    }
  }
}

/** `key=value:Effect op=Exists for 300s`, kubectl's toleration text. */
export function tolerationText(t: Toleration): string {
  let out = t.key ?? '';
  if (t.value) out += `=${t.value}`;
  if (t.effect) out += `:${t.effect}`;
  if (t.operator === 'Exists') out += out ? ' op=Exists' : 'op=Exists';
  if (t.tolerationSeconds !== undefined) out += ` for ${t.tolerationSeconds}s`;
  return out;
}

function taintText(t: Taint): string {
  return `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`;
}

/** What a pod and a workload's pod template share: containers, volumes, scheduling constraints. */
function describePodSpec(s: Section, level: number, spec: PodSpec, statuses: ContainerStatus[]): void {
  s.line(level, 'Containers:');
  const byName = new Map(statuses.map((cs) => [cs.name, cs]));
  for (const c of spec.containers ?? []) describeContainer(s, level + 1, c, byName.get(c.name));
  describeVolumes(s, level, spec.volumes);
  s.multiline(level, 'Node-Selectors:', labelList(spec.nodeSelector));
  s.multiline(level, 'Tolerations:', (spec.tolerations ?? []).map(tolerationText));
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
  // The pod's own address; the node's is on the Node: line (a bridge pod's is not its node's).
  const ip = podIP(pod);
  s.line(0, 'IP:', ip ?? '');
  if (ip) {
    s.line(0, 'IPs:');
    s.line(1, 'IP:', ip);
  } else s.line(0, 'IPs:', '<none>');
  const owner = pod.metadata.ownerReferences?.find((o) => o.controller) ?? pod.metadata.ownerReferences?.[0];
  if (owner) s.line(0, 'Controlled By:', `${owner.kind}/${owner.name}`);
  s.line(0, 'Restart Policy:', pod.spec.restartPolicy ?? 'Always');
  describePodSpec(s, 0, pod.spec, st?.containerStatuses ?? []);
  if (st?.conditions?.length) {
    s.line(0, 'Conditions:');
    s.line(1, 'Type', 'Status');
    for (const c of st.conditions) s.line(1, c.type, c.status);
  }
  describeEvents(s, events, now);
  return s.render();
}

function describeTemplate(s: Section, t: PodTemplate): void {
  s.line(0, 'Pod Template:');
  s.multiline(1, 'Labels:', labelList(t.metadata?.labels));
  describePodSpec(s, 1, t.spec, []);
}

/** `Pod Template:` as `kubectl rollout history --revision N` prints it: labels, annotations, containers. */
export function describePodTemplate(t: PodTemplate): string {
  const s = new Section();
  s.line(0, 'Pod Template:');
  s.multiline(1, 'Labels:', labelList(t.metadata?.labels));
  if (Object.keys(t.metadata?.annotations ?? {}).length) s.multiline(1, 'Annotations:', annotationList(t.metadata?.annotations));
  describePodSpec(s, 1, t.spec, []);
  return s.render();
}

// ---- nodes ----

function sumResources(pod: Pod, which: 'requests' | 'limits'): { cpu: string; memory: string } {
  let cpu = 0;
  let mem = 0;
  for (const c of pod.spec.containers ?? []) {
    const r = c.resources?.[which];
    // Values came through validation, but a tolerant describe beats a crash on one odd pod.
    try {
      if (r?.cpu !== undefined) cpu += parseCpu(r.cpu);
      if (r?.memory !== undefined) mem += parseMemory(r.memory);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
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
  s.multiline(0, 'Taints:', (node.spec?.taints ?? []).map(taintText));
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
  if (st?.devices?.length) s.multiline(0, 'Devices:', st.devices);
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

// ---- everything else ----

/** The `spec.drover.rollout` block: its waves, gate, offline policy, and where it stands. */
function describeWavedRollout(s: Section, cfg: WavedRollout | undefined, r: WavedRolloutStatus | undefined, o: { paused?: boolean; unit: 'node' | 'replica' }): void {
  if (!cfg) return;
  const gate = { ...GATE_DEFAULTS, ...cfg.gate };
  const waves = effectiveWaves(cfg);
  s.line(0, 'Waved Rollout:');
  s.line(1, 'Waves:', waves.map((w) => waveLabel(w, o.unit)).join(', '));
  s.line(1, 'Gate:', `pods Ready for ${gate.readySeconds}s, max failure ratio ${gate.maxFailureRatio}, timeout ${gate.timeoutSeconds}s`);
  if (o.unit === 'node') s.line(1, 'Offline Nodes:', cfg.offlineNodes ?? 'wait');
  if (o.paused) s.line(1, 'Paused:', 'true');
  if (!r) return;
  s.line(1, 'Phase:', r.phase);
  s.line(1, 'Wave:', `${r.wave + 1}/${r.waves} (${waveLabel(waves[r.wave], o.unit)})`);
  s.line(1, 'Target Revision:', r.targetRevision);
  s.line(1, 'Stable Revision:', r.stableRevision ?? '<none>');
  const c = r.counts;
  const of = o.unit === 'node' ? 'Nodes:' : 'Replicas:';
  s.line(1, of, `${c.total} total, ${c.updated} updated, ${c.ready} ready, ${c.pending} pending,${o.unit === 'node' ? ` ${c.offline} offline,` : ''} ${c.failed} failed`);
  if (r.offlineNodes?.length) s.line(1, 'Offline:', r.offlineNodes.join(', '));
  if (r.waveStartedAt) s.line(1, 'Wave Started:', formatTime(r.waveStartedAt));
  s.line(1, 'Message:', r.message);
}

function selectorText(sel: LabelSelector | undefined): string {
  return sel ? selectorString(sel) || '<none>' : '<none>';
}

/** Workloads, config objects, namespaces and events: kubectl's layout for each, events last. */
export function describeObject(obj: ApiObject, events: Event[] | undefined, now = Date.now()): string {
  const s = new Section();
  switch (obj.kind) {
    case 'Namespace':
      header(s, obj, { namespace: false });
      s.line(0, 'Status:', (obj.status as { phase?: string } | undefined)?.phase ?? 'Active');
      break;
    case 'Deployment': {
      const d = obj as unknown as Deployment;
      const st = d.status;
      header(s, obj, { created: true });
      s.line(0, 'Selector:', selectorText(d.spec.selector));
      s.line(0, 'Replicas:', `${d.spec.replicas} desired | ${st?.updatedReplicas ?? 0} updated | ${st?.replicas ?? 0} total | ${st?.availableReplicas ?? 0} available | ${st?.unavailableReplicas ?? 0} unavailable`);
      s.line(0, 'StrategyType:', d.spec.strategy.type);
      s.line(0, 'MinReadySeconds:', String(d.spec.minReadySeconds));
      if (d.spec.strategy.rollingUpdate) {
        s.line(0, 'RollingUpdateStrategy:', `${d.spec.strategy.rollingUpdate.maxUnavailable} max unavailable, ${d.spec.strategy.rollingUpdate.maxSurge} max surge`);
      }
      describeWavedRollout(s, d.spec.drover?.rollout, d.status?.drover?.rollout, { paused: d.spec.paused, unit: 'replica' });
      describeTemplate(s, d.spec.template);
      if (st?.conditions?.length) {
        s.line(0, 'Conditions:');
        s.table(1, ['Type', 'Status', 'Reason'], st.conditions.map((c) => [c.type, c.status, c.reason ?? '']));
      }
      break;
    }
    case 'ReplicaSet': {
      const r = obj as unknown as ReplicaSet;
      header(s, obj);
      s.line(0, 'Selector:', selectorText(r.spec.selector));
      const owner = r.metadata.ownerReferences?.[0];
      if (owner) s.line(0, 'Controlled By:', `${owner.kind}/${owner.name}`);
      s.line(0, 'Replicas:', `${r.status?.replicas ?? 0} current / ${r.spec.replicas} desired`);
      s.line(0, 'Pods Status:', `${r.status?.readyReplicas ?? 0} Ready / ${r.status?.availableReplicas ?? 0} Available`);
      describeTemplate(s, r.spec.template);
      break;
    }
    case 'DaemonSet': {
      const d = obj as unknown as DaemonSet;
      const st = d.status;
      header(s, obj);
      s.line(0, 'Selector:', selectorText(d.spec.selector));
      s.line(0, 'Desired Number of Nodes Scheduled:', String(st?.desiredNumberScheduled ?? 0));
      s.line(0, 'Current Number of Nodes Scheduled:', String(st?.currentNumberScheduled ?? 0));
      s.line(0, 'Number of Nodes Scheduled with Up-to-date Pods:', String(st?.updatedNumberScheduled ?? 0));
      s.line(0, 'Number of Nodes Scheduled with Available Pods:', String(st?.numberAvailable ?? 0));
      s.line(0, 'Number of Nodes Misscheduled:', String(st?.numberMisscheduled ?? 0));
      describeWavedRollout(s, d.spec.drover?.rollout, d.status?.drover?.rollout, { paused: d.spec.drover?.paused, unit: 'node' });
      describeTemplate(s, d.spec.template);
      break;
    }
    case 'Job': {
      const j = obj as unknown as Job;
      const st = j.status;
      header(s, obj);
      s.line(0, 'Status:', jobStatusText(j));
      s.line(0, 'Parallelism:', String(j.spec.parallelism));
      s.line(0, 'Completions:', String(j.spec.completions));
      s.line(0, 'Backoff Limit:', String(j.spec.backoffLimit));
      if (st?.startTime) s.line(0, 'Start Time:', formatTime(st.startTime));
      if (st?.completionTime) s.line(0, 'Completed At:', formatTime(st.completionTime));
      s.line(0, 'Pods Statuses:', `${st?.active ?? 0} Active / ${st?.succeeded ?? 0} Succeeded / ${st?.failed ?? 0} Failed`);
      describeTemplate(s, j.spec.template);
      break;
    }
    case 'ConfigMap': {
      const c = obj as unknown as ConfigMap;
      header(s, obj);
      s.text('\nData\n====');
      for (const [k, v] of Object.entries(c.data ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
        s.text(`${k}:\n----`);
        s.text(`${v}\n`);
      }
      s.text('\nBinaryData\n====');
      for (const [k, v] of Object.entries(c.binaryData ?? {})) s.text(`${k}: ${Buffer.from(v, 'base64').length} bytes`);
      s.text('');
      break;
    }
    case 'Secret': {
      const sec = obj as unknown as Secret;
      header(s, obj);
      s.text('');
      s.line(0, 'Type:', sec.type ?? 'Opaque');
      s.text('\nData\n====');
      // Sizes only: describe output ends up in terminals and tickets, the values must not.
      for (const [k, v] of Object.entries(sec.data ?? {}).sort(([a], [b]) => a.localeCompare(b))) s.line(0, `${k}:`, `${Buffer.from(v, 'base64').length} bytes`);
      break;
    }
    case 'ResourceQuota': {
      const q = obj as unknown as ResourceQuota;
      header(s, obj);
      s.line(0, 'Resource', 'Used', 'Hard');
      s.line(0, '--------', '----', '----');
      for (const k of Object.keys(q.spec.hard).sort()) {
        s.line(0, k, q.status?.used?.[k] ?? '0', q.status?.hard?.[k] ?? String(q.spec.hard[k as keyof typeof q.spec.hard]));
      }
      break;
    }
    case 'Event': {
      const e = obj as unknown as Event;
      header(s, obj);
      s.line(0, 'Involved Object:', `${e.involvedObject.kind.toLowerCase()}/${e.involvedObject.name}`);
      s.line(0, 'Type:', e.type);
      s.line(0, 'Reason:', e.reason);
      s.line(0, 'Message:', e.message);
      s.line(0, 'Source:', e.source?.host ? `${e.source.component}, ${e.source.host}` : (e.source?.component ?? ''));
      s.line(0, 'First Seen:', formatTime(e.firstTimestamp));
      s.line(0, 'Last Seen:', formatTime(e.lastTimestamp));
      s.line(0, 'Count:', String(e.count));
      return s.render();
    }
    default:
      header(s, obj, { created: true });
  }
  describeEvents(s, events, now);
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
  // Events of cluster-scoped objects (nodes) live in the default namespace, as in Kubernetes.
  const involved = { kind: kind.kind, name, namespace: kind.namespaced ? ns : DEFAULT_NAMESPACE, uid: obj.metadata.uid };
  const events = kind.kind === 'Event' ? undefined : await optionalEvents(ctx, () => eventsFor(client, involved));
  switch (kind.kind) {
    case 'Pod':
      return describePod(obj as unknown as Pod, events);
    case 'Node': {
      const pods = await client.get<{ items?: Pod[] }>(objectPath(kindInfo('Pod'), undefined), { fieldSelector: `spec.nodeName=${name}` });
      const onNode = (pods?.items ?? []).filter((p) => p.spec?.nodeName === name);
      return describeNode(obj as unknown as Node, onNode, events);
    }
    default:
      return describeObject(obj, events);
  }
}

export function registerDescribe(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('describe')
    .description('show an object in detail, with its recent events')
    .argument('<kind>', 'kind (pod, node, deployment, ...), or kind/name')
    .argument('[names...]', 'objects to describe')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds', DEFAULT_NAMESPACE)
    .option('-A, --all-namespaces', 'with no name: every object of the kind in every namespace')
    .option('-l, --selector <selector>', 'with no name: the objects whose labels match, e.g. app in (web,api)');
  addConnectionOptions(cmd).action(async (kindArg: string, names: string[], opts: { namespace?: string; allNamespaces?: boolean; selector?: string }, command: Command) => {
    let targets: Array<{ kind: KindInfo; name?: string; namespace?: string }> = parseResourceArgs([kindArg, ...names]);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    if (targets.length === 1 && !targets[0]!.name) {
      // `describe pods`: every object of the kind in the namespace (or matching -l), as kubectl does.
      const kind = targets[0]!.kind;
      if (opts.selector) parseSelector(opts.selector);
      const all = Boolean(opts.allNamespaces) && kind.namespaced;
      const list = await client.get<{ items?: ApiObject[] }>(objectPath(kind, all ? undefined : ns), { labelSelector: opts.selector });
      const items = (list?.items ?? []).sort(byNamespaceName);
      if (!items.length) {
        ctx.io.stderr(kind.namespaced && !all ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
        return;
      }
      targets = items.map((o) => ({ kind, name: o.metadata.name, namespace: o.metadata.namespace }));
    }
    const parts: string[] = [];
    for (const t of targets) parts.push(await describeOne(ctx, client, t.kind, t.name!, t.namespace ?? ns));
    ctx.io.stdout(parts.join('\n\n'));
  });
}
