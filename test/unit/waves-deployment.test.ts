import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pod } from '../../src/api/pod.js';
import { POD_TEMPLATE_HASH, REVISION_ANNOTATION } from '../../src/api/revisions.js';
import { parseObject } from '../../src/api/validate.js';
import type { Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { ValidationError } from '../../src/util/errors.js';
import { planDeploymentWaves } from '../../server/controllers/deployment-waves.js';
import { newReplicaSetFor, planRollout, type ReplicaSetView } from '../../server/controllers/rollout.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const ROLLOUT = { waves: [{ nodes: 1 }, { percent: 50 }], gate: { readySeconds: 10 } };

function mkDeployment(image: string, rollout: unknown = ROLLOUT): Deployment {
  const d = parseObject({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      replicas: 10,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'main', image }] } },
      drover: { rollout },
    },
  }).object as Deployment;
  d.metadata.uid = 'dep-uid';
  d.metadata.generation = 2;
  return d;
}

let seq = 0;
function mkRS(d: Deployment, image: string, revision: number, replicas: number): ReplicaSet {
  const withImage = structuredClone(d);
  withImage.spec.template.spec.containers[0]!.image = image;
  const rs = newReplicaSetFor(withImage, []);
  rs.metadata.annotations = { [REVISION_ANNOTATION]: String(revision) };
  rs.metadata.uid = `rs-${++seq}`;
  rs.metadata.creationTimestamp = new Date(T0 + revision).toISOString();
  rs.spec.replicas = replicas;
  return rs;
}

