import { execa } from 'execa';
import { RuntimeError } from '../../src/util/errors.js';
import type { ContainerRuntime, ContainerStats, ExecResult, RunSpec, RuntimeContainer } from '../../agent/runtime/types.js';

export interface FakeRuntimeOptions {
  /**
   * Logs grow by a line every 200 ms of a container's life, so `logs -f` has something new to
   * print. Default: every container logs the same three lines.
   */
  growingLogs?: boolean;
  /** CPU each running container burns, in millicores, for `stats()` (`top`). Default 250. */
  cpuMilli?: number;
  /**
   * Called as run, start, stop, remove or pull begins, with the container's name (the image's for a
   * pull): the call goes on once the promise returned resolves (a stop that hangs, a slow run).
   */
  gate?: (op: FakeOp, subject: string) => Promise<void> | undefined;
  /** Offer watchExits (as podman does); `exit()` then tells the watchers. Default: no watch. */
  watchesExits?: boolean;
}

export type FakeOp = 'run' | 'start' | 'stop' | 'remove' | 'pull' | 'load' | 'rmi' | 'tag';

/** One runtime call as it began or ended, in the order they happened. */
export interface FakeCall {
  op: FakeOp;
  subject: string;
  phase: 'begin' | 'end';
}

/** Enough of a container runtime for an agent to run pods and serve logs, without podman. */
export class FakeRuntime implements ContainerRuntime {
  readonly name = 'fake';
  private readonly containers = new Map<string, RuntimeContainer>();
  private seq = 0;
  private readonly pulled = new Set<string>();

  /** Every call's begin and end, in order (with a gate only). */
  readonly calls: FakeCall[] = [];
  /** Calls under way now, by op. */
  readonly inFlight: Record<FakeOp, number> = { run: 0, start: 0, stop: 0, remove: 0, pull: 0, load: 0, rmi: 0, tag: 0 };

  /** list() calls so far. */
  listCalls = 0;
  private readonly exitWatchers = new Set<() => void>();
  readonly watchExits?: (labels: Record<string, string>, onExit: () => void) => () => void;

  constructor(private readonly opts: FakeRuntimeOptions = {}) {
    if (opts.watchesExits) {
      this.watchExits = (_labels, onExit) => {
        this.exitWatchers.add(onExit);
        return () => this.exitWatchers.delete(onExit);
      };
    }
  }

  /** The container's process ends with `code` (as if it crashed), and the exit watchers hear of it. */
  exit(name: string, code: number): void {
    const c = this.byName(name);
    if (!c) throw new Error(`no container ${name}`);
    Object.assign(c, { state: 'exited', exitCode: code, finishedAt: new Date().toISOString() });
    for (const w of this.exitWatchers) w();
  }

  private async traced<T>(op: FakeOp, subject: string, fn: () => T): Promise<T> {
    // Kept only by tests that gate calls: a long-running fake agent would grow it without end.
    const record = this.opts.gate !== undefined;
    if (record) this.calls.push({ op, subject, phase: 'begin' });
    this.inFlight[op]++;
    try {
      await this.opts.gate?.(op, subject);
      return fn();
    } finally {
      this.inFlight[op]--;
      if (record) this.calls.push({ op, subject, phase: 'end' });
    }
  }

  private nameOf(id: string): string {
    return this.containers.get(id)?.name ?? [...this.containers.values()].find((c) => c.name === id)?.name ?? id;
  }

