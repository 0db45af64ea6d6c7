import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node, Taint } from '../../src/api/node.js';
import type { Pod, PodPhase } from '../../src/api/pod.js';
import { daemonSet, type DaemonSet } from '../../src/api/workloads.js';
import { newDaemonPod, nodeChangeWakes, nodeFacts, nodeShouldRunDaemonPod, placementFacts, planDaemonSet, REVISION_LABEL } from '../../server/controllers/daemonset.js';
import { podTemplateHash as templateHash } from '../../src/api/revisions.js';
import { generateName } from '../../server/controllers/pods.js';

const NOW = Date.parse('2025-01-01T00:00:00Z');
const DS_UID = 'ds-uid-1';

function mkNode(name: string, o: { ready?: boolean; unschedulable?: boolean; labels?: Record<string, string>; taints?: Taint[]; cpu?: string } = {}): Node {
  const alloc = { cpu: o.cpu ?? '4', memory: '8Gi', pods: '110' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...o.labels } },
    spec: { ...(o.unschedulable ? { unschedulable: true } : {}), ...(o.taints ? { taints: o.taints } : {}) },
    status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
  };
}

function mkDs(o: { nodeSelector?: Record<string, string>; image?: string; strategy?: unknown; tolerations?: unknown[]; hostPort?: number; cpu?: string; minReadySeconds?: number } = {}): DaemonSet {
  return daemonSet.parse({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent', namespace: 'default', uid: DS_UID, generation: 3 },
    spec: {
      selector: { matchLabels: { app: 'agent' } },
      ...(o.strategy ? { updateStrategy: o.strategy } : {}),
      ...(o.minReadySeconds ? { minReadySeconds: o.minReadySeconds } : {}),
      template: {
        metadata: { labels: { app: 'agent' } },
        spec: {
          ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
          ...(o.tolerations ? { tolerations: o.tolerations } : {}),
          containers: [
            {
              name: 'main',
              image: o.image ?? 'busybox:1',
              ...(o.hostPort ? { ports: [{ containerPort: 80, hostPort: o.hostPort }] } : {}),
              ...(o.cpu ? { resources: { requests: { cpu: o.cpu } } } : {}),
            },
          ],
        },
      },
    },
  });
}

let seq = 0;
/** A pod of the DaemonSet on `node`, made from `ds`'s template (or another hash), Ready unless told. */
function dsPod(ds: DaemonSet, node: string, o: { hash?: string; ready?: boolean; readySince?: number; phase?: PodPhase; created?: number } = {}): Pod {
  const p = newDaemonPod(ds, node, o.hash ?? templateHash(ds.spec.template), NOW);
  seq += 1;
  p.metadata.name = `agent-p${seq}`;
  p.metadata.uid = `pod-${seq}`;
  p.metadata.creationTimestamp = new Date(o.created ?? NOW - 60_000 + seq).toISOString();
  const ready = o.ready ?? true;
  p.status = {
    phase: o.phase ?? 'Running',
    conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date(o.readySince ?? NOW - 30_000).toISOString() }],
  };
  return p;
}

function otherPod(node: string, hostPort: number): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'other', namespace: 'default', uid: 'other-uid' },
    spec: { nodeName: node, restartPolicy: 'Always', terminationGracePeriodSeconds: 10, containers: [{ name: 'c', image: 'x', ports: [{ containerPort: 1, hostPort, protocol: 'TCP' }] }] },
    status: { phase: 'Running' },
  };
}

const names = (pods: Array<{ pod: Pod }>) => pods.map((d) => d.pod.metadata.name).sort();

