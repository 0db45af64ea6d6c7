import { z } from 'zod';
import { RuntimeError } from '../../src/util/errors.js';
import { loadedImageNames, loadFailure } from './load-output.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { CliRuntime, RuntimeCli, deviceArg, hasLabels, labelFilters, mountArgs, exactTimes, publishArg, safeJson, toIso, withPrivateEnv } from './cli.js';
import type { BridgeSubnet, ContainerRuntime, ContainerState, ExecResult, RunSpec, RuntimeContainer } from './types.js';

/** The containerd namespace drover's containers live in: apart from k8s.io (CRI) and nerdctl's `default`. */
export const NERDCTL_NAMESPACE = 'drover';

export interface NerdctlOptions {
  /** Path or name of the nerdctl binary (default: `nerdctl` on PATH). */
  bin?: string;
  /** containerd namespace (`--namespace`); default `drover`. */
  namespace?: string;
  /** containerd socket (`--address`); nerdctl's default (/run/containerd/containerd.sock) when unset. */
  address?: string;
  /** nerdctl's own state (`--data-root`: names, logs, port records); nerdctl's default when unset. */
  dataRoot?: string;
  /** Added to the inherited environment of every nerdctl call. */
  env?: Record<string, string>;
  logger?: Logger;
}

// The shapes below are nerdctl's (cmd/nerdctl/container/container_list.go ListItem,
// pkg/inspecttypes/dockercompat Container, VersionInfo, pkg/cmd/image/list.go imagePrintable,
// pkg/cmd/system/events.go EventOut); only the fields read are declared.
const psEntry = z.object({ ID: z.string() });

const inspectEntry = z.object({
  Id: z.string(),
  Name: z.string().nullish(),
  Created: z.string().nullish(),
  Image: z.string().nullish(),
  // Always there; Status '' when the container never ran (no containerd task).
  State: z
    .object({
      Status: z.string().nullish(),
      ExitCode: z.number().nullish(),
      StartedAt: z.string().nullish(),
      FinishedAt: z.string().nullish(),
    })
    .nullish(),
  Config: z.object({ Image: z.string().nullish(), Labels: z.record(z.string(), z.string()).nullish() }).nullish(),
  NetworkSettings: z
    .object({
      IPAddress: z.string().nullish(),
      Networks: z.record(z.string(), z.object({ IPAddress: z.string().nullish() }).nullish()).nullish(),
    })
    .nullish(),
});
type InspectEntry = z.infer<typeof inspectEntry>;

const component = z.object({ Name: z.string(), Version: z.string() });
const versionOutput = z.object({
  Client: z.object({ Version: z.string() }),
  Server: z.object({ Components: z.array(component).nullish() }).nullish(),
});
const imageEntry = z.object({ Name: z.string().nullish() });
const eventEntry = z.object({
  ID: z.string().nullish(),
  Namespace: z.string().nullish(),
  Topic: z.string().nullish(),
  Event: z.string().nullish(),
  Labels: z.record(z.string(), z.string()).nullish(),
});
/** pkg/inspecttypes/dockercompat Network: the CNI ranges as docker's IPAM.Config. */
const networkEntry = z.object({ IPAM: z.object({ Config: z.array(z.object({ Subnet: z.string().nullish(), Gateway: z.string().nullish() })).nullish() }).nullish() });
const taskExit = z.object({ container_id: z.string().nullish(), id: z.string().nullish() });

/** dockercompat's State.Status: containerd's task status; '' when the container has no task (never started). */
const STATES: Record<string, ContainerState> = {
  '': 'created',
  created: 'created',
  running: 'running',
  paused: 'paused',
  pausing: 'paused',
  stopped: 'exited',
  exited: 'exited',
};

function toState(status: string | null | undefined): ContainerState {
  return STATES[(status ?? '').toLowerCase()] ?? 'unknown';
}

/** One logrus line: `time="..." level=fatal msg="..."` (msg Go-quoted when it needs quotes). */
const LOGRUS = /\blevel=(\w+)\s+msg=("(?:[^"\\]|\\.)*"|\S+)/;

