import type { Command } from 'commander';
import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { CHANGE_CAUSE_ANNOTATION, chooseUndo, revisionOf, revisionsOf, templatesEqual } from '../api/revisions.js';
import type { PodTemplate } from '../api/template.js';
import { effectiveWaves, waveLabel, type DaemonSet, type Deployment, type ReplicaSet, type WavedRolloutStatus } from '../api/workloads.js';
import type { Node } from '../api/node.js';
import type { Pod } from '../api/pod.js';
import { selectorMatches, selectorString } from '../api/selector.js';
import { prefetchImages } from '../../server/desired/image-catalog.js';
import { CliError } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, eachObject, notFound, parseDuration, type CommandContext } from './context.js';
import { describePodTemplate } from './describe.js';
import { parseTargets, updateObject } from './mutate.js';
import { objectName, qualifiedPlural, renderTable } from './output.js';
import { deadlineSignal, watchObjects } from './watch.js';

export const RESTARTED_AT_ANNOTATION = 'kubectl.kubernetes.io/restartedAt';
/** How often `rollout status` looks at the nodes' fetch progress while a rollout waits for images. */
export const IMAGE_POLL_MS = 2_000;

// ---- status ----

export interface RolloutStatus {
  message: string;
  done: boolean;
  /** The rollout can no longer finish on its own (kubectl exits with this error). */
  error?: string;
}

/** kubectl's DeploymentStatusViewer, message for message. */
export function deploymentRolloutStatus(d: Deployment): RolloutStatus {
  const name = d.metadata.name;
  const waved = wavedRolloutStatus(d);
  if (waved) return waved;
  const st = d.status;
  if ((d.metadata.generation ?? 0) > (st?.observedGeneration ?? 0)) {
    return { message: 'Waiting for deployment spec update to be observed...', done: false };
  }
  const progressing = st?.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded') {
    return { message: '', done: false, error: `deployment "${name}" exceeded its progress deadline` };
  }
  const replicas = d.spec.replicas ?? 1;
  const updated = st?.updatedReplicas ?? 0;
  const total = st?.replicas ?? 0;
  const available = st?.availableReplicas ?? 0;
  if (updated < replicas) {
    return { message: `Waiting for deployment "${name}" rollout to finish: ${updated} out of ${replicas} new replicas have been updated...`, done: false };
  }
  if (total > updated) {
    return { message: `Waiting for deployment "${name}" rollout to finish: ${total - updated} old replicas are pending termination...`, done: false };
  }
  if (available < updated) {
    return { message: `Waiting for deployment "${name}" rollout to finish: ${available} of ${updated} updated replicas are available...`, done: false };
  }
  return { message: `deployment "${name}" successfully rolled out`, done: true };
}

type Waved = DaemonSet | Deployment;
const unitOf = (o: Waved): 'node' | 'replica' => (o.kind === 'DaemonSet' ? 'node' : 'replica');

/**
 * One line for a waved rollout: `wave 2/4 (25%): 12 updated, 10 ready, 2 pending (offline: edge-7,
 * edge-9), waiting: pods Ready for 30s (18s left)`.
 */
export function waveLine(o: Waved, r: WavedRolloutStatus, now = Date.now()): string {
  const cfg = o.spec.drover?.rollout;
  const label = cfg ? waveLabel(effectiveWaves(cfg)[r.wave], unitOf(o)) : '';
  const c = r.counts;
  const offline = r.offlineNodes?.length ? ` (offline: ${r.offlineNodes.join(', ')}${c.offline > r.offlineNodes.length ? `, ${c.offline - r.offlineNodes.length} more` : ''})` : '';
  let why = r.message;
  if (r.waitingUntil) {
    const left = Math.ceil((Date.parse(r.waitingUntil) - now) / 1000);
    if (left > 0) why += ` (${left}s left)`;
  }
  const failed = c.failed ? `, ${c.failed} failed` : '';
  return `wave ${r.wave + 1}/${r.waves}${label ? ` (${label})` : ''}: ${c.updated} updated, ${c.ready} ready, ${c.pending} pending${offline}${failed}, ${why}`;
}