describe('newDaemonPod / templateHash / generateName', () => {
  it('builds a bound pod with the template, hash label, owner reference and daemon tolerations', () => {
    const ds = mkDs({ tolerations: [{ key: 'dedicated', operator: 'Exists' }] });
    const p = newDaemonPod(ds, 'edge-1', 'abc', NOW);
    assert.equal(p.spec.nodeName, 'edge-1');
    assert.equal(p.metadata.namespace, 'default');
    assert.deepEqual(p.metadata.labels, { app: 'agent', [REVISION_LABEL]: 'abc' });
    assert.deepEqual(p.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'agent', uid: DS_UID, controller: true, blockOwnerDeletion: true }]);
    const keys = p.spec.tolerations!.map((t) => `${t.key}:${t.effect ?? ''}`);
    assert.ok(keys.includes('dedicated:'));
    assert.ok(keys.includes('node.kubernetes.io/not-ready:NoExecute'));
    assert.ok(keys.includes('node.kubernetes.io/unreachable:NoExecute'));
    assert.ok(keys.includes('node.kubernetes.io/unschedulable:NoSchedule'));
    assert.equal(p.status?.conditions?.[0]?.type, 'PodScheduled');
    // The template itself is not changed.
    assert.equal(ds.spec.template.spec.tolerations!.length, 1);
  });

  it('hashes templates stably and differently per content', () => {
    assert.equal(templateHash(mkDs().spec.template), templateHash(mkDs().spec.template));
    assert.notEqual(templateHash(mkDs().spec.template), templateHash(mkDs({ image: 'busybox:2' }).spec.template));
    assert.match(templateHash(mkDs().spec.template), /^[bcdfghjklmnpqrstvwxz2456789]{10}$/);
  });

  it('generates names as base-xxxxx', () => {
    const n = generateName('agent');
    assert.match(n, /^agent-[a-z0-9]{5}$/);
    assert.match(generateName('a'.repeat(100)), /^a{58}-[a-z0-9]{5}$/);
  });
});

