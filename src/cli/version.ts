import type { Command } from 'commander';
import { versionInfo, type VersionInfo } from '../version.js';
import { errorMessage } from '../util/errors.js';
import { CliError } from './client.js';
import { addConnectionOptions, type CommandContext } from './context.js';
import { toJson, toYaml } from './output.js';

function line(who: 'Client' | 'Server', v: VersionInfo): string {
  return `${who} Version: ${v.gitVersion} (drover ${v.drover.version}, MQTT contract v${v.drover.contract}, ${v.platform})\n`;
}

/** `drover version`: client and server versions as kubectl prints them; the server's mismatch is flagged. */
export function registerVersion(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('version')
    .description('print the client and server versions')
    .option('--client', 'only the client version (no server needed)')
    .option('-o, --output <format>', 'json | yaml');
  addConnectionOptions(cmd).action(async (opts: { client?: boolean; output?: string }, command: Command) => {
    if (opts.output !== undefined && opts.output !== 'json' && opts.output !== 'yaml') throw new CliError(`--output must be json or yaml, got "${opts.output}"`);
    const client = versionInfo();
    let server: VersionInfo | undefined;
    let failure: CliError | undefined;
    if (!opts.client) {
      try {
        server = await ctx.client(command).get<VersionInfo>('/version');
      } catch (err) {
        failure = err instanceof CliError ? err : new CliError(errorMessage(err), { cause: err });
      }
    }
    const out = { clientVersion: client, ...(server ? { serverVersion: server } : {}) };
    if (opts.output === 'json') ctx.io.stdout(toJson(out));
    else if (opts.output === 'yaml') ctx.io.stdout(toYaml(out));
    else {
      ctx.io.stdout(line('Client', client));
      if (server) ctx.io.stdout(line('Server', server));
    }
    // As kubectl: the client version is printed, then why the server's could not be had.
    if (failure) throw new CliError(`cannot get the server version: ${failure.message}`, { code: failure.code, reason: failure.reason, cause: failure });
    if (server && server.drover?.version !== client.drover.version) ctx.warn(`version difference between client (${client.drover.version}) and server (${server.drover?.version ?? server.gitVersion})`);
  });
}
