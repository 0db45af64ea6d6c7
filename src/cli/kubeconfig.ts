import { chmod, open } from 'node:fs/promises';
import type { Command } from 'commander';
import { errorMessage } from '../util/errors.js';
import { CliError } from './client.js';
import { resolveConfig } from './config.js';
import { addConnectionOptions, type CommandContext } from './context.js';
import { toYaml } from './output.js';

export interface KubeconfigInput {
  server: string;
  token: string;
  /** PEM of the cluster CA; absent: kubectl checks the server against the system roots. */
  ca?: string;
  /** Name of the cluster, user and context. */
  name: string;
  namespace?: string;
}

/**
 * A kubeconfig for the real kubectl: the server, its CA as certificate-authority-data (kubectl sends a
 * bearer token only over https, and only to a server it trusts), the token, and a current context.
 */
export function kubeconfig(i: KubeconfigInput): Record<string, unknown> {
  if (!/^https:\/\//i.test(i.server)) {
    throw new CliError(`kubectl sends a bearer token only over https, and the server is ${i.server}: use the server's https address`);
  }
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: i.name, cluster: { server: i.server, ...(i.ca ? { 'certificate-authority-data': Buffer.from(i.ca, 'utf8').toString('base64') } : {}) } }],
    users: [{ name: i.name, user: { token: i.token } }],
    contexts: [{ name: i.name, context: { cluster: i.name, user: i.name, ...(i.namespace ? { namespace: i.namespace } : {}) } }],
    'current-context': i.name,
    preferences: {},
  };
}

/** Writes `text` to `path` readable by its owner only (the token is in it), replacing what was there. */
export async function writePrivate(path: string, text: string): Promise<void> {
  const f = await open(path, 'w', 0o600);
  try {
    // An existing file keeps its mode on open: narrow it before the token is written.
    await f.chmod(0o600);
    await f.writeFile(text);
  } finally {
    await f.close();
  }
  await chmod(path, 0o600);
}

/** `drover kubeconfig [--out FILE]`: the kubeconfig of the server and token this CLI uses. */
export function registerKubeconfig(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('kubeconfig')
    .description('print a kubeconfig for kubectl with this CLI\'s server, CA and token (KUBECONFIG=FILE kubectl get pods)')
    .option('--out <file>', 'write it to FILE (mode 0600) instead of printing it')
    .option('--name <name>', 'name of the cluster, user and context', 'drover')
    .option('-n, --namespace <ns>', 'default namespace of the context');
  addConnectionOptions(cmd).action(async (opts: { out?: string; name: string; namespace?: string }, command: Command) => {
    type Flags = { server?: string; token?: string; config?: string };
    const flags = command.optsWithGlobals<Flags>();
    const cfg = resolveConfig({ server: flags.server, token: flags.token }, flags.config ? { ...ctx.io.env, DROVER_CONFIG: flags.config } : ctx.io.env);
    if (!cfg.token) throw new CliError(`no token: give --token, set DROVER_TOKEN, or put "token" in ${cfg.configPath}`);
    const text = toYaml(kubeconfig({ server: cfg.server, token: cfg.token, ca: cfg.ca, name: opts.name, namespace: opts.namespace }));
    if (!cfg.ca) ctx.warn('no cluster CA known (DROVER_CA_FILE or "certificateAuthority" in the config file): kubectl will check the server against the system roots');
    if (!opts.out) return ctx.io.stdout(text);
    try {
      await writePrivate(opts.out, text);
    } catch (err) {
      throw new CliError(`cannot write ${opts.out}: ${errorMessage(err)}`, { cause: err });
    }
    ctx.io.stdout(`kubeconfig written to ${opts.out} (mode 0600): KUBECONFIG=${opts.out} kubectl get nodes\n`);
  });
}
