import { formatCpu } from '../../src/api/quantity.js';
import type { payloads } from '../../src/contract/index.js';

interface Sample {
  usage: payloads.Usage;
  ts: string;
  at: number;
}

/**
 * The latest resource use each agent reported, kept in memory only (like metrics-server): usage
 * changes every heartbeat, and writing it to the store would cost a write per pod per heartbeat.
 */
export class MetricsCache {
  private readonly nodes = new Map<string, Sample>();
  private readonly pods = new Map<string, Sample & { namespace: string; name: string; node: string }>();
  /** Pod keys per node, so a node's report replaces its pods without a scan of every pod. */
  private readonly byNode = new Map<string, Set<string>>();

  constructor(private readonly maxAgeMs = 5 * 60_000, private readonly now: () => number = Date.now) {}

  record(node: string, s: payloads.Status): void {
    const at = this.now();
    if (s.usage) this.nodes.set(node, { usage: s.usage, ts: s.ts, at });
    // Only heartbeats carry pod usage: a status sent on a change must not wipe the last figures.
    if (!s.pods.some((p) => p.usage)) return;
    for (const key of this.byNode.get(node) ?? []) this.pods.delete(key);
    const keys = new Set<string>();
    for (const p of s.pods) {
      if (!p.usage) continue;
      const key = `${p.namespace}/${p.name}`;
      keys.add(key);
      this.pods.set(key, { usage: p.usage, ts: s.ts, at, namespace: p.namespace, name: p.name, node });
    }
    this.byNode.set(node, keys);
  }

  forgetNode(node: string): void {
    this.nodes.delete(node);
    for (const key of this.byNode.get(node) ?? []) this.pods.delete(key);
    this.byNode.delete(node);
  }

  private fresh(at: number): boolean {
    return this.now() - at <= this.maxAgeMs;
  }

  /** metrics.k8s.io-shaped lists, so Kubernetes tooling reads them as it reads metrics-server's. */
  nodeMetrics(): unknown {
    return {
      kind: 'NodeMetricsList',
      apiVersion: 'metrics.k8s.io/v1beta1',
      items: [...this.nodes].filter(([, v]) => this.fresh(v.at)).map(([name, v]) => ({ metadata: { name }, timestamp: v.ts, window: '30s', usage: quantities(v.usage) })),
    };
  }

  podMetrics(namespace?: string): unknown {
    return {
      kind: 'PodMetricsList',
      apiVersion: 'metrics.k8s.io/v1beta1',
      items: [...this.pods.values()]
        .filter((v) => this.fresh(v.at) && (!namespace || v.namespace === namespace))
        .map((v) => ({ metadata: { name: v.name, namespace: v.namespace }, timestamp: v.ts, window: '30s', usage: quantities(v.usage) })),
    };
  }
}

function quantities(u: payloads.Usage): { cpu: string; memory: string } {
  return { cpu: formatCpu(Math.round(u.cpuMilli)), memory: `${Math.round(u.memoryBytes / 1024)}Ki` };
}