function mkPods(rs: ReplicaSet, n: number, o: { readySince?: number; waiting?: string } = {}): Pod[] {
  return Array.from({ length: n }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${rs.metadata.name}-${i}`, namespace: 'default', uid: `${rs.metadata.uid}-p${i}`, creationTimestamp: new Date(T0).toISOString(), ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid!, controller: true }] },
    spec: { nodeName: `edge-${i}`, restartPolicy: 'Always', terminationGracePeriodSeconds: 30, containers: [{ name: 'main', image: 'x' }] },
    status: o.waiting
      ? { phase: 'Pending', conditions: [{ type: 'Ready', status: 'False' }], containerStatuses: [{ name: 'main', image: 'x', ready: false, restartCount: 0, state: 'waiting', reason: o.waiting }] }
      : { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(o.readySince ?? T0).toISOString() }] },
  })) as Pod[];
}

const view = (rs: ReplicaSet, pods: number, available = pods): ReplicaSetView => ({ rs, pods, ready: available, available });

/** A Deployment settled on :1 (its first rollout recorded as stable), now changed to :2. */
function rolling() {
  const d1 = mkDeployment('img:1');
  const rs1 = mkRS(d1, 'img:1', 1, 10);
  const first = planDeploymentWaves({ deployment: d1, newReplicaSet: rs1, replicaSets: [rs1], newPods: mkPods(rs1, 10), now: T0 });
  assert.equal(first.rollout.phase, 'Complete');
  const d = mkDeployment('img:2');
  d.status = { replicas: 10, updatedReplicas: 10, readyReplicas: 10, availableReplicas: 10, unavailableReplicas: 0, drover: { rollout: first.rollout } };
  const rs2 = mkRS(d, 'img:2', 2, 0);
  return { d, rs1, rs2, stable: rs1.metadata.labels![POD_TEMPLATE_HASH]! };
}

describe('waved rollout of a Deployment: waves are replicas of the new revision', () => {
  it('caps the new ReplicaSet at the wave, keeps the rest on the old one, then moves on when the gate passes', () => {
    const { d, rs1, rs2 } = rolling();
    let w = planDeploymentWaves({ deployment: d, newReplicaSet: rs2, replicaSets: [rs1, rs2], newPods: [], now: T0 });
    assert.equal(w.cap, 1);
    assert.equal(w.rollout.phase, 'Progressing');
    assert.ok(w.events.some((e) => e.reason === 'RolloutStarted'));
    let plan = planRollout({ deployment: d, replicaSets: [view(rs1, 10), view(rs2, 0)], now: T0, newReplicaSetCap: w.cap });
    assert.deepEqual(plan.scale, [{ name: rs2.metadata.name, from: 0, to: 1 }], 'one replica of the new revision, however large maxSurge');

    // The one new pod is available: the old ReplicaSet goes down to 9, not further.
    rs2.spec.replicas = 1;
    d.status!.drover = { rollout: w.rollout };
    plan = planRollout({ deployment: d, replicaSets: [view(rs1, 10), view(rs2, 1)], now: T0, newReplicaSetCap: 1 });
    assert.deepEqual(plan.scale, [{ name: rs1.metadata.name, from: 10, to: 9 }]);
    rs1.spec.replicas = 9;
    plan = planRollout({ deployment: d, replicaSets: [view(rs1, 9), view(rs2, 1)], now: T0, newReplicaSetCap: 1 });
    assert.deepEqual(plan.scale, [], 'held at the wave');

    // Ready for less than readySeconds: waits; then the wave passes and the cap is 50 %.
    w = planDeploymentWaves({ deployment: d, newReplicaSet: rs2, replicaSets: [rs1, rs2], newPods: mkPods(rs2, 1, { readySince: T0 }), now: T0 + 5_000 });
    assert.equal(w.rollout.wave, 0);
    assert.match(w.rollout.message, /pods Ready for 10s/);
    assert.ok(w.requeueAfterMs! > 4_000 && w.requeueAfterMs! <= 5_200);
    w = planDeploymentWaves({ deployment: d, newReplicaSet: rs2, replicaSets: [rs1, rs2], newPods: mkPods(rs2, 1, { readySince: T0 }), now: T0 + 11_000 });
    assert.equal(w.rollout.wave, 1);
    assert.equal(w.cap, 5);
    assert.ok(w.events.some((e) => e.reason === 'RolloutWavePassed' && /wave 1\/3 \(1 replica\)/.test(e.message)));
  });

  it('a superseded intermediate revision is scaled down before the stable one', () => {
    const { d, rs1 } = rolling();
    d.spec.template.spec.containers[0]!.image = 'img:3';
    const rs2 = mkRS(d, 'img:2', 2, 2);
    const rs3 = mkRS(d, 'img:3', 3, 3);
    rs1.spec.replicas = 8;
    const rss = [view(rs1, 8), view(rs2, 2), view(rs3, 3)];
    const plan = planRollout({ deployment: d, replicaSets: rss, now: T0, newReplicaSetCap: 3, stableReplicaSet: rs1.metadata.name });
    assert.deepEqual(
      plan.scale.map((x) => [x.name, x.to]).sort(),
      [
        [rs1.metadata.name, 7],
        [rs2.metadata.name, 0],
      ].sort(),
    );
    // Without a stable one (a plain rolling update) the oldest goes first, as in Kubernetes.
    const plain = planRollout({ deployment: d, replicaSets: rss, now: T0, newReplicaSetCap: 3 });
    assert.deepEqual(plain.scale.map((x) => [x.name, x.to]), [[rs1.metadata.name, 5]]);
  });

  it('a failing pod of the new revision rolls back to the stable ReplicaSet template', () => {
    const { d, rs1, rs2, stable } = rolling();
    rs2.spec.replicas = 1;
    const w = planDeploymentWaves({ deployment: d, newReplicaSet: rs2, replicaSets: [rs1, rs2], newPods: mkPods(rs2, 1, { waiting: 'ImagePullBackOff' }), now: T0 });
    assert.equal(w.rollout.phase, 'RolledBack');
    assert.equal(w.rollback?.revision, stable);
    assert.equal(w.rollback?.template.spec.containers[0]!.image, 'img:1');
    assert.equal(w.rollback?.template.metadata.labels?.[POD_TEMPLATE_HASH], undefined, 'written back without the hash label');
    const ev = w.events.find((e) => e.reason === 'RolloutWaveFailed')!;
    assert.match(ev.message, /wave 1\/3 \(1 replica\) failed its gate: 1 of 1 pods failed.*on edge-0: main: ImagePullBackOff/);
  });

  it('refuses node selectors, an offline policy and Recreate on a Deployment, naming the field', () => {
    const causes = (rollout: unknown, strategy?: unknown) => {
      try {
        parseObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { selector: { matchLabels: { a: 'b' } }, ...(strategy ? { strategy } : {}), template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } }, drover: { rollout } } });
        return [];
      } catch (err) {
        assert.ok(err instanceof ValidationError);
        return err.causes.map((c) => `${c.field}: ${c.message}`);
      }
    };
    assert.match(causes({ waves: [{ nodes: 1 }, { selector: { matchLabels: { site: 'lab' } } }] })[0]!, /^spec\.drover\.rollout\.waves\[1\]\.selector: a Deployment's pods are not tied to nodes/);
    assert.match(causes({ waves: [{ nodes: 1 }], offlineNodes: 'wait' })[0]!, /^spec\.drover\.rollout\.offlineNodes: applies to DaemonSets only/);
    assert.match(causes({ waves: [{ nodes: 1 }] }, { type: 'Recreate' })[0]!, /^spec\.drover\.rollout: needs strategy\.type RollingUpdate/);
    assert.deepEqual(causes({ waves: [{ nodes: 1 }, { percent: 50 }] }), []);
  });
});
