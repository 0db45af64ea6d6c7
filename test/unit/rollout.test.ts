import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseObject } from '../../src/api/validate.js';
import { POD_TEMPLATE_HASH, REVISION_ANNOTATION, rollbackTemplate } from '../../src/api/revisions.js';
import type { Deployment, ReplicaSet } from '../../src/api/workloads.js';
import { bumpedRevision, findNewReplicaSet, newReplicaSetFor, planRollout, resolveFenceposts, type ReplicaSetView } from '../../server/controllers/rollout.js';
import { podTemplateHash } from '../../src/api/revisions.js';

const T0 = Date.parse('2024-05-01T10:00:00.000Z');

function mkDeployment(o: { replicas?: number; image?: string; strategy?: unknown; paused?: boolean; progressDeadlineSeconds?: number; revisionHistoryLimit?: number; generation?: number } = {}): Deployment {
  const raw = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      replicas: o.replicas ?? 3,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'main', image: o.image ?? 'img:1' }] } },
      ...(o.strategy ? { strategy: o.strategy } : {}),
      ...(o.paused !== undefined ? { paused: o.paused } : {}),
      ...(o.progressDeadlineSeconds ? { progressDeadlineSeconds: o.progressDeadlineSeconds } : {}),
      ...(o.revisionHistoryLimit !== undefined ? { revisionHistoryLimit: o.revisionHistoryLimit } : {}),
    },
  };
  const d = parseObject(raw).object as Deployment;
  d.metadata.uid = 'dep-uid';
  d.metadata.generation = o.generation ?? 1;
  return d;
}

let rsSeq = 0;
/** A stored-looking ReplicaSet of `d` for `image` at `revision` with `replicas`. */
function mkRS(d: Deployment, image: string, revision: number, replicas: number): ReplicaSet {
  const withImage = structuredClone(d);
  withImage.spec.template.spec.containers[0]!.image = image;
  const rs = newReplicaSetFor(withImage, []);
  rs.metadata.annotations = { [REVISION_ANNOTATION]: String(revision) };
  rs.metadata.uid = `rs-uid-${++rsSeq}`;
  rs.metadata.creationTimestamp = new Date(T0 + revision * 1000).toISOString();
  rs.metadata.generation = 1;
  rs.spec.replicas = replicas;
  rs.status = { replicas, readyReplicas: replicas, availableReplicas: replicas, observedGeneration: 1 };
  return rs;
}

function view(rs: ReplicaSet, pods: number, available = pods, ready = available): ReplicaSetView {
  return { rs, pods, ready, available };
}

/**
 * A small model of the cluster, driven through random interleavings of: a Deployment sync (the
 * pure planRollout, applied), a ReplicaSet controller sync of one RS (create missing pods
 * not-ready, delete surplus not-ready first) and a kubelet making one pod Ready. Invariants are
 * checked after every single event.
 */
class Sim {
  rss: ReplicaSet[];
  /** RS name → readiness of each of its pods. */
  pods = new Map<string, boolean[]>();
  maxPods = 0;
  minAvailable = Infinity;
  steps = 0;
  /** While false the kubelet makes no pod ready (the node is cut off). */
  online = true;
  /** Names of the ReplicaSets whose pods the kubelet started. */
  ran = new Set<string>();
  private seed: number;

  constructor(public d: Deployment, rss: ReplicaSet[], seed: number) {
    this.rss = rss;
    for (const rs of rss) this.pods.set(rs.metadata.name, Array(rs.spec.replicas).fill(true));
    this.seed = seed;
  }

  rand(n: number): number {
    // xorshift: deterministic per seed.
    this.seed ^= this.seed << 13;
    this.seed ^= this.seed >>> 17;
    this.seed ^= this.seed << 5;
    return Math.abs(this.seed) % n;
  }

  views(): ReplicaSetView[] {
    return this.rss.map((rs) => {
      const p = this.pods.get(rs.metadata.name) ?? [];
      const ready = p.filter(Boolean).length;
      return view(rs, p.length, ready, ready);
    });
  }

