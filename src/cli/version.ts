import { readFileSync } from 'node:fs';
import { arch, platform } from 'node:process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { CONTRACT_VERSION } from '../contract/topics.js';
import { errorMessage } from '../util/errors.js';
import { CliError } from './client.js';
import { addConnectionOptions, type CommandContext } from './context.js';
import { toJson, toYaml } from './output.js';

let cached: string | undefined;

/**
 * drover's version: package.json's, the one place it is written. Found by walking up from this file,
 * so it is the same from the sources (tsx) and from dist/ (compiled).
 */
export function droverVersion(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'drover' && typeof pkg.version === 'string') return (cached = pkg.version);
    } catch (err) {
      // No package.json at this level (or not ours): keep walking up.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read drover's package.json in ${dir}: ${errorMessage(err)}`, { cause: err });
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find drover\'s package.json above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** Go's GOARCH names, which kubectl's `platform` uses. */
const GOARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm' };

/** The shape of kubectl's version info (`kubectl version -o json`), with drover's own versions added. */
export interface VersionInfo {
  major: string;
  minor: string;
  gitVersion: string;
  gitCommit: string;
  gitTreeState: string;
  buildDate: string;
  goVersion: string;
  compiler: string;
  platform: string;
  drover: { version: string; contract: number; node: string };
}

export function versionInfo(version = droverVersion()): VersionInfo {
  const [major = '0', minor = '0'] = version.split('.');
  return {
    major,
    minor,
    gitVersion: `v${version}-drover`,
    gitCommit: '',
    gitTreeState: '',
    buildDate: '',
    goVersion: '',
    compiler: 'node',
    platform: `${platform}/${GOARCH[arch] ?? arch}`,
    drover: { version, contract: CONTRACT_VERSION, node: process.version },
  };
}

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
