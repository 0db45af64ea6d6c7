import { setTimeout as sleep } from 'node:timers/promises';
import type { payloads } from '../src/contract/index.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { LABELS } from './engine/naming.js';
import type { ContainerRuntime, ContainerStats, RuntimeContainer } from './runtime/types.js';

/** What one sample measured: the whole node, and each pod summed over its containers ("ns/name" keys). */
export interface UsageSample {
  node?: payloads.Usage;
  pods: Map<string, payloads.Usage>;
}

/** Node-wide figures; systeminformation by default (systemMeter), replaceable in tests. */
export interface NodeMeter {
  /** CPU busy since the previous call, in percent of all cores (0..100). */
  cpuPercent(): Promise<number>;
  /** Memory in use (not counting caches), in bytes. */
  memoryBytes(): Promise<number>;
}

/** The node's CPU and memory through systeminformation (loaded with the hello's hardware facts). */
export const systemMeter = (cores: number): NodeMeter & { cores: number } => ({
  cores,
  // systeminformation measures currentLoad between consecutive calls, which is the window we want.
  cpuPercent: async () => (await (await import('systeminformation')).default.currentLoad()).currentLoad,
  memoryBytes: async () => (await (await import('systeminformation')).default.mem()).active,
});

/** A window shorter than this since the last sample is widened by a fresh pair of samples (rates need two). */
const PRIME_AFTER_MS = 60_000;
/** The window of a primed measurement: the first `kubectl top` after a quiet while waits this long. */
const PRIME_WINDOW_MS = 1_000;

/**
 * Turns the runtime's cumulative CPU counters into rates between two samples (as metrics-server does
 * with cAdvisor's), so the first sample of a container reports memory only after a second one came.
 * Sampling is best effort: a runtime that cannot tell, or fails, yields no pod figures, never an error.
 */
export class UsageSampler {
  private prev = new Map<string, ContainerStats>();
  /** When the last sample was taken (undefined: never). */
  private lastAt: number | undefined;
  private pending: Promise<payloads.UsageResult> | undefined;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly meter: NodeMeter & { cores: number },
    private readonly logger: Logger,
  ) {}

  /**
   * The answer to the server's `usage` request: use since the previous request, or, when that is long
   * ago (or there was none, or a container was never sampled), over a fresh one-second window, so
   * `kubectl top` shows what happens now.
   * Requests arriving together share one measurement.
   */
  measure(list: () => Promise<RuntimeContainer[]>, now: () => number = Date.now): Promise<payloads.UsageResult> {
    this.pending ??= this.measureOnce(list, now).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async measureOnce(list: () => Promise<RuntimeContainer[]>, now: () => number): Promise<payloads.UsageResult> {
    const containers = async () =>
      list().catch((err: unknown) => {
        // Node figures are still worth sending; pod figures wait for the runtime.
        this.logger.debug({ err: errorMessage(err) }, 'cannot list containers for usage');
        return [];
      });
    let listed = await containers();
    // A container never sampled has no rate yet (a pod started since the last ask): prime it too.
    const unsampled = listed.some((c) => c.state === 'running' && !this.prev.has(c.id));
    if (this.lastAt === undefined || now() - this.lastAt > PRIME_AFTER_MS || unsampled) {
      await this.sample(listed);
      this.lastAt = now();
      await sleep(PRIME_WINDOW_MS);
      listed = await containers();
    }
    const from = this.lastAt;
    const s = await this.sample(listed);
    const at = now();
    this.lastAt = at;
    return {
      ...(s.node ? { node: s.node } : {}),
      pods: [...s.pods].map(([key, usage]) => {
        const [namespace, name] = key.split('/') as [string, string];
        return { namespace, name, usage };
      }),
      windowSeconds: Math.max(0, (at - from) / 1000),
      ts: new Date(at).toISOString(),
    };
  }

  async sample(containers: RuntimeContainer[]): Promise<UsageSample> {
    const [node, stats] = await Promise.all([this.nodeUsage(), this.containerStats()]);
    const byId = new Map(containers.map((c) => [c.id, c]));
    const pods = new Map<string, payloads.Usage>();
    const next = new Map<string, ContainerStats>();
    for (const s of stats) {
      const c = byId.get(s.id) ?? [...byId.values()].find((x) => x.id.startsWith(s.id) || s.id.startsWith(x.id));
      if (!c) continue;
      const ns = c.labels[LABELS.namespace];
      const pod = c.labels[LABELS.pod];
      if (!ns || !pod) continue;
      next.set(c.id, s);
      const before = this.prev.get(c.id);
      const wallNs = before ? s.sampledAtNanos - before.sampledAtNanos : 0;
      // A restarted container resets its counter: skip its CPU for this window rather than report garbage.
      const cpuMilli = before && wallNs > 0 && s.cpuNanos >= before.cpuNanos ? Math.round(((s.cpuNanos - before.cpuNanos) / wallNs) * 1000) : 0;
      const key = `${ns}/${pod}`;
      const sum = pods.get(key) ?? { cpuMilli: 0, memoryBytes: 0 };
      pods.set(key, { cpuMilli: sum.cpuMilli + cpuMilli, memoryBytes: sum.memoryBytes + s.memoryBytes });
    }
    this.prev = next;
    return { node, pods };
  }

  private async nodeUsage(): Promise<payloads.Usage | undefined> {
    try {
      const [cpu, mem] = await Promise.all([this.meter.cpuPercent(), this.meter.memoryBytes()]);
      return { cpuMilli: Math.max(0, Math.round((cpu / 100) * this.meter.cores * 1000)), memoryBytes: Math.max(0, mem) };
    } catch (err) {
      this.logger.debug({ err: errorMessage(err) }, 'node usage not measured');
      return undefined;
    }
  }

  private async containerStats(): Promise<ContainerStats[]> {
    if (!this.runtime.stats) return [];
    try {
      return await this.runtime.stats();
    } catch (err) {
      this.logger.debug({ err: errorMessage(err) }, 'container usage not measured');
      return [];
    }
  }
}
