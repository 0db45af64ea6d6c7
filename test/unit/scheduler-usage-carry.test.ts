/**
 * A scheduling pass starts from the node usage the pass before left, when all that happened since is pods
 * bound. What a user would notice if that went wrong: pods placed on a node that is full, or refused one
 * that has room, because the usage missed a pod that went, finished or moved. So a random run of passes
 * (pods created, bound, failing to bind, deleted, finished, relabelled, orphaned, nodes changing) is placed twice,
 * with the carried usage and with usage computed afresh, and every decision and message must agree.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { deepFreeze } from '../../src/util/deep-freeze.js';
import { scheduleBatch } from '../../server/scheduler/place.js';
import { UsageCarry } from '../../server/scheduler/usage-carry.js';

function node(i: number, cpu = '1'): Node {
  return deepFreeze({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `n-${i}`, labels: { 'kubernetes.io/hostname': `n-${i}`, 'topology.kubernetes.io/zone': `z-${i % 2}` } },
    spec: {},
    status: { allocatable: { cpu, memory: '8Gi', pods: '6' }, capacity: { cpu, memory: '8Gi', pods: '6' }, conditions: [{ type: 'Ready', status: 'True' }] },
  } as Node);
}

function pod(i: number, app: string, extra: Partial<Pod['spec']> = {}): Pod {
  return deepFreeze({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${app}-${i}`, namespace: 'default', uid: `u-${app}-${i}`, labels: { app }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: app, uid: `rs-${app}`, controller: true }] },
    spec: { restartPolicy: 'Always', containers: [{ name: 'c', image: 'busybox', resources: { requests: { cpu: '200m', memory: '64Mi' } }, ...(i % 7 === 0 ? { ports: [{ containerPort: 80, hostPort: 8080 }] } : {}) }], ...extra },
  } as Pod);
}

const edit = (p: Pod, f: (copy: Pod) => void): Pod => {
  const c = structuredClone(p);
  f(c);
  return deepFreeze(c);
};

/** A small deterministic generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe('usage carried from one pass to the next', () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`decides as usage computed afresh (seed ${seed})`, () => {
      const r = rng(seed);
      const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[Math.floor(r() * xs.length)] : undefined);
      let nodes = [0, 1, 2, 3].map((i) => node(i));
      const pods = new Map<string, Pod>();
      const carry = new UsageCarry();
      let n = 0;
      let carried = 0;
      for (let pass = 0; pass < 60; pass++) {
        for (let k = Math.floor(r() * 5); k > 0; k--, n++) {
          const p = pod(n, r() < 0.5 ? 'web' : 'db', r() < 0.15 ? { affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'db' } }, topologyKey: 'kubernetes.io/hostname' }] } } } : {});
          pods.set(p.metadata.name, p);
        }
        // What may happen between passes, besides bindings.
        const bound = [...pods.values()].filter((p) => p.spec.nodeName);
        const x = r();
        if (x < 0.1) pods.delete(pick(bound)?.metadata.name ?? '');
        else if (x < 0.18) { const p = pick(bound); if (p) pods.set(p.metadata.name, edit(p, (c) => (c.status = { phase: 'Succeeded' }))); }
        else if (x < 0.24) { const p = pick(bound); if (p) pods.set(p.metadata.name, edit(p, (c) => (c.metadata.labels = { app: c.metadata.labels!.app === 'db' ? 'web' : 'db' }))); }
        else if (x < 0.28) nodes = nodes.map((nd, i) => (i === 1 ? node(1, nd.status!.allocatable!.cpu === '1' ? '2' : '1') : nd));
        else if (x < 0.33) { const p = pick(bound); if (p) pods.set(p.metadata.name, edit(p, (c) => (c.status = { phase: 'Running' }))); }
        else if (x < 0.4) { const p = pick(bound); if (p) pods.set(p.metadata.name, edit(p, (c) => delete c.metadata.ownerReferences)); }
        const all = [...pods.values()];
        const pending = all.filter((p) => !p.spec.nodeName);
        const before = carry.carried;
        const withCarry = scheduleBatch(pending, { nodes, pods: all }, {}, carry);
        carried += carry.carried - before;
        const fresh = scheduleBatch(pending, { nodes, pods: all });
        assert.deepEqual(
          withCarry.map((d) => [d.pod.metadata.name, d.node ?? null, d.message]),
          fresh.map((d) => [d.pod.metadata.name, d.node ?? null, d.message]),
          `pass ${pass}`,
        );
        // Bindings land, but now and then one fails (the pod was changed meanwhile): it stays pending.
        for (const d of withCarry) if (d.node && r() > 0.1) pods.set(d.pod.metadata.name, edit(d.pod, (c) => (c.spec.nodeName = d.node)));
      }
      assert.ok(carried > 10, `most passes start from the carried usage (${carried} of 60)`);
    });
  }

  it('a full node stays full across passes, and room made by a pod that finished is seen', () => {
    const nodes = [node(0)]; // 1 CPU: five pods of 200m
    const carry = new UsageCarry();
    const first = Array.from({ length: 5 }, (_, i) => pod(i, 'web'));
    const d1 = scheduleBatch(first, { nodes, pods: first }, {}, carry);
    assert.ok(d1.every((d) => d.node === 'n-0'));
    const bound = d1.map((d) => edit(d.pod, (c) => (c.spec.nodeName = 'n-0')));
    const sixth = pod(5, 'web');
    const [d2] = scheduleBatch([sixth], { nodes, pods: [...bound, sixth] }, {}, carry);
    assert.equal(d2!.node, undefined);
    assert.match(d2!.message, /Insufficient cpu/);
    assert.equal(carry.carried, 1);
    const finished = edit(bound[0]!, (c) => (c.status = { phase: 'Succeeded' }));
    const [d3] = scheduleBatch([sixth], { nodes, pods: [finished, ...bound.slice(1), sixth] }, {}, carry);
    assert.equal(d3!.node, 'n-0');
  });
});