/** A waved rollout's status (spec.drover.rollout); undefined for a workload without one. */
export function wavedRolloutStatus(o: Waved, now = Date.now()): RolloutStatus | undefined {
  const r = o.status?.drover?.rollout;
  if (!o.spec.drover?.rollout || !r) return undefined;
  const what = `${o.kind === 'DaemonSet' ? 'daemon set' : 'deployment'} "${o.metadata.name}"`;
  if ((o.metadata.generation ?? 0) > (o.status?.observedGeneration ?? 0)) {
    return { message: `Waiting for ${o.kind === 'DaemonSet' ? 'daemon set' : 'deployment'} spec update to be observed...`, done: false };
  }
  switch (r.phase) {
    case 'RolledBack':
    case 'Failed':
      return { message: '', done: false, error: `${what} ${r.message.startsWith('rolled back') ? '' : `${r.phase}: `}${r.message}` };
    case 'Complete': {
      if (o.kind === 'Deployment') {
        // The waves are done; the last replicas may still be on their way: kubectl's own checks decide.
        return deploymentRolloutStatus({ ...o, spec: { ...o.spec, drover: undefined } });
      }
      const c = r.counts;
      // Offline nodes (policy wait/skip) already have the revision in their desired state, not running.
      const rest = c.ready < c.total ? ` (ready on ${c.ready} of ${c.total} nodes; offline ones start revision ${r.targetRevision} when they are back)` : '';
      return { message: `${what} successfully rolled out${rest}`, done: true };
    }
    case 'Paused':
      return { message: `Waiting for ${what} rollout to be resumed: ${waveLine(o, r, now)}`, done: false };
    default:
      return { message: `Waiting for ${what} rollout to finish: ${waveLine(o, r, now)}`, done: false };
  }
}

/** kubectl's DaemonSetStatusViewer (a waved rollout: its wave, counts and why it waits). */
export function daemonSetRolloutStatus(ds: DaemonSet): RolloutStatus {
  const name = ds.metadata.name;
  const waved = wavedRolloutStatus(ds);
  if (waved) return waved;
  if ((ds.spec.updateStrategy?.type ?? 'RollingUpdate') !== 'RollingUpdate') {
    return { message: '', done: false, error: 'rollout status is only available for RollingUpdate strategy type' };
  }
  const st = ds.status;
  if ((ds.metadata.generation ?? 0) > (st?.observedGeneration ?? 0)) {
    return { message: 'Waiting for daemon set spec update to be observed...', done: false };
  }
  const desired = st?.desiredNumberScheduled ?? 0;
  const updated = st?.updatedNumberScheduled ?? 0;
  const available = st?.numberAvailable ?? 0;
  if (updated < desired) {
    return { message: `Waiting for daemon set "${name}" rollout to finish: ${updated} out of ${desired} new pods have been updated...`, done: false };
  }
  if (available < desired) {
    return { message: `Waiting for daemon set "${name}" rollout to finish: ${available} of ${desired} updated pods are available...`, done: false };
  }
  return { message: `daemon set "${name}" successfully rolled out`, done: true };
}

// ---- waiting for images (issue 15) ----

/** Node lines shown at most; the rest are counted. */
export const IMAGE_LINES_SHOWN = 20;

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/**
 * Per node where the rollout keeps an old pod until the new image is there (the pod's PREFETCH_ANNOTATION):
 * `node N: fetching IMAGE 12.3/48.0 MB` from the node's reported transfers, `node N: waiting for image
 * IMAGE` when it lists none yet, or the failure the node reported. `pods`: the workload's pods.
 */
