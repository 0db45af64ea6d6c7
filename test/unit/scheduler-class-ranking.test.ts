/**
 * Replicas of one template are ranked once per batch over the whole fleet (server/scheduler/class-ranking.ts)
 * instead of each scoring a share of it. What a user would notice if the ranking went wrong: a replica on a
 * node that a full look at the fleet would not choose, a pod on a node it no longer fits (resources, a host
 * port taken by an earlier pod of the batch), or an anti-affinity rule broken. So random fleets and batches
 * are placed twice: by the default chain (ranked), and by copies of its checks that the ranking does not
 * know, run on every node for every pod. The two must agree pod for pod.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { defaultFilters } from '../../server/scheduler/filters.js';
import { scheduleBatch } from '../../server/scheduler/place.js';
import { defaultScorers } from '../../server/scheduler/scorers.js';
import { prng as random } from '../fuzz/generate.js';

function node(i: number, r: () => number, zoned: boolean, oddSizes = false): Node {
  const name = `n-${String(i).padStart(4, '0')}`;
  const cpu = ['500m', '1', '2', '4'][Math.floor(r() * 4)]!;
  // Odd sizes, as devices of one model report slightly different MemTotal: scores then differ in the last digits.
  const memory = oddSizes ? `${3_900_000 + Math.floor(r() * 2048)}Ki` : ['512Mi', '1Gi', '4Gi'][Math.floor(r() * 3)]!;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, rack: `r-${i % 10}`, 'kubernetes.io/arch': r() < 0.3 ? 'arm64' : 'amd64', ...(zoned ? { 'topology.kubernetes.io/zone': `z-${i % 3}` } : {}) } },
    spec: r() < 0.1 ? { taints: [{ key: 'slow', effect: 'PreferNoSchedule' as const }] } : {},
    status: {
      allocatable: { cpu, memory, pods: String(1 + Math.floor(r() * 6)) },
      capacity: { cpu, memory, pods: '110' },
      conditions: [{ type: 'Ready', status: r() < 0.05 ? 'False' : 'True' }],
      images: r() < 0.4 ? ['docker.io/library/nginx:1.27'] : [],
      devices: r() < 0.2 ? ['/dev/ttyUSB0'] : [],
    },
  } as Node;
}

type Template = { app: string; spec: Partial<Pod['spec']>; labels?: Record<string, string> };

function pod(t: Template, i: number, nodeName?: string): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: `${t.app}-${i}`,
      namespace: 'default',
      uid: `${t.app}-u-${i}`,
      labels: { app: t.app, ...t.labels },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: t.app, uid: `rs-${t.app}`, controller: true }],
    },
    spec: { restartPolicy: 'Always', containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu: '100m', memory: '64Mi' } } }], ...t.spec, ...(nodeName ? { nodeName } : {}) },
    ...(nodeName ? { status: { phase: 'Running' as const } } : {}),
  } as Pod;
}

const templates: Template[] = [
  { app: 'web', spec: {} },
  { app: 'big', spec: { containers: [{ name: 'c', image: 'busybox:1.36', resources: { requests: { cpu: '700m', memory: '300Mi' } } }] } },
  { app: 'port', spec: { containers: [{ name: 'c', image: 'nginx:1.27', ports: [{ containerPort: 80, hostPort: 8080, protocol: 'TCP' }] }] } },
  { app: 'arm', spec: { nodeSelector: { 'kubernetes.io/arch': 'arm64' } } },
  { app: 'serial', spec: { containers: [{ name: 'c', image: 'localhost/reader:1', devices: [{ hostPath: '/dev/ttyUSB0' }] }] } },
  { app: 'slow', spec: { tolerations: [{ key: 'slow', operator: 'Exists', effect: 'PreferNoSchedule' }] } },
  { app: 'nothing', spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] } },
];

/** A pod whose required anti-affinity keeps `web` replicas out of its rack (many nodes): placed mid-batch, it ends ranking. */
const loner: Template = {
  app: 'loner',
  spec: { affinity: { podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: 'web' } }, topologyKey: 'rack' }] } } },
};

