import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { z } from 'zod';
import { backoffDelay } from '../../src/util/backoff.js';
import { RuntimeError } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { ContainerRuntime, ContainerState, ContainerStats, DeviceMapping, ExecResult, Mount, RunSpec, RuntimeContainer } from './types.js';

export interface PodmanOptions {
  /** Path or name of the podman binary (default: `podman` on PATH). */
  bin?: string;
  /** Storage root (`--root`); podman's default when unset. */
  root?: string;
  /** State directory (`--runroot`); podman's default when unset. */
  runroot?: string;
  /** Added to the inherited environment of every podman call (e.g. CONTAINERS_CONF). */
  env?: Record<string, string>;
  logger?: Logger;
}

interface CallResult {
  stdout: string;
  stderr: string;
  all?: string;
  exitCode?: number;
  /** The execa result, kept as the `cause` of errors raised from an allowed exit code. */
  raw: unknown;
}

// Podman's JSON carries many more fields; only the ones read are declared, and loosely, because
// fields that are empty come out as null rather than missing.
const psEntry = z.object({
  Id: z.string(),
  Names: z.array(z.string()).nullish(),
  Image: z.string().nullish(),
  Labels: z.record(z.string(), z.string()).nullish(),
  State: z.string(),
  ExitCode: z.number().nullish(),
  Created: z.union([z.number(), z.string()]).nullish(),
  StartedAt: z.union([z.number(), z.string()]).nullish(),
  ExitedAt: z.union([z.number(), z.string()]).nullish(),
});

const inspectEntry = z.object({
  Id: z.string(),
  Name: z.string(),
  Created: z.string().nullish(),
  Image: z.string().nullish(),
  ImageName: z.string().nullish(),
  State: z.object({
    Status: z.string(),
    ExitCode: z.number().nullish(),
    StartedAt: z.string().nullish(),
    FinishedAt: z.string().nullish(),
  }),
  Config: z
    .object({
      Image: z.string().nullish(),
      Labels: z.record(z.string(), z.string()).nullish(),
    })
    .nullish(),
  NetworkSettings: z
    .object({
      IPAddress: z.string().nullish(),
      Networks: z.record(z.string(), z.object({ IPAddress: z.string().nullish() }).nullish()).nullish(),
    })
    .nullish(),
});

const versionOutput = z.object({ Client: z.object({ Version: z.string() }) });
const imagesOutput = z.array(z.object({ Names: z.array(z.string()).nullish() }));

const STATES: Record<string, ContainerState> = {
  created: 'created',
  configured: 'created',
  initialized: 'created',
  running: 'running',
  paused: 'paused',
  stopping: 'stopping',
  stopped: 'exited',
  exited: 'exited',
};

function toState(status: string): ContainerState {
  return STATES[status.toLowerCase()] ?? 'unknown';
}

/**
 * `ps` reports epoch seconds and `inspect` RFC3339 with nanoseconds; both are cut to whole seconds
 * so a container reads the same through list() and inspect(). Go's zero time (year 1, negative
 * epoch) means "never happened".
 */
function toIso(value: number | string | null | undefined): string | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const ms = typeof value === 'number' ? value * 1000 : Date.parse(value);
  if (!Number.isFinite(ms) || ms <= 0) return undefined;
  return new Date(Math.floor(ms / 1000) * 1000).toISOString();
}

/** Podman prints warnings (`time=... level=warning`) before the real `Error:` line. */
function stderrCause(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => l.startsWith('Error:'));
  if (error) return error.slice('Error:'.length).trim();
  return lines[0];
}

function publishArg(p: RunSpec['ports'][number]): string {
  const ip = p.hostIP ? (p.hostIP.includes(':') ? `[${p.hostIP}]:` : `${p.hostIP}:`) : '';
  return `${ip}${p.hostPort}:${p.containerPort}/${p.protocol.toLowerCase()}`;
}

