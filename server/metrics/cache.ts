import { formatCpu } from '../../src/api/quantity.js';
import type { Node } from '../../src/api/node.js';
import { parseWith } from '../../src/api/validate.js';
import { payloads } from '../../src/contract/index.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Store } from '../store/types.js';

interface Sample {
  usage: payloads.Usage;
  ts: string;
  at: number;
  /** Seconds the figures average over (metrics.k8s.io's `window`). */
  window: number;
}

/** Sends an agent a request and waits for its answer (the server's MQTT link). */
export interface NodeAsker {
  request(node: string, req: payloads.AgentRequest, timeoutMs: number): Promise<payloads.Response>;
}

/** What a read of the metrics API is about: node figures (one node or all), or pod figures (a namespace, one pod, or all). */
export interface MetricsQuery {
  nodes: boolean;
  namespace?: string;
  name?: string;
}

export interface MetricsCacheOptions {
  /** Figures older than this are not served. */
  maxAgeMs?: number;
  now?: () => number;
  /**
   * Asks the agents for fresh figures when the API is read (refresh): agents measure only on request,
   * not on every heartbeat. Without it the cache serves what statuses carried (agents older than the
   * `usage` request send usage with their heartbeats).
   */
  ask?: { requester: NodeAsker; store: Pick<Store, 'list' | 'get'>; logger: Logger; freshMs?: number; timeoutMs?: number };
}

/** Figures younger than this are served as they are; older ones are asked for again. */
const FRESH_MS = 15_000;
/** A node running a pod without figures is asked again after this long, fresh figures or not. */
const MISSING_RETRY_MS = 2_000;
/** Longest a read of the metrics API waits for the agents' answers (a primed measurement takes about a second). */
const ASK_TIMEOUT_MS = 5_000;
/** Answers from this many nodes are awaited at once. */
const ASK_GROUP = 256;

/**
 * The latest resource use of each node and pod, kept in memory only (like metrics-server): writing it
 * to the store would cost a write per pod per sample. Filled on demand: a read of the metrics API asks
 * the nodes it concerns whose figures are older than 15 s (`refresh`), so an idle fleet sends none.
 */