function scenario(seed: number, opts: { zoned?: boolean; loner?: boolean; oddSizes?: boolean } = {}) {
  const r = random(seed);
  const nodes = Array.from({ length: 150 + Math.floor(r() * 150) }, (_, i) => node(i, r, opts.zoned ?? false, opts.oddSizes));
  // Some pods already placed, so tiers and usage start uneven; with the loner no `web` ones, so that a rack
  // is left for it.
  const first = opts.loner ? 1 : 0;
  const bound = Array.from({ length: 120 }, (_, i) => pod(templates[first + Math.floor(r() * (3 - first))]!, 1000 + i, nodes[Math.floor(r() * nodes.length)]!.metadata.name));
  const batch = () => {
    const rr = random(seed * 7 + 1);
    const out: Pod[] = [];
    for (let i = 0; i < 900; i++) {
      // With the loner: `web` replicas are ranked before it comes, and go on after it.
      out.push(pod(templates[opts.loner && i < 3 ? 0 : Math.floor(rr() * templates.length)]!, i));
      if (opts.loner && i === 3) out.push(pod(loner, i));
    }
    return out;
  };
  return { ctx: { nodes, pods: bound }, batch };
}

function placeBoth(s: ReturnType<typeof scenario>) {
  // Both look at every node when a pod is not ranked (a pod that fits nowhere, a fleet where ranking stops).
  const ranked = scheduleBatch(s.batch(), s.ctx, { percentageOfNodesToScore: 100 });
  const everyNode = scheduleBatch(s.batch(), s.ctx, { filters: defaultFilters.map((f) => ({ ...f })), scorers: defaultScorers.map((x) => ({ ...x })), percentageOfNodesToScore: 100 });
  return { ranked, everyNode };
}

const rows = (out: ReturnType<typeof scheduleBatch>) => out.map((x) => [x.pod.metadata.name, x.node ?? null, x.message]);