  totals(): { pods: number; available: number } {
    const v = this.views();
    return { pods: v.reduce((s, x) => s + x.pods, 0), available: v.reduce((s, x) => s + x.available, 0) };
  }

  deploymentSync(): boolean {
    let created = false;
    if (!findNewReplicaSet(this.d, this.rss) && !this.d.spec.paused) {
      const rs = newReplicaSetFor(this.d, this.rss);
      rs.metadata.uid = `rs-uid-${++rsSeq}`;
      rs.metadata.creationTimestamp = new Date(T0 + 100_000 + rsSeq).toISOString();
      this.rss.push(rs);
      this.pods.set(rs.metadata.name, []);
      created = true;
    }
    const plan = planRollout({ deployment: this.d, replicaSets: this.views(), now: T0 + this.steps * 1000, newReplicaSetCreated: created });
    for (const s of plan.scale) this.rss.find((r) => r.metadata.name === s.name)!.spec.replicas = s.to;
    this.d.status = plan.status;
    return plan.scale.length > 0 || created;
  }

  rsSync(rs: ReplicaSet): boolean {
    const p = this.pods.get(rs.metadata.name)!;
    if (p.length < rs.spec.replicas) {
      p.push(false);
      return true;
    }
    if (p.length > rs.spec.replicas) {
      const i = p.indexOf(false);
      p.splice(i >= 0 ? i : p.length - 1, 1);
      return true;
    }
    return false;
  }

  kubelet(): boolean {
    if (!this.online) return false;
    for (const rs of this.rss) {
      const p = this.pods.get(rs.metadata.name)!;
      const i = p.indexOf(false);
      if (i >= 0) {
        p[i] = true;
        this.ran.add(rs.metadata.name);
        return true;
      }
    }
    return false;
  }

  check(): void {
    const t = this.totals();
    this.maxPods = Math.max(this.maxPods, t.pods);
    this.minAvailable = Math.min(this.minAvailable, t.available);
  }

  /** Random events until a full round of every actor changes nothing. */
  run(maxSteps = 2000): void {
    this.check();
    for (; this.steps < maxSteps; this.steps++) {
      const r = this.rand(3);
      if (r === 0) this.deploymentSync();
      else if (r === 1) this.rsSync(this.rss[this.rand(this.rss.length)]!);
      else this.kubelet();
      this.check();
      if (this.steps % 50 === 49) {
        let changed = this.deploymentSync();
        for (const rs of this.rss) changed = this.rsSync(rs) || changed;
        changed = this.kubelet() || changed;
        this.check();
        if (!changed && !this.deploymentSync()) return;
      }
    }
    throw new Error('rollout did not converge');
  }
}