/** `-v src:dst[:ro]`, or `--mount` for paths holding a colon (which `-v` cannot express). */
/** Variables podman, its Go runtime or the dynamic loader read from their own environment. */
const PODMAN_READS = /^(PATH|HOME|TMPDIR|TZ|LANG|LC_\w+|USER|SHELL|TERM|XDG_\w+|_?CONTAINERS?_\w+|STORAGE_\w+|BUILDAH_\w+|PODMAN_\w+|DBUS_\w+|NOTIFY_SOCKET|LISTEN_\w+|SSL_CERT_\w+|REGISTRY_AUTH_FILE|DOCKER_\w+|LD_\w+|GO\w*|(?:http|https|no|all)_proxy|(?:HTTP|HTTPS|NO|ALL)_PROXY)$/;

export function mountArgs(m: Mount): string[] {
  if (!m.source.includes(':') && !m.target.includes(':')) return ['--volume', `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`];
  if (m.source.includes(',') || m.target.includes(',')) {
    throw new RuntimeError(`cannot mount ${m.source} on ${m.target}: podman takes no path with both ":" and ","`);
  }
  return ['--mount', `type=bind,source=${m.source},target=${m.target}${m.readOnly ? ',readonly=true' : ''}`];
}

/** `--device host[:container[:perms]]`. */
export function deviceArg(d: DeviceMapping): string {
  if (d.permissions) return `${d.hostPath}:${d.containerPath ?? d.hostPath}:${d.permissions}`;
  return d.containerPath ? `${d.hostPath}:${d.containerPath}` : d.hostPath;
}

/** `--filter label=…` arguments (for ps and events): repeated filters are ANDed by podman; a bare key matches any value. */
function labelFilters(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ['--filter', v === '' ? `label=${k}` : `label=${k}=${v}`]);
}

/** Longest `podman stats` may take: it reads every container's cgroup, slow on a loaded device. */
const STATS_TIMEOUT_MS = 10_000;

/** Restart delays of a `podman events` that ended; one that ran this long starts over at the first. */
const EVENTS_RESTART = { baseMs: 1_000, maxMs: 60_000 };
const EVENTS_STABLE_MS = 60_000;

/** Output kept from an exec: enough for `drover exec` to print a config file, within one MQTT payload. */
const EXEC_OUTPUT_MAX = 512 * 1024;

/**
 * ContainerRuntime over the podman CLI (no API socket: nothing to keep running on the device).
 *
 * run() never pulls (`--pull never`): pulling is the caller's explicit step (images, then pull),
 * so a run cannot block on the network. It creates and then starts, so that a container whose
 * start fails (bad command, missing workdir) is removed again instead of holding its name.
 */
export class PodmanRuntime implements ContainerRuntime {
  readonly name = 'podman';
  private readonly bin: string;
  private readonly globalArgs: string[];
  private readonly env: Record<string, string> | undefined;
  private readonly logger: Logger;

  constructor(opts: PodmanOptions = {}) {
    this.bin = opts.bin ?? 'podman';
    this.globalArgs = [
      ...(opts.root ? ['--root', opts.root] : []),
      ...(opts.runroot ? ['--runroot', opts.runroot] : []),
    ];
    this.env = opts.env;
    this.logger = opts.logger ?? silentLogger;
  }

