import type { Command } from 'commander';
import type { ApiObject } from '../api/meta.js';
import { CliError, dryRunSuffix } from './client.js';
import { addConnectionOptions, addDryRunOption, DEFAULT_NAMESPACE, eachObject, parseResourceArgs, type CommandContext } from './context.js';
import { updateObject } from './mutate.js';
import { objectName } from './output.js';

export interface MetadataChanges {
  set: Map<string, string>;
  remove: string[];
}

/** `a=1 b- c=` after the resource arguments: values to set (an empty value is allowed) and keys to remove. */
export function parseMetadataArgs(args: string[], what: 'label' | 'annotation'): { resources: string[]; changes: MetadataChanges } {
  const resources: string[] = [];
  const set = new Map<string, string>();
  const remove: string[] = [];
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq > 0) {
      set.set(a.slice(0, eq), a.slice(eq + 1));
    } else if (a.endsWith('-') && a.length > 1) {
      remove.push(a.slice(0, -1));
    } else if (eq === 0) {
      throw new CliError(`invalid ${what} "${a}": expected KEY=VALUE or KEY-`);
    } else {
      if (set.size || remove.length) throw new CliError(`all resources must be specified before ${what} changes: ${a}`);
      resources.push(a);
    }
  }
  if (!resources.length) throw new CliError('one or more resources must be specified as <resource> <name> or <resource>/<name>');
  if (!set.size && !remove.length) throw new CliError(`at least one ${what} update is required`);
  for (const k of remove) if (set.has(k)) throw new CliError(`can not both modify and remove the ${what} "${k}" in the same command`);
  return { resources, changes: { set, remove } };
}

/** Apply the changes to a map; refuses to change an existing value unless `overwrite`. Returns the new map and whether it changed. */
export function applyMetadataChanges(
  cur: Record<string, string> | undefined,
  changes: MetadataChanges,
  overwrite: boolean,
): { next: Record<string, string> | undefined; changed: boolean } {
  const next = { ...cur };
  let changed = false;
  for (const [k, v] of changes.set) {
    if (k in next && next[k] !== v && !overwrite) throw new CliError(`'${k}' already has a value (${next[k]}), and --overwrite is false`);
    if (next[k] !== v) changed = true;
    next[k] = v;
  }
  for (const k of changes.remove) {
    if (k in next) {
      delete next[k];
      changed = true;
    }
  }
  return { next: Object.keys(next).length ? next : undefined, changed };
}

export function registerLabelCommands(program: Command, ctx: CommandContext): void {
  for (const [verb, what, field, past] of [
    ['label', 'label', 'labels', 'labeled'],
    ['annotate', 'annotation', 'annotations', 'annotated'],
  ] as const) {
    const cmd = program
      .command(verb)
      .description(`set or remove ${field} of objects: ${verb} deployment/web key=value other-`)
      .argument('<args...>', `resources (pod web, or deployment/web) followed by KEY=VALUE to set or KEY- to remove`)
      .option('--overwrite', `allow changing the value of an existing ${what}`)
      .option('-n, --namespace <namespace>', 'namespace of the objects', DEFAULT_NAMESPACE);
    addConnectionOptions(addDryRunOption(cmd)).action(async (args: string[], opts: { overwrite?: boolean; namespace?: string }, command: Command) => {
      const { resources, changes } = parseMetadataArgs(args, what);
      const targets = parseResourceArgs(resources);
      if (targets.some((t) => !t.name)) throw new CliError(`resource(s) were provided, but no name was specified: use "drover ${verb} ${resources[0]} NAME ..."`);
      const client = ctx.client(command);
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      await eachObject(targets, async (t) => {
        const { changed } = await updateObject<ApiObject>(client, t.kind, t.kind.namespaced ? ns : undefined, t.name!, (obj) => {
          const r = applyMetadataChanges(obj.metadata[field], changes, Boolean(opts.overwrite));
          if (!r.changed) return false;
          if (r.next) obj.metadata[field] = r.next;
          else delete obj.metadata[field];
          return true;
        });
        ctx.io.stdout(`${objectName(t.kind, t.name!)} ${changed ? '' : 'not '}${past}${changed ? dryRunSuffix(client.dryRun) : ''}\n`);
      });
    });
  }
}