describe('rolling update', () => {
  test('3 replicas, maxSurge 1, maxUnavailable 0: never more than 4 pods, never fewer than 3 available', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const d = mkDeployment({ replicas: 3, image: 'img:2', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } });
      const sim = new Sim(d, [mkRS(d, 'img:1', 1, 3)], seed * 7919);
      sim.run();
      assert.ok(sim.maxPods <= 4, `seed ${seed}: saw ${sim.maxPods} pods`);
      assert.ok(sim.minAvailable >= 3, `seed ${seed}: saw ${sim.minAvailable} available`);
      const newRS = findNewReplicaSet(d, sim.rss)!;
      assert.equal(newRS.spec.replicas, 3);
      assert.deepEqual(sim.pods.get(newRS.metadata.name), [true, true, true]);
      for (const rs of sim.rss.filter((r) => r !== newRS)) assert.equal(rs.spec.replicas, 0);
      assert.equal(newRS.metadata.annotations?.[REVISION_ANNOTATION], '2');
      assert.equal(d.status?.updatedReplicas, 3);
      assert.equal(d.status?.availableReplicas, 3);
      assert.equal(d.status?.conditions?.find((c) => c.type === 'Progressing')?.reason, 'NewReplicaSetAvailable');
      assert.equal(d.status?.conditions?.find((c) => c.type === 'Available')?.status, 'True');
    }
  });

  test('the first steps: surge one new pod, then nothing until it is available', () => {
    const d = mkDeployment({ replicas: 3, image: 'img:2', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } });
    const old = mkRS(d, 'img:1', 1, 3);
    const fresh = newReplicaSetFor(d, [old]);
    fresh.metadata.uid = 'new';
    let plan = planRollout({ deployment: d, replicaSets: [view(old, 3), view(fresh, 0)], now: T0, newReplicaSetCreated: true });
    assert.deepEqual(plan.scale, [{ name: fresh.metadata.name, from: 0, to: 1 }]);
    assert.equal(plan.status.conditions?.find((c) => c.type === 'Progressing')?.reason, 'NewReplicaSetCreated');
    fresh.spec.replicas = 1;
    plan = planRollout({ deployment: d, replicaSets: [view(old, 3), view(fresh, 1, 0)], now: T0 });
    assert.deepEqual(plan.scale, []);
    plan = planRollout({ deployment: d, replicaSets: [view(old, 3), view(fresh, 1, 1)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: old.metadata.name, from: 3, to: 2 }]);
  });

  test('maxSurge and maxUnavailable 25% of 4 resolve to 1 each (surge rounds up, unavailable down)', () => {
    assert.deepEqual(resolveFenceposts(mkDeployment({ replicas: 4 })), { maxSurge: 1, maxUnavailable: 1 });
    assert.deepEqual(resolveFenceposts(mkDeployment({ replicas: 3 })), { maxSurge: 1, maxUnavailable: 0 });
    assert.deepEqual(resolveFenceposts(mkDeployment({ replicas: 10, strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '0%', maxUnavailable: 0 } } })), { maxSurge: 0, maxUnavailable: 1 });
    for (let seed = 1; seed <= 20; seed++) {
      const d = mkDeployment({ replicas: 4, image: 'img:2' });
      const sim = new Sim(d, [mkRS(d, 'img:1', 1, 4)], seed * 104729);
      sim.run();
      assert.ok(sim.maxPods <= 5, `seed ${seed}: ${sim.maxPods} pods`);
      assert.ok(sim.minAvailable >= 3, `seed ${seed}: ${sim.minAvailable} available`);
    }
  });

  test('maxSurge 1 maxUnavailable 1 of 3: at most 4 pods, at least 2 available', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const d = mkDeployment({ replicas: 3, image: 'img:2', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } });
      const sim = new Sim(d, [mkRS(d, 'img:1', 1, 3)], seed * 31337);
      sim.run();
      assert.ok(sim.maxPods <= 4);
      assert.ok(sim.minAvailable >= 2);
    }
  });

  test('old pods that are not available are scaled away first', () => {
    const d = mkDeployment({ replicas: 4, image: 'img:2', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } } });
    const old = mkRS(d, 'img:1', 1, 4);
    const fresh = newReplicaSetFor(d, [old]);
    let plan = planRollout({ deployment: d, replicaSets: [view(old, 4, 2), view(fresh, 0)], now: T0 });
    // A broken old pod goes first (no availability lost), within maxScaledDown = 4 - 3 = 1.
    assert.deepEqual(plan.scale, [{ name: old.metadata.name, from: 4, to: 3 }]);
    old.spec.replicas = 3;
    plan = planRollout({ deployment: d, replicaSets: [view(old, 3, 2), view(fresh, 0)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: fresh.metadata.name, from: 0, to: 1 }], 'the freed slot goes to the new RS');
  });

  test('rollover while the pods are cut off: the intermediate revision goes to 0 first, the oldest keeps its pods, the newest stays within budget', () => {
    // 2 replicas (25%: maxSurge 1, maxUnavailable 0). Revision 1's two pods are not ready (their node
    // is offline); revision 2 got its surge pod, still Pending; then revision 3 is applied.
    const d = mkDeployment({ replicas: 2, image: 'img:3' });
    const r1 = mkRS(d, 'img:1', 1, 2);
    const r2 = mkRS(d, 'img:2', 2, 1);
    const r3 = newReplicaSetFor(d, [r1, r2]);
    r3.metadata.creationTimestamp = new Date(T0 + 3000).toISOString();
    assert.equal(r3.metadata.annotations?.[REVISION_ANNOTATION], '3');
    let plan = planRollout({ deployment: d, replicaSets: [view(r1, 2, 0), view(r2, 1, 0), view(r3, 0)], now: T0, newReplicaSetCreated: true });
    assert.deepEqual(plan.scale, [{ name: r2.metadata.name, from: 1, to: 0 }], 'the intermediate revision is cleaned up, not the oldest');

    // Its pod is still there: the newest may not take its place yet.
    r2.spec.replicas = 0;
    plan = planRollout({ deployment: d, replicaSets: [view(r1, 2, 0), view(r2, 1, 0), view(r3, 0)], now: T0 });
    assert.deepEqual(plan.scale, []);

    // Gone: the newest scales up by the surge budget only (2 old + 1 new = 3 pods at most).
    plan = planRollout({ deployment: d, replicaSets: [view(r1, 2, 0), view(r2, 0), view(r3, 0)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: r3.metadata.name, from: 0, to: 1 }]);
    r3.spec.replicas = 1;

    // While nothing is available nothing else moves: the oldest revision keeps its pods.
    plan = planRollout({ deployment: d, replicaSets: [view(r1, 2, 0), view(r2, 0), view(r3, 1, 0)], now: T0 });
    assert.deepEqual(plan.scale, []);

    // The node is back: revision 1 is available again, revision 3's pod becomes available; the
    // rollout goes on from revision 1 to 3, and revision 2 never gets a pod.
    plan = planRollout({ deployment: d, replicaSets: [view(r1, 2, 2), view(r2, 0), view(r3, 1, 1)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: r1.metadata.name, from: 2, to: 1 }]);
  });

  test('simulated rollover while cut off: once back, only the newest revision starts pods', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const d = mkDeployment({ replicas: 2, image: 'img:2' });
      const r1 = mkRS(d, 'img:1', 1, 2);
      const sim = new Sim(d, [r1], seed * 6007);
      sim.online = false;
      sim.pods.set(r1.metadata.name, [false, false]);
      sim.run();
      d.spec.template.spec.containers[0]!.image = 'img:3';
      d.metadata.generation = 2;
      sim.run();
      sim.online = true;
      sim.run();
      const byImage = (img: string) => sim.rss.find((rs) => rs.spec.template.spec.containers[0]!.image === img)!;
      assert.ok(!sim.ran.has(byImage('img:2').metadata.name), `seed ${seed}: revision 2 started a pod`);
      assert.deepEqual(sim.pods.get(byImage('img:3').metadata.name), [true, true], `seed ${seed}`);
      assert.equal(byImage('img:1').spec.replicas, 0);
      assert.ok(sim.maxPods <= 3, `seed ${seed}: ${sim.maxPods} pods`);
    }
  });

  test('rollover with budget for one: of several superseded revisions the newest not-ready one goes first', () => {
    // 4 replicas, maxSurge 1, maxUnavailable 1: maxScaledDown = 5 pods - 3 minAvailable - 0 = 2.
    const d = mkDeployment({ replicas: 4, image: 'img:3', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } });
    const r1 = mkRS(d, 'img:1', 1, 3);
    const r2 = mkRS(d, 'img:2', 2, 2);
    const r3 = newReplicaSetFor(d, [r1, r2]);
    const plan = planRollout({ deployment: d, replicaSets: [view(r1, 3, 0), view(r2, 2, 0), view(r3, 0)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: r2.metadata.name, from: 2, to: 0 }]);
  });

  test('scaling: the current ReplicaSet follows replicas up and down', () => {
    const d = mkDeployment({ replicas: 5 });
    const rs = mkRS(d, 'img:1', 1, 3);
    assert.deepEqual(planRollout({ deployment: d, replicaSets: [view(rs, 3)], now: T0 }).scale, [{ name: rs.metadata.name, from: 3, to: 5 }]);
    d.spec.replicas = 1;
    assert.deepEqual(planRollout({ deployment: d, replicaSets: [view(rs, 3)], now: T0 }).scale, [{ name: rs.metadata.name, from: 3, to: 1 }]);
  });
});