function logrusMessages(stderr: string, levels: string[]): string[] {
  const out: string[] = [];
  for (const line of stderr.split('\n')) {
    const m = LOGRUS.exec(line);
    if (!m || !levels.includes(m[1]!)) continue;
    let msg = m[2]!;
    if (msg.startsWith('"')) {
      try {
        msg = JSON.parse(msg) as string;
      } catch {
        // Go's %q escapes (\x00, \a) that JSON lacks: show it as printed rather than lose it.
        msg = msg.slice(1, -1);
      }
    }
    out.push(msg);
  }
  return out;
}

/**
 * nerdctl reports a failure as its last logrus line at level fatal; commands over several
 * containers collect them as "N errors:\n...". Without one (a crash, a wrapper), the first line.
 */
function stderrCause(stderr: string): string | undefined {
  const fatal = logrusMessages(stderr, ['fatal', 'error']).pop();
  if (fatal !== undefined) return fatal.replace(/^\d+ errors?:\n/, '').split('\n').join('; ');
  return stderr.split('\n').map((l) => l.trim()).find(Boolean);
}

/** Variables nerdctl, containerd's client, CNI, its Go runtime or the dynamic loader read from their own environment. */
const NERDCTL_READS = /^(PATH|HOME|TMPDIR|TZ|LANG|LC_\w+|USER|SHELL|TERM|XDG_\w+|CONTAINERD_\w+|NERDCTL_\w+|BUILDKIT\w*|CNI_\w+|NETCONFPATH|ROOTLESSKIT_\w+|IPFS_PATH|DOCKER_\w+|DBUS_\w+|NOTIFY_SOCKET|SSL_CERT_\w+|LD_\w+|GO\w*|(?:http|https|no|all)_proxy|(?:HTTP|HTTPS|NO|ALL)_PROXY)$/;

/**
 * What nerdctl's `--env-file` keeps as written: it trims each line (Go's TrimSpace) and reads it
 * with a 64 KiB line scanner, so values ending in white space or longer than that go another way.
 */
function fitsEnvFile(v: string): boolean {
  return !/[\r\n\0]/.test(v) && !/[\s\u0085]$/.test(v) && v.length < 60 * 1024;
}

/** Longest a `container inspect` of every listed container may take. */
const LIST_TIMEOUT_MS = 30_000;

/**
 * ContainerRuntime over the nerdctl CLI (containerd underneath), in its own containerd namespace.
 *
 * Like the podman adapter: run() never pulls (`--pull never`), creates then starts (a container
 * that fails to start is removed by id), and env values never go on argv. list() reads ids from
 * `ps` and the rest from one `container inspect`: ps carries neither exit code nor start and
 * finish times, and its labels come as one "k=v,k=v" string that a value with a comma garbles.
 * No stats(): nerdctl's `stats` reports formatted percentages, not the cumulative counters the
 * agent turns into rates.
 */
export class NerdctlRuntime extends CliRuntime implements ContainerRuntime {
  readonly name = 'nerdctl';
  readonly namespace: string;

  constructor(opts: NerdctlOptions = {}) {
    const namespace = opts.namespace ?? NERDCTL_NAMESPACE;
    super(
      new RuntimeCli({
        tool: 'nerdctl',
        bin: opts.bin ?? 'nerdctl',
        globalArgs: ['--namespace', namespace, ...(opts.address ? ['--address', opts.address] : []), ...(opts.dataRoot ? ['--data-root', opts.dataRoot] : [])],
        env: opts.env,
        logger: opts.logger ?? silentLogger,
        stderrCause,
      }),
    );
    this.namespace = namespace;
  }