export function imageWaitLines(pods: readonly Pod[], nodes: ReadonlyMap<string, Node | undefined>): string[] {
  const lines: string[] = [];
  const seen = new Set<string>();
  const sorted = [...pods].sort((a, b) => (a.spec.nodeName ?? '').localeCompare(b.spec.nodeName ?? '') || a.metadata.name.localeCompare(b.metadata.name));
  for (const p of sorted) {
    const node = p.spec.nodeName;
    if (!node || p.metadata.deletionTimestamp) continue;
    for (const ref of prefetchImages(p.metadata.annotations)) {
      if (seen.has(`${node}\n${ref}`)) continue;
      seen.add(`${node}\n${ref}`);
      const t = nodes.get(node)?.status?.imageTransfers?.find((x) => x.name === ref);
      if (!t) lines.push(`node ${node}: waiting for image ${ref}`);
      else if (t.state === 'failed') lines.push(`node ${node}: fetching ${ref} failed at ${mb(t.bytes)}/${mb(t.total)} MB: ${t.message || 'no reason given'} (retrying; the old pod keeps running)`);
      else if (t.state === 'loading') lines.push(`node ${node}: loading ${ref} (${mb(t.total)} MB fetched)`);
      else lines.push(`node ${node}: fetching ${ref} ${mb(t.bytes)}/${mb(t.total)} MB${t.state === 'waiting' ? ' (queued)' : ''}`);
    }
  }
  if (lines.length > IMAGE_LINES_SHOWN) return [...lines.slice(0, IMAGE_LINES_SHOWN), `and ${lines.length - IMAGE_LINES_SHOWN} more nodes waiting for images`];
  return lines;
}

/** The workload's pods a rollout keeps for images (those carrying a prefetch request). */
export function heldPods(o: ApiObject, pods: readonly Pod[]): Pod[] {
  const held = pods.filter((p) => prefetchImages(p.metadata.annotations).length > 0);
  if (o.kind === 'DaemonSet') return held.filter((p) => (p.metadata.ownerReferences ?? []).some((r) => r.controller && r.uid === o.metadata.uid));
  const sel = (o as unknown as Deployment | DaemonSet).spec.selector;
  return held.filter((p) => selectorMatches(sel, p.metadata.labels));
}

export function rolloutStatusOf(obj: ApiObject): RolloutStatus {
  if (obj.kind === 'Deployment') return deploymentRolloutStatus(obj as unknown as Deployment);
  if (obj.kind === 'DaemonSet') return daemonSetRolloutStatus(obj as unknown as DaemonSet);
  throw new CliError(`no status viewer has been implemented for ${obj.kind}`);
}

/**
 * `rollout pause|resume` on one object: a Deployment's spec.paused, a DaemonSet's spec.drover.paused
 * (which holds its waved rollout's wave; a DaemonSet without one cannot be paused). Returns whether
 * it changed; throws a CliError naming why it cannot.
 */
export function setRolloutPaused(o: Deployment | DaemonSet, paused: boolean): boolean {
  if (o.kind === 'DaemonSet') {
    if (!o.spec.drover?.rollout) throw new CliError(`daemonsets "${o.metadata.name}" has no spec.drover.rollout: only a waved rollout can be paused`);
    if (Boolean(o.spec.drover.paused) === paused) return false;
    if (paused) o.spec.drover.paused = true;
    else delete o.spec.drover.paused;
    return true;
  }
  if (Boolean(o.spec.paused) === paused) return false;
  if (paused) o.spec.paused = true;
  else delete o.spec.paused;
  return true;
}

// ---- history ----

export interface HistoryRow {
  revision: number;
  changeCause?: string;
}

/**
 * REVISION / CHANGE-CAUSE rows. The cause is the ReplicaSet's `kubernetes.io/change-cause`; the
 * current revision falls back to the Deployment's own annotation (Kubernetes copies it onto the
 * new ReplicaSet, so that is what kubectl would show).
 */
export function historyRows(d: Deployment, replicaSets: ReplicaSet[]): HistoryRow[] {
  const current = revisionOf(d);
  return revisionsOf(d, replicaSets).map((rs) => {
    const rev = revisionOf(rs);
    const cause = rs.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION] ?? (rev === current ? d.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION] : undefined);
    return { revision: rev, changeCause: cause };
  });
}