describe('Recreate', () => {
  test('old scaled to 0 first, new scaled up only once the old pods are gone', () => {
    const d = mkDeployment({ replicas: 3, image: 'img:2', strategy: { type: 'Recreate' } });
    const old = mkRS(d, 'img:1', 1, 3);
    const fresh = newReplicaSetFor(d, [old]);
    let plan = planRollout({ deployment: d, replicaSets: [view(old, 3), view(fresh, 0)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: old.metadata.name, from: 3, to: 0 }]);
    old.spec.replicas = 0;
    plan = planRollout({ deployment: d, replicaSets: [view(old, 2), view(fresh, 0)], now: T0 });
    assert.deepEqual(plan.scale, [], 'waits while old pods remain');
    plan = planRollout({ deployment: d, replicaSets: [view(old, 0), view(fresh, 0)], now: T0 });
    assert.deepEqual(plan.scale, [{ name: fresh.metadata.name, from: 0, to: 3 }]);
    assert.equal(plan.status.conditions?.find((c) => c.type === 'Available')?.status, 'False', 'Recreate needs all replicas for Available');
  });

  test('simulated: old and new pods never run together', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const d = mkDeployment({ replicas: 3, image: 'img:2', strategy: { type: 'Recreate' } });
      const old = mkRS(d, 'img:1', 1, 3);
      const sim = new Sim(d, [old], seed * 65537);
      const origRsSync = sim.rsSync.bind(sim);
      let overlap = false;
      sim.rsSync = (rs) => {
        const r = origRsSync(rs);
        const oldPods = sim.pods.get(old.metadata.name)!.length;
        const newPods = sim.rss.filter((x) => x !== old).reduce((s, x) => s + sim.pods.get(x.metadata.name)!.length, 0);
        if (oldPods > 0 && newPods > 0) overlap = true;
        return r;
      };
      sim.run();
      assert.equal(overlap, false);
      assert.equal(sim.totals().available, 3);
    }
  });
});

