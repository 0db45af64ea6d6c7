import type { Command } from 'commander';
import { objectPath } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { parseObject } from '../api/validate.js';
import { ValidationError } from '../util/errors.js';
import { CliError, dryRunSuffix } from './client.js';
import { addConnectionOptions, addDryRunOption, type CommandContext } from './context.js';
import { objectName } from './output.js';

export function registerCreate(program: Command, ctx: CommandContext): void {
  const create = program.command('create').description('create an object from the command line');
  const ns = create
    .command('namespace')
    .alias('ns')
    .description('create a namespace')
    .argument('<name>', 'namespace name (a DNS label)');
  addConnectionOptions(addDryRunOption(ns)).action(async (name: string, _opts: unknown, command: Command) => {
    let parsed;
    try {
      // The same checks the server applies, so a bad name fails without a round trip.
      parsed = parseObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    } catch (err) {
      if (err instanceof ValidationError) throw new CliError(`invalid namespace name "${name}": ${err.causes.map((c) => c.message).join('; ')}`);
      throw err;
    }
    const client = ctx.client(command);
    const created = await client.create<ApiObject>(objectPath(parsed.kind, undefined), parsed.object);
    ctx.io.stdout(`${objectName(parsed.kind, created?.metadata?.name ?? name)} created${dryRunSuffix(client.dryRun)}\n`);
  });
}