export class MetricsCache {
  private readonly nodes = new Map<string, Sample>();
  private readonly pods = new Map<string, Sample & { namespace: string; name: string; node: string }>();
  /** Pod keys per node, so a node's report replaces its pods without a scan of every pod. */
  private readonly byNode = new Map<string, Set<string>>();
  /** When each node was last asked (answered or not): a node that cannot answer is not asked on every read. */
  private readonly asked = new Map<string, number>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: MetricsCacheOptions = {}) {
    this.maxAgeMs = opts.maxAgeMs ?? 5 * 60_000;
    this.now = opts.now ?? Date.now;
  }

  /** Usage a status carried (agents older than the `usage` request send it with their heartbeats). */
  record(node: string, s: payloads.Status): void {
    const at = this.now();
    if (s.usage) this.nodes.set(node, { usage: s.usage, ts: s.ts, at, window: 30 });
    // Only heartbeats carry pod usage: a status sent on a change must not wipe the last figures.
    if (!s.pods.some((p) => p.usage)) return;
    for (const key of this.byNode.get(node) ?? []) this.pods.delete(key);
    const keys = new Set<string>();
    for (const p of s.pods) {
      if (!p.usage) continue;
      const key = `${p.namespace}/${p.name}`;
      keys.add(key);
      this.pods.set(key, { usage: p.usage, ts: s.ts, at, window: 30, namespace: p.namespace, name: p.name, node });
    }
    this.byNode.set(node, keys);
  }

  /** A node's answer to a `usage` request: its figures and all its pods' (a pod it no longer lists is gone). */
  recordUsage(node: string, u: payloads.UsageResult): void {
    const at = this.now();
    const window = Math.round(u.windowSeconds);
    if (u.node) this.nodes.set(node, { usage: u.node, ts: u.ts, at, window });
    for (const key of this.byNode.get(node) ?? []) this.pods.delete(key);
    const keys = new Set<string>();
    for (const p of u.pods) {
      const key = `${p.namespace}/${p.name}`;
      keys.add(key);
      this.pods.set(key, { usage: p.usage, ts: u.ts, at, window, namespace: p.namespace, name: p.name, node });
    }
    this.byNode.set(node, keys);
  }

  forgetNode(node: string): void {
    this.nodes.delete(node);
    for (const key of this.byNode.get(node) ?? []) this.pods.delete(key);
    this.byNode.delete(node);
    this.asked.delete(node);
  }

  /**
   * Before a read of the metrics API: asks the Ready nodes the query concerns for fresh figures (all
   * nodes; the nodes of the pods of a namespace; the node of one pod), those asked more than 15 s ago,
   * and waits for their answers up to a few seconds. A node that does not answer (offline, an agent
   * without the request) keeps the figures it had.
   */
  async refresh(q: MetricsQuery): Promise<void> {
    const ask = this.opts.ask;
    if (!ask) return;
    const { nodes: targets, missing } = await this.nodesFor(q, ask.store);
    const freshMs = ask.freshMs ?? FRESH_MS;
    const now = this.now();
    // A node running a pod the cache has no figures for (started since the last ask) is asked sooner.
    const due = targets.filter((n) => this.inFlight.has(n) || now - (this.asked.get(n) ?? -Infinity) > (missing.has(n) ? Math.min(freshMs, MISSING_RETRY_MS) : freshMs));
    for (let i = 0; i < due.length; i += ASK_GROUP) await Promise.all(due.slice(i, i + ASK_GROUP).map((n) => this.askNode(n)));
  }

  private askNode(node: string): Promise<void> {
    const running = this.inFlight.get(node);
    if (running) return running;
    const ask = this.opts.ask!;
    this.asked.set(node, this.now());
    const p = ask.requester
      .request(node, { op: 'usage' }, ask.timeoutMs ?? ASK_TIMEOUT_MS)
      .then((r) => {
        if (!r.ok) throw new Error(r.error?.message ?? 'usage request failed');
        this.recordUsage(node, parseWith(payloads.usageResult, r.data, `usage from ${node}`));
      })
      .catch((err: unknown) => ask.logger.debug({ node, err: errorMessage(err) }, 'no fresh usage from node'))
      .finally(() => this.inFlight.delete(node));
    this.inFlight.set(node, p);
    return p;
  }

  /** The Ready nodes a query concerns, and those of them running a pod the cache has no figures for. */
  private async nodesFor(q: MetricsQuery, store: Pick<Store, 'list' | 'get'>): Promise<{ nodes: string[]; missing: Set<string> }> {
    const ready = (n: Node | undefined) => n?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
    const missing = new Set<string>();
    if (q.nodes) {
      if (q.name) return { nodes: ready(await store.get('Node', '', q.name)) ? [q.name] : [], missing };
      return { nodes: (await store.list('Node')).items.filter(ready).map((n) => n.metadata.name), missing };
    }
    const pods = q.name && q.namespace ? [await store.get('Pod', q.namespace, q.name)].filter((p) => p !== undefined) : (await store.list('Pod', q.namespace)).items;
    const names = new Set<string>();
    for (const p of pods) {
      const node = p.spec.nodeName;
      if (!node || (q.namespace && p.metadata.namespace !== q.namespace)) continue;
      names.add(node);
      if (p.status?.phase === 'Running' && !this.pods.has(`${p.metadata.namespace ?? 'default'}/${p.metadata.name}`)) missing.add(node);
    }
    const out: string[] = [];
    for (const n of names) if (ready(await store.get('Node', '', n))) out.push(n);
    return { nodes: out, missing };
  }

  private fresh(at: number): boolean {
    return this.now() - at <= this.maxAgeMs;
  }

  /** metrics.k8s.io-shaped lists, so Kubernetes tooling reads them as it reads metrics-server's. */
  nodeMetrics(): unknown {
    return {
      kind: 'NodeMetricsList',
      apiVersion: 'metrics.k8s.io/v1beta1',
      items: [...this.nodes].filter(([, v]) => this.fresh(v.at)).map(([name, v]) => ({ metadata: { name }, timestamp: v.ts, window: `${v.window}s`, usage: quantities(v.usage) })),
    };
  }

  podMetrics(namespace?: string): unknown {
    return {
      kind: 'PodMetricsList',
      apiVersion: 'metrics.k8s.io/v1beta1',
      items: [...this.pods.values()]
        .filter((v) => this.fresh(v.at) && (!namespace || v.namespace === namespace))
        .map((v) => ({ metadata: { name: v.name, namespace: v.namespace }, timestamp: v.ts, window: `${v.window}s`, usage: quantities(v.usage) })),
    };
  }
}

function quantities(u: payloads.Usage): { cpu: string; memory: string } {
  return { cpu: formatCpu(Math.round(u.cpuMilli)), memory: `${Math.round(u.memoryBytes / 1024)}Ki` };
}
