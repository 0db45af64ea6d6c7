import type { Command } from 'commander';
import { kindInfo, objectPath } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import type { Node } from '../api/node.js';
import type { Pod } from '../api/pod.js';
import { ApiClient, CliError, FATAL_REASONS } from './client.js';
import { addConnectionOptions, ErrorList, parseDuration, type CommandContext } from './context.js';
import { updateObject } from './mutate.js';
import { objectName } from './output.js';
import { sleep } from './watch.js';

const NODE = kindInfo('Node');
const POD = kindInfo('Pod');

/** Mark a node (un)schedulable; returns false when it already was. */
export async function setUnschedulable(client: ApiClient, name: string, unschedulable: boolean): Promise<boolean> {
  const { changed } = await updateObject<Node & ApiObject>(client, NODE, undefined, name, (n) => {
    if (Boolean(n.spec?.unschedulable) === unschedulable) return false;
    n.spec = { ...n.spec };
    if (unschedulable) n.spec.unschedulable = true;
    else delete n.spec.unschedulable;
    return true;
  });
  return changed;
}

export interface DrainOptions {
  force?: boolean;
  ignoreDaemonsets?: boolean;
  deleteEmptydirData?: boolean;
}

export interface DrainPlan {
  /** Pods to delete, in order. */
  evict: Pod[];
  /** DaemonSet pods left in place (--ignore-daemonsets). */
  ignored: Pod[];
  /** kubectl's messages for pods that block the drain; empty when it may proceed. */
  errors: string[];
  warnings: string[];
}