export function historyTable(kind: KindInfo, name: string, rows: HistoryRow[]): string {
  return `${objectName(kind, name)}\n` + renderTable(['REVISION', 'CHANGE-CAUSE'], rows.map((r) => [String(r.revision), r.changeCause || '<none>']));
}

export type UndoPlan =
  | { action: 'rollback'; revision: number; template: PodTemplate; changeCause?: string }
  | { action: 'skip'; revision: number };

/**
 * `rollout undo` as kubectl does it client-side: the template of revision `toRevision`, or of the
 * highest revision below the current one, with its pod-template-hash label removed; `skip` when
 * the Deployment already runs that template.
 */
export function planUndo(d: Deployment, replicaSets: ReplicaSet[], toRevision?: number): UndoPlan {
  const choice = chooseUndo(d, replicaSets, toRevision);
  if (!choice.ok) {
    throw new CliError(choice.reason === 'RevisionNotFound' ? `unable to find specified revision ${toRevision} in history` : `no rollout history found for deployment "${d.metadata.name}"`);
  }
  const { target, revision, template } = choice;
  if (templatesEqual(target.spec.template, d.spec.template)) return { action: 'skip', revision };
  return { action: 'rollback', revision, template, changeCause: target.metadata.annotations?.[CHANGE_CAUSE_ANNOTATION] };
}

// ---- commands ----

interface NsOptions {
  namespace?: string;
}

async function replicaSetsOf(ctxClient: ReturnType<CommandContext['client']>, d: Deployment): Promise<ReplicaSet[]> {
  const list = await ctxClient.get<{ items?: ReplicaSet[] }>(objectPath(kindInfo('ReplicaSet'), d.metadata.namespace ?? DEFAULT_NAMESPACE));
  return list?.items ?? [];
}

/** A --revision / --to-revision value: a revision number, 0 included. */
function revisionFlag(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`invalid ${flag} "${v}": expected a revision number`);
  return n;
}

function parseBool(v: string | undefined, flag: string): boolean | undefined {
  if (v === undefined) return undefined;
  const s = v.replace(/^=/, '').toLowerCase();
  if (['true', '1', 't', 'yes'].includes(s)) return true;
  if (['false', '0', 'f', 'no'].includes(s)) return false;
  throw new CliError(`invalid value "${v}" for ${flag}: expected true or false`);
}

function nsOption(cmd: Command): Command {
  return cmd.option('-n, --namespace <namespace>', 'namespace of the objects', DEFAULT_NAMESPACE);
}