  /**
   * Runs podman and returns its output; a non-zero exit throws unless `allowExit` lists it.
   * `what` names the subcommand in errors ("podman stop failed: ...").
   */
  private async call(
    what: string,
    args: string[],
    opts: { allowExit?: number[]; all?: boolean; keepNewline?: boolean; timeoutMs?: number; env?: Record<string, string> } = {},
  ): Promise<CallResult> {
    const started = Date.now();
    const r = await execa(this.bin, [...this.globalArgs, ...args], {
      env: opts.env ? { ...this.env, ...opts.env } : this.env,
      reject: false,
      stdin: 'ignore',
      ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
      all: opts.all ?? false,
      stripFinalNewline: !opts.keepNewline,
    });
    this.logger.debug({ args, exitCode: r.exitCode, ms: Date.now() - started }, 'podman call');
    if (r.code === 'ENOENT') {
      throw new RuntimeError(`podman not found (is it installed?): could not run "${this.bin}"`, r);
    }
    if (r.exitCode === undefined) {
      // Spawn failures other than ENOENT, timeouts, signals: no exit code, execa has the reason.
      throw new RuntimeError(`podman ${what} failed: ${r.shortMessage}`, r);
    }
    if (r.exitCode !== 0 && !opts.allowExit?.includes(r.exitCode)) {
      const cause = stderrCause(r.stderr) ?? `exit code ${r.exitCode}`;
      throw new RuntimeError(`podman ${what} failed: ${cause}`, r);
    }
    return { stdout: r.stdout, stderr: r.stderr, all: r.all, exitCode: r.exitCode, raw: r };
  }

  private parse<T>(what: string, schema: z.ZodType<T>, stdout: string): T {
    let json: unknown;
    try {
      json = JSON.parse(stdout);
    } catch (err) {
      throw new RuntimeError(`podman ${what}: output is not JSON: ${stdout.slice(0, 200)}`, err);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new RuntimeError(`podman ${what}: unexpected output: ${parsed.error.message}`, parsed.error);
    }
    return parsed.data;
  }

