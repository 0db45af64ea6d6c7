import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { podTemplateHash } from '../../src/api/revisions.js';
import { parseObject } from '../../src/api/validate.js';
import { daemonSet, type DaemonSet, type WavedRolloutStatus } from '../../src/api/workloads.js';
import { ValidationError } from '../../src/util/errors.js';
import { newDaemonPod, planDaemonSet, REVISION_LABEL, type DaemonSetPlan } from '../../server/controllers/daemonset.js';
import { waveSets } from '../../server/controllers/waves.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const UID = 'ds-waves-1';

function mkNode(name: string, o: { online?: boolean; labels?: Record<string, string> } = {}): Node {
  const alloc = { cpu: '4', memory: '8Gi', pods: '110' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', ...o.labels } },
    spec: {},
    status: { capacity: alloc, allocatable: alloc, conditions: [{ type: 'Ready', status: o.online === false ? 'Unknown' : 'True' }] },
  };
}

function mkDs(image: string, rollout: unknown, o: { paused?: boolean } = {}): DaemonSet {
  return daemonSet.parse({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent', namespace: 'default', uid: UID, generation: 1 },
    spec: {
      selector: { matchLabels: { app: 'agent' } },
      template: { metadata: { labels: { app: 'agent' } }, spec: { containers: [{ name: 'main', image }] } },
      drover: { rollout, ...(o.paused ? { paused: true } : {}) },
    },
  });
}

const fleet = (n: number, extra: (i: number) => Partial<Parameters<typeof mkNode>[1]> = () => ({})) =>
  Array.from({ length: n }, (_, i) => mkNode(`edge-${String(i).padStart(2, '0')}`, extra(i)));

/** A little cluster: the DaemonSet, its nodes and pods; `pass()` plans and applies the plan as the controller would. */
class Sim {
  pods: Pod[] = [];
  seq = 0;
  now = T0;
  last!: DaemonSetPlan;
  constructor(
    public ds: DaemonSet,
    public nodes: Node[],
  ) {}

  pod(node: string, hash: string, template = this.ds.spec.template, o: { ready?: boolean; readySince?: number; waiting?: string } = {}): Pod {
    const p = newDaemonPod(this.ds, node, hash, this.now, template);
    p.metadata.name = `agent-${++this.seq}`;
    p.metadata.uid = `pod-${this.seq}`;
    p.metadata.creationTimestamp = new Date(this.now).toISOString();
    const ready = o.ready ?? false;
    p.status = {
      phase: o.waiting ? 'Pending' : 'Running',
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: new Date(o.readySince ?? this.now).toISOString() }],
      ...(o.waiting ? { containerStatuses: [{ name: 'main', image: 'x', ready: false, restartCount: 0, state: 'waiting', reason: o.waiting }] } : {}),
    } as Pod['status'];
    this.pods.push(p);
    return p;
  }

  pass(): DaemonSetPlan {
    const plan = planDaemonSet(this.ds, this.nodes, this.pods, { now: this.now });
    this.last = plan;
    this.ds.status = plan.status;
    if (plan.waves?.rollback) this.ds.spec.template = structuredClone(plan.waves.rollback.template);
    const gone = new Set(plan.delete.map((d) => d.pod.metadata.uid));
    this.pods = this.pods.filter((p) => !gone.has(p.metadata.uid));
    // New pods start not ready (what an agent reports first).
    for (const n of plan.create) this.pod(n, plan.hash);
    for (const n of plan.createStable?.nodes ?? []) this.pod(n, plan.createStable!.hash, plan.createStable!.template);
    return plan;
  }

  /** Every pod of `hash` turns Ready now (on online nodes), or fails with `waiting` on the listed nodes. */
  ready(hash: string, only?: (node: string) => boolean): void {
    for (const p of this.pods) {
      if (p.metadata.labels?.[REVISION_LABEL] !== hash || (only && !only(p.spec.nodeName!))) continue;
      const online = this.nodes.find((n) => n.metadata.name === p.spec.nodeName)!.status!.conditions![0]!.status === 'True';
      if (online && p.status!.conditions![0]!.status !== 'True') p.status!.conditions = [{ type: 'Ready', status: 'True', lastTransitionTime: new Date(this.now).toISOString() }];
    }
  }

  fail(node: string, reason: string): void {
    const p = this.pods.find((x) => x.spec.nodeName === node)!;
    p.status = { phase: 'Pending', conditions: [{ type: 'Ready', status: 'False' }], containerStatuses: [{ name: 'main', image: 'bad', ready: false, restartCount: 0, state: 'waiting', reason }] } as Pod['status'];
  }

  revisionOn(node: string): string | undefined {
    return this.pods.find((p) => p.spec.nodeName === node)?.metadata.labels?.[REVISION_LABEL];
  }

  /** Read fresh each time (a getter, so TypeScript does not narrow it across passes). */
  get rollout(): WavedRolloutStatus {
    return this.ds.status!.drover!.rollout!;
  }
  get phase(): string {
    return this.rollout.phase;
  }

  /** Runs passes (advancing the clock by `stepMs` and making pods of `hash` ready) until `until` holds. */
  drive(hash: string, until: () => boolean, stepMs = 31_000, max = 50): void {
    for (let i = 0; i < max; i++) {
      this.pass();
      if (until()) return;
      this.ready(hash);
      this.now += stepMs;
    }
    assert.ok(until(), `not reached after ${max} passes: ${JSON.stringify(this.rollout)}`);
  }
}

