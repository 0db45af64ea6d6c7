/**
 * What the CLI-driven runtimes (podman, nerdctl) have in common: calling the tool and reading its
 * errors, parsing its JSON, handing container env values over without argv, the docker-style
 * run flags both accept, capping exec output, and keeping an `events` stream running.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { z } from 'zod';
import { backoffDelay } from '../../src/util/backoff.js';
import { RuntimeError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { DeviceMapping, ExecResult, LogOptions, Mount, PortMapping, RuntimeContainer } from './types.js';

export interface CallResult {
  stdout: string;
  stderr: string;
  all?: string;
  exitCode?: number;
  /** The execa result, kept as the `cause` of errors raised from an allowed exit code. */
  raw: unknown;
}

export interface CallOptions {
  allowExit?: number[];
  all?: boolean;
  keepNewline?: boolean;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface CliSpec {
  /** The tool's name in messages ("podman create failed: ..."). */
  tool: string;
  bin: string;
  /** Put before every subcommand (storage roots, namespace, socket). */
  globalArgs: string[];
  /** Added to the inherited environment of every call. */
  env: Record<string, string> | undefined;
  logger: Logger;
  /** The one line of the tool's stderr that says why it failed. */
  stderrCause(stderr: string): string | undefined;
}

/** Output kept from an exec: enough for `drover exec` to print a config file, within one MQTT payload. */
export const EXEC_OUTPUT_MAX = 512 * 1024;

/** One container runtime CLI: runs it, turns its failures into RuntimeErrors naming the subcommand and cause. */
export class RuntimeCli {
  constructor(readonly spec: CliSpec) {}

  private notFound(r: unknown): RuntimeError {
    return new RuntimeError(`${this.spec.tool} not found (is it installed?): could not run "${this.spec.bin}"`, r);
  }

  /** Runs the tool; a non-zero exit throws unless `allowExit` lists it. `what` names the subcommand in errors. */
  async call(what: string, args: string[], opts: CallOptions = {}): Promise<CallResult> {
    const { tool } = this.spec;
    const started = Date.now();
    const r = await execa(this.spec.bin, [...this.spec.globalArgs, ...args], {
      env: opts.env ? { ...this.spec.env, ...opts.env } : this.spec.env,
      reject: false,
      stdin: 'ignore',
      ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
      all: opts.all ?? false,
      stripFinalNewline: !opts.keepNewline,
    });
    this.spec.logger.debug({ args, exitCode: r.exitCode, ms: Date.now() - started }, `${tool} call`);
    if (r.code === 'ENOENT') throw this.notFound(r);
    if (r.exitCode === undefined) {
      // Spawn failures other than ENOENT, timeouts, signals: no exit code, execa has the reason.
      throw new RuntimeError(`${tool} ${what} failed: ${r.shortMessage}`, r);
    }
    if (r.exitCode !== 0 && !opts.allowExit?.includes(r.exitCode)) {
      throw new RuntimeError(`${tool} ${what} failed: ${this.cause(r.stderr, r.exitCode)}`, r);
    }
    return { stdout: r.stdout, stderr: r.stderr, all: r.all, exitCode: r.exitCode, raw: r };
  }

  // The subcommands podman and nerdctl spell alike.

  async start(id: string): Promise<void> {
    await this.call('start', ['start', id]);
  }

  /**
   * After a failed `run -d`. Podman and nerdctl both create the container first and leave it behind,
   * in state created, when it will not start (a bad command: podman exits 127, a missing workdir:
   * 126; nerdctl exits 1). It is found by its name and removed by its id, but only when it never
   * started and carries every label of this run exactly: a name clash fails before anything is
   * created (podman: 125), and the container holding the name is someone else's to keep.
   */
  async removeFailedRun(
    spec: { name: string; labels: Record<string, string> },
    inspect: (name: string) => Promise<RuntimeContainer | undefined>,
    remove: (id: string) => Promise<void>,
  ): Promise<void> {
    try {
      const left = await inspect(spec.name);
      if (!left || left.state !== 'created') return;
      if (!Object.entries(spec.labels).every(([k, v]) => left.labels[k] === v)) return;
      await remove(left.id);
    } catch (err) {
      this.spec.logger.warn({ container: spec.name, err: String(err) }, 'could not remove container that failed to start');
    }
  }

