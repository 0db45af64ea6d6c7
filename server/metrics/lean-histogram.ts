import type { Registry } from 'prom-client';

/**
 * One labelled series of a LeanHistogram: counts per bucket in a typed array, bumped in place. An
 * observation is a short scan of the bounds and three additions: no label object, hash string or
 * validation per call (prom-client's Histogram spends ~1 us on those per observation, measured by
 * bench/metrics-overhead.ts, against an API create budget of ~140 us at the 7k/s).
 */
export class Series {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Readonly<Record<string, string>>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

interface Value {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/**
 * A Prometheus histogram for the hot paths (every API request, every store write), rendered by
 * prom-client's Registry like its own. Callers keep the Series they use (series() once per label set)
 * and observe on it; label values are the caller's to keep bounded.
 */
export class LeanHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly all: Series[] = [];
  private readonly byKey = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    // The Registry renders any object with a name and get(); its type names only its own classes.
    registry.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The series of these label values (in labelNames order), made on first use. */
  series(...values: string[]): Series {
    const key = values.join('\u0000');
    let s = this.byKey.get(key);
    if (!s) {
      s = new Series(this.bounds, Object.fromEntries(this.labelNames.map((n, i) => [n, values[i] ?? ''])));
      this.byKey.set(key, s);
      this.all.push(s);
    }
    return s;
  }

  /** What prom-client's Registry renders: cumulative buckets (le), then _sum and _count, per series. */
  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Value[] } {
    const values: Value[] = [];
    for (const s of this.all) {
      let acc = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ value: acc, labels: { ...s.labels, le: i < this.bounds.length ? this.bounds[i]! : '+Inf' }, metricName: `${this.name}_bucket` });
      }
      values.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}
