/**
 * The API's managedFields bookkeeping per write (server/api/apply.ts recordUpdate), in one process: a Pod create
 * (what POST /api/v1/.../pods records) and an update of its image (PUT), microseconds per call, median of
 * --runs after a warm-up.
 * Run: node --import tsx bench/managed-fields.ts [--runs 5] [--calls 50000] [--label NAME]
 *      → bench/results/managed-fields[-NAME].json
 */
import { recordUpdate } from '../server/api/apply.js';
import { median, numArg, parseArgs, round, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));
const RUNS = numArg(args, 'runs', 5);
const CALLS = numArg(args, 'calls', 50_000);
const label = args.get('label');

const pod = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app: 'bench' } },
  spec: { containers: [{ name: 'main', image: 'docker.io/library/busybox:1.36', command: ['sleep', '3600'] }] },
});

function perCall(fn: (i: number) => unknown): number {
  for (let i = 0; i < CALLS / 5; i++) fn(i);
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) fn(i);
    runs.push(((performance.now() - t0) * 1000) / CALLS);
  }
  return round(median(runs), 2);
}

const now = new Date();
const created = recordUpdate(undefined, pod('p'), 'kubectl', now);
const result = {
  calls: CALLS,
  runs: RUNS,
  createMicroseconds: perCall((i) => recordUpdate(undefined, pod(`p${i}`), 'kubectl', now)),
  updateMicroseconds: perCall((i) => recordUpdate(created, { ...created, spec: { containers: [{ ...created.spec.containers[0]!, image: `busybox:${i % 3}` }] } }, 'kubectl', now)),
};
console.log(`managedFields per write: create ${result.createMicroseconds} µs, update ${result.updateMicroseconds} µs`);
console.log(`wrote ${writeResult(label ? `managed-fields-${label}` : 'managed-fields', result)}`);