describe('planDaemonSet: which nodes', () => {
  it('creates one pod per matching node, including not-ready, cordoned and full nodes', () => {
    const ds = mkDs({ nodeSelector: { role: 'edge' }, cpu: '2' });
    const nodes = [
      mkNode('a', { labels: { role: 'edge' } }),
      mkNode('b', { labels: { role: 'edge' }, ready: false }),
      mkNode('c', { labels: { role: 'edge' }, unschedulable: true }),
      mkNode('d', { labels: { role: 'edge' }, cpu: '1' }),
      mkNode('e', { labels: { role: 'core' } }),
    ];
    const plan = planDaemonSet(ds, nodes, [], { now: NOW });
    assert.deepEqual(plan.create, ['a', 'b', 'c', 'd']);
    assert.deepEqual(plan.delete, []);
    assert.equal(plan.status.desiredNumberScheduled, 4);
    assert.equal(plan.status.currentNumberScheduled, 0);
    assert.equal(plan.status.observedGeneration, 3);
  });

  it('is idempotent: nothing to do when every node has an up-to-date ready pod', () => {
    const ds = mkDs();
    const nodes = [mkNode('a'), mkNode('b')];
    const pods = [dsPod(ds, 'a'), dsPod(ds, 'b')];
    const plan = planDaemonSet(ds, nodes, pods, { now: NOW });
    assert.deepEqual(plan.create, []);
    assert.deepEqual(plan.delete, []);
    assert.deepEqual(plan.status, {
      desiredNumberScheduled: 2,
      currentNumberScheduled: 2,
      numberReady: 2,
      updatedNumberScheduled: 2,
      numberAvailable: 2,
      numberMisscheduled: 0,
      observedGeneration: 3,
    });
  });

  it('a node that joins later gets a pod', () => {
    const ds = mkDs();
    const plan = planDaemonSet(ds, [mkNode('a'), mkNode('b')], [dsPod(ds, 'a')], { now: NOW });
    assert.deepEqual(plan.create, ['b']);
  });

  it('ignores pods of other owners and other namespaces', () => {
    const ds = mkDs();
    const foreign = dsPod(ds, 'a');
    foreign.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'agent', uid: 'other-uid', controller: true }];
    const elsewhere = dsPod(ds, 'a');
    elsewhere.metadata.namespace = 'kube-system';
    const plan = planDaemonSet(ds, [mkNode('a')], [foreign, elsewhere], { now: NOW });
    assert.deepEqual(plan.create, ['a']);
    assert.deepEqual(plan.delete, []);
  });

  it('removes pods on deleted nodes and on nodes that no longer match', () => {
    const ds = mkDs({ nodeSelector: { role: 'edge' } });
    const gone = dsPod(ds, 'gone');
    const relabeled = dsPod(ds, 'b');
    const ok = dsPod(ds, 'a');
    const plan = planDaemonSet(ds, [mkNode('a', { labels: { role: 'edge' } }), mkNode('b', { labels: { role: 'core' } })], [gone, relabeled, ok], { now: NOW });
    assert.deepEqual(names(plan.delete), [gone.metadata.name, relabeled.metadata.name].sort());
    assert.deepEqual(plan.create, []);
    assert.equal(plan.status.numberMisscheduled, 1);
    assert.equal(plan.status.desiredNumberScheduled, 1);
  });

  it('replaces a terminated pod and deletes duplicates on a node', () => {
    const ds = mkDs();
    const failed = dsPod(ds, 'a', { phase: 'Failed', ready: false });
    const first = dsPod(ds, 'b', { created: NOW - 100_000 });
    const dup = dsPod(ds, 'b', { created: NOW - 50_000 });
    const plan = planDaemonSet(ds, [mkNode('a'), mkNode('b')], [failed, first, dup], { now: NOW });
    assert.deepEqual(names(plan.delete), [failed.metadata.name, dup.metadata.name].sort());
    assert.deepEqual(plan.create, ['a']);
  });

  it('host ports: skips nodes where another pod holds the port, never conflicts with itself', () => {
    const ds = mkDs({ hostPort: 8080 });
    const own = dsPod(ds, 'a');
    const plan = planDaemonSet(ds, [mkNode('a'), mkNode('b'), mkNode('c')], [own, otherPod('b', 8080), otherPod('c', 9090)], { now: NOW });
    assert.deepEqual(plan.create, ['c']);
    assert.deepEqual(plan.delete, []);
    assert.equal(plan.status.desiredNumberScheduled, 2);
  });
});

describe('planDaemonSet: taints', () => {
  const noSched: Taint = { key: 'dedicated', value: 'gpu', effect: 'NoSchedule' };
  const noExec: Taint = { key: 'dedicated', value: 'gpu', effect: 'NoExecute' };

  it('untolerated NoSchedule keeps new pods away but lets a running one stay (counted misscheduled)', () => {
    const ds = mkDs();
    assert.deepEqual(planDaemonSet(ds, [mkNode('a', { taints: [noSched] })], [], { now: NOW }).create, []);
    const fit = nodeShouldRunDaemonPod(ds, mkNode('a', { taints: [noSched] }));
    assert.equal(fit.shouldRun, false);
    assert.equal(fit.shouldContinueRunning, true);
    assert.match(fit.reasons[0]!, /untolerated taint \{dedicated: gpu\}/);
    const plan = planDaemonSet(ds, [mkNode('a', { taints: [noSched] })], [dsPod(ds, 'a')], { now: NOW });
    assert.deepEqual(plan.delete, []);
    assert.equal(plan.status.numberMisscheduled, 1);
    assert.equal(plan.status.desiredNumberScheduled, 0);
  });

  it('untolerated NoExecute evicts', () => {
    const ds = mkDs();
    const p = dsPod(ds, 'a');
    const plan = planDaemonSet(ds, [mkNode('a', { taints: [noExec] })], [p], { now: NOW });
    assert.deepEqual(names(plan.delete), [p.metadata.name]);
    assert.deepEqual(plan.create, []);
  });

  it('tolerated taints are fine; not-ready/unreachable/unschedulable taints are tolerated by default', () => {
    const ds = mkDs({ tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'gpu' }] });
    const sys: Taint[] = [
      { key: 'node.kubernetes.io/not-ready', effect: 'NoExecute' },
      { key: 'node.kubernetes.io/unreachable', effect: 'NoExecute' },
      { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' },
    ];
    const plan = planDaemonSet(ds, [mkNode('a', { taints: [noSched, noExec] }), mkNode('b', { taints: sys, ready: false })], [], { now: NOW });
    assert.deepEqual(plan.create, ['a', 'b']);
  });
});