export const podRef = (p: Pod): string => `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;

function controllerOf(p: Pod): { kind: string; name: string } | undefined {
  return p.metadata.ownerReferences?.find((o) => o.controller === true);
}

function finished(p: Pod): boolean {
  return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
}

/**
 * kubectl drain's pod filters, in its order: pods already being deleted are skipped; DaemonSet pods
 * need --ignore-daemonsets (and then stay, since their controller would put them right back);
 * pods with emptyDir data need --delete-emptydir-data; pods no controller would re-create need
 * --force. Finished pods may always go. Each refusal lists the pods it concerns.
 */
export function planDrain(pods: Pod[], opts: DrainOptions): DrainPlan {
  const evict: Pod[] = [];
  const ignored: Pod[] = [];
  const blocked = { daemonSet: [] as string[], localStorage: [] as string[], unreplicated: [] as string[] };
  const forced: string[] = [];
  for (const p of pods) {
    if (p.metadata.deletionTimestamp) continue;
    const ctl = controllerOf(p);
    if (ctl?.kind === 'DaemonSet') {
      if (opts.ignoreDaemonsets) ignored.push(p);
      else blocked.daemonSet.push(podRef(p));
      continue;
    }
    let ok = true;
    if (!finished(p) && (p.spec.volumes ?? []).some((v) => v.emptyDir) && !opts.deleteEmptydirData) {
      blocked.localStorage.push(podRef(p));
      ok = false;
    }
    if (!ctl && !finished(p)) {
      if (opts.force) forced.push(podRef(p));
      else {
        blocked.unreplicated.push(podRef(p));
        ok = false;
      }
    }
    if (ok) evict.push(p);
  }
  const errors: string[] = [];
  if (blocked.unreplicated.length) errors.push(`cannot delete Pods that declare no controller (use --force to override): ${blocked.unreplicated.join(', ')}`);
  if (blocked.daemonSet.length) errors.push(`cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ${blocked.daemonSet.join(', ')}`);
  if (blocked.localStorage.length) errors.push(`cannot delete Pods with local storage (use --delete-emptydir-data to override): ${blocked.localStorage.join(', ')}`);
  const warnings: string[] = [];
  if (ignored.length) warnings.push(`ignoring DaemonSet-managed Pods: ${ignored.map(podRef).join(', ')}`);
  if (forced.length) warnings.push(`deleting Pods that declare no controller: ${forced.join(', ')}`);
  return { evict, ignored, errors, warnings };
}

/** The pods bound to `node`. */
export async function podsOnNode(client: ApiClient, node: string): Promise<Pod[]> {
  const list = await client.get<{ items?: Pod[] }>(objectPath(POD, undefined), { fieldSelector: `spec.nodeName=${node}` });
  return (list?.items ?? []).filter((p) => p.spec?.nodeName === node);
}

/** True once the pod is gone (or replaced by another of the same name). */
/** Deletes the pod; one already gone is fine. */
export async function evict(client: ApiClient, p: Pod): Promise<void> {
  try {
    await client.delete(objectPath(POD, p.metadata.namespace, p.metadata.name));
  } catch (err) {
    if (!(err instanceof CliError && err.code === 404)) throw err;
  }
}

export async function podGone(client: ApiClient, p: Pod): Promise<boolean> {
  const cur = await client.getOptional<Pod>(objectPath(POD, p.metadata.namespace, p.metadata.name));
  return !cur || (p.metadata.uid !== undefined && cur.metadata.uid !== p.metadata.uid);
}

export function registerNodeCommands(program: Command, ctx: CommandContext): void {
  for (const [verb, unschedulable] of [['cordon', true], ['uncordon', false]] as const) {
    const cmd = program
      .command(verb)
      .description(unschedulable ? 'mark nodes unschedulable: no new pods are placed on them' : 'mark nodes schedulable again')
      .argument('<nodes...>', 'node names (or node/NAME)');
    addConnectionOptions(cmd).action(async (nodes: string[], _opts: unknown, command: Command) => {
      const client = ctx.client(command);
      const errors = new ErrorList();
      for (const arg of nodes) {
        const name = nodeName(arg);
        try {
          const changed = await setUnschedulable(client, name, unschedulable);
          ctx.io.stdout(`${objectName(NODE, name)} ${changed ? '' : 'already '}${verb}ed\n`);
        } catch (err) {
          if (err instanceof CliError && FATAL_REASONS.has(err.reason)) throw err;
          errors.add(err);
        }
      }
      errors.throwIfAny();
    });
  }

  const drain = program
    .command('drain')
    .description('cordon a node and delete its pods so their controllers re-create them elsewhere')
    .argument('<node>', 'node name (or node/NAME)')
    .option('--ignore-daemonsets', 'leave DaemonSet-managed pods in place (they would be re-created on the node anyway)')
    .option('--force', 'also delete pods that no controller will re-create')
    .option('--delete-emptydir-data', 'also delete pods using emptyDir volumes (their data is lost)')
    .option('--timeout <duration>', 'give up waiting for the pods to go after this long (default: wait forever)');
  addConnectionOptions(drain).action(async (arg: string, opts: DrainOptions & { timeout?: string }, command: Command) => {
    const name = nodeName(arg);
    const timeoutMs = opts.timeout && opts.timeout !== '0' ? parseDuration(opts.timeout) : undefined;
    const client = ctx.client(command);
    const changed = await setUnschedulable(client, name, true);
    ctx.io.stdout(`${objectName(NODE, name)} ${changed ? '' : 'already '}cordoned\n`);

    const plan = planDrain(await podsOnNode(client, name), opts);
    if (plan.errors.length) throw new CliError(`unable to drain node "${name}" due to error: ${plan.errors.join(', ')}`);
    for (const w of plan.warnings) ctx.warn(w);

    const deadline = timeoutMs ? Date.now() + timeoutMs : Infinity;
    const pending = new Set<Pod>();
    for (const p of plan.evict) {
      await evict(client, p);
      pending.add(p);
    }
    const interrupt = ctx.interrupted();
    while (pending.size) {
      for (const p of [...pending]) {
        if (await podGone(client, p)) {
          pending.delete(p);
          ctx.io.stdout(`${objectName(POD, p.metadata.name)} evicted\n`);
        }
      }
      if (!pending.size) break;
      if (interrupt.aborted) throw new CliError(`drain of node "${name}" interrupted; pods still terminating: ${[...pending].map(podRef).join(', ')}`);
      if (Date.now() >= deadline) {
        throw new CliError(`drain did not complete within ${opts.timeout}: pods still terminating: ${[...pending].map(podRef).join(', ')}`);
      }
      await sleep(500, interrupt);
    }
    ctx.io.stdout(`${objectName(NODE, name)} drained\n`);
  });
}

function nodeName(arg: string): string {
  if (!arg.includes('/')) return arg;
  const [k, n, ...rest] = arg.split('/');
  if (!n || rest.length || !['node', 'nodes', 'no'].includes(k!.toLowerCase())) throw new CliError(`expected a node name or node/NAME, got "${arg}"`);
  return n;
}
