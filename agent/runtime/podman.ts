import { z } from 'zod';
import { RuntimeError } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { loadedImageNames, loadFailure } from './load-output.js';
import { CliRuntime, RuntimeCli, deviceArg, exactTimes, hasLabels, labelFilters, mountArgs, publishArg, safeJson, toIso, withPrivateEnv } from './cli.js';
import type { BridgeSubnet, ContainerRuntime, ContainerState, ContainerStats, ExecResult, RunSpec, RuntimeContainer } from './types.js';

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

// Podman's JSON carries many more fields; only the ones read are declared, and loosely, because
// fields that are empty come out as null rather than missing.
const psEntry = z.object({
  Id: z.string(),
  Names: z.array(z.string()).nullish(),
  Image: z.string().nullish(),
  ImageID: z.string().nullish(),
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
/** `podman network inspect` (netavark/CNI alike in podman 4): the network's subnets. */
const networkEntry = z.object({ subnets: z.array(z.object({ subnet: z.string(), gateway: z.string().nullish() })).nullish() });
/** An `events` line: a container's labels are in its Attributes. */
const diedEvent = z.object({ ID: z.string().nullish(), Attributes: z.record(z.string(), z.string()).nullish() });
/** `podman info`: where image layers live (the disk-pressure watch's second filesystem). */
const infoOutput = z.object({ store: z.object({ graphRoot: z.string().min(1) }) });
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

/** Podman prints warnings (`time=... level=warning`) before the real `Error:` line. */
function stderrCause(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const error = lines.find((l) => l.startsWith('Error:'));
  if (error) return error.slice('Error:'.length).trim();
  return lines[0];
}

/** Variables podman, its Go runtime or the dynamic loader read from their own environment. */
const PODMAN_READS = /^(PATH|HOME|TMPDIR|TZ|LANG|LC_\w+|USER|SHELL|TERM|XDG_\w+|_?CONTAINERS?_\w+|STORAGE_\w+|BUILDAH_\w+|PODMAN_\w+|DBUS_\w+|NOTIFY_SOCKET|LISTEN_\w+|SSL_CERT_\w+|REGISTRY_AUTH_FILE|DOCKER_\w+|LD_\w+|GO\w*|(?:http|https|no|all)_proxy|(?:HTTP|HTTPS|NO|ALL)_PROXY)$/;

/** Longest `podman load` may take: a few hundred MB unpacked and stored on a slow SD card. */
const LOAD_TIMEOUT_MS = 15 * 60_000;

/** Longest `podman stats` may take: it reads every container's cgroup, slow on a loaded device. */
const STATS_TIMEOUT_MS = 10_000;

/**
 * ContainerRuntime over the podman CLI (no API socket: nothing to keep running on the device).
 *
 * run() never pulls (`--pull never`): pulling is the caller's explicit step (images, then pull),
 * so a run cannot block on the network. It is one `run -d` (one process, where create + start took
 * two); a container left created by a start that failed (bad command, missing workdir) is removed
 * again instead of holding its name (CliRuntime.removeFailedRun).
 */
export class PodmanRuntime extends CliRuntime implements ContainerRuntime {
  readonly name = 'podman';
  readonly keepsLastRunEnd = true;

  constructor(opts: PodmanOptions = {}) {
    super(
      new RuntimeCli({
        tool: 'podman',
        bin: opts.bin ?? 'podman',
        globalArgs: [...(opts.root ? ['--root', opts.root] : []), ...(opts.runroot ? ['--runroot', opts.runroot] : [])],
        env: opts.env,
        logger: opts.logger ?? silentLogger,
        stderrCause,
      }),
    );
  }

  async version(): Promise<string> {
    const { stdout } = await this.cli.call('version', ['version', '--format', 'json']);
    return this.cli.parse('version', versionOutput, stdout).Client.Version;
  }

  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    const { stdout } = await this.cli.call('ps', ['ps', '--all', '--no-trunc', '--format', 'json', ...labelFilters(labels)]);
    const entries = this.cli.parse('ps', z.array(psEntry), stdout).filter((e) => hasLabels(e.Labels ?? {}, labels));
    return entries.map((e) => {
      const state = toState(e.State);
      return {
        id: e.Id,
        name: e.Names?.[0] ?? '',
        image: e.Image ?? '',
        ...(e.ImageID && /^[0-9a-f]{64}$/.test(e.ImageID) ? { imageId: e.ImageID } : {}),
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
    const r = await this.cli.call('container inspect', ['container', 'inspect', idOrName], { allowExit: [125] });
    if (r.exitCode !== 0) {
      if (/no such container/i.test(r.stderr)) return undefined;
      throw new RuntimeError(`podman container inspect failed: ${stderrCause(r.stderr) ?? 'exit code 125'}`, r.raw);
    }
    const [c] = this.cli.parse('container inspect', z.array(inspectEntry), r.stdout);
    if (!c) return undefined;
    const state = toState(c.State.Status);
    const net = c.NetworkSettings;
    const ip = net?.IPAddress || Object.values(net?.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress || undefined;
    return {
      id: c.Id,
      name: c.Name,
      image: c.ImageName || c.Config?.Image || c.Image || '',
      // inspect's Image is the image's id (list's ImageID).
      ...(c.Image && /^[0-9a-f]{64}$/.test(c.Image) ? { imageId: c.Image } : {}),
      labels: c.Config?.Labels ?? {},
      state,
      ...(state === 'exited' && c.State.ExitCode !== null && c.State.ExitCode !== undefined
        ? { exitCode: c.State.ExitCode }
        : {}),
      createdAt: toIso(c.Created),
      startedAt: toIso(c.State.StartedAt),
      finishedAt: toIso(c.State.FinishedAt),
      ...exactTimes(c.State.StartedAt, c.State.FinishedAt),
      ...(ip ? { ip } : {}),
    };
  }

  async run(spec: RunSpec): Promise<string> {
    const args = ['run', '--detach', '--pull', 'never', '--name', spec.name];
    for (const [k, v] of Object.entries(spec.labels)) args.push('--label', `${k}=${v}`);
    const stdout = await withPrivateEnv(
      spec.env,
      { tool: 'podman', fitsFile: (v) => !/[\r\n\0]/.test(v), toolReads: PODMAN_READS },
      async (envArgs, ownEnv) => {
        args.push(...envArgs);
        if (spec.hostNetwork) {
          // Host network has no port mapping; podman would only warn and drop the -p flags.
          args.push('--network', 'host');
        } else {
          for (const p of spec.ports) if (p.hostPort) args.push('--publish', publishArg(p));
          if (spec.hostname) args.push('--hostname', spec.hostname);
          for (const h of spec.hosts ?? []) args.push('--add-host', `${h.name}:${h.ip}`);
        if (spec.ip) args.push('--ip', spec.ip);
        }
        if (spec.memoryBytes !== undefined) args.push('--memory', `${spec.memoryBytes}b`);
        if (spec.cpuMilli !== undefined) args.push('--cpus', String(spec.cpuMilli / 1000));
        if (spec.workingDir) args.push('--workdir', spec.workingDir);
        for (const m of spec.mounts ?? []) args.push(...mountArgs(m, 'podman'));
        for (const d of spec.devices ?? []) args.push('--device', deviceArg(d));
        const command = spec.command?.length ? spec.command : undefined;
        const cmdArgs = spec.args?.length ? spec.args : [];
        // The JSON form keeps every element of `command` as one argv entry. Setting --entrypoint also
        // clears the image CMD, so `command` without `args` runs exactly `command` (as in Kubernetes).
        if (command) args.push('--entrypoint', JSON.stringify(command));
        args.push(spec.image, ...cmdArgs);
        return (await this.cli.call('run', args, Object.keys(ownEnv).length ? { env: ownEnv } : {})).stdout;
      },
    ).catch(async (err: unknown) => {
      await this.cli.removeFailedRun(spec, (name) => this.inspect(name), (id) => this.remove(id));
      throw err;
    });
    const id = stdout.trim().split('\n').pop() ?? '';
    if (!id) throw new RuntimeError(`podman run printed no container id for ${spec.name}`);
    return id;
  }

  /** The default network's (`podman`) first IPv4 subnet. */
  async bridgeSubnet(): Promise<BridgeSubnet | undefined> {
    const { stdout } = await this.cli.call('network inspect', ['network', 'inspect', 'podman']);
    const subnets = this.cli.parse('network inspect', z.array(networkEntry), stdout)[0]?.subnets ?? [];
    const v4 = subnets.find((s) => !s.subnet.includes(':'));
    return v4 ? { subnet: v4.subnet, ...(v4.gateway ? { gateway: v4.gateway } : {}) } : undefined;
  }

  remove(id: string, graceSeconds = 0): Promise<void> {
    return this.removeMany([id], graceSeconds);
  }

  /** `rm --force --time N`: podman stops (stop signal, N s, then KILL) and removes, the containers side by side. */
  async removeMany(ids: string[], graceSeconds: number): Promise<void> {
    if (ids.length === 0) return;
    await this.cli.call('rm', ['rm', '--force', '--ignore', '--time', String(Math.max(0, Math.round(graceSeconds))), ...ids]);
  }

  async exec(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    if (cmd.length === 0) throw new RuntimeError('podman exec: empty command');
    // podman passes the command's exit code through as its own.
    return RuntimeCli.execResult(await this.cli.exec(['exec', id, ...cmd], timeoutMs));
  }

  async pull(image: string): Promise<void> {
    await this.cli.call('pull', ['pull', '--quiet', image]);
  }

  async load(archivePath: string): Promise<string[]> {
    const r = await this.cli.call('load', ['load', '--input', archivePath], { allowExit: [1, 125], timeoutMs: LOAD_TIMEOUT_MS });
    if (r.exitCode !== 0) throw new RuntimeError(`podman load of ${archivePath} failed: ${loadFailure(r.stderr) ?? `exit code ${r.exitCode}`}`, r.raw);
    const names = loadedImageNames(r.stdout);
    if (!names.length) throw new RuntimeError(`podman load of ${archivePath} printed no image name: ${r.stdout.slice(0, 200)}`);
    return names;
  }

  async removeImage(ref: string): Promise<void> {
    // --ignore: an image already gone is what was asked for.
    await this.cli.call('rmi', ['rmi', '--ignore', ref]);
  }

  async tag(source: string, target: string): Promise<void> {
    await this.cli.call('tag', ['tag', source, target]);
  }

  async imageId(ref: string): Promise<string | undefined> {
    const r = await this.cli.call('image-inspect', ['image', 'inspect', '--format', '{{.Id}}', ref], { allowExit: [1, 125] });
    const id = r.stdout.trim();
    return r.exitCode === 0 && /^[0-9a-f]{64}$/.test(id) ? id : undefined;
  }

  async imageStoreDir(): Promise<string> {
    const { stdout } = await this.cli.call('info', ['info', '--format', 'json']);
    return this.cli.parse('info', infoOutput, stdout).store.graphRoot;
  }

  async images(): Promise<string[]> {
    const { stdout } = await this.cli.call('images', ['images', '--format', 'json']);
    const names = this.cli.parse('images', imagesOutput, stdout).flatMap((i) => i.Names ?? []);
    return [...new Set(names)];
  }

  watchExits(labels: Record<string, string>, onExit: (id?: string) => void): () => void {
    // `podman events` streams one JSON object per line for as long as it runs. Its label filters
    // are ORed: one narrows the stream, and every label is checked in the event's Attributes.
    return this.cli.stream(
      ['events', '--format', 'json', '--filter', 'type=container', '--filter', 'event=died', ...labelFilters(labels).slice(0, 2)],
      (line) => {
        const e = diedEvent.safeParse(safeJson(line));
        // An event of another shape still means something died: looking once too often is cheap.
        if (!e.success) onExit();
        else if (hasLabels(e.data.Attributes ?? {}, labels)) onExit(e.data.ID ?? undefined);
      },
      () => onExit(),
    );
  }

  async stats(): Promise<ContainerStats[]> {
    // The JSON form only has human-readable sizes ("421.9kB"); the template gives raw counters.
    const { stdout } = await this.cli.call('stats', ['stats', '--no-stream', '--format', '{{.ContainerID}} {{.CPUNano}} {{.ContainerStats.MemUsage}} {{.SystemNano}}'], { timeoutMs: STATS_TIMEOUT_MS });
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