/** A DaemonSet at image :1 settled on `nodes`, then changed to :2 (the rollout under test). */
function settled(nodes: Node[], rollout: unknown, o: { paused?: boolean } = {}): { sim: Sim; h1: string; h2: string } {
  const sim = new Sim(mkDs('app:1', rollout), nodes);
  const h1 = podTemplateHash(sim.ds.spec.template);
  for (const n of nodes) sim.pod(n.metadata.name, h1, sim.ds.spec.template, { ready: nodes.find((x) => x === n)!.status!.conditions![0]!.status === 'True', readySince: T0 - 3_600_000 });
  sim.pass();
  assert.equal(sim.rollout.phase, 'Complete');
  assert.equal(sim.last.delete.length, 0);
  const next = mkDs('app:2', rollout, o);
  sim.ds.spec = next.spec;
  return { sim, h1, h2: podTemplateHash(next.spec.template) };
}

const WAVES = { waves: [{ nodes: 1 }, { percent: 25 }, { percent: 50 }], gate: { readySeconds: 30 } };

describe('waved rollout: wave membership', () => {
  it('cumulative sets, selector waves first, the same every time, an implicit last 100% wave', () => {
    const nodes = fleet(20, (i) => (i % 7 === 3 ? { labels: { site: 'lab' } } : {}));
    const ds = mkDs('app:1', { waves: [{ selector: { matchLabels: { site: 'lab' } } }, { nodes: 5 }, { percent: 50 }] });
    const sets = waveSets(ds, ds.spec.drover!.rollout!, nodes);
    assert.deepEqual(sets.map((s) => s.length), [3, 5, 10, 20]);
    assert.deepEqual(new Set(sets[0]), new Set(['edge-03', 'edge-10', 'edge-17']));
    for (let i = 1; i < sets.length; i++) assert.ok(sets[i - 1]!.every((n) => sets[i]!.includes(n)), `wave ${i} contains wave ${i - 1}`);
    // Stable across calls and node list order; another DaemonSet (uid) picks other canaries.
    assert.deepEqual(waveSets(ds, ds.spec.drover!.rollout!, [...nodes].reverse()), sets);
    const other = mkDs('app:1', { waves: [{ nodes: 5 }] });
    other.metadata.uid = 'another';
    const a = waveSets(ds, { waves: [{ nodes: 5 }] }, nodes)[0];
    const b = waveSets(other, { waves: [{ nodes: 5 }] }, nodes)[0];
    assert.notDeepEqual(a, b);
    // percent rounds up; a wave ending at 100% gets no implicit one.
    assert.deepEqual(waveSets(ds, { waves: [{ percent: 1 }, { percent: 100 }] }, nodes).map((s) => s.length), [1, 20]);
  });
});

