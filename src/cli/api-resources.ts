import type { Command } from 'commander';
import { KINDS, type KindInfo } from '../api/kinds.js';
import { CliError } from './client.js';
import type { CommandContext } from './context.js';
import { qualifiedPlural, renderTable } from './output.js';

function group(k: KindInfo): string {
  return k.groupVersion.includes('/') ? k.groupVersion.split('/')[0]! : '';
}

/** Kinds in kubectl's order: the core group first, then by group, each by name. */
export function sortedKinds(kinds: KindInfo[] = KINDS): KindInfo[] {
  return [...kinds].sort((a, b) => group(a).localeCompare(group(b)) || a.plural.localeCompare(b.plural));
}

export function apiResourcesTable(kinds: KindInfo[], opts: { output?: string; namespaced?: boolean } = {}): string {
  const list = sortedKinds(kinds).filter((k) => opts.namespaced === undefined || k.namespaced === opts.namespaced);
  if (opts.output === 'name') return list.map((k) => `${qualifiedPlural(k)}\n`).join('');
  const headers = ['NAME', 'SHORTNAMES', 'APIVERSION', 'NAMESPACED', 'KIND'];
  const wide = opts.output === 'wide';
  const rows = list.map((k) => [
    k.plural,
    k.shortNames.join(','),
    k.groupVersion,
    String(k.namespaced),
    k.kind,
    ...(wide ? ['create,delete,get,list,update,watch'] : []),
  ]);
  return renderTable(wide ? [...headers, 'VERBS'] : headers, rows);
}

export function registerApiResources(program: Command, ctx: CommandContext): void {
  program
    .command('api-resources')
    .description('list the kinds drover serves, with short names and API versions')
    .option('--namespaced <bool>', 'only namespaced (true) or cluster-wide (false) kinds')
    .option('-o, --output <format>', 'wide | name')
    .action((opts: { namespaced?: string; output?: string }) => {
      if (opts.output !== undefined && opts.output !== 'wide' && opts.output !== 'name') {
        throw new CliError(`--output ${opts.output} is not available; use wide or name`);
      }
      let namespaced: boolean | undefined;
      if (opts.namespaced !== undefined) {
        if (!['true', 'false'].includes(opts.namespaced)) throw new CliError(`invalid --namespaced "${opts.namespaced}": expected true or false`);
        namespaced = opts.namespaced === 'true';
      }
      ctx.io.stdout(apiResourcesTable(KINDS, { output: opts.output, namespaced }));
    });
}
