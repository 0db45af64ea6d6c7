import type { Command } from 'commander';
import { kindInfo, objectPath } from '../api/kinds.js';
import { CliError } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, parseResourceArgs, type CommandContext } from './context.js';

/**
 * The command finished with a non-zero exit code: the CLI exits with it, as `kubectl exec` does. Not
 * an error of drover's, so the entry point prints no `error:` line for it.
 */
export class CommandExit extends Error {
  constructor(readonly exitCode: number) {
    super(`command terminated with exit code ${exitCode}`);
  }
}

interface ExecOptions {
  container?: string;
  namespace?: string;
  timeout?: string;
}

/** `--timeout` as a duration: 30s, 2m, or plain seconds. */
export function parseExecTimeout(v: string | undefined): number {
  if (v === undefined) return 30;
  const m = /^(\d+)(s|m)?$/.exec(v);
  const secs = m ? Number(m[1]) * (m[2] === 'm' ? 60 : 1) : NaN;
  if (!Number.isInteger(secs) || secs < 1 || secs > 600) throw new CliError(`invalid --timeout "${v}": a duration from 1s to 10m`);
  return secs;
}

export function registerExec(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('exec')
    .description("run a command in a pod's container on its node (no tty or stdin); exits with its exit code")
    .usage('POD [-c CONTAINER] [-n NAMESPACE] -- COMMAND [ARG...]')
    .argument('<pod>', 'pod name (or pod/NAME)')
    .argument('[command...]', 'the command and its arguments, after --')
    .option('-c, --container <name>', 'container name (defaults to the only container)')
    .option('-n, --namespace <namespace>', 'namespace of the pod', DEFAULT_NAMESPACE)
    .option('--timeout <duration>', 'give up on the command after this long (e.g. 30s, 2m)', '30s');
  addConnectionOptions(cmd).action(async (podArg: string, command: string[], opts: ExecOptions, c: Command) => {
    let name = podArg;
    if (podArg.includes('/')) {
      const [target] = parseResourceArgs([podArg]);
      if (target!.kind.kind !== 'Pod') throw new CliError(`exec is only available for pods, not ${target!.kind.plural}`);
      name = target!.name!;
    }
    if (!command.length) throw new CliError('you must specify at least one command for the container (drover exec POD -- COMMAND)');
    const timeoutSeconds = parseExecTimeout(opts.timeout);
    const client = ctx.client(c);
    const path = `${objectPath(kindInfo('Pod'), opts.namespace || DEFAULT_NAMESPACE, name)}/exec`;
    // The server waits for the command (and the round trip to the node): so does the request.
    const timeoutMs = Math.max(client.timeoutMs, (timeoutSeconds + 15) * 1000);
    const { body } = await client.json<{ exitCode: number; output: string; timedOut: boolean }>('POST', path, { body: { command, container: opts.container, timeoutSeconds }, timeoutMs });
    ctx.io.stdout(body.output);
    if (body.timedOut) throw new CliError(`command timed out after ${timeoutSeconds}s`);
    if (body.exitCode !== 0) {
      ctx.io.stderr(`command terminated with exit code ${body.exitCode}\n`);
      throw new CommandExit(body.exitCode);
    }
  });
}
