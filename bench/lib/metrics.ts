/**
 * Reads a drover /metrics endpoint (server: GET https://SERVER/metrics with a view token; agent:
 * `--metrics-addr`, plain HTTP on loopback) into samples the benchmarks can compare before and after a
 * run: `const m0 = await scrape(url, token); ...; const m1 = await scrape(url, token);
 * m1.value('drover_store_commit_batch_writes_count') - m0.value(...)`. HTTPS: the caller makes fetch
 * trust the cluster CA first (trustCa from test/helpers/cluster.ts), as the benchmarks already do.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(v: string): string {
  return v.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function number(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

/** Prometheus text format (0.0.4) → samples; comments (# HELP, # TYPE) and blank lines skipped. A line that is neither is an error naming it. */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line.slice(0, 200)}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(LABEL)) labels[l[1]!] = unescape(l[2]!);
    out.push({ name: m[1]!, labels, value: number(m[3]!) });
  }
  return out;
}

/** Histogram figures summed over the series that match. */
export interface HistogramFigures {
  count: number;
  sum: number;
  /** Cumulative counts by upper bound (`le`), ascending, +Inf last. */
  buckets: Array<{ le: number; count: number }>;
}

export class Metrics {
  constructor(readonly samples: Sample[]) {}

  /** Samples named `name` whose labels include every pair of `match`. */
  series(name: string, match: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
  }

  /** The sum of the matching samples (0 when there are none: a counter not yet touched). */
  value(name: string, match: Record<string, string> = {}): number {
    return this.series(name, match).reduce((n, s) => n + s.value, 0);
  }

  histogram(name: string, match: Record<string, string> = {}): HistogramFigures {
    const byLe = new Map<number, number>();
    for (const s of this.series(`${name}_bucket`, match)) {
      const le = number(s.labels.le ?? 'NaN');
      byLe.set(le, (byLe.get(le) ?? 0) + s.value);
    }
    const buckets = [...byLe].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
    return { count: this.value(`${name}_count`, match), sum: this.value(`${name}_sum`, match), buckets };
  }

  /** The q-quantile (0..1) of a histogram, interpolated inside its bucket as Prometheus' histogram_quantile does. */
  quantile(name: string, q: number, match: Record<string, string> = {}): number {
    const { count, buckets } = this.histogram(name, match);
    if (count === 0) return NaN;
    const rank = q * count;
    let prevLe = 0;
    let prevCount = 0;
    for (const b of buckets) {
      if (b.count >= rank) {
        if (b.le === Infinity) return prevLe;
        return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount);
      }
      prevLe = b.le;
      prevCount = b.count;
    }
    return prevLe;
  }
}

/** GET `url` (…/metrics) with the bearer token, if any; throws naming the status when it is not 200. */
export async function scrape(url: string, token?: string): Promise<Metrics> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`scrape ${url}: HTTP ${res.status}: ${text.slice(0, 200)}`);
  return new Metrics(parseExposition(text));
}
