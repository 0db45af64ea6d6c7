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

  constructor(private readonly maxAgeMs = 5 * 60_000, private readonly now: () => number = Date.now) {}

  record(node: string, s: payloads.Status): void {
    const at = this.now();
    if (s.usage) this.nodes.set(node, { usage: s.usage, ts: s.ts, at });
    for (const key of [...this.pods.keys()]) if (this.pods.get(key)!.node === node) this.pods.delete(key);
    for (const p of s.pods) if (p.usage) this.pods.set(`${p.namespace}/${p.name}`, { usage: p.usage, ts: s.ts, at, namespace: p.namespace, name: p.name, node });
  }

  forgetNode(node: string): void {
    this.nodes.delete(node);
    for (const [k, v] of this.pods) if (v.node === node) this.pods.delete(k);
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