  /**
   * nerdctl's version and containerd's, in one word (it ends up in `containerRuntimeVersion`,
   * nerdctl://2.3.5+containerd-1.6.20): `version` fails when containerd does not answer.
   */
  async version(): Promise<string> {
    const { stdout } = await this.cli.call('version', ['version', '--format', '{{json .}}']);
    const v = this.cli.parse('version', versionOutput, stdout);
    const containerd = v.Server?.Components?.find((c) => c.Name === 'containerd')?.Version;
    const own = v.Client.Version.replace(/^v/, '');
    return containerd ? `${own}+containerd-${containerd.replace(/^v/, '')}` : own;
  }

  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    const { stdout } = await this.cli.call('ps', ['ps', '--all', '--no-trunc', '--format', '{{json .}}', ...labelFilters(labels)]);
    const ids = this.cli.parseLines('ps', psEntry, stdout).map((e) => e.ID);
    if (ids.length === 0) return [];
    const r = await this.cli.call('container inspect', ['container', 'inspect', ...ids], { allowExit: [1], timeoutMs: LIST_TIMEOUT_MS });
    let entries: RuntimeContainer[];
    if (r.exitCode === 0) {
      entries = this.cli.parse('container inspect', z.array(inspectEntry), r.stdout).map(toContainer);
    } else if (/no such container/.test(r.stderr)) {
      // One was removed between ps and inspect, and nerdctl then prints none: look at each.
      entries = (await Promise.all(ids.map((id) => this.inspect(id)))).filter((c): c is RuntimeContainer => c !== undefined);
    } else {
      throw new RuntimeError(`nerdctl container inspect failed: ${this.cli.cause(r.stderr, r.exitCode)}`, r.raw);
    }
    return entries.filter((c) => hasLabels(c.labels, labels));
  }

  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    const r = await this.cli.call('container inspect', ['container', 'inspect', idOrName], { allowExit: [1] });
    if (r.exitCode !== 0) {
      if (/no such container/.test(r.stderr)) return undefined;
      throw new RuntimeError(`nerdctl container inspect failed: ${this.cli.cause(r.stderr, r.exitCode)}`, r.raw);
    }
    // nerdctl matches a name or an id prefix: several containers may answer; the exact one wins.
    const all = this.cli.parse('container inspect', z.array(inspectEntry), r.stdout);
    const c = all.find((e) => e.Name === idOrName) ?? all.find((e) => e.Id === idOrName) ?? (all.length === 1 ? all[0] : undefined);
    return c ? toContainer(c) : undefined;
  }

  async run(spec: RunSpec): Promise<string> {
    // One `run -d`, as for podman (see CliRuntime.removeFailedRun for a start that fails).
    const args = ['run', '--detach', '--pull', 'never', '--name', spec.name];
    for (const [k, v] of Object.entries(spec.labels)) args.push('--label', `${k}=${v}`);
    const stdout = await withPrivateEnv(spec.env, { tool: 'nerdctl', fitsFile: fitsEnvFile, toolReads: NERDCTL_READS }, async (envArgs, ownEnv) => {
      args.push(...envArgs);
      if (spec.hostNetwork) {
        args.push('--network', 'host');
      } else {
        for (const p of spec.ports) if (p.hostPort) args.push('--publish', publishArg(p));
        if (spec.hostname) args.push('--hostname', spec.hostname);
        for (const h of spec.hosts ?? []) args.push('--add-host', `${h.name}:${h.ip}`);
        if (spec.ip) args.push('--ip', spec.ip);
      }
      if (spec.memoryBytes !== undefined) args.push('--memory', String(spec.memoryBytes));
      if (spec.cpuMilli !== undefined) args.push('--cpus', String(spec.cpuMilli / 1000));
      if (spec.workingDir) args.push('--workdir', spec.workingDir);
      for (const m of spec.mounts ?? []) args.push(...mountArgs(m, 'nerdctl'));
      for (const d of spec.devices ?? []) {
        // --device is a comma-separated list to nerdctl: a comma would make two devices of one.
        if (d.hostPath.includes(',') || d.containerPath?.includes(',')) throw new RuntimeError(`cannot pass device ${d.hostPath}: nerdctl takes no device path with ","`);
        args.push('--device', deviceArg(d));
      }
      // nerdctl's --entrypoint is repeated, one element each (`=` so one starting with '-' is not a
      // flag); setting it drops the image CMD, so `command` without `args` runs exactly `command`.
      for (const part of spec.command ?? []) args.push(`--entrypoint=${part}`);
      args.push(spec.image, ...(spec.args ?? []));
      return (await this.cli.call('run', args, Object.keys(ownEnv).length ? { env: ownEnv } : {})).stdout;
    }).catch(async (err: unknown) => {
      await this.cli.removeFailedRun(spec, (name) => this.inspect(name), (id) => this.remove(id));
      throw err;
    });
    const id = stdout.trim().split('\n').pop()?.trim() ?? '';
    if (!/^[0-9a-f]{64}$/.test(id)) throw new RuntimeError(`nerdctl run printed no container id for ${spec.name}: ${stdout.slice(0, 200)}`);
    return id;
  }

  /** The default network's (`bridge`, 10.4.0.0/24 unless configured) first IPv4 subnet. */
  async bridgeSubnet(): Promise<BridgeSubnet | undefined> {
    const { stdout } = await this.cli.call('network inspect', ['network', 'inspect', 'bridge']);
    const ranges = this.cli.parse('network inspect', z.array(networkEntry), stdout)[0]?.IPAM?.Config ?? [];
    const v4 = ranges.find((r) => r.Subnet && !r.Subnet.includes(':'));
    return v4?.Subnet ? { subnet: v4.Subnet, ...(v4.Gateway ? { gateway: v4.Gateway } : {}) } : undefined;
  }

  remove(id: string, graceSeconds = 0): Promise<void> {
    return this.removeMany([id], graceSeconds);
  }

  /**
   * nerdctl's rm has no stop timeout: a graceful `stop --time N` of them all first (a failure only
   * costs the grace period: rm kills), then one `rm --force`.
   */
  async removeMany(ids: string[], graceSeconds: number): Promise<void> {
    if (ids.length === 0) return;
    const grace = Math.max(0, Math.round(graceSeconds));
    if (grace > 0) {
      await this.cli.call('stop', ['stop', '--time', String(grace), ...ids]).catch((err: unknown) => {
        this.cli.spec.logger.warn({ containers: ids.length, err: String(err) }, 'graceful stop failed; removing by force');
      });
    }
    // With --force nerdctl logs what failed (level=error) and still exits 0: a missing container is
    // what remove() allows, anything else is a failure.
    const r = await this.cli.call('rm', ['rm', '--force', ...ids]);
    const errors = logrusMessages(r.stderr, ['error', 'fatal'])
      .flatMap((m) => m.replace(/^\d+ errors?:\n/, '').split('\n'))
      .filter((m) => m && !/^no such container/.test(m));
    if (errors.length) throw new RuntimeError(`nerdctl rm failed: ${errors.join('; ')}`, r.raw);
  }

  async exec(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    if (cmd.length === 0) throw new RuntimeError('nerdctl exec: empty command');
    const r = await this.cli.exec(['exec', id, ...cmd], timeoutMs);
    if (r.exitCode === 0) return RuntimeCli.execResult(r);
    // nerdctl exits 1 for any failed command and names its exit code in its own last line, printed
    // after the command's output is drained; that line is nerdctl's, not the command's, so it goes.
    const lastLine = r.stderr.trimEnd().split('\n').pop() ?? '';
    const [msg] = logrusMessages(lastLine, ['fatal']);
    if (msg === undefined) return RuntimeCli.execResult(r);
    const at = r.output.lastIndexOf(lastLine);
    const output = at >= 0 ? r.output.slice(0, at) + r.output.slice(at + lastLine.length).replace(/^\n/, '') : r.output;
    if (r.timedOut) return { exitCode: -1, output, timedOut: true };
    const code = /^exec failed with exit code (\d+)$/.exec(msg);
    if (code) return { exitCode: Number(code[1]), output, timedOut: false };
    // nerdctl's own failure (no such container, not running): a failed result, said in plain words.
    return { exitCode: r.exitCode ?? 1, output: `${output}nerdctl exec: ${msg}\n`, timedOut: false };
  }

  async pull(image: string): Promise<void> {
    await this.cli.call('pull', ['pull', '--quiet', image]);
  }

  async load(archivePath: string): Promise<string[]> {
    const r = await this.cli.call('load', ['load', '--input', archivePath], { allowExit: [1], timeoutMs: 15 * 60_000 });
    if (r.exitCode !== 0) throw new RuntimeError(`nerdctl load of ${archivePath} failed: ${loadFailure(r.stderr) ?? `exit code ${r.exitCode}`}`, r.raw);
    const names = loadedImageNames(r.stdout);
    if (!names.length) throw new RuntimeError(`nerdctl load of ${archivePath} printed no image name: ${r.stdout.slice(0, 200)}`);
    return names;
  }

  async removeImage(ref: string): Promise<void> {
    const r = await this.cli.call('rmi', ['rmi', ref], { allowExit: [1] });
    // nerdctl has no --ignore: an image already gone is what was asked for.
    if (r.exitCode !== 0 && !/no such image|not found/i.test(r.stderr)) throw new RuntimeError(`nerdctl rmi failed: ${this.cli.cause(r.stderr, r.exitCode)}`, r.raw);
  }

  async tag(source: string, target: string): Promise<void> {
    await this.cli.call('tag', ['tag', source, target]);
  }

  async images(): Promise<string[]> {
    const { stdout } = await this.cli.call('images', ['images', '--format', '{{json .}}']);
    // One line per image and platform; CRI-made entries named by their config digest are no reference.
    const names = this.cli
      .parseLines('images', imageEntry, stdout)
      .map((i) => i.Name ?? '')
      .filter((n) => n && n !== '<none>' && !n.startsWith('sha256:'));
    return [...new Set(names)];
  }

  /**
   * `nerdctl events` streams containerd's events (all namespaces) as JSON lines; an exit is topic
   * /tasks/exit whose process id is the container's own (an exec's exit carries the exec's id).
   * Released nerdctl (2.3 and before) neither filters events by label nor prints labels, so the
   * exited container's labels are looked up; one gone by then counts (a resync is the answer anyway).
   */
  watchExits(labels: Record<string, string>, onExit: (id?: string) => void): () => void {
    const matches = async (id: string, given: Record<string, string> | null | undefined): Promise<boolean> => {
      if (given && Object.keys(given).length) return hasLabels(given, labels);
      const c = await this.inspect(id).catch(() => undefined);
      return !c || hasLabels(c.labels, labels);
    };
    return this.cli.stream(
      ['events', '--format', '{{json .}}'],
      (line) => {
        const e = eventEntry.safeParse(safeJson(line));
        if (!e.success || e.data.Topic !== '/tasks/exit' || e.data.Namespace !== this.namespace) return;
        const exit = taskExit.safeParse(safeJson(e.data.Event ?? ''));
        const id = e.data.ID || (exit.success ? exit.data.container_id : undefined);
        if (exit.success && exit.data.id && exit.data.container_id && exit.data.id !== exit.data.container_id) return;
        if (!id) return onExit();
        void matches(id, e.data.Labels).then((yes) => {
          if (yes) onExit(id);
        });
      },
      () => onExit(),
    );
  }
}

function toContainer(c: InspectEntry): RuntimeContainer {
  const state = toState(c.State?.Status);
  const net = c.NetworkSettings;
  const ip = net?.IPAddress || Object.values(net?.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress || undefined;
  const exitCode = c.State?.ExitCode;
  return {
    id: c.Id,
    name: c.Name ?? '',
    image: c.Config?.Image || c.Image || '',
    labels: c.Config?.Labels ?? {},
    state,
    ...(state === 'exited' && exitCode !== null && exitCode !== undefined ? { exitCode } : {}),
    createdAt: toIso(c.Created),
    startedAt: toIso(c.State?.StartedAt),
    finishedAt: toIso(c.State?.FinishedAt),
    ...exactTimes(c.State?.StartedAt, c.State?.FinishedAt),
    ...(ip ? { ip } : {}),
  };
}