describe('waved rollout: progress and gates', () => {
  it('updates wave by wave; no node of wave k+1 before wave k passed; completes with the new stable revision', () => {
    const nodes = fleet(8);
    const { sim, h1, h2 } = settled(nodes, WAVES);
    const sets = waveSets(sim.ds, sim.ds.spec.drover!.rollout!, nodes);
    assert.deepEqual(sets.map((s) => s.length), [1, 2, 4, 8]);

    const p = sim.pass();
    assert.equal(sim.rollout.phase, 'Progressing');
    assert.equal(sim.rollout.wave, 0);
    assert.equal(sim.rollout.targetRevision, h2);
    assert.equal(sim.rollout.stableRevision, h1);
    assert.deepEqual(p.delete.map((d) => d.pod.spec.nodeName), sets[0]);
    assert.ok(p.waves!.events.some((e) => e.reason === 'RolloutStarted'));

    const seen: number[] = [];
    for (let i = 0; i < 40 && sim.phase !== 'Complete'; i++) {
      sim.pass();
      seen.push(sim.rollout.wave);
      // Invariant: only nodes of waves up to the current one run the new revision.
      const allowed = new Set(sets[sim.phase === 'Complete' ? sets.length - 1 : sim.rollout.wave]);
      for (const n of nodes) if (sim.revisionOn(n.metadata.name) === h2) assert.ok(allowed.has(n.metadata.name), `${n.metadata.name} updated at wave ${sim.rollout.wave}`);
      sim.ready(h2);
      sim.now += 10_000;
    }
    assert.equal(sim.rollout.phase, 'Complete');
    assert.deepEqual([...new Set(seen)].filter((w) => w < 3), [0, 1, 2], 'every wave was gone through, in order');
    assert.ok(seen.every((w, i) => i === 0 || w >= seen[i - 1]!), `waves never go back: ${seen}`);
    assert.equal(sim.rollout.stableRevision, h2);
    assert.equal(podTemplateHash(sim.ds.status!.drover!.stableTemplate!), h2);
    sim.pass();
    for (const n of nodes) assert.equal(sim.revisionOn(n.metadata.name), h2);
  });

  it('waits for readySeconds: a pod Ready for less holds the wave, with when it will have waited enough', () => {
    const { sim, h2 } = settled(fleet(8), WAVES);
    sim.pass();
    sim.pass();
    sim.ready(h2);
    sim.now += 10_000;
    const p = sim.pass();
    assert.equal(sim.rollout.wave, 0);
    assert.match(sim.rollout.message, /waiting: pods Ready for 30s/);
    assert.equal(sim.rollout.waitingUntil, new Date(sim.now + 20_000).toISOString());
    assert.ok(p.requeueAfterMs! > 19_000 && p.requeueAfterMs! <= 20_200, String(p.requeueAfterMs));
    sim.now += 20_000;
    sim.pass();
    assert.equal(sim.rollout.wave, 1);
  });

  it('a failing pod in wave 1 rolls back: stable template written back, only wave 1 touched, events say which node and why', () => {
    const nodes = fleet(10);
    const { sim, h1, h2 } = settled(nodes, WAVES);
    const wave1 = waveSets(sim.ds, sim.ds.spec.drover!.rollout!, nodes)[0]!;
    sim.pass();
    sim.pass();
    sim.fail(wave1[0]!, 'ErrImagePull');
    const p = sim.pass();
    assert.equal(sim.rollout.phase, 'RolledBack');
    assert.ok(p.waves!.rollback);
    assert.equal(podTemplateHash(p.waves!.rollback!.template), h1);
    assert.equal(podTemplateHash(sim.ds.spec.template), h1, 'spec.template is the stable one again');
    const failed = p.waves!.events.find((e) => e.reason === 'RolloutWaveFailed')!;
    assert.equal(failed.type, 'Warning');
    assert.match(failed.message, /wave 1\/4 \(1 node\) failed its gate: 1 of 1 pods failed/);
    assert.ok(failed.message.includes(wave1[0]!) && failed.message.includes('ErrImagePull'), failed.message);
    assert.ok(p.waves!.events.some((e) => e.reason === 'RolledBack'));
    // The bad pod goes; nothing else is deleted.
    assert.deepEqual(p.delete.map((d) => d.pod.spec.nodeName), wave1);
    for (let i = 0; i < 3; i++) sim.pass();
    for (const n of nodes) assert.equal(sim.revisionOn(n.metadata.name), h1);
    assert.equal(sim.rollout.phase, 'RolledBack', 'stays RolledBack until a new template');
    assert.equal(sim.rollout.targetRevision, h2);
    // Applying :2 again is a new attempt from wave 1.
    sim.ds.spec.template = mkDs('app:2', WAVES).spec.template;
    sim.pass();
    assert.equal(sim.rollout.phase, 'Progressing');
    assert.equal(sim.rollout.wave, 0);
  });

  it('not Ready within timeoutSeconds fails the gate; maxFailureRatio tolerates some failures', () => {
    const { sim } = settled(fleet(4), { waves: [{ nodes: 1 }], gate: { readySeconds: 0, timeoutSeconds: 60 } });
    sim.pass();
    sim.pass();
    sim.now += 59_000;
    sim.pass();
    assert.equal(sim.rollout.phase, 'Progressing');
    assert.equal(sim.rollout.message, 'waiting: pods to become Ready (timeout 60s)');
    sim.now += 2_000;
    sim.pass();
    assert.equal(sim.rollout.phase, 'RolledBack');
    assert.match(sim.rollout.message, /not Ready within 60s/);

    const nodes = fleet(8);
    const t = settled(nodes, { waves: [{ nodes: 4 }], gate: { readySeconds: 0, maxFailureRatio: 0.25 } });
    const w1 = waveSets(t.sim.ds, t.sim.ds.spec.drover!.rollout!, nodes)[0]!;
    t.sim.pass();
    t.sim.pass();
    t.sim.ready(t.h2);
    t.sim.fail(w1[0]!, 'CrashLoopBackOff');
    t.sim.pass();
    assert.equal(t.sim.rollout.wave, 1, '1 of 4 failed (0.25) passes');
    assert.equal(t.sim.rollout.phase, 'Progressing');
  });
});

