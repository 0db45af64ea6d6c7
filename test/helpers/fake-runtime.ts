import type { ContainerRuntime, ContainerStats, ExecResult, RunSpec, RuntimeContainer } from '../../agent/runtime/types.js';

export interface FakeRuntimeOptions {
  /**
   * Logs grow by a line every 200 ms of a container's life, so `logs -f` has something new to
   * print. Default: every container logs the same three lines.
   */
  growingLogs?: boolean;
  /** CPU each running container burns, in millicores, for `stats()` (`top`). Default 250. */
  cpuMilli?: number;
}

/** Enough of a container runtime for an agent to run pods and serve logs, without podman. */
export class FakeRuntime implements ContainerRuntime {
  readonly name = 'fake';
  private readonly containers = new Map<string, RuntimeContainer>();
  private seq = 0;
  private readonly pulled = new Set<string>();

  constructor(private readonly opts: FakeRuntimeOptions = {}) {}

  async version(): Promise<string> {
    return '1.0.0';
  }
  async list(labels: Record<string, string>): Promise<RuntimeContainer[]> {
    return [...this.containers.values()].filter((c) => Object.entries(labels).every(([k, v]) => k in c.labels && (v === '' || c.labels[k] === v)));
  }
  async inspect(idOrName: string): Promise<RuntimeContainer | undefined> {
    return this.containers.get(idOrName) ?? [...this.containers.values()].find((c) => c.name === idOrName);
  }
  async run(spec: RunSpec): Promise<string> {
    const id = `fake${++this.seq}`;
    const now = new Date().toISOString();
    this.containers.set(id, { id, name: spec.name, image: spec.image, labels: spec.labels, state: 'running', createdAt: now, startedAt: now });
    return id;
  }
  async start(id: string): Promise<void> {
    const c = await this.inspect(id);
    if (c) c.state = 'running';
  }
  async stop(id: string): Promise<void> {
    const c = await this.inspect(id);
    if (c) Object.assign(c, { state: 'exited', exitCode: 0, finishedAt: new Date().toISOString() });
  }
  async remove(id: string): Promise<void> {
    const c = await this.inspect(id);
    if (c) this.containers.delete(c.id);
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
    this.pulled.add(image);
  }
  async images(): Promise<string[]> {
    return [...this.pulled];
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
