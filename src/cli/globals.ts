import type { Command } from 'commander';

/**
 * Flags kubectl takes anywhere on the line. Declared on the root program too, so they may come before
 * the verb (`drover -n prod get pods`); the verbs keep their own copies for after it. The root only
 * parses them before the verb (positional options), so `drover agent --server URL` stays the agent's.
 */
export const GLOBAL_OPTIONS: ReadonlyArray<readonly [string, string]> = [
  ['--server <url>', 'drover API server URL (env DROVER_SERVER)'],
  ['--token <token>', 'bearer token (env DROVER_TOKEN)'],
  ['--request-timeout <duration>', 'give up on a request after this long, e.g. 10s, 1m (default 30s)'],
  ['--config <file>', 'CLI config file (env DROVER_CONFIG, default ~/.drover/config)'],
  ['-n, --namespace <namespace>', 'namespace of namespaced kinds'],
];

/**
 * preAction hook: a global flag given before the verb fills the verb's own option of the same name,
 * unless the verb was given it itself (the later one wins, as in kubectl). A verb without such an
 * option (`-n` on `top nodes`) ignores it, as kubectl does.
 */
export function inheritGlobalOptions(root: Command, action: Command): void {
  if (action === root) return;
  for (const opt of root.options) {
    const name = opt.attributeName();
    if (root.getOptionValueSource(name) !== 'cli') continue;
    const own = action.options.find((o) => o.attributeName() === name);
    if (!own || action.getOptionValueSource(name) === 'cli') continue;
    action.setOptionValueWithSource(name, root.getOptionValue(name), 'cli');
  }
}