describe('waved rollout: duplicates', () => {
  it('of two pods on a node, the one of the revision the node should run stays', () => {
    const nodes = fleet(8);
    const { sim, h1, h2 } = settled(nodes, WAVES);
    const sets = waveSets(sim.ds, sim.ds.spec.drover!.rollout!, nodes);
    const beyond = sets.at(-1)!.find((n) => !sets[0]!.includes(n))!;
    // A pod of the new revision next to the stable one on a node beyond wave 1 (a write that raced a supersede).
    const stray = sim.pod(beyond, h2, mkDs('app:2', WAVES).spec.template, { ready: true, readySince: T0 - 10_000 });
    const p = sim.pass();
    const gone = p.delete.filter((d) => d.pod.spec.nodeName === beyond);
    assert.deepEqual(gone.map((d) => d.pod.metadata.name), [stray.metadata.name]);
    assert.equal(sim.revisionOn(beyond), h1);
  });
});

describe('waved rollout: offline nodes', () => {
  const wave1Offline = (policy: string) => {
    const nodes = fleet(6);
    const rollout = { waves: [{ nodes: 2 }], gate: { readySeconds: 0 }, offlineNodes: policy };
    const probe = mkDs('app:1', rollout);
    const w1 = waveSets(probe, probe.spec.drover!.rollout!, nodes)[0]!;
    const off = nodes.find((n) => n.metadata.name === w1[1])!;
    off.status!.conditions![0]!.status = 'Unknown';
    return { ...settled(nodes, rollout), off: off.metadata.name, on: w1[0]!, nodes };
  };

  it('wait: counted pending, does not hold the gate, its pod is replaced in its desired state', () => {
    const { sim, h2, off } = wave1Offline('wait');
    sim.pass();
    assert.equal(sim.revisionOn(off), undefined, 'old pod deleted');
    sim.pass();
    assert.equal(sim.revisionOn(off), h2, 'new pod bound to the offline node');
    sim.ready(h2);
    sim.pass();
    assert.equal(sim.rollout.wave, 1, 'the gate passed without the offline node');
  });

  it('wait: a node back after the timeout gets the whole timeout from its return, not from when its pod was replaced', () => {
    const nodes = fleet(6);
    const rollout = { waves: [{ nodes: 2 }, { percent: 50 }], gate: { readySeconds: 0, timeoutSeconds: 60 }, offlineNodes: 'wait' };
    const probe = mkDs('app:1', rollout);
    const [w1, w2] = waveSets(probe, probe.spec.drover!.rollout!, nodes);
    const late = nodes.find((n) => n.metadata.name === w1![1])!;
    late.status!.conditions![0]!.status = 'Unknown';
    const { sim, h2 } = settled(nodes, rollout);
    sim.drive(h2, () => sim.rollout.wave === 1, 1_000);
    sim.pass();
    sim.ready(h2, (n) => n !== late.metadata.name && w2!.includes(n));
    sim.now += 600_000;
    late.status!.conditions![0] = { type: 'Ready', status: 'True', lastTransitionTime: new Date(sim.now).toISOString() };
    sim.now += 30_000;
    sim.pass();
    assert.equal(sim.rollout.phase, 'Progressing', sim.rollout.message);
    assert.match(sim.rollout.message, /pods to become Ready/);
    sim.now += 31_000;
    sim.pass();
    assert.equal(sim.rollout.phase, 'RolledBack', 'not Ready 60 s after its return: that is a failure');
  });

  it('skip: left alone during the rollout, brought to the final revision once it completes', () => {
    const { sim, h1, h2, off } = wave1Offline('skip');
    sim.drive(h2, () => {
      if (sim.rollout.phase === 'Complete') return true;
      assert.equal(sim.revisionOn(off), h1, 'untouched during the rollout');
      return false;
    });
    assert.equal(sim.last.delete.find((d) => d.pod.spec.nodeName === off)?.reason, `waved rollout: revision ${h1} → ${h2}`, 'replaced once complete');
    sim.pass();
    sim.pass();
    assert.equal(sim.revisionOn(off), h2);
  });

  it('block: the gate holds while a node of the wave is offline, and says which', () => {
    const { sim, h2, off, nodes } = wave1Offline('block');
    for (let i = 0; i < 4; i++) {
      sim.pass();
      sim.ready(h2);
      sim.now += 5_000;
    }
    assert.equal(sim.rollout.wave, 0);
    assert.match(sim.rollout.message, new RegExp(`blocked.*${off}`));
    assert.deepEqual(sim.rollout.offlineNodes, [off]);
    nodes.find((n) => n.metadata.name === off)!.status!.conditions![0]!.status = 'True';
    sim.ready(h2);
    sim.pass();
    assert.equal(sim.rollout.wave, 1);
  });
});