  async version(): Promise<string> {
    return '1.0.0';
  }
  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    this.listCalls++;
    return [...this.containers.values()].filter((c) => Object.entries(labels).every(([k, v]) => k in c.labels && (v === '' || c.labels[k] === v)));
  }
  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    return this.find(idOrName);
  }
  async run(spec: RunSpec): Promise<string> {
    return this.traced('run', spec.name, () => {
      // As podman: a name is one container's.
      if ([...this.containers.values()].some((c) => c.name === spec.name)) throw new Error(`the container name "${spec.name}" is already in use`);
      const id = `fake${++this.seq}`;
      const now = new Date().toISOString();
      this.containers.set(id, { id, name: spec.name, image: spec.image, labels: spec.labels, state: 'running', createdAt: now, startedAt: now });
      return id;
    });
  }
  async start(id: string): Promise<void> {
    await this.traced('start', this.nameOf(id), () => {
      const c = this.find(id);
      if (c) c.state = 'running';
    });
  }
  async stop(id: string): Promise<void> {
    await this.traced('stop', this.nameOf(id), () => {
      const c = this.find(id);
      if (c) Object.assign(c, { state: 'exited', exitCode: 0, finishedAt: new Date().toISOString() });
    });
  }
  async remove(id: string): Promise<void> {
    await this.traced('remove', this.nameOf(id), () => {
      const c = this.find(id);
      if (c) this.containers.delete(c.id);
    });
  }
  /** The container of that name as it is now (tests poll it without awaiting). */
  byName(name: string): RuntimeContainer | undefined {
    return [...this.containers.values()].find((c) => c.name === name);
  }
  private find(idOrName: string): RuntimeContainer | undefined {
    return this.containers.get(idOrName) ?? [...this.containers.values()].find((c) => c.name === idOrName);
  }
  async logs(id: string, opts: { tail?: number }): Promise<string> {
    const lines = this.opts.growingLogs ? await this.grownLines(id) : ['line 1', 'line 2', 'line 3'];
    return lines.slice(opts.tail === undefined ? 0 : -opts.tail).map((l) => `${l}\n`).join('');
  }
  /** `exit N` exits with N; anything else echoes its argv. */
  async exec(_id: string, cmd: string[]): Promise<ExecResult> {
    if (cmd[0] === 'exit') return { exitCode: Number(cmd[1] ?? 0), output: '', timedOut: false };
    return { exitCode: 0, output: `${cmd.join(' ')}\n`, timedOut: false };
  }
  async pull(image: string): Promise<void> {
    await this.traced('pull', image, () => this.pulled.add(image));
  }
  async images(): Promise<string[]> {
    return [...this.pulled];
  }
  /**
   * As `podman load` of a docker-archive: the names are its manifest.json's RepoTags (read with
   * tar(1)); a file that is no such archive is refused with a RuntimeError.
   */
  async load(archivePath: string): Promise<string[]> {
    return this.traced('load', archivePath, async () => {
      const r = await execa('tar', ['-xOf', archivePath, 'manifest.json'], { reject: false });
      let tags: string[] = [];
      try {
        tags = (JSON.parse(r.stdout) as Array<{ RepoTags?: string[] }>).flatMap((e) => e.RepoTags ?? []);
      } catch {
        // No manifest: below.
      }
      if (r.exitCode !== 0 || !tags.length) throw new RuntimeError(`fake load of ${archivePath} failed: not a docker-archive with tagged images (${r.stderr.trim().slice(0, 200)})`);
      for (const t of tags) this.pulled.add(t);
      return tags;
    });
  }
  async removeImage(ref: string): Promise<void> {
    await this.traced('rmi', ref, () => {
      if ([...this.containers.values()].some((c) => c.image === ref)) throw new RuntimeError(`fake rmi failed: image ${ref} is in use by a container`);
      this.pulled.delete(ref);
    });
  }

  /** As `podman tag`: `target` names what `source` names; a missing source is a RuntimeError. */
  async tag(source: string, target: string): Promise<void> {
    await this.traced('tag', target, () => {
      if (!this.pulled.has(source)) throw new RuntimeError(`fake tag failed: ${source}: image not known`);
      this.pulled.add(target);
    });
  }

  /** Every running container burns `cpuMilli` since it started and holds 8 MiB. */
  async stats(): Promise<ContainerStats[]> {
    const now = Date.now();
    const burn = this.opts.cpuMilli ?? 250;
    return [...this.containers.values()]
      .filter((c) => c.state === 'running')
      .map((c) => ({ id: c.id, cpuNanos: (now - Date.parse(c.startedAt!)) * 1e6 * (burn / 1000), memoryBytes: 8 * 1024 * 1024, sampledAtNanos: now * 1e6 }));
  }

  private async grownLines(id: string): Promise<string[]> {
    const c = await this.inspect(id);
    const since = Date.parse(c?.startedAt ?? new Date().toISOString());
    const n = Math.min(500, 1 + Math.floor((Date.now() - since) / 200));
    return Array.from({ length: n }, (_, i) => `line ${i + 1}`);
  }
}
