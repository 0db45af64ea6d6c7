/**
 * What each MQTT command does: a small function over an ApiClient, built from the CLI's own functions,
 * so a command makes the same HTTP calls `drover VERB` makes (and meets the same checks, in the API).
 */
import { objectPath, type KindInfo } from '../../src/api/kinds.js';
import { kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import type { Pod } from '../../src/api/pod.js';
import { CHANGE_CAUSE_ANNOTATION } from '../../src/api/revisions.js';
import type { PodTemplate } from '../../src/api/template.js';
import type { DaemonSet, Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { applyObject, targetObject, type ApplyResult } from '../../src/cli/apply.js';
import { ApiClient, CliError } from '../../src/cli/client.js';
import { DEFAULT_NAMESPACE, resolveKind } from '../../src/cli/context.js';
import { deleteObject } from '../../src/cli/delete.js';
import { evict, planDrain, podGone, podRef, podsOnNode, setUnschedulable } from '../../src/cli/drain.js';
import { validateSources, type ManifestSource } from '../../src/cli/manifests.js';
import { updateObject } from '../../src/cli/mutate.js';
import { objectName } from '../../src/cli/output.js';
import { planUndo, RESTARTED_AT_ANNOTATION, rolloutStatusOf, setRolloutPaused, type UndoPlan } from '../../src/cli/rollout.js';
import { SCALE_FIELD } from '../../src/cli/scale.js';
import { sleep } from '../../src/cli/watch.js';
import { assertManifestBounds } from '../../src/api/manifest.js';
import { DRAIN_DEFAULT_SECONDS, LOGS_DEFAULT_LINES, LOGS_MAX_BYTES, MAX_MANIFEST_DOCUMENTS, MAX_MANIFEST_FLOW_DEPTH, type CommandArgs, type CommandVerb } from '../../src/contract/commands.js';
import type { Resource, Verb as ApiVerb } from '../auth/roles.js';
import { TimeoutError, ValidationError } from '../../src/util/errors.js';

/** A verb's argument that is well-formed JSON but names nothing usable (an unknown kind): 422 naming it. */
function invalidArg(field: string, message: string): ValidationError {
  return new ValidationError([{ field, message }], 'invalid request');
}

function kindArg(name: string, allowed?: string[]): KindInfo {
  let kind: KindInfo;
  try {
    kind = resolveKind(name);
  } catch (err) {
    throw invalidArg('kind', (err as Error).message);
  }
  if (allowed && !allowed.includes(kind.kind)) throw invalidArg('kind', `must be one of ${allowed.map((k) => kindInfo(k).singular).join(', ')}, got "${name}"`);
  return kind;
}

const nsOf = (kind: KindInfo, namespace: string | undefined) => (kind.namespaced ? namespace ?? DEFAULT_NAMESPACE : undefined);
const ref = (kind: KindInfo, name: string, namespace: string | undefined) => ({ kind: kind.kind, name, ...(namespace ? { namespace } : {}) });

type Verb<V extends CommandVerb> = (client: ApiClient, args: CommandArgs<V>) => Promise<unknown>;

async function list(client: ApiClient, a: CommandArgs<'list'>): Promise<unknown> {
  const kind = kindArg(a.kind);
  const ns = a.allNamespaces ? undefined : nsOf(kind, a.namespace);
  return client.get(objectPath(kind, ns), { labelSelector: a.labelSelector, fieldSelector: a.fieldSelector, limit: a.limit, continue: a.continue });
}

/** Manifest text (YAML or JSON, one or more documents), one object, or a list of them → sources as `apply -f` reads them. */
function manifestSources(m: CommandArgs<'apply'>['manifest']): ManifestSource[] {
  if (typeof m === 'string') return [{ name: 'manifest', text: m }];
  if (Array.isArray(m)) return m.map((o, i) => ({ name: `manifest[${i}]`, text: JSON.stringify(o) }));
  return [{ name: 'manifest', text: JSON.stringify(m) }];
}

async function apply(client: ApiClient, a: CommandArgs<'apply'>): Promise<unknown> {
  const sources = manifestSources(a.manifest);
  // Parsing runs on the server's only thread: what it may cost is checked on the text first.
  for (const src of sources) assertManifestBounds(src.text, { maxDocuments: MAX_MANIFEST_DOCUMENTS, maxFlowDepth: MAX_MANIFEST_FLOW_DEPTH }, 'manifest');
  // Every document is validated before the first is sent: a bad one changes nothing.
  const items = validateSources(sources);
  if (!items.length) throw invalidArg('manifest', 'no objects in the manifest');
  if (items.length > MAX_MANIFEST_DOCUMENTS) throw invalidArg('manifest', `more than ${MAX_MANIFEST_DOCUMENTS} objects (${items.length}); apply it in parts`);
  const prepared = items.map((item) => ({ item, obj: targetObject(item, a.namespace) }));
  const results: Array<{ kind: string; name: string; namespace?: string; result: ApplyResult; warnings?: string[] }> = [];
  for (const { item, obj } of prepared) {
    let result: ApplyResult;
    try {
      result = await applyObject(client, obj, item);
    } catch (err) {
      // The API's own error, with the object it was about and what was applied before it.
      const done = results.map((r) => `${r.kind}/${r.name} ${r.result}`).join(', ');
      if (err instanceof Error) err.message = `${objectName(item.kind, obj.metadata.name)}: ${err.message}${done ? ` (applied before it: ${done})` : ''}`;
      throw err;
    }
    const warnings = [...new Set(item.warnings)];
    results.push({ ...ref(item.kind, obj.metadata.name, obj.metadata.namespace), result, ...(warnings.length ? { warnings } : {}) });
  }
  return { objects: results };
}

async function remove(client: ApiClient, a: CommandArgs<'delete'>): Promise<unknown> {
  const kind = kindArg(a.kind);
  const namespace = nsOf(kind, a.namespace);
  await deleteObject(client, { kind, name: a.name, namespace });
  return { ...ref(kind, a.name, namespace), deleted: true };
}

async function scale(client: ApiClient, a: CommandArgs<'scale'>): Promise<unknown> {
  const kind = kindArg(a.kind, Object.keys(SCALE_FIELD));
  const field = SCALE_FIELD[kind.kind]!;
  const namespace = nsOf(kind, a.namespace);
  const { changed } = await updateObject<ApiObject & { spec: Record<string, unknown> }>(client, kind, namespace, a.name, (obj) => {
    const now = Number(obj.spec[field] ?? 1);
    if (a.currentReplicas !== undefined && now !== a.currentReplicas) throw new CliError(`expected ${field} to be ${a.currentReplicas}, was ${now}`, { code: 409, reason: 'Conflict' });
    if (now === a.replicas) return false;
    obj.spec[field] = a.replicas;
    return true;
  });
  return { ...ref(kind, a.name, namespace), [field]: a.replicas, changed };
}

async function rolloutStatus(client: ApiClient, a: CommandArgs<'rollout-status'>): Promise<unknown> {
  const kind = kindArg(a.kind, ['Deployment', 'DaemonSet']);
  const namespace = nsOf(kind, a.namespace);
  const obj = await client.get<ApiObject>(objectPath(kind, namespace, a.name));
  const s = rolloutStatusOf(obj);
  const drover = (obj.status as { drover?: { rollout?: unknown } } | undefined)?.drover?.rollout;
  return { ...ref(kind, a.name, namespace), done: s.done, message: s.error ?? s.message, ...(s.error ? { failed: true } : {}), ...(drover ? { waves: drover } : {}) };
}

async function rolloutUndo(client: ApiClient, a: CommandArgs<'rollout-undo'>): Promise<unknown> {
  const kind = kindArg(a.kind, ['Deployment']);
  const namespace = nsOf(kind, a.namespace)!;
  const replicaSets = (await client.get<{ items?: ReplicaSet[] }>(objectPath(kindInfo('ReplicaSet'), namespace)))?.items ?? [];
  let plan: UndoPlan | undefined;
  await updateObject<Deployment & ApiObject>(client, kind, namespace, a.name, (d) => {
    if (d.spec.paused) throw new CliError(`you cannot roll back a paused deployment; resume it first (rollout-resume) and try again`, { code: 409, reason: 'Conflict' });
    plan = planUndo(d, replicaSets, a.toRevision);
    if (plan.action === 'skip') return false;
    d.spec.template = plan.template;
    if (plan.changeCause) d.metadata.annotations = { ...d.metadata.annotations, [CHANGE_CAUSE_ANNOTATION]: plan.changeCause };
    return true;
  });
  return { ...ref(kind, a.name, namespace), revision: plan!.revision, rolledBack: plan!.action === 'rollback' };
}

/** A Deployment's rollout, or a DaemonSet's waved rollout (the CLI's one rule, setRolloutPaused). */
function setPaused(paused: boolean): Verb<'rollout-pause'> {
  return async (client, a) => {
    const kind = kindArg(a.kind, ['Deployment', 'DaemonSet']);
    const namespace = nsOf(kind, a.namespace);
    const { changed } = await updateObject<(Deployment | DaemonSet) & ApiObject>(client, kind, namespace, a.name, (o) => setRolloutPaused(o, paused));
    return { ...ref(kind, a.name, namespace), paused, changed };
  };
}

async function rolloutRestart(client: ApiClient, a: CommandArgs<'rollout-restart'>): Promise<unknown> {
  const kind = kindArg(a.kind, ['Deployment', 'DaemonSet']);
  const namespace = nsOf(kind, a.namespace);
  const restartedAt = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  await updateObject<ApiObject & { spec: { paused?: boolean; template: PodTemplate } }>(client, kind, namespace, a.name, (o) => {
    if (o.spec.paused) throw new CliError(`can't restart paused ${kind.singular} (rollout-resume it first)`, { code: 409, reason: 'Conflict' });
    const meta = (o.spec.template.metadata ??= {});
    meta.annotations = { ...meta.annotations, [RESTARTED_AT_ANNOTATION]: restartedAt };
    return true;
  });
  return { ...ref(kind, a.name, namespace), restartedAt };
}

function cordon(unschedulable: boolean): Verb<'cordon'> {
  return async (client, a) => ({ node: a.node, unschedulable, changed: await setUnschedulable(client, a.node, unschedulable) });
}

const POD = kindInfo('Pod');

/** `drain`: cordon, then delete the pods kubectl's rules let go, and wait (bounded) until they are gone. */
async function drain(client: ApiClient, a: CommandArgs<'drain'>): Promise<unknown> {
  const cordoned = await setUnschedulable(client, a.node, true);
  const plan = planDrain(await podsOnNode(client, a.node), a);
  if (plan.errors.length) throw new CliError(`unable to drain node "${a.node}": ${plan.errors.join(', ')}`, { code: 409, reason: 'Conflict' });
  for (const p of plan.evict) await evict(client, p);
  const timeoutSeconds = a.timeoutSeconds ?? DRAIN_DEFAULT_SECONDS;
  const deadline = Date.now() + timeoutSeconds * 1000;
  let pending = plan.evict;
  for (;;) {
    const still: Pod[] = [];
    for (const p of pending) if (!(await podGone(client, p))) still.push(p);
    pending = still;
    if (!pending.length) break;
    if (Date.now() >= deadline) throw new TimeoutError(`drain of node "${a.node}" did not complete within ${timeoutSeconds}s: pods still terminating: ${pending.map(podRef).join(', ')}`);
    await sleep(500);
  }
  return { node: a.node, cordoned, evicted: plan.evict.map(podRef), ignored: plan.ignored.map(podRef), warnings: plan.warnings };
}

/** `logs`: the last lines of a container's log, at most LOGS_MAX_LINES lines and LOGS_MAX_BYTES bytes. */
async function logs(client: ApiClient, a: CommandArgs<'logs'>): Promise<unknown> {
  const namespace = a.namespace ?? DEFAULT_NAMESPACE;
  const tailLines = a.tailLines ?? LOGS_DEFAULT_LINES;
  const text = await client.getText(`${objectPath(POD, namespace, a.pod)}/log`, { container: a.container, tailLines });
  const bytes = Buffer.from(text, 'utf8');
  let out = text;
  if (bytes.length > LOGS_MAX_BYTES) {
    // The newest bytes, from the first whole line among them.
    const tail = bytes.subarray(bytes.length - LOGS_MAX_BYTES).toString('utf8');
    out = tail.slice(tail.indexOf('\n') + 1);
  }
  return { pod: a.pod, namespace, ...(a.container ? { container: a.container } : {}), tailLines, truncated: out.length !== text.length, log: out };
}

async function fleetStatus(client: ApiClient, a: CommandArgs<'fleet-status'>): Promise<unknown> {
  return client.get('/drover/v1/fleet/status', { labelSelector: a.labelSelector, site: a.site, state: a.state });
}

/** Each verb of COMMAND_VERBS and what it does. */
export const VERBS: { [V in CommandVerb]: Verb<V> } = {
  get: (client, a) => {
    if (!a.name) return list(client, a);
    const kind = kindArg(a.kind);
    return client.get(objectPath(kind, nsOf(kind, a.namespace), a.name));
  },
  list,
  apply,
  delete: remove,
  scale,
  'rollout-status': rolloutStatus,
  'rollout-undo': rolloutUndo,
  'rollout-pause': setPaused(true),
  'rollout-resume': setPaused(false),
  'rollout-restart': rolloutRestart,
  cordon: cordon(true),
  uncordon: cordon(false),
  drain,
  logs,
  'fleet-status': fleetStatus,
};

/**
 * Verbs whose work before their first API call is costly (apply parses a manifest of up to 1 MiB), and
 * the right the API will ask of them: the door checks the token and this right first, with the same
 * rule (server/auth/roles.ts), so a caller who may not write never makes the server parse.
 */
export interface Preauthorization {
  verb: ApiVerb;
  resource: Resource;
}
export const PREAUTHORIZED: { [V in CommandVerb]?: (args: CommandArgs<V>) => Preauthorization } = {
  apply: (a) => ({ verb: 'create', resource: { resource: 'objects', ...(a.namespace ? { namespace: a.namespace } : {}) } }),
};

/** Verbs that only read: they are logged at debug level, the others at info. */
export const READ_ONLY_VERBS: ReadonlySet<CommandVerb> = new Set(['get', 'list', 'rollout-status', 'logs', 'fleet-status']);