describe('planDaemonSet: updates', () => {
  const OLD = 'oldhash000';

  it('RollingUpdate maxUnavailable 1: replaces one available old pod at a time', () => {
    const ds = mkDs();
    const nodes = [mkNode('a'), mkNode('b'), mkNode('c')];
    const pods = [dsPod(ds, 'a', { hash: OLD }), dsPod(ds, 'b', { hash: OLD }), dsPod(ds, 'c', { hash: OLD })];
    const plan = planDaemonSet(ds, nodes, pods, { now: NOW });
    assert.equal(plan.delete.length, 1);
    assert.equal(plan.delete[0]!.pod.spec.nodeName, 'a');
    assert.deepEqual(plan.create, []);
    assert.equal(plan.status.updatedNumberScheduled, 0);

    // Next pass: a's pod is gone → create it there, but delete nothing more (a is unavailable).
    const plan2 = planDaemonSet(ds, nodes, pods.slice(1), { now: NOW });
    assert.deepEqual(plan2.create, ['a']);
    assert.deepEqual(plan2.delete, []);

    // New pod on a not ready yet: still nothing deleted.
    const fresh = dsPod(ds, 'a', { ready: false });
    assert.deepEqual(planDaemonSet(ds, nodes, [fresh, ...pods.slice(1)], { now: NOW }).delete, []);
    // Ready: the next old one goes.
    const readyNew = dsPod(ds, 'a');
    const plan3 = planDaemonSet(ds, nodes, [readyNew, ...pods.slice(1)], { now: NOW });
    assert.deepEqual(plan3.delete.map((d) => d.pod.spec.nodeName), ['b']);
    assert.equal(plan3.status.updatedNumberScheduled, 1);
  });

  it('RollingUpdate: maxUnavailable 2 and percentages; old unavailable pods go at once', () => {
    const nodes = [mkNode('a'), mkNode('b'), mkNode('c'), mkNode('d')];
    const ds2 = mkDs({ strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 2 } } });
    const pods = (ds: DaemonSet) => nodes.map((n) => dsPod(ds, n.metadata.name, { hash: OLD }));
    assert.equal(planDaemonSet(ds2, nodes, pods(ds2), { now: NOW }).delete.length, 2);
    const ds50 = mkDs({ strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '50%' } } });
    assert.equal(planDaemonSet(ds50, nodes, pods(ds50), { now: NOW }).delete.length, 2);
    const ds1 = mkDs();
    const ps = pods(ds1);
    ps[3] = dsPod(ds1, 'd', { hash: OLD, ready: false });
    // d is unavailable: it is replaced at once and uses the whole budget of 1.
    assert.deepEqual(planDaemonSet(ds1, nodes, ps, { now: NOW }).delete.map((d) => d.pod.spec.nodeName), ['d']);
  });

  it('OnDelete: old pods stay; only missing pods are created from the new template', () => {
    const ds = mkDs({ strategy: { type: 'OnDelete' } });
    const plan = planDaemonSet(ds, [mkNode('a'), mkNode('b')], [dsPod(ds, 'a', { hash: OLD })], { now: NOW });
    assert.deepEqual(plan.delete, []);
    assert.deepEqual(plan.create, ['b']);
    assert.equal(plan.status.updatedNumberScheduled, 0);
  });

  it('RollingUpdate with maxSurge: new pod next to the old one, old removed once the new is available', () => {
    const ds = mkDs({ strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } });
    const nodes = [mkNode('a'), mkNode('b')];
    const oldA = dsPod(ds, 'a', { hash: OLD });
    const oldB = dsPod(ds, 'b', { hash: OLD });
    const p1 = planDaemonSet(ds, nodes, [oldA, oldB], { now: NOW });
    assert.deepEqual(p1.create, ['a']);
    assert.deepEqual(p1.delete, []);
    const newA = dsPod(ds, 'a', { ready: false });
    const p2 = planDaemonSet(ds, nodes, [oldA, oldB, newA], { now: NOW });
    assert.deepEqual(p2.create, []);
    assert.deepEqual(p2.delete, []);
    const newAReady = dsPod(ds, 'a');
    const p3 = planDaemonSet(ds, nodes, [oldA, oldB, newAReady], { now: NOW });
    assert.deepEqual(names(p3.delete), [oldA.metadata.name]);
    assert.deepEqual(p3.create, []);
    const p4 = planDaemonSet(ds, nodes, [oldB, newAReady], { now: NOW });
    assert.deepEqual(p4.create, ['b']);
  });

  it('minReadySeconds: a ready pod is not available yet, and the plan asks to look again', () => {
    const ds = mkDs({ minReadySeconds: 10 });
    const plan = planDaemonSet(ds, [mkNode('a')], [dsPod(ds, 'a', { readySince: NOW - 4_000 })], { now: NOW });
    assert.equal(plan.status.numberReady, 1);
    assert.equal(plan.status.numberAvailable, 0);
    assert.ok(plan.requeueAfterMs! >= 6_000 && plan.requeueAfterMs! <= 6_500, String(plan.requeueAfterMs));
    const later = planDaemonSet(ds, [mkNode('a')], [dsPod(ds, 'a', { readySince: NOW - 11_000 })], { now: NOW });
    assert.equal(later.status.numberAvailable, 1);
    assert.equal(later.requeueAfterMs, undefined);
  });
});

