import type { Command } from 'commander';
import { normalizeSecret, type Secret } from '../api/config.js';
import { objectPath } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { canonicalJson } from '../util/canonical-json.js';
import { isAlreadyExists } from '../util/errors.js';
import { ApiClient, CliError, dryRunSuffix, FATAL_REASONS } from './client.js';
import { addConnectionOptions, addDryRunOption, DEFAULT_NAMESPACE, dryRunOf, ErrorList, type CommandContext } from './context.js';
import { readManifestSources, validateSources, type LoadedObject } from './manifests.js';
import { CONFLICT, isStaleWrite, retryConflicts } from './mutate.js';
import { objectName, qualifiedPlural } from './output.js';

export type ApplyResult = 'created' | 'configured' | 'unchanged';

interface ApplyOptions {
  filename: string[];
  namespace?: string;
  recursive?: boolean;
}

/** Metadata the server owns; sending stale copies would only invite conflicts. */
const SERVER_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp'] as const;

function emptyToUndefined(m: Record<string, string> | undefined): Record<string, string> | undefined {
  return m && Object.keys(m).length ? m : undefined;
}

/** What apply manages: every top-level field but metadata/status/apiVersion, plus labels and annotations. */
function managedContent(o: ApiObject): string {
  // A Secret's stringData is stored merged into data: compare in that stored form.
  const obj = o.kind === 'Secret' ? (normalizeSecret(o as unknown as Secret) as unknown as ApiObject) : o;
  const { metadata, status: _status, apiVersion: _apiVersion, kind: _kind, ...rest } = obj;
  return canonicalJson({ rest, labels: emptyToUndefined(metadata.labels), annotations: emptyToUndefined(metadata.annotations) });
}

/** True when applying `desired` over `current` would change nothing apply manages. */
export function isUnchanged(desired: ApiObject, current: ApiObject): boolean {
  return managedContent(desired) === managedContent(current);
}

/** Annotation keys that controllers write (e.g. deployment.kubernetes.io/revision). */
const SYSTEM_ANNOTATION = /(^|\.)(kubernetes\.io|drover\.io)\//;

/**
 * Fields the system sets after creation and a manifest normally leaves out. Keeping the current
 * value stops a re-apply from undoing them: a Pod's node binding belongs to the scheduler, and
 * system annotations to controllers. (Without kubectl's last-applied record a two-way apply cannot
 * tell these from fields the user deleted, so only system-owned ones are kept.)
 */
export function keepSystemFields(desired: ApiObject, current: ApiObject): ApiObject {
  const out = structuredClone(desired);
  for (const [k, v] of Object.entries(current.metadata.annotations ?? {})) {
    if (SYSTEM_ANNOTATION.test(k) && !(k in (out.metadata.annotations ?? {}))) out.metadata.annotations = { ...out.metadata.annotations, [k]: v };
  }
  if (out.kind === 'Pod') {
    const spec = out.spec as { nodeName?: string } | undefined;
    const curNode = (current.spec as { nodeName?: string } | undefined)?.nodeName;
    if (spec && !spec.nodeName && curNode) spec.nodeName = curNode;
  }
  return out;
}

/**
 * Create or update one object. Updates carry the resourceVersion just read; a concurrent writer
 * (an agent reporting status, a controller writing a Deployment's status while it scales) makes the
 * PUT conflict, so read and retry (for as long as `scale` does: five quick rounds were lost in CI).
 */
export async function applyObject(client: ApiClient, obj: ApiObject, item: Pick<LoadedObject, 'kind'>): Promise<ApplyResult> {
  const { kind } = item;
  const path = objectPath(kind, obj.metadata.namespace, obj.metadata.name);
  return retryConflicts<ApplyResult>(
    async () => {
      const current = await client.getOptional<ApiObject>(path);
      if (!current) {
        try {
          await client.create(objectPath(kind, obj.metadata.namespace), obj);
          return 'created';
        } catch (err) {
          // Someone created it between our GET and POST: go round and update instead.
          if (isAlreadyExists(err)) return CONFLICT;
          throw err;
        }
      }
      const desired = keepSystemFields(obj, current);
      if (isUnchanged(desired, current)) return 'unchanged';
      desired.metadata.resourceVersion = current.metadata.resourceVersion;
      try {
        await client.replace(path, desired);
        return 'configured';
      } catch (err) {
        if (isStaleWrite(err)) return CONFLICT;
        throw err;
      }
    },
    () => new CliError(`${qualifiedPlural(kind)} "${obj.metadata.name}" kept changing while being applied; try again`, { code: 409, reason: 'Conflict' }),
  );
}

/**
 * Prepare a validated manifest object for sending: namespace from the manifest, else -n, else
 * default; a manifest namespace that contradicts an explicit -n is an error, as in kubectl.
 */
export function targetObject(item: LoadedObject, namespaceFlag: string | undefined): ApiObject {
  const obj = structuredClone(item.object);
  for (const k of SERVER_METADATA) delete obj.metadata[k];
  if (item.kind.namespaced) {
    const fromManifest = obj.metadata.namespace;
    if (fromManifest && namespaceFlag && fromManifest !== namespaceFlag) {
      throw new CliError(
        `the namespace from the provided object "${fromManifest}" does not match the namespace "${namespaceFlag}". You must pass '--namespace=${fromManifest}' to perform this operation.`,
      );
    }
    obj.metadata.namespace = fromManifest || namespaceFlag || DEFAULT_NAMESPACE;
  }
  return obj;
}

export function registerApply(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('apply')
    .description('create or update objects from manifests (YAML or JSON, multi-document)')
    .option('-f, --filename <path>', 'file, directory of .yaml/.yml/.json, or - for stdin (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('-R, --recursive', 'walk directories given with -f recursively')
    .option('-n, --namespace <namespace>', 'namespace for objects that do not name one (default "default")');
  addConnectionOptions(addDryRunOption(cmd)).action(async (opts: ApplyOptions, command: Command) => {
    const suffix = dryRunSuffix(dryRunOf(command));
    const sources = await readManifestSources(opts.filename, { recursive: opts.recursive, stdin: ctx.readStdin });
    // Validate everything first: nothing is sent unless every document is well-formed.
    const items = validateSources(sources);
    if (!items.length) throw new CliError('no objects passed to apply');
    const prepared = items.map((item) => ({ item, obj: targetObject(item, opts.namespace) }));

    const client = ctx.client(command);
    const errors = new ErrorList();
    for (const { item, obj } of prepared) {
      const display = objectName(item.kind, obj.metadata.name);
      for (const w of new Set(item.warnings)) {
        ctx.warn(`${display}: ${w}`);
        // The server finds the same ignored fields and says so in Warning headers: shown once, here.
        ctx.markWarned(w);
      }
      try {
        const result = await applyObject(client, obj, item);
        ctx.io.stdout(`${display} ${result}${suffix}\n`);
      } catch (err) {
        if (err instanceof CliError && FATAL_REASONS.has(err.reason)) throw err;
        errors.add(new CliError(`error when applying ${display} from "${item.source}": ${(err as Error).message}`));
      }
    }
    errors.throwIfAny();
  });
}
