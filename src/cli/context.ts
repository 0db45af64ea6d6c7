import type { Command } from 'commander';
import { kindByName, type KindInfo } from '../api/kinds.js';
import { ApiClient, CliError, DEFAULT_TIMEOUT_MS, FATAL_REASONS, parseDryRun, type DryRun } from './client.js';
import { resolveConfig } from './config.js';
import { qualifiedPlural } from './output.js';

/** Where the CLI writes and what it reads; injected so tests and the entry point decide. */
export interface CliIo {
  /** Writes exactly the given text (callers include the newlines). */
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  stdin?: () => Promise<string>;
  /**
   * Ends long-running verbs (`get -w`, `logs -f`, `rollout status`) cleanly. When unset, the first
   * SIGINT or SIGTERM does, so Ctrl-C stops a follow with exit 0 rather than killing the process.
   */
  signal?: AbortSignal;
}

export interface CommandContext {
  io: CliIo;
  /** A client configured from the command's --server/--token flags, the environment and the config file. */
  client(cmd: Command): ApiClient;
  readStdin(): Promise<string>;
  /** `Warning: text` on stderr, each text once per command (kubectl deduplicates the same way). */
  warn(text: string): void;
  /** `text` was already shown in another form (apply's local `pod/web: text`): a server copy is not repeated. */
  markWarned(text: string): void;
  /** Aborts when the user interrupts (see CliIo.signal). */
  interrupted(): AbortSignal;
}

export const DEFAULT_NAMESPACE = 'default';

/** Flags shared by every verb that talks to the server. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'drover API server URL (env DROVER_SERVER)')
    .option('--token <token>', 'bearer token (env DROVER_TOKEN)')
    .option('--request-timeout <duration>', 'give up on a request after this long, e.g. 10s, 1m (default 30s)');
}

/** `--dry-run=client|server` on the verbs that write (apply, create, delete, scale, edit). */
export function addDryRunOption(cmd: Command): Command {
  return cmd.option('--dry-run <strategy>', 'none, client (nothing is sent but reads) or server (the server checks everything and stores nothing)', 'none');
}

/** `--dry-run` given to `cmd`, checked. */
export function dryRunOf(cmd: Command): DryRun | undefined {
  return parseDryRun(cmd.opts<{ dryRun?: string }>().dryRun);
}

/** "30s", "1m", "500ms" or a bare number of seconds → milliseconds. */
export function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m || Number(m[1]) <= 0) throw new CliError(`invalid duration "${v}": use a positive number with a unit, e.g. 10s or 1m`);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * factor);
}

async function readProcessStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** An AbortSignal fired by the first SIGINT/SIGTERM; the handlers are only installed when asked for. */
function signalFromProcess(): AbortSignal {
  const ctl = new AbortController();
  const stop = (): void => {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    ctl.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return ctl.signal;
}

export function makeContext(io: CliIo): CommandContext {
  const warned = new Set<string>();
  const warn = (text: string): void => {
    if (warned.has(text)) return;
    warned.add(text);
    io.stderr(`Warning: ${text}\n`);
  };
  let interrupt: AbortSignal | undefined = io.signal;
  return {
    io,
    warn,
    markWarned: (text) => void warned.add(text),
    interrupted: () => (interrupt ??= signalFromProcess()),
    readStdin: io.stdin ?? readProcessStdin,
    client(cmd: Command): ApiClient {
      // The verb's own flags, then the global ones given before the verb (src/cli/globals.ts).
      type Flags = { server?: string; token?: string; requestTimeout?: string; config?: string; dryRun?: string };
      const own = Object.fromEntries(Object.entries(cmd.opts<Flags>()).filter(([, v]) => v !== undefined)) as Flags;
      const opts: Flags = { ...cmd.optsWithGlobals<Flags>(), ...own };
      const cfg = resolveConfig({ server: opts.server, token: opts.token }, opts.config ? { ...io.env, DROVER_CONFIG: opts.config } : io.env);
      return new ApiClient({
        server: cfg.server,
        token: cfg.token,
        ca: cfg.ca,
        timeoutMs: opts.requestTimeout ? parseDuration(opts.requestTimeout) : DEFAULT_TIMEOUT_MS,
        onWarning: warn,
        dryRun: parseDryRun(opts.dryRun),
      });
    },
  };
}

/** A kind as typed on the command line (plural, singular, short name or Kind). */
export function resolveKind(name: string): KindInfo {
  const k = kindByName(name);
  if (!k) throw new CliError(`the server doesn't have a resource type "${name}"`);
  return k;
}

/**
 * `pod web web2` or `pod/web pod/web2` → kind and names. Mixing the two forms is an error, as in
 * kubectl, because `pod/web other` is ambiguous.
 */
export function parseResourceArgs(args: string[]): Array<{ kind: KindInfo; name?: string }> {
  if (!args.length) throw new CliError('you must specify the type of resource');
  if (args[0]!.includes('/')) {
    return args.map((a) => {
      const [k, n, ...rest] = a.split('/');
      if (!k || !n || rest.length) {
        throw new CliError(`arguments in resource/name form must have a single resource and name, got "${a}"`);
      }
      return { kind: resolveKind(k), name: n };
    });
  }
  const kind = resolveKind(args[0]!);
  const names = args.slice(1);
  if (names.some((n) => n.includes('/'))) {
    throw new CliError('there is no need to specify a resource type as a separate argument when passing arguments in resource/name form');
  }
  return names.length ? names.map((name) => ({ kind, name })) : [{ kind }];
}

/** The message kubectl prints for a missing object, independent of how the server phrases it. */
export function notFound(kind: KindInfo, name: string): CliError {
  return new CliError(`${qualifiedPlural(kind)} "${name}" not found`, { code: 404, reason: 'NotFound' });
}

/** Collects per-object failures so a multi-object command finishes the rest, then fails on one line. */
export class ErrorList {
  private readonly messages: string[] = [];
  add(err: unknown): void {
    this.messages.push(err instanceof Error ? err.message : String(err));
  }
  throwIfAny(): void {
    if (this.messages.length === 1) throw new CliError(this.messages[0]!);
    if (this.messages.length > 1) throw new CliError(this.messages.join('; '));
  }
}

/**
 * Runs `fn` for each object, as kubectl does: an error about one object does not stop the others,
 * and they are all reported at the end (ErrorList). Errors that break every request
 * (FATAL_REASONS: unreachable, unauthorized) stop at once.
 */
export async function eachObject<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  const errors = new ErrorList();
  for (const item of items) {
    try {
      await fn(item);
    } catch (err) {
      if (err instanceof CliError && FATAL_REASONS.has(err.reason)) throw err;
      errors.add(err);
    }
  }
  errors.throwIfAny();
}
