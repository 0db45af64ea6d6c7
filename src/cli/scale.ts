import type { Command } from 'commander';
import type { ApiObject } from '../api/meta.js';
import { CliError, dryRunSuffix } from './client.js';
import { addConnectionOptions, addDryRunOption, DEFAULT_NAMESPACE, eachObject, type CommandContext } from './context.js';
import { parseTargets, updateObject } from './mutate.js';
import { objectName } from './output.js';

interface ScaleOptions {
  replicas?: string;
  currentReplicas?: string;
  namespace?: string;
}

/** Kinds `scale` works on and the field it sets: Jobs scale their parallelism, as in kubectl. */
export const SCALE_FIELD: Record<string, 'replicas' | 'parallelism'> = {
  Deployment: 'replicas',
  ReplicaSet: 'replicas',
  Job: 'parallelism',
};

function count(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new CliError(`invalid ${flag} "${v}": expected a non-negative integer`);
  return Number(v);
}

export function registerScale(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('scale')
    .description('set the number of replicas of deployments and replicasets (parallelism of jobs)')
    .argument('<args...>', 'deployment/NAME, or a kind and names (deploy web api)')
    .option('--replicas <n>', 'the new number of replicas (required)')
    .option('--current-replicas <n>', 'only scale if the current number of replicas is this (a precondition)')
    .option('-n, --namespace <namespace>', 'namespace of the objects', DEFAULT_NAMESPACE);
  addConnectionOptions(addDryRunOption(cmd)).action(async (args: string[], opts: ScaleOptions, command: Command) => {
    const replicas = count(opts.replicas, '--replicas');
    if (replicas === undefined) throw new CliError('required flag(s) "replicas" not set');
    const current = count(opts.currentReplicas, '--current-replicas');
    const targets = parseTargets(args, 'scale', Object.keys(SCALE_FIELD));
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    await eachObject(targets, async (t) => {
      const field = SCALE_FIELD[t.kind.kind]!;
      await updateObject<ApiObject & { spec: Record<string, unknown> }>(client, t.kind, ns, t.name, (obj) => {
        const now = Number(obj.spec[field] ?? 1);
        if (current !== undefined && now !== current) {
          throw new CliError(`expected ${field} to be ${current}, was ${now}`);
        }
        if (now === replicas) return false;
        obj.spec[field] = replicas;
        return true;
      });
      ctx.io.stdout(`${objectName(t.kind, t.name)} scaled${dryRunSuffix(client.dryRun)}\n`);
    });
  });
}