export function registerRollout(program: Command, ctx: CommandContext): void {
  const rollout = program.command('rollout').description('manage the rollout of deployments and daemonsets: status, history, undo, pause, resume, restart');

  // status
  const status = rollout
    .command('status')
    .description('watch a rollout until it completes (deployments, daemonsets)')
    .argument('<args...>', 'deployment/NAME or daemonset/NAME')
    .option('-w, --watch <bool>', 'watch until the rollout completes (default true; -w=false prints the current status)')
    .option('--timeout <duration>', 'give up after this long, e.g. 60s, 5m (default: wait forever)');
  addConnectionOptions(nsOption(status)).action(async (args: string[], opts: NsOptions & { watch?: string; timeout?: string }, command: Command) => {
    const targets = parseTargets(args, 'rollout status', ['Deployment', 'DaemonSet']);
    if (targets.length !== 1) throw new CliError('rollout status takes one object at a time');
    const { kind, name } = targets[0]!;
    const watch = parseBool(opts.watch, '--watch') ?? true;
    const timeoutMs = opts.timeout && opts.timeout !== '0' ? parseDuration(opts.timeout) : undefined;
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    const client = ctx.client(command);
    const obj = await client.getOptional<ApiObject>(objectPath(kind, ns, name));
    if (!obj) throw notFound(kind, name);

    let last = '';
    let lastImages = '';
    /** The per-node image lines, printed when they changed; whether any node is still waiting. */
    const showImages = async (o: ApiObject): Promise<boolean> => {
      const sel = selectorString((o as unknown as Deployment | DaemonSet).spec.selector);
      const pods = heldPods(o, (await client.get<{ items?: Pod[] }>(objectPath(kindInfo('Pod'), ns), sel ? { labelSelector: sel } : undefined))?.items ?? []);
      const nodes = new Map<string, Node | undefined>();
      for (const name of new Set(pods.map((p) => p.spec.nodeName ?? '').filter(Boolean))) {
        if (nodes.size >= IMAGE_LINES_SHOWN) break;
        nodes.set(name, await client.getOptional<Node>(objectPath(kindInfo('Node'), undefined, name)));
      }
      const lines = imageWaitLines(pods, nodes).join('\n');
      if (lines && lines !== lastImages) ctx.io.stdout(`${lines}\n`);
      lastImages = lines;
      return lines !== '';
    };
    let current = obj;
    const show = async (o: ApiObject): Promise<boolean> => {
      current = o;
      const s = rolloutStatusOf(o);
      if (s.message && s.message !== last) ctx.io.stdout(`${s.message}\n`);
      last = s.message;
      // Only images the server serves are waited for; the lines say where each node's fetch stands.
      // A caller who may not read pods or nodes still gets the rollout's own status.
      if (!s.done) await showImages(o).catch(() => false);
      if (s.error) throw new CliError(s.error);
      return s.done;
    };
    if ((await show(obj)) || !watch) return;

    const interrupt = ctx.interrupted();
    const deadline = deadlineSignal(timeoutMs, interrupt);
    // A node's fetch progress changes no workload field (nor does a pod being held for an image): while nodes
    // are waiting, look at them every IMAGE_POLL_MS; otherwise, now and then, for a hold that started meanwhile.
    let polling = false;
    let tick = 0;
    const poll = setInterval(() => {
      if (polling || (!lastImages && ++tick % 5 !== 0)) return;
      polling = true;
      void showImages(current)
        .catch(() => undefined)
        .finally(() => (polling = false));
    }, IMAGE_POLL_MS);
    try {
      for await (const ev of watchObjects(client, kind, {
        namespace: ns,
        fieldSelector: `metadata.name=${name}`,
        resourceVersion: obj.metadata.resourceVersion,
        signal: deadline.signal,
      })) {
        if (ev.type === 'DELETED') throw new CliError(`${qualifiedPlural(kind)} "${name}" was deleted while its rollout was being watched`);
        if (await show(ev.object)) return;
      }
    } finally {
      clearInterval(poll);
      deadline.clear();
    }
    if (deadline.timedOut()) throw new CliError('timed out waiting for the condition');
    // Interrupted: like kubectl, stop quietly.
  });

  // history
  const history = rollout
    .command('history')
    .description('list the revisions of a deployment, or show one with --revision')
    .argument('<args...>', 'deployment/NAME')
    .option('--revision <n>', 'show the pod template of this revision');
  addConnectionOptions(nsOption(history)).action(async (args: string[], opts: NsOptions & { revision?: string }, command: Command) => {
    const targets = parseTargets(args, 'rollout history', ['Deployment']);
    const revision = revisionFlag(opts.revision, '--revision');
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    await eachObject(targets, async ({ kind, name }) => {
      const d = await client.getOptional<Deployment>(objectPath(kind, ns, name));
      if (!d) throw notFound(kind, name);
      const revisions = revisionsOf(d, await replicaSetsOf(client, d));
      if (revision) {
        const rs = revisions.find((r) => revisionOf(r) === revision);
        if (!rs) throw new CliError(`unable to find the specified revision ${revision} for ${objectName(kind, name)}`);
        ctx.io.stdout(`${objectName(kind, name)} with revision #${revision}\n${describePodTemplate(rs.spec.template)}`);
        return;
      }
      ctx.io.stdout(historyTable(kind, name, historyRows(d, revisions)));
    });
  });

  // undo
  const undo = rollout
    .command('undo')
    .description('roll a deployment back to its previous revision (or --to-revision N)')
    .argument('<args...>', 'deployment/NAME')
    .option('--to-revision <n>', 'the revision to roll back to (default: the previous one)');
  addConnectionOptions(nsOption(undo)).action(async (args: string[], opts: NsOptions & { toRevision?: string }, command: Command) => {
    const targets = parseTargets(args, 'rollout undo', ['Deployment']);
    const to = revisionFlag(opts.toRevision, '--to-revision');
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    await eachObject(targets, async ({ kind, name }) => {
      // The ReplicaSets are read once; a conflict on the write only needs the fresh Deployment.
      const rsList = await client.get<{ items?: ReplicaSet[] }>(objectPath(kindInfo('ReplicaSet'), ns));
      const replicaSets = rsList?.items ?? [];
      let result: UndoPlan | undefined;
      await updateObject<Deployment & ApiObject>(client, kind, ns, name, (d) => {
        if (d.spec.paused) {
          throw new CliError(`you cannot rollback a paused deployment; resume it first with 'drover rollout resume ${objectName(kind, name)}' and try again`);
        }
        result = planUndo(d, replicaSets, to || undefined);
        if (result.action === 'skip') return false;
        d.spec.template = result.template;
        if (result.changeCause) d.metadata.annotations = { ...d.metadata.annotations, [CHANGE_CAUSE_ANNOTATION]: result.changeCause };
        return true;
      });
      if (result?.action === 'skip') ctx.io.stdout(`${objectName(kind, name)} skipped rollback (current template already matches revision ${result.revision})\n`);
      else ctx.io.stdout(`${objectName(kind, name)} rolled back\n`);
    });
  });

  // pause / resume: a Deployment's spec.paused; a DaemonSet's spec.drover.paused (holds its waved rollout's wave)
  for (const [verb, paused] of [['pause', true], ['resume', false]] as const) {
    const c = rollout
      .command(verb)
      .description(paused ? 'stop a deployment (or a daemonset\'s waved rollout) from rolling out template changes' : 'let a paused deployment or daemonset roll out again')
      .argument('<args...>', 'deployment/NAME or daemonset/NAME');
    addConnectionOptions(nsOption(c)).action(async (args: string[], opts: NsOptions, command: Command) => {
      const targets = parseTargets(args, `rollout ${verb}`, ['Deployment', 'DaemonSet']);
      const client = ctx.client(command);
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      await eachObject(targets, async ({ kind, name }) => {
        const { changed } = await updateObject<(Deployment | DaemonSet) & ApiObject>(client, kind, ns, name, (o) => setRolloutPaused(o, paused));
        if (changed) ctx.io.stdout(`${objectName(kind, name)} ${paused ? 'paused' : 'resumed'}\n`);
        else if (paused) ctx.io.stdout(`${objectName(kind, name)} already paused\n`);
        else throw new CliError(`${qualifiedPlural(kind)} "${name}" is not paused`);
      });
    });
  }

  // restart
  const restart = rollout
    .command('restart')
    .description('restart the pods of a deployment or daemonset with a rolling update')
    .argument('<args...>', 'deployment/NAME or daemonset/NAME');
  addConnectionOptions(nsOption(restart)).action(async (args: string[], opts: NsOptions, command: Command) => {
    const targets = parseTargets(args, 'rollout restart', ['Deployment', 'DaemonSet']);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    await eachObject(targets, async ({ kind, name }) => {
      await updateObject<ApiObject & { spec: { paused?: boolean; template: PodTemplate } }>(client, kind, ns, name, (o) => {
        if (o.spec.paused) throw new CliError(`can't restart paused ${kind.singular} (run rollout resume first)`);
        const meta = (o.spec.template.metadata ??= {});
        meta.annotations = { ...meta.annotations, [RESTARTED_AT_ANNOTATION]: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') };
        return true;
      });
      ctx.io.stdout(`${objectName(kind, name)} restarted\n`);
    });
  });
}