  async stop(id: string, timeoutSeconds: number): Promise<void> {
    await this.call('stop', ['stop', '--time', String(Math.max(0, Math.round(timeoutSeconds))), id]);
  }

  /** The container's stdout and stderr come back on the tool's stdout and stderr; `all` merges them. */
  async logs(id: string, opts: LogOptions): Promise<string> {
    const r = await this.call('logs', [...logArgs(opts), id], { all: true, keepNewline: true });
    return r.all ?? r.stdout;
  }

  cause(stderr: string, exitCode: number | undefined): string {
    return this.spec.stderrCause(stderr) ?? `exit code ${exitCode}`;
  }

  parse<T>(what: string, schema: z.ZodType<T>, stdout: string): T {
    let json: unknown;
    try {
      json = JSON.parse(stdout);
    } catch (err) {
      throw new RuntimeError(`${this.spec.tool} ${what}: output is not JSON: ${stdout.slice(0, 200)}`, err);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new RuntimeError(`${this.spec.tool} ${what}: unexpected output: ${parsed.error.message}`, parsed.error);
    }
    return parsed.data;
  }

  /** Output of `--format '{{json .}}'`: one JSON object per line (blank lines skipped). */
  parseLines<T>(what: string, schema: z.ZodType<T>, stdout: string): T[] {
    return stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => this.parse(what, schema, l));
  }

  /**
   * Runs `exec` args (everything after the global args) with a timeout; stdout and stderr
   * interleaved and capped. Gives the raw exit code: what a non-zero one means is the caller's.
   */
  async exec(args: string[], timeoutMs: number): Promise<{ exitCode: number | undefined; output: string; timedOut: boolean; cut: boolean; stderr: string; raw: unknown }> {
    const r = await execa(this.spec.bin, [...this.spec.globalArgs, ...args], {
      env: this.spec.env,
      reject: false,
      stdin: 'ignore',
      all: true,
      // As the command printed it: `drover exec` shows it verbatim.
      stripFinalNewline: false,
      timeout: Math.max(1, Math.round(timeoutMs)),
      maxBuffer: 2 * EXEC_OUTPUT_MAX,
    });
    if (r.code === 'ENOENT') throw this.notFound(r);
    const all = String(r.all ?? '');
    const cut = all.length > EXEC_OUTPUT_MAX || r.isMaxBuffer;
    // Cut, and said so: output piped into another tool must not end silently short.
    const output = cut ? `${all.slice(0, EXEC_OUTPUT_MAX)}\n[drover: output cut at ${EXEC_OUTPUT_MAX} characters]\n` : all;
    if (!r.timedOut && !r.isMaxBuffer && r.exitCode === undefined) throw new RuntimeError(`${this.spec.tool} exec failed: ${r.shortMessage}`, r);
    return { exitCode: r.exitCode, output, timedOut: r.timedOut, cut, stderr: String(r.stderr ?? ''), raw: r };
  }

  /** The usual mapping of an exec's outcome; nerdctl adjusts the exit code first. */
  static execResult(r: { exitCode: number | undefined; output: string; timedOut: boolean }): ExecResult {
    if (r.timedOut) return { exitCode: -1, output: r.output, timedOut: true };
    return { exitCode: r.exitCode ?? 1, output: r.output, timedOut: false };
  }