describe('waved rollout: supersede and pause', () => {
  it('a newer revision supersedes an in-flight rollout: back to wave 1, other nodes back to the stable revision', () => {
    const nodes = fleet(8);
    const { sim, h1, h2 } = settled(nodes, WAVES);
    sim.drive(h2, () => sim.rollout.wave === 2);
    const sets = waveSets(sim.ds, sim.ds.spec.drover!.rollout!, nodes);
    sim.ds.spec.template = mkDs('app:3', WAVES).spec.template;
    const h3 = podTemplateHash(sim.ds.spec.template);
    const p = sim.pass();
    assert.equal(sim.rollout.targetRevision, h3);
    assert.equal(sim.rollout.wave, 0);
    assert.equal(sim.rollout.stableRevision, h1, 'the stable revision is the last completed one');
    assert.ok(p.waves!.events.some((e) => e.reason === 'RolloutSuperseded' && e.message.includes(h2)));
    sim.pass();
    sim.pass();
    for (const n of nodes) {
      const want = sets[0]!.includes(n.metadata.name) ? h3 : h1;
      assert.equal(sim.revisionOn(n.metadata.name), want, n.metadata.name);
    }
  });

  it('paused holds the wave: no pod replaced, no wave passed', () => {
    const nodes = fleet(8);
    const { sim, h2 } = settled(nodes, WAVES);
    sim.drive(h2, () => sim.rollout.wave === 1);
    sim.ds.spec.drover!.paused = true;
    for (let i = 0; i < 3; i++) {
      const p = sim.pass();
      assert.equal(p.delete.length, 0);
      sim.ready(h2);
      sim.now += 60_000;
    }
    assert.equal(sim.rollout.phase, 'Paused');
    assert.equal(sim.rollout.wave, 1);
    delete sim.ds.spec.drover!.paused;
    sim.drive(h2, () => sim.rollout.phase === 'Complete');
  });
});

