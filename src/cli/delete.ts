import type { Command } from 'commander';
import { objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { ApiClient, CliError, dryRunSuffix } from './client.js';
import { addConnectionOptions, addDryRunOption, DEFAULT_NAMESPACE, eachObject, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { identifySources, readManifestSources } from './manifests.js';
import { qualifiedSingular } from './output.js';

interface DeleteOptions {
  filename: string[];
  namespace?: string;
  recursive?: boolean;
  ignoreNotFound?: boolean;
  selector?: string;
  all?: boolean;
  allNamespaces?: boolean;
}

interface Target {
  kind: KindInfo;
  name: string;
  namespace?: string;
}

/** Delete one object; a missing one is the kubectl-style `pods "web" not found` error. */
export async function deleteObject(client: ApiClient, t: Target, ignoreNotFound = false): Promise<boolean> {
  try {
    await client.delete(objectPath(t.kind, t.namespace, t.name));
    return true;
  } catch (err) {
    if (err instanceof CliError && err.code === 404) {
      if (ignoreNotFound) return false;
      throw notFound(t.kind, t.name);
    }
    throw err;
  }
}

export function registerDelete(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('delete')
    .description('delete objects by kind and name, or those described by manifests (-f)')
    .argument('[args...]', 'kind and names (pod web db), or kind/name pairs (pod/web)')
    .option('-f, --filename <path>', 'file, directory or - naming the objects to delete (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('-R, --recursive', 'walk directories given with -f recursively')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds (default "default")')
    .option('--ignore-not-found', 'treat a missing object as deleted')
    .option('-l, --selector <selector>', 'delete the objects of the kind matching this label selector, e.g. app=web')
    .option('--all', 'delete every object of the kind in the namespace')
    .option('-A, --all-namespaces', 'with -l or --all: in every namespace');
  addConnectionOptions(addDryRunOption(cmd)).action(async (args: string[], opts: DeleteOptions, command: Command) => {
    let targets: Target[];
    if (opts.filename.length) {
      if (args.length) throw new CliError('cannot pass both -f and kind/name arguments');
      const sources = await readManifestSources(opts.filename, { recursive: opts.recursive, stdin: ctx.readStdin });
      targets = identifySources(sources).map((t) => ({
        kind: t.kind,
        name: t.name,
        namespace: t.kind.namespaced ? t.namespace || opts.namespace || DEFAULT_NAMESPACE : undefined,
      }));
      if (!targets.length) throw new CliError('no objects passed to delete');
    } else if (opts.selector !== undefined || opts.all) {
      if (opts.selector !== undefined && opts.all) throw new CliError('cannot set --all and --selector at the same time');
      const parsed = parseResourceArgs(args);
      if (parsed.length !== 1 || parsed[0]!.name) throw new CliError(`name cannot be provided when a selector or --all is specified`);
      const kind = parsed[0]!.kind;
      const allNs = Boolean(opts.allNamespaces) && kind.namespaced;
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      const list = await ctx.client(command).get<{ items?: ApiObject[] }>(objectPath(kind, kind.namespaced && !allNs ? ns : undefined), { labelSelector: opts.selector });
      targets = (list?.items ?? []).map((o) => ({ kind, name: o.metadata.name, namespace: kind.namespaced ? o.metadata.namespace || ns : undefined }));
      if (!targets.length) {
        ctx.io.stderr(kind.namespaced && !allNs ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
        return;
      }
      // Objects that went away meanwhile were deleted all the same.
      opts.ignoreNotFound = true;
    } else {
      const parsed = parseResourceArgs(args);
      if (parsed.some((p) => !p.name)) {
        throw new CliError(`resource(s) were provided, but no name was specified: use "drover delete ${args[0]} NAME"`);
      }
      targets = parsed.map((p) => ({
        kind: p.kind,
        name: p.name!,
        namespace: p.kind.namespaced ? opts.namespace || DEFAULT_NAMESPACE : undefined,
      }));
    }

    const client = ctx.client(command);
    await eachObject(targets, async (t) => {
      if (await deleteObject(client, t, opts.ignoreNotFound)) ctx.io.stdout(`${qualifiedSingular(t.kind)} "${t.name}" deleted${dryRunSuffix(client.dryRun)}\n`);
    });
  });
}