  /**
   * Keeps `args` (an `events` command that streams for as long as it runs) running, calling
   * `onLine` for each line; restarts it with back-off when it ends, and calls `onGap` once it is
   * back (what happened while it was down went unseen). Returns the function that ends it.
   */
  stream(args: string[], onLine: (line: string) => void, onGap: () => void): () => void {
    let stopped = false;
    let attempt = 0;
    let child: ReturnType<typeof execa> | undefined;
    let timer: NodeJS.Timeout | undefined;
    const start = () => {
      if (stopped) return;
      const startedAt = Date.now();
      const proc = execa(this.spec.bin, [...this.spec.globalArgs, ...args], {
        env: this.spec.env,
        stdin: 'ignore',
        reject: false,
        // stdout is read as it comes; stderr is kept (bounded) to say why it ended.
        buffer: { stdout: false, stderr: true },
        maxBuffer: { stderr: 64 * 1024 },
      });
      child = proc;
      let rest = '';
      proc.stdout?.on('data', (d: Buffer) => {
        rest += d.toString();
        const lines = rest.split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) if (l.trim()) onLine(l);
      });
      void proc.then((r) => {
        if (stopped) return;
        // It should run forever: restart it, backing off if it keeps dying at once.
        if (Date.now() - startedAt > EVENTS_STABLE_MS) attempt = 0;
        const delay = backoffDelay(attempt++, EVENTS_RESTART);
        this.spec.logger.warn(
          { exitCode: r.exitCode, stderr: String(r.stderr ?? '').slice(0, 200), retryMs: delay },
          `${this.spec.tool} events ended; container exits are noticed at resync until it runs again`,
        );
        timer = setTimeout(() => {
          start();
          onGap();
        }, delay);
      });
    };
    start();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      child?.kill();
    };
  }
}

/** What a CLI-driven ContainerRuntime does the same way whatever the tool: start, stop, logs. */
export abstract class CliRuntime {
  constructor(protected readonly cli: RuntimeCli) {}

  start(id: string): Promise<void> {
    return this.cli.start(id);
  }

  stop(id: string, timeoutSeconds: number): Promise<void> {
    return this.cli.stop(id, timeoutSeconds);
  }

  logs(id: string, opts: LogOptions): Promise<string> {
    return this.cli.logs(id, opts);
  }
}

/**
 * `logs` arguments before the container id, as podman and nerdctl both spell them. Times go as given
 * (RFC 3339, nanoseconds kept): a boundary between two runs of one container may fall within a second.
 */
export function logArgs(opts: LogOptions): string[] {
  const args = ['logs'];
  if (opts.since !== undefined) args.push('--since', opts.since);
  if (opts.until !== undefined) args.push('--until', opts.until);
  if (opts.timestamps) args.push('--timestamps');
  if (opts.tail !== undefined) args.push('--tail', String(opts.tail));
  return args;
}

/** Restart delays of an `events` stream that ended; one that ran this long starts over at the first. */
const EVENTS_RESTART = { baseMs: 1_000, maxMs: 60_000 };
const EVENTS_STABLE_MS = 60_000;

/**
 * RFC3339 strings (with nanoseconds) or epoch seconds, cut to whole seconds so a container reads
 * the same through list() and inspect(). Go's zero time (year 1, negative epoch) means "never happened".
 */
export function toIso(value: number | string | null | undefined): string | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const ms = typeof value === 'number' ? value * 1000 : Date.parse(value);
  if (!Number.isFinite(ms) || ms <= 0) return undefined;
  return new Date(Math.floor(ms / 1000) * 1000).toISOString();
}

/** An RFC 3339 time as the runtime printed it (nanoseconds kept), or undefined for none or Go's zero time. */
export function exactTime(value: string | null | undefined): string | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) && ms > 0 ? value : undefined;
}

/** RuntimeContainer.exact, left out when the runtime gave neither time. */
export function exactTimes(startedAt: string | null | undefined, finishedAt: string | null | undefined): Pick<RuntimeContainer, 'exact'> {
  const exact = { startedAt: exactTime(startedAt), finishedAt: exactTime(finishedAt) };
  return exact.startedAt || exact.finishedAt ? { exact } : {};
}