describe('progress deadline', () => {
  const stuck = () => {
    const d = mkDeployment({ replicas: 3, image: 'img:2', progressDeadlineSeconds: 600, strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } });
    const old = mkRS(d, 'img:1', 1, 3);
    const fresh = mkRS(d, 'img:2', 2, 1);
    const views = [view(old, 3), view(fresh, 1, 0)];
    d.status = planRollout({ deployment: d, replicaSets: views, now: T0 }).status;
    return { d, old, fresh, views };
  };

  test('no progress for progressDeadlineSeconds: Progressing=False ProgressDeadlineExceeded, old RS untouched', () => {
    const { d, old, views } = stuck();
    const progressing = d.status!.conditions!.find((c) => c.type === 'Progressing')!;
    assert.equal(progressing.status, 'True');
    assert.equal(progressing.reason, 'ReplicaSetUpdated');

    const before = planRollout({ deployment: d, replicaSets: views, now: T0 + 300_000 });
    assert.deepEqual(before.scale, []);
    assert.equal(before.status.conditions!.find((c) => c.type === 'Progressing')!.status, 'True');
    assert.ok(before.requeueAfterMs! > 299_000 && before.requeueAfterMs! <= 301_000, `requeue ${before.requeueAfterMs}`);

    const after = planRollout({ deployment: d, replicaSets: views, now: T0 + 601_000 });
    const c = after.status.conditions!.find((x) => x.type === 'Progressing')!;
    assert.equal(c.status, 'False');
    assert.equal(c.reason, 'ProgressDeadlineExceeded');
    assert.match(c.message!, /has timed out progressing/);
    assert.deepEqual(after.scale, [], 'the rollout stays where it is');
    assert.equal(old.spec.replicas, 3);
    assert.equal(after.status.availableReplicas, 3);
    assert.equal(after.status.conditions!.find((x) => x.type === 'Available')!.status, 'True', 'old replicas keep serving');

    // Stays exceeded while nothing moves; progress (the new pod turns ready) resumes it.
    d.status = after.status;
    assert.equal(planRollout({ deployment: d, replicaSets: views, now: T0 + 700_000 }).status.conditions!.find((x) => x.type === 'Progressing')!.reason, 'ProgressDeadlineExceeded');
    const resumed = planRollout({ deployment: d, replicaSets: [views[0]!, view(views[1]!.rs, 1, 1)], now: T0 + 700_000 });
    assert.equal(resumed.status.conditions!.find((x) => x.type === 'Progressing')!.reason, 'ReplicaSetUpdated');
  });

  test('an unchanged sync writes an identical status (no write loops)', () => {
    const { d, views } = stuck();
    const again = planRollout({ deployment: d, replicaSets: views, now: T0 + 5000 });
    assert.deepEqual(again.status, d.status);
  });
});