describe('waved rollout: validation', () => {
  const manifest = (kind: string, drover: unknown) => ({
    apiVersion: 'apps/v1',
    kind,
    metadata: { name: 'x' },
    spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } }, drover },
  });
  const causes = (raw: unknown) => {
    try {
      parseObject(raw);
    } catch (err) {
      assert.ok(err instanceof ValidationError);
      return err.causes.map((c) => `${c.field}: ${c.message}`);
    }
    return [];
  };

  it('names the field of a bad wave, gate or policy', () => {
    assert.deepEqual(causes(manifest('DaemonSet', { rollout: { waves: [{ nodes: 1 }, { percent: 0 }] } })), ['spec.drover.rollout.waves[1].percent: must be 1..100']);
    assert.deepEqual(causes(manifest('DaemonSet', { rollout: { waves: [{ percent: 150 }] } })), ['spec.drover.rollout.waves[0].percent: must be 1..100']);
    assert.match(causes(manifest('DaemonSet', { rollout: { waves: [{ nodes: 1, percent: 5 }] } }))[0]!, /^spec\.drover\.rollout\.waves\[0\]: exactly one of nodes, percent, selector/);
    assert.match(causes(manifest('DaemonSet', { rollout: { waves: [{ selector: {} }] } }))[0]!, /^spec\.drover\.rollout\.waves\[0\]\.selector: must not be empty/);
    assert.match(causes(manifest('DaemonSet', { rollout: { waves: [] } }))[0]!, /^spec\.drover\.rollout\.waves: at least one wave/);
    assert.match(causes(manifest('DaemonSet', { rollout: { waves: [{ nodes: 1 }], offlineNodes: 'later' } }))[0]!, /^spec\.drover\.rollout\.offlineNodes: must be one of wait, skip, block/);
    assert.match(causes(manifest('DaemonSet', { rollout: { waves: [{ nodes: 1 }], gate: { maxFailureRatio: 2 } } }))[0]!, /^spec\.drover\.rollout\.gate\.maxFailureRatio: must be 0\.\.1/);
    assert.deepEqual(causes(manifest('DaemonSet', { rollout: { waves: [{ nodes: 1 }, { selector: { matchLabels: { site: 'lab' } } }] } })), []);
  });
});
