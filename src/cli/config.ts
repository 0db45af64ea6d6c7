import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CliError } from './client.js';

export const DEFAULT_SERVER = 'https://127.0.0.1:6443';

export interface CliConfig {
  server: string;
  token?: string;
  /** PEM of the cluster CA the server's certificate is checked against (DROVER_CA_FILE, or `certificateAuthority` in the file). */
  ca?: string;
  /** Where each value came from, for error messages and debugging. */
  sources: { server: 'flag' | 'env' | 'file' | 'default'; token: 'flag' | 'env' | 'file' | 'none' };
  configPath: string;
}

/** `~/.drover/config`, or DROVER_CONFIG. HOME from the given env so tests can point it elsewhere. */
export function configPath(env: NodeJS.ProcessEnv): string {
  if (env.DROVER_CONFIG) return env.DROVER_CONFIG;
  return join(env.HOME || homedir(), '.drover', 'config');
}

interface FileConfig {
  server?: string;
  token?: string;
  /** PEM of the cluster CA. */
  certificateAuthority?: string;
}

/** Read the config file. Missing is fine (there is a default); unreadable or malformed is an error naming the file. */
export function readConfigFile(path: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CliError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CliError(`config file ${path} must hold a JSON object like {"server": "${DEFAULT_SERVER}", "token": "..."}`);
  }
  const out: FileConfig = {};
  for (const key of ['server', 'token', 'certificateAuthority'] as const) {
    const v = (parsed as Record<string, unknown>)[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') throw new CliError(`config file ${path}: "${key}" must be a string`);
    if (v) out[key] = v;
  }
  return out;
}

/**
 * Where to connect and with which token. Each value independently: flag > environment
 * (DROVER_SERVER, DROVER_TOKEN) > config file > default. Empty strings count as unset so
 * `DROVER_TOKEN= drover ...` falls through instead of sending an empty token.
 */
export function resolveConfig(flags: { server?: string; token?: string }, env: NodeJS.ProcessEnv): CliConfig {
  const path = configPath(env);
  // Read the file only when something is still missing: a broken file must not break explicit flags.
  const needFile = !(flags.server || env.DROVER_SERVER) || !(flags.token || env.DROVER_TOKEN);
  const file = needFile ? readConfigFile(path) : {};

  let server: string;
  let serverSource: CliConfig['sources']['server'];
  if (flags.server) [server, serverSource] = [flags.server, 'flag'];
  else if (env.DROVER_SERVER) [server, serverSource] = [env.DROVER_SERVER, 'env'];
  else if (file.server) [server, serverSource] = [file.server, 'file'];
  else [server, serverSource] = [DEFAULT_SERVER, 'default'];

  let token: string | undefined;
  let tokenSource: CliConfig['sources']['token'];
  if (flags.token) [token, tokenSource] = [flags.token, 'flag'];
  else if (env.DROVER_TOKEN) [token, tokenSource] = [env.DROVER_TOKEN, 'env'];
  else if (file.token) [token, tokenSource] = [file.token, 'file'];
  else [token, tokenSource] = [undefined, 'none'];

  return { server, token, ca: resolveCa(env, () => (needFile ? file : readConfigFile(path))), sources: { server: serverSource, token: tokenSource }, configPath: path };
}

/** DROVER_CA_FILE (a PEM file) first, then the config file's `certificateAuthority`. */
function resolveCa(env: NodeJS.ProcessEnv, file: () => FileConfig): string | undefined {
  if (env.DROVER_CA_FILE) {
    try {
      return readFileSync(env.DROVER_CA_FILE, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read DROVER_CA_FILE ${env.DROVER_CA_FILE}: ${(err as Error).message}`);
    }
  }
  try {
    return file().certificateAuthority;
  } catch (err) {
    // Server and token came from flags or the environment: a broken file only costs the CA (system roots apply).
    if (err instanceof CliError) return undefined;
    throw err;
  }
}