describe('paused', () => {
  test('a template change while paused creates nothing and moves nothing; replicas changes scale the current RS', () => {
    const d = mkDeployment({ replicas: 5, image: 'img:2', paused: true });
    const old = mkRS(d, 'img:1', 1, 3);
    const plan = planRollout({ deployment: d, replicaSets: [view(old, 3)], now: T0 });
    assert.equal(plan.newReplicaSet, undefined);
    assert.deepEqual(plan.scale, [{ name: old.metadata.name, from: 3, to: 5 }]);
    assert.equal(plan.status.conditions!.find((c) => c.type === 'Progressing')!.reason, 'DeploymentPaused');
    assert.equal(plan.requeueAfterMs, undefined, 'no deadline while paused');
  });

  test('paused mid-rollout: no movement between revisions; a scale is spread proportionally', () => {
    const d = mkDeployment({ replicas: 4, image: 'img:2', paused: true });
    const old = mkRS(d, 'img:1', 1, 2);
    const fresh = mkRS(d, 'img:2', 2, 2);
    assert.deepEqual(planRollout({ deployment: d, replicaSets: [view(old, 2), view(fresh, 2)], now: T0 }).scale, []);
    d.spec.replicas = 8;
    const up = planRollout({ deployment: d, replicaSets: [view(old, 2), view(fresh, 2)], now: T0 }).scale;
    assert.deepEqual(Object.fromEntries(up.map((s) => [s.name, s.to])), { [old.metadata.name]: 4, [fresh.metadata.name]: 4 });
    d.spec.replicas = 1;
    const down = planRollout({ deployment: d, replicaSets: [view(old, 2), view(fresh, 2)], now: T0 }).scale;
    const final = [old, fresh].map((r) => down.find((x) => x.name === r.metadata.name)?.to ?? r.spec.replicas);
    assert.equal(final[0]! + final[1]!, 1, `scaled down to ${final}`);
    assert.ok(final.every((n) => n >= 0));
  });
});

describe('history', () => {
  test('old empty ReplicaSets beyond revisionHistoryLimit are deleted, oldest revisions first', () => {
    const d = mkDeployment({ replicas: 2, image: 'img:6', revisionHistoryLimit: 2 });
    const olds = [1, 2, 3, 4, 5].map((r) => mkRS(d, `img:${r}`, r, 0));
    for (const rs of olds) rs.status = { replicas: 0, readyReplicas: 0, availableReplicas: 0, observedGeneration: 1 };
    const cur = mkRS(d, 'img:6', 6, 2);
    d.status = { observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, unavailableReplicas: 0 };
    const plan = planRollout({ deployment: d, replicaSets: [...olds.map((rs) => view(rs, 0)), view(cur, 2)], now: T0 });
    assert.deepEqual(plan.scale, []);
    assert.deepEqual(plan.deletions, olds.slice(0, 3).map((rs) => rs.metadata.name));
  });

  test('nothing is deleted mid-rollout or while an old RS still has pods', () => {
    const d = mkDeployment({ replicas: 2, image: 'img:3', revisionHistoryLimit: 0 });
    const a = mkRS(d, 'img:1', 1, 0);
    const b = mkRS(d, 'img:2', 2, 2);
    const cur = mkRS(d, 'img:3', 3, 0);
    assert.deepEqual(planRollout({ deployment: d, replicaSets: [view(a, 0), view(b, 2), view(cur, 0)], now: T0 }).deletions, []);
  });
});

