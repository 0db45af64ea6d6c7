import type { Command } from 'commander';
import { objectPath } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { CliError } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { parseOutputFormat, renderObjects } from './output.js';

interface GetOptions {
  namespace?: string;
  allNamespaces?: boolean;
  selector?: string;
  output?: string;
}

interface ObjectList {
  items?: ApiObject[];
}

export function registerGet(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('get')
    .description('list objects of a kind, or show one (kinds: pods, nodes, namespaces, events)')
    .argument('<kind>', 'kind: plural, singular or short name (po, no, ns, ev), or kind/name')
    .argument('[name]', 'one object to show')
    .option('-n, --namespace <namespace>', 'namespace of namespaced kinds', DEFAULT_NAMESPACE)
    .option('-A, --all-namespaces', 'list across all namespaces')
    .option('-l, --selector <selector>', 'label selector, e.g. app=web,tier!=db')
    .option('-o, --output <format>', 'json | yaml | wide | name');
  addConnectionOptions(cmd).action(async (kindArg: string, nameArg: string | undefined, opts: GetOptions, command: Command) => {
    const targets = parseResourceArgs(nameArg === undefined ? [kindArg] : [kindArg, nameArg]);
    if (targets.length !== 1) throw new CliError('get shows one object at a time');
    const { kind, name } = targets[0]!;
    const format = parseOutputFormat(opts.output);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;

    if (name) {
      const obj = await client.getOptional<ApiObject>(objectPath(kind, ns, name));
      if (!obj) throw notFound(kind, name);
      ctx.io.stdout(renderObjects(kind, [obj], format, { single: true }));
      return;
    }

    const allNamespaces = Boolean(opts.allNamespaces) && kind.namespaced;
    const list = await client.get<ObjectList>(objectPath(kind, allNamespaces ? undefined : ns), { labelSelector: opts.selector });
    const items = list?.items ?? [];
    if (!items.length && (format === undefined || format === 'wide' || format === 'name')) {
      ctx.io.stderr(kind.namespaced && !allNamespaces ? `No resources found in ${ns} namespace.\n` : 'No resources found\n');
      return;
    }
    ctx.io.stdout(renderObjects(kind, items, format, { single: false, allNamespaces }));
  });
}
