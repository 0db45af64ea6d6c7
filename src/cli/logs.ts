import type { Command } from 'commander';
import { kindInfo, objectPath } from '../api/kinds.js';
import { CliError } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, parseResourceArgs, type CommandContext } from './context.js';

interface LogsOptions {
  container?: string;
  tail?: string;
  namespace?: string;
}

/** `--tail` as kubectl takes it: a count of lines, -1 meaning all. */
export function parseTail(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < -1) throw new CliError(`invalid --tail "${v}": expected a number of lines (or -1 for all)`);
  return Number(v) === -1 ? undefined : Number(v);
}

export function registerLogs(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('logs')
    .description("print a pod container's logs, fetched from its node")
    .argument('<pod>', 'pod name (or pod/NAME)')
    .option('-c, --container <name>', 'container name (defaults to the only container)')
    .option('--tail <lines>', 'only the last N lines')
    .option('-n, --namespace <namespace>', 'namespace of the pod', DEFAULT_NAMESPACE);
  addConnectionOptions(cmd).action(async (podArg: string, opts: LogsOptions, command: Command) => {
    const podKind = kindInfo('Pod');
    let name = podArg;
    if (podArg.includes('/')) {
      const [target] = parseResourceArgs([podArg]);
      if (target!.kind.kind !== 'Pod') throw new CliError(`logs are only available for pods, not ${target!.kind.plural}`);
      name = target!.name!;
    }
    const tailLines = parseTail(opts.tail);
    const client = ctx.client(command);
    const text = await client.getText(`${objectPath(podKind, opts.namespace || DEFAULT_NAMESPACE, name)}/log`, {
      container: opts.container,
      tailLines,
    });
    ctx.io.stdout(text);
  });
}