/** `--publish [ip:]host:container/proto`. */
export function publishArg(p: PortMapping): string {
  const ip = p.hostIP ? (p.hostIP.includes(':') ? `[${p.hostIP}]:` : `${p.hostIP}:`) : '';
  return `${ip}${p.hostPort}:${p.containerPort}/${p.protocol.toLowerCase()}`;
}

/** `-v src:dst[:ro]`, or `--mount` for paths holding a colon (which `-v` cannot express). */
export function mountArgs(m: Mount, tool: string): string[] {
  if (!m.source.includes(':') && !m.target.includes(':')) return ['--volume', `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`];
  if (m.source.includes(',') || m.target.includes(',')) {
    throw new RuntimeError(`cannot mount ${m.source} on ${m.target}: ${tool} takes no path with both ":" and ","`);
  }
  return ['--mount', `type=bind,source=${m.source},target=${m.target}${m.readOnly ? ',readonly=true' : ''}`];
}

/** `--device host[:container[:perms]]`. */
export function deviceArg(d: DeviceMapping): string {
  if (d.permissions) return `${d.hostPath}:${d.containerPath ?? d.hostPath}:${d.permissions}`;
  return d.containerPath ? `${d.hostPath}:${d.containerPath}` : d.hostPath;
}

/**
 * `--filter label=…` arguments (a bare key matches any value) for the labels a filter can carry:
 * both tools read `--filter` as a comma-separated list (cobra StringSlice, parsed as CSV), so a
 * label with a comma or a quote would be split or refused. Such labels, and anything the tool's
 * filter does not promise (events ORs label filters), are checked by the caller with hasLabels().
 */
export function labelFilters(labels: Record<string, string>): string[] {
  return Object.entries(labels)
    .filter(([k, v]) => csvSafe(k) && csvSafe(v))
    .flatMap(([k, v]) => ['--filter', v === '' ? `label=${k}` : `label=${k}=${v}`]);
}

function csvSafe(s: string): boolean {
  return !/[,"\n\r]/.test(s);
}

/** JSON.parse, or undefined for a line that is not JSON (a stream's noise). */
export function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** Whether a container's labels carry every wanted one ('' matches any value). */
export function hasLabels(have: Record<string, string>, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => k in have && (v === '' || have[k] === v));
}

function unfit(v: string): string {
  if (/[\r\n]/.test(v)) return 'multi-line';
  if (v.length > 32 * 1024) return 'long';
  return 'space-ended';
}

/**
 * Hands container env values to `create` without argv: argv is world-readable in /proc while the
 * tool runs and ends up in error messages, and env values are often Secrets. Values the tool's env
 * file can hold go in one (0600 in a private directory, on tmpfs where there is one, removed once
 * `use` returns); the others (a newline: a PEM key) go in the tool's own environment, named by
 * `--env K` (/proc/PID/environ is the owner's only), unless the tool itself reads that variable.
 */
export async function withPrivateEnv<T>(
  env: Record<string, string>,
  rules: { tool: string; fitsFile: (value: string) => boolean; toolReads: RegExp },
  use: (args: string[], ownEnv: Record<string, string>) => Promise<T>,
): Promise<T> {
  const lines: string[] = [];
  const args: string[] = [];
  const ownEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (rules.fitsFile(v)) lines.push(`${k}=${v}`);
    else if (v.includes('\0')) throw new RuntimeError(`environment variable ${k}: a value with a NUL character cannot be passed to a container`);
    else if (rules.toolReads.test(k)) throw new RuntimeError(`environment variable ${k}: a ${unfit(v)} value cannot be passed under a name ${rules.tool} itself reads; use a volume`);
    else {
      args.push('--env', k);
      ownEnv[k] = v;
    }
  }
  const dir = lines.length ? await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'drover-env-')) : undefined;
  try {
    if (dir) {
      await writeFile(join(dir, 'env'), `${lines.join('\n')}\n`, { mode: 0o600 });
      args.push('--env-file', join(dir, 'env'));
    }
    return await use(args, ownEnv);
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