describe('placementFacts: which node changes wake the DaemonSet controller', () => {
  it('a heartbeat (lastHeard, usage, images) changes nothing; labels, taints, cordon and resources do', () => {
    const base = mkNode('n1', { labels: { zone: 'a' } });
    const facts = placementFacts(base);
    const beat = structuredClone(base);
    beat.status = { ...beat.status, lastHeard: new Date().toISOString(), images: ['x'] };
    assert.equal(placementFacts(beat), facts);
    for (const changed of [
      mkNode('n1', { labels: { zone: 'b' } }),
      mkNode('n1', { labels: { zone: 'a' }, taints: [{ key: 'k', effect: 'NoSchedule' }] }),
      mkNode('n1', { labels: { zone: 'a' }, unschedulable: true }),
      mkNode('n1', { labels: { zone: 'a' }, cpu: '64' }),
    ]) {
      assert.notEqual(placementFacts(changed), facts, JSON.stringify(changed));
      assert.equal(nodeChangeWakes(nodeFacts(base), nodeFacts(changed)), 'all');
    }
  });

  it('a node turning Ready or NotReady wakes only the DaemonSets in a waved rollout (their gates count offline nodes)', () => {
    const up = mkNode('n1', { labels: { zone: 'a' } });
    const down = mkNode('n1', { labels: { zone: 'a' }, ready: false });
    assert.equal(placementFacts(down), placementFacts(up));
    assert.equal(nodeChangeWakes(nodeFacts(up), nodeFacts(down)), 'waved');
    assert.equal(nodeChangeWakes(nodeFacts(down), nodeFacts(up)), 'waved');
    assert.equal(nodeChangeWakes(nodeFacts(up), nodeFacts(structuredClone(up))), 'none');
    assert.equal(nodeChangeWakes(undefined, nodeFacts(up)), 'all');
  });
});