  async version(): Promise<string> {
    const { stdout } = await this.call('version', ['version', '--format', 'json']);
    return this.parse('version', versionOutput, stdout).Client.Version;
  }

  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    const { stdout } = await this.call('ps', ['ps', '--all', '--no-trunc', '--format', 'json', ...labelFilters(labels)]);
    const entries = this.parse('ps', z.array(psEntry), stdout);
    return entries.map((e) => {
      const state = toState(e.State);
      return {
        id: e.Id,
        name: e.Names?.[0] ?? '',
        image: e.Image ?? '',
        labels: e.Labels ?? {},
        state,
        ...(state === 'exited' && e.ExitCode !== null && e.ExitCode !== undefined ? { exitCode: e.ExitCode } : {}),
        createdAt: toIso(e.Created),
        startedAt: toIso(e.StartedAt),
        finishedAt: toIso(e.ExitedAt),
      };
    });
  }

  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    // `container inspect`, not `inspect`: the latter would also match an image of that name.
    const r = await this.call('container inspect', ['container', 'inspect', idOrName], { allowExit: [125] });
    if (r.exitCode !== 0) {
      if (/no such container/i.test(r.stderr)) return undefined;
      throw new RuntimeError(`podman container inspect failed: ${stderrCause(r.stderr) ?? 'exit code 125'}`, r.raw);
    }
    const [c] = this.parse('container inspect', z.array(inspectEntry), r.stdout);
    if (!c) return undefined;
    const state = toState(c.State.Status);
    const net = c.NetworkSettings;
    const ip = net?.IPAddress || Object.values(net?.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress || undefined;
    return {
      id: c.Id,
      name: c.Name,
      image: c.ImageName || c.Config?.Image || c.Image || '',
      labels: c.Config?.Labels ?? {},
      state,
      ...(state === 'exited' && c.State.ExitCode !== null && c.State.ExitCode !== undefined
        ? { exitCode: c.State.ExitCode }
        : {}),
      createdAt: toIso(c.Created),
      startedAt: toIso(c.State.StartedAt),
      finishedAt: toIso(c.State.FinishedAt),
      ...(ip ? { ip } : {}),
    };
  }

  async run(spec: RunSpec): Promise<string> {
    // create + start rather than one `run -d` (~50 ms less): a container that fails to start must be
    // removed by its id, since a removal by name after a name clash would remove the other container.
    const args = ['create', '--pull', 'never', '--name', spec.name];
    for (const [k, v] of Object.entries(spec.labels)) args.push('--label', `${k}=${v}`);
    // Values go through an env file (0600 in a private directory, on tmpfs where there is one, gone
    // right after create), not argv: argv is world-readable in /proc while podman runs and ends up in
    // error messages, and env values are often Secrets. A value an env file cannot hold (a newline: a
    // PEM key) goes in podman's own environment (`--env K` reads it there; /proc/PID/environ is the
    // owner's only), unless podman itself would read that variable.
    const envFile: string[] = [];
    const viaEnv: Record<string, string> = {};
    for (const [k, v] of Object.entries(spec.env)) {
      if (!/[\r\n\0]/.test(v)) envFile.push(`${k}=${v}`);
      else if (v.includes('\0')) throw new RuntimeError(`environment variable ${k}: a value with a NUL character cannot be passed to a container`);
      else if (PODMAN_READS.test(k)) throw new RuntimeError(`environment variable ${k}: a multi-line value cannot be passed under a name podman itself reads; use a volume`);
      else {
        args.push('--env', k);
        viaEnv[k] = v;
      }
    }
    const envDir = envFile.length ? await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'drover-env-')) : undefined;
    if (envDir) {
      await writeFile(join(envDir, 'env'), `${envFile.join('\n')}\n`, { mode: 0o600 });
      args.push('--env-file', join(envDir, 'env'));
    }
    if (spec.hostNetwork) {
      // Host network has no port mapping; podman would only warn and drop the -p flags.
      args.push('--network', 'host');
    } else {
      for (const p of spec.ports) if (p.hostPort) args.push('--publish', publishArg(p));
    }
    if (spec.memoryBytes !== undefined) args.push('--memory', `${spec.memoryBytes}b`);
    if (spec.cpuMilli !== undefined) args.push('--cpus', String(spec.cpuMilli / 1000));
    if (spec.workingDir) args.push('--workdir', spec.workingDir);
    for (const m of spec.mounts ?? []) args.push(...mountArgs(m));
    for (const d of spec.devices ?? []) args.push('--device', deviceArg(d));
    const command = spec.command?.length ? spec.command : undefined;
    const cmdArgs = spec.args?.length ? spec.args : [];
    // The JSON form keeps every element of `command` as one argv entry. Setting --entrypoint also
    // clears the image CMD, so `command` without `args` runs exactly `command` (as in Kubernetes).
    if (command) args.push('--entrypoint', JSON.stringify(command));
    args.push(spec.image, ...cmdArgs);

    let stdout: string;
    try {
      ({ stdout } = await this.call('create', args, Object.keys(viaEnv).length ? { env: viaEnv } : {}));
    } finally {
      if (envDir) await rm(envDir, { recursive: true, force: true });
    }
    const id = stdout.trim().split('\n').pop() ?? '';
    if (!id) throw new RuntimeError(`podman create printed no container id for ${spec.name}`);
    try {
      await this.call('start', ['start', id]);
    } catch (err) {
      await this.call('rm', ['rm', '--force', '--ignore', '--time', '0', id]).catch((rmErr: unknown) =>
        this.logger.warn({ id, err: String(rmErr) }, 'could not remove container that failed to start'),
      );
      throw err;
    }
    return id;
  }

  async start(id: string): Promise<void> {
    await this.call('start', ['start', id]);
  }

  async stop(id: string, timeoutSeconds: number): Promise<void> {
    await this.call('stop', ['stop', '--time', String(Math.max(0, Math.round(timeoutSeconds))), id]);
  }

  async remove(id: string): Promise<void> {
    await this.call('rm', ['rm', '--force', '--ignore', '--time', '0', id]);
  }

  async logs(id: string, opts: { tail?: number }): Promise<string> {
    // The container's stdout and stderr come back on podman's stdout and stderr; `all` merges them.
    const args = ['logs', ...(opts.tail !== undefined ? ['--tail', String(opts.tail)] : []), id];
    const r = await this.call('logs', args, { all: true, keepNewline: true });
    return r.all ?? r.stdout;
  }

  async exec(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    if (cmd.length === 0) throw new RuntimeError('podman exec: empty command');
    const r = await execa(this.bin, [...this.globalArgs, 'exec', id, ...cmd], {
      env: this.env,
      reject: false,
      stdin: 'ignore',
      all: true,
      // As the command printed it: `drover exec` shows it verbatim.
      stripFinalNewline: false,
      timeout: Math.max(1, Math.round(timeoutMs)),
      maxBuffer: 2 * EXEC_OUTPUT_MAX,
    });
    if (r.code === 'ENOENT') throw new RuntimeError(`podman not found (is it installed?): could not run "${this.bin}"`, r);
    const all = String(r.all ?? '');
    // Cut, and said so: output piped into another tool must not end silently short.
    const output = all.length > EXEC_OUTPUT_MAX || r.isMaxBuffer ? `${all.slice(0, EXEC_OUTPUT_MAX)}\n[drover: output cut at ${EXEC_OUTPUT_MAX} characters]\n` : all;
    if (r.timedOut) return { exitCode: -1, output, timedOut: true };
    if (r.isMaxBuffer) return { exitCode: r.exitCode ?? 1, output, timedOut: false };
    if (r.exitCode === undefined) throw new RuntimeError(`podman exec failed: ${r.shortMessage}`, r);
    return { exitCode: r.exitCode, output, timedOut: false };
  }

  async pull(image: string): Promise<void> {
    await this.call('pull', ['pull', '--quiet', image]);
  }

  async images(): Promise<string[]> {
    const { stdout } = await this.call('images', ['images', '--format', 'json']);
    const names = this.parse('images', imagesOutput, stdout).flatMap((i) => i.Names ?? []);
    return [...new Set(names)];
  }

  watchExits(labels: Record<string, string>, onExit: () => void): () => void {
    let stopped = false;
    let attempt = 0;
    let child: ReturnType<typeof execa> | undefined;
    let timer: NodeJS.Timeout | undefined;
    const filters = labelFilters(labels);
    const start = () => {
      if (stopped) return;
      const startedAt = Date.now();
      // `podman events` streams one JSON object per line for as long as it runs.
      const proc = execa(this.bin, [...this.globalArgs, 'events', '--format', 'json', '--filter', 'type=container', '--filter', 'event=died', ...filters], {
        env: this.env,
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
        if (lines.some((l) => l.trim().startsWith('{'))) onExit();
      });
      void proc.then((r) => {
        if (stopped) return;
        // It should run forever: restart it, backing off if it keeps dying at once.
        if (Date.now() - startedAt > EVENTS_STABLE_MS) attempt = 0;
        const delay = backoffDelay(attempt++, EVENTS_RESTART);
        this.logger.warn({ exitCode: r.exitCode, stderr: String(r.stderr ?? '').slice(0, 200), retryMs: delay }, 'podman events ended; container exits are noticed at resync until it runs again');
        // Exits during the gap would go unnoticed until resync: look once when it is back.
        timer = setTimeout(() => {
          start();
          onExit();
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

  async stats(): Promise<ContainerStats[]> {
    // The JSON form only has human-readable sizes ("421.9kB"); the template gives raw counters.
    const { stdout } = await this.call('stats', ['stats', '--no-stream', '--format', '{{.ContainerID}} {{.CPUNano}} {{.ContainerStats.MemUsage}} {{.SystemNano}}'], { timeoutMs: STATS_TIMEOUT_MS });
    const out: ContainerStats[] = [];
    for (const line of stdout.split('\n')) {
      const [id, cpu, mem, at] = line.trim().split(/\s+/);
      if (!id || !/^[0-9a-f]{12,}$/.test(id)) continue;
      const nums = [cpu, mem, at].map(Number);
      if (nums.some((n) => !Number.isFinite(n))) continue;
      out.push({ id, cpuNanos: nums[0]!, memoryBytes: nums[1]!, sampledAtNanos: nums[2]! });
    }
    return out;
  }
}