describe('revisions and rollback', () => {
  test('a new ReplicaSet gets max revision + 1, the hash label, selector and controller ownerReference', () => {
    const d = mkDeployment({ image: 'img:3' });
    const rs = newReplicaSetFor(d, [mkRS(d, 'img:1', 1, 0), mkRS(d, 'img:2', 4, 3)]);
    const hash = podTemplateHash(d.spec.template);
    assert.equal(rs.metadata.name, `web-${hash}`);
    assert.equal(rs.metadata.annotations?.[REVISION_ANNOTATION], '5');
    assert.equal(rs.spec.template.metadata.labels?.[POD_TEMPLATE_HASH], hash);
    assert.deepEqual(rs.spec.selector.matchLabels, { app: 'web', [POD_TEMPLATE_HASH]: hash });
    assert.deepEqual(rs.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: 'dep-uid', controller: true, blockOwnerDeletion: true }]);
    assert.equal(rs.spec.replicas, 0);
  });

  test('rollbackTemplate: previous revision by default, --to-revision N, errors', () => {
    const d = mkDeployment({ image: 'img:3' });
    const rss = [mkRS(d, 'img:1', 1, 0), mkRS(d, 'img:2', 2, 0), mkRS(d, 'img:3', 3, 3)];
    const prev = rollbackTemplate(d, rss);
    assert.equal(prev.spec.containers[0]!.image, 'img:2');
    assert.equal(prev.metadata.labels?.[POD_TEMPLATE_HASH], undefined, 'hash label stripped');
    assert.deepEqual(prev.metadata.labels, { app: 'web' });
    assert.equal(rollbackTemplate(d, rss, 1).spec.containers[0]!.image, 'img:1');
    assert.throws(() => rollbackTemplate(d, rss, 9), /revision 9/);
    assert.throws(() => rollbackTemplate(d, [rss[2]!]), /no rollout history/);
    // ReplicaSets of another Deployment do not count.
    const foreign = mkRS(d, 'img:0', 2, 0);
    foreign.metadata.ownerReferences![0]!.uid = 'other';
    assert.equal(rollbackTemplate(d, [rss[0]!, foreign, rss[2]!]).spec.containers[0]!.image, 'img:1');
  });

  test('undo reuses the old ReplicaSet and bumps its revision past the others', () => {
    const d = mkDeployment({ image: 'img:2' });
    const r1 = mkRS(d, 'img:1', 1, 0);
    const r2 = mkRS(d, 'img:2', 2, 3);
    d.spec.template = rollbackTemplate(d, [r1, r2]);
    assert.equal(findNewReplicaSet(d, [r1, r2]), r1, 'the old template is found, no new RS');
    assert.equal(bumpedRevision(r1, [r1, r2]), 3);
    assert.equal(bumpedRevision(r2, [r1, r2]), undefined);
    r1.metadata.annotations![REVISION_ANNOTATION] = '3';
    // Undo again goes back to revision 2.
    assert.equal(rollbackTemplate(d, [r1, r2]).spec.containers[0]!.image, 'img:2');
  });

  test('template hash: 10 chars, stable under key order and the hash label, sensitive to content', () => {
    const a = mkDeployment().spec.template;
    const b = JSON.parse(JSON.stringify({ spec: { ...a.spec, containers: [{ image: 'img:1', name: 'main' }] }, metadata: { labels: { app: 'web' } } }));
    // Same content, keys in another order.
    const reordered = Object.fromEntries(Object.entries(a.spec).reverse());
    const c = { metadata: a.metadata, spec: reordered } as typeof a;
    const h = podTemplateHash(a);
    assert.match(h, /^[bcdfghjklmnpqrstvwxz2456789]{10}$/);
    assert.equal(podTemplateHash(c), h);
    assert.equal(podTemplateHash({ ...a, metadata: { labels: { [POD_TEMPLATE_HASH]: 'xyz', app: 'web' } } }), h);
    assert.notEqual(podTemplateHash({ ...b, spec: { ...b.spec, containers: [{ name: 'main', image: 'img:2' }] } }), podTemplateHash(b));
    assert.notEqual(podTemplateHash(a, 1), h, 'collisionCount moves the hash');
  });
});
