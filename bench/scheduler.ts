/**
 * Scheduling throughput on simulated fleets (pure `scheduleBatch`, no I/O).
 * Run: node --import tsx bench/scheduler.ts   → writes bench/results/scheduler.json
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import type { Node } from '../src/api/node.js';
import type { Pod } from '../src/api/pod.js';
import { scheduleBatch } from '../server/scheduler/place.js';
import { machine } from './lib/common.js';

function node(i: number): Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `n-${i}`, labels: { 'kubernetes.io/hostname': `n-${i}`, 'kubernetes.io/arch': i % 4 ? 'amd64' : 'arm64', 'topology.kubernetes.io/zone': `z-${i % 5}` } },
    spec: {},
    status: { allocatable: { cpu: '4', memory: '8Gi', pods: '110' }, capacity: { cpu: '4', memory: '8Gi', pods: '110' }, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

function pod(i: number, group: number, antiAffinity: boolean): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `p-${i}`, namespace: 'default', uid: `u-${i}`, labels: { app: `g-${group}` } },
    spec: {
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 10,
      containers: [{ name: 'c', image: 'localhost/x:1', resources: { requests: { cpu: '100m', memory: '64Mi' } } }],
      ...(antiAffinity ? { affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: `g-${group}` } }, topologyKey: 'kubernetes.io/hostname' }] } } } : {}),
    },
  };
}

const results: Array<Record<string, unknown>> = [];
for (const [nodes, pods, anti] of [[200, 1000, false], [200, 1000, true], [1000, 5000, false]] as const) {
  const ns = Array.from({ length: nodes }, (_, i) => node(i));
  const ps = Array.from({ length: pods }, (_, i) => pod(i, i % 50, anti));
  const t0 = performance.now();
  const out = scheduleBatch(ps, { nodes: ns, pods: [] });
  const ms = performance.now() - t0;
  const bound = out.filter((r) => r.node).length;
  results.push({ nodes, pods, antiAffinity: anti, bound, ms: Math.round(ms), podsPerSecond: Math.round((pods / ms) * 1000) });
  console.log(`${pods} pods on ${nodes} nodes${anti ? ' (anti-affinity)' : ''}: ${bound} bound in ${ms.toFixed(0)} ms (${Math.round((pods / ms) * 1000)} pods/s)`);
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(new URL('./results/scheduler.json', import.meta.url), JSON.stringify({ date: new Date().toISOString(), node: process.version, machine: machine(), results }, null, 2) + '\n');