describe('replicas ranked over the whole fleet', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`places a random batch as checking every node for every pod does (seed ${seed})`, () => {
      const { ranked, everyNode } = placeBoth(scenario(seed));
      assert.deepEqual(rows(ranked), rows(everyNode));
      // Not trivial: nodes filled up and host ports ran out, so some pods fit nowhere, with every node's reason.
      assert.ok(ranked.some((x) => x.node === undefined && /^0\/\d+ nodes are available: /.test(x.message)), 'some pods fit nowhere');
      const ports = ranked.filter((x) => x.pod.metadata.labels!.app === 'port' && x.node).map((x) => x.node);
      assert.equal(new Set(ports).size, ports.length, 'one host-port pod per node');
    });
  }

  it('places replicas on nodes of one model, whose scores differ in the last digits, as checking every node does', () => {
    // Devices of one model report slightly different MemTotal: their scores differ by less than the 1e-6 points
    // scores are compared to, and a ranking that orders by rounded parts picks another node than the full scan.
    for (let seed = 1; seed <= 40; seed++) {
      const r = random(seed);
      const nodes = Array.from({ length: 30 }, (_, i) => {
        const n = node(i, () => 0.5, false);
        n.status!.allocatable = { cpu: '4', memory: `${8_000_000 + Math.floor(r() * 64)}Ki`, pods: '110' };
        n.status!.conditions = [{ type: 'Ready', status: 'True' }];
        n.status!.images = [];
        n.spec = {};
        return n;
      });
      const other = (i: number): Template => ({ app: 'other', spec: { containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu: `${100 + (i % 3) * 100}m`, memory: '256Mi' } } }] } });
      const bound = Array.from({ length: 20 }, (_, i) => pod(other(Math.floor(r() * 3)), 1000 + i, nodes[Math.floor(r() * nodes.length)]!.metadata.name));
      const small: Template = { app: 'web', spec: { containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu: '10m', memory: '20Mi' } } }] } };
      const { ranked, everyNode } = placeBoth({ ctx: { nodes, pods: bound }, batch: () => Array.from({ length: 250 }, (_, i) => pod(small, i)) });
      assert.deepEqual(rows(ranked), rows(everyNode), `seed ${seed}`);
    }
  });

  it('places a batch of many small classes (only the largest are ranked) as checking every node does', () => {
    const r = random(41);
    const nodes = Array.from({ length: 150 }, (_, i) => node(i, r, false));
    const apps: Template[] = Array.from({ length: 60 }, (_, a) => ({ app: `app-${a}`, spec: { containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu: `${50 + (a % 7) * 50}m`, memory: '64Mi' } } }] } }));
    const batch = () => Array.from({ length: 300 + 60 }, (_, i) => pod(apps[i < 300 ? i % 60 : i % 3]!, i));
    const { ranked, everyNode } = placeBoth({ ctx: { nodes, pods: [] }, batch });
    assert.deepEqual(rows(ranked), rows(everyNode));
  });

  it('stops ranking once a pod with anti-affinity is placed: later replicas keep out of its rack', () => {
    const s = scenario(11, { loner: true });
    const { ranked, everyNode } = placeBoth(s);
    assert.deepEqual(rows(ranked), rows(everyNode));
    const at = ranked.find((x) => x.pod.metadata.labels!.app === 'loner')!.node;
    assert.ok(at, 'the loner is placed');
    const after = ranked.slice(ranked.findIndex((x) => x.pod.metadata.labels!.app === 'loner') + 1);
    const rack = (name: string) => Number(name.slice(2)) % 10;
    const web = after.filter((x) => x.pod.metadata.labels!.app === 'web' && x.node);
    assert.ok(web.length > 0 && web.every((x) => rack(x.node!) !== rack(at)), `web replicas after the loner stay out of rack ${rack(at)}`);
  });

  it('ranks a zoned fleet by zone (spreading moves a whole zone) as every node would place it', () => {
    const { ranked, everyNode } = placeBoth(scenario(21, { zoned: true }));
    assert.deepEqual(rows(ranked), rows(everyNode));
    const zones = new Map<string, number>();
    for (const x of ranked.filter((y) => y.pod.metadata.labels!.app === 'web' && y.node)) {
      const z = `z-${Number(x.node!.slice(2)) % 3}`;
      zones.set(z, (zones.get(z) ?? 0) + 1);
    }
    assert.equal(zones.size, 3, 'web replicas in every zone');
  });

  it('places a zoned fleet with nodes of no zone (each its own zone) as every node would', () => {
    const s = scenario(22, { zoned: true });
    for (let i = 0; i < s.ctx.nodes.length; i += 7) delete s.ctx.nodes[i]!.metadata.labels!['topology.kubernetes.io/zone'];
    const { ranked, everyNode } = placeBoth(s);
    assert.deepEqual(rows(ranked), rows(everyNode));
  });

  it('gives a replica the best node even beyond the share of a large fleet a single pod looks at', () => {
    // 1,000 nodes, all but the last half full: a look at 420 nodes from the first would not reach it.
    const nodes = Array.from({ length: 1_000 }, (_, i) => {
      const n = node(i, () => 0.5, false);
      n.status!.allocatable = { cpu: '4', memory: '8Gi', pods: '110' };
      n.status!.conditions = [{ type: 'Ready', status: 'True' }];
      n.spec = {};
      return n;
    });
    const filler: Template = { app: 'filler', spec: { containers: [{ name: 'c', image: 'nginx:1.27', resources: { requests: { cpu: '2', memory: '4Gi' } } }] } };
    const bound = nodes.slice(0, 999).map((n, i) => pod(filler, i, n.metadata.name));
    // Six replicas: enough for a ranking (together they would look at twice the fleet one by one).
    const out = scheduleBatch(Array.from({ length: 6 }, (_, i) => pod(templates[0]!, i)), { nodes, pods: bound });
    assert.equal(out[0]!.node, 'n-0999');
  });
});
