import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyPlan, applySteps } from '../../agent/engine/apply.js';
import { RestartTracker } from '../../agent/engine/restart-tracker.js';
import { containerKey, containerName, LABELS, managedSelector } from '../../agent/engine/naming.js';
import { imagePresent, plan, toRunSpec, type PlanContext, type Step } from '../../agent/engine/plan.js';
import { matchContainers } from '../../agent/engine/match.js';
import { podReports, type ReportView } from '../../agent/engine/report.js';
import { specHash } from '../../agent/engine/spec-hash.js';
import { canonicalJson } from '../../src/util/canonical-json.js';
import type { ContainerRuntime, RunSpec, RuntimeContainer } from '../../agent/runtime/types.js';
import type { Container } from '../../src/api/pod.js';
import type { AgentEvent, DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';

// ---------------------------------------------------------------------------------------------
// Builders: plain values only.
// ---------------------------------------------------------------------------------------------

const NODE = 'edge-1';
const T0 = Date.parse('2024-05-01T12:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

function mkPod(name: string, containers: Array<Partial<Container> & { name: string }>, o: Partial<DesiredPod['spec']> & { uid?: string } = {}): DesiredPod {
  const { uid, ...spec } = o;
  return {
    uid: uid ?? `uid-${name}-0000`,
    namespace: 'default',
    name,
    spec: {
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 10,
      ...spec,
      containers: containers.map((c) => ({ image: 'localhost/app:1', ...c })),
    },
  };
}

/** The container the runtime would hold after running `pod`'s container `name` as planned. */
function mkRunning(pod: DesiredPod, name: string, o: Partial<RuntimeContainer> = {}): RuntimeContainer {
  const spec = toRunSpec(pod, name, NODE);
  return {
    id: `id-${spec.name}`,
    name: spec.name,
    image: spec.image,
    labels: spec.labels,
    state: 'running',
    createdAt: iso(T0 - 60_000),
    startedAt: iso(T0 - 60_000),
    ...o,
  };
}

function exited(pod: DesiredPod, name: string, exitCode: number, o: Partial<RuntimeContainer> = {}): RuntimeContainer {
  return mkRunning(pod, name, { state: 'exited', exitCode, finishedAt: iso(T0 - 1_000), ...o });
}

function ctx(o: Partial<PlanContext> = {}): PlanContext {
  return { node: NODE, now: T0, images: new Set(['localhost/app:1', 'localhost/app:2']), restartBackoff: () => 0, ...o };
}

const actions = (steps: Step[]) => steps.map((s) => (s.action === 'remove' ? `remove:${s.reason}:${s.name}` : s.action === 'pull' ? `pull:${s.image}` : `${s.action}:${s.container}`));

// ---------------------------------------------------------------------------------------------

describe('naming', () => {
  it('builds a podman-safe name with the uid prefix', () => {
    assert.equal(containerName('default', 'web', 'nginx', 'abcdef0123456789'), 'drover-default-web-nginx-abcdef01');
    assert.match(containerName('ns', 'pod', 'c', 'a b/c:d€'), /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/);
  });

  it('selects managed containers of this node', () => {
    assert.deepEqual(managedSelector(NODE), { [LABELS.managed]: 'true', [LABELS.node]: NODE });
  });
});

describe('spec hash', () => {
  it('does not depend on key order', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: undefined } }), '{"a":{"d":[1,{"x":1,"y":2}]},"b":1}');
    const a: RunSpec = { name: 'a', image: 'i', env: { A: '1', B: '2' }, ports: [], labels: {}, memoryBytes: 5 };
    const b: RunSpec = { memoryBytes: 5, labels: { x: 'y' }, ports: [], env: { B: '2', A: '1' }, image: 'i', name: 'other' };
    assert.equal(specHash(a), specHash(b));
    assert.match(specHash(a), /^[0-9a-f]{16}$/);
  });

  it('is unchanged by restart policy, requests, env order and equivalent quantities', () => {
    const base = mkPod('p', [{ name: 'c', env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }], resources: { limits: { memory: '1Gi' } } }]);
    const other = mkPod('p', [{ name: 'c', env: [{ name: 'B', value: '2' }, { name: 'A', value: '1' }], resources: { limits: { memory: '1024Mi' }, requests: { cpu: '100m' } } }], { restartPolicy: 'Never' });
    const h = (p: DesiredPod) => toRunSpec(p, 'c', NODE).labels[LABELS.specHash];
    assert.equal(h(base), h(other));
  });

  it('changes with image, command, env, ports, limits and hostNetwork', () => {
    const h = (p: DesiredPod) => toRunSpec(p, 'c', NODE).labels[LABELS.specHash];
    const base = h(mkPod('p', [{ name: 'c' }]));
    const variants = [
      mkPod('p', [{ name: 'c', image: 'localhost/app:2' }]),
      mkPod('p', [{ name: 'c', command: ['sh'] }]),
      mkPod('p', [{ name: 'c', args: ['-x'] }]),
      mkPod('p', [{ name: 'c', env: [{ name: 'A', value: '1' }] }]),
      mkPod('p', [{ name: 'c', workingDir: '/srv' }]),
      mkPod('p', [{ name: 'c', ports: [{ containerPort: 80, protocol: 'TCP' }] }]),
      mkPod('p', [{ name: 'c', resources: { limits: { cpu: '500m' } } }]),
      mkPod('p', [{ name: 'c' }], { hostNetwork: true }),
    ];
    for (const v of variants) assert.notEqual(h(v), base, JSON.stringify(v.spec));
  });
});

describe('toRunSpec', () => {
  it('resolves env, ports, limits and labels', () => {
    const pod = mkPod('web', [
      {
        name: 'nginx',
        image: 'nginx:1.25',
        command: ['nginx'],
        args: [],
        env: [{ name: 'A', value: '1' }, { name: 'A', value: '2' }],
        ports: [{ containerPort: 80, hostPort: 8080, protocol: 'TCP' }],
        resources: { limits: { cpu: '0.5', memory: '128Mi' }, requests: { cpu: '100m', memory: '64Mi' } },
      },
    ]);
    const spec = toRunSpec(pod, 'nginx', NODE);
    assert.equal(spec.name, 'drover-default-web-nginx-uid-web-');
    assert.deepEqual(spec.command, ['nginx']);
    assert.equal(spec.args, undefined);
    assert.deepEqual(spec.env, { A: '2' });
    assert.deepEqual(spec.ports, [{ containerPort: 80, hostPort: 8080, hostIP: undefined, protocol: 'TCP' }]);
    assert.equal(spec.cpuMilli, 500);
    assert.equal(spec.memoryBytes, 128 * 2 ** 20);
    assert.deepEqual(spec.labels, {
      [LABELS.managed]: 'true',
      [LABELS.podUid]: pod.uid,
      [LABELS.namespace]: 'default',
      [LABELS.pod]: 'web',
      [LABELS.container]: 'nginx',
      [LABELS.specHash]: specHash(spec),
      [LABELS.node]: NODE,
    });
  });

  it('uses no requests as limits', () => {
    const spec = toRunSpec(mkPod('p', [{ name: 'c', resources: { requests: { cpu: '1', memory: '1Gi' } } }]), 'c', NODE);
    assert.equal(spec.cpuMilli, undefined);
    assert.equal(spec.memoryBytes, undefined);
  });
});

describe('plan', () => {
  it('runs every container of an empty node', () => {
    const a = mkPod('a', [{ name: 'x' }, { name: 'y' }]);
    const b = mkPod('b', [{ name: 'z' }]);
    const r = plan([], [a, b], ctx());
    assert.deepEqual(actions(r.steps), ['run:x', 'run:y', 'run:z']);
    const run = r.steps[0]!;
    assert.equal(run.action === 'run' && run.spec.labels[LABELS.podUid], a.uid);
    assert.equal(r.requeueAfterMs, undefined);
  });

  it('returns no steps when everything runs with the desired hash (the reconnect guarantee)', () => {
    const a = mkPod('a', [{ name: 'x' }, { name: 'y' }]);
    const current = [mkRunning(a, 'x'), mkRunning(a, 'y')];
    const r = plan(current, [a], ctx());
    assert.deepEqual(r.steps, []);
    assert.deepEqual(r.waits, []);
    // Re-published identical desired state (a fresh object, keys in another order) changes nothing.
    const again = JSON.parse(JSON.stringify({ spec: a.spec, name: a.name, namespace: a.namespace, uid: a.uid })) as DesiredPod;
    assert.deepEqual(plan(current, [again], ctx()).steps, []);
  });

  it('removes a container whose spec changed and runs the new one on the next pass', () => {
    const old = mkPod('a', [{ name: 'x', image: 'localhost/app:1' }]);
    const now = mkPod('a', [{ name: 'x', image: 'localhost/app:2' }], { terminationGracePeriodSeconds: 7 });
    const running = mkRunning(old, 'x');
    const r = plan([running], [now], ctx());
    assert.deepEqual(actions(r.steps), [`remove:spec-changed:${running.name}`]);
    const rm = r.steps[0]!;
    assert.ok(rm.action === 'remove' && rm.running && rm.graceSeconds === 7);
    assert.deepEqual(actions(plan([], [now], ctx()).steps), ['run:x']);
  });

  it('removes orphans: unknown pod uid, container gone from the spec, incomplete labels', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const gone = mkPod('gone', [{ name: 'x' }]);
    const orphanPod = mkRunning(gone, 'x');
    const orphanContainer = { ...mkRunning(mkPod('a', [{ name: 'old' }]), 'old'), id: 'c2' };
    const broken: RuntimeContainer = { id: 'c3', name: 'weird', image: 'i', state: 'exited', labels: { [LABELS.managed]: 'true', [LABELS.node]: NODE } };
    const r = plan([mkRunning(a, 'x'), orphanPod, orphanContainer, broken], [a], ctx());
    assert.deepEqual(actions(r.steps), [`remove:orphan:${orphanPod.name}`, `remove:orphan:${orphanContainer.name}`, 'remove:orphan:weird']);
    const first = r.steps[0]!;
    assert.ok(first.action === 'remove' && first.pod?.uid === gone.uid && first.graceSeconds === 10);
    const last = r.steps[2]!;
    assert.ok(last.action === 'remove' && !last.running && last.pod === undefined);
  });

  it('never touches containers of other nodes or unmanaged ones', () => {
    const gone = mkPod('gone', [{ name: 'x' }]);
    const other = mkRunning(gone, 'x', { labels: { ...toRunSpec(gone, 'x', 'edge-2').labels } });
    const unmanaged: RuntimeContainer = { id: 'u', name: 'user-db', image: 'postgres', state: 'running', labels: {} };
    assert.deepEqual(plan([other, unmanaged], [], ctx()).steps, []);
  });

  it('keeps the newest running duplicate and removes the others', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const older = mkRunning(a, 'x', { id: 'old', name: 'dup-old', createdAt: iso(T0 - 100_000) });
    const newer = mkRunning(a, 'x', { id: 'new', name: 'dup-new', createdAt: iso(T0 - 50_000) });
    const newestExited = exited(a, 'x', 0, { id: 'ex', name: 'dup-exited', createdAt: iso(T0 - 10_000) });
    const r = plan([older, newestExited, newer], [a], ctx());
    assert.deepEqual(actions(r.steps).sort(), ['remove:duplicate:dup-exited', 'remove:duplicate:dup-old']);
  });

  it('prefers a duplicate with the current spec over a newer outdated one', () => {
    const old = mkPod('a', [{ name: 'x', image: 'localhost/app:1' }]);
    const cur = mkPod('a', [{ name: 'x', image: 'localhost/app:2' }]);
    const outdated = mkRunning(old, 'x', { id: 'o', name: 'outdated', createdAt: iso(T0) });
    const good = mkRunning(cur, 'x', { id: 'g', name: 'good', createdAt: iso(T0 - 100_000) });
    assert.deepEqual(actions(plan([outdated, good], [cur], ctx()).steps), ['remove:duplicate:outdated']);
  });

  describe('restart policies × exit codes', () => {
    const cases: Array<[DesiredPod['spec']['restartPolicy'], number, boolean]> = [
      ['Always', 0, true],
      ['Always', 1, true],
      ['OnFailure', 0, false],
      ['OnFailure', 137, true],
      ['Never', 0, false],
      ['Never', 1, false],
    ];
    for (const [policy, code, restart] of cases) {
      it(`${policy} exit ${code} → ${restart ? 'restart' : 'leave'}`, () => {
        const a = mkPod('a', [{ name: 'x' }], { restartPolicy: policy });
        const c = exited(a, 'x', code);
        const r = plan([c], [a], ctx());
        assert.deepEqual(actions(r.steps), restart ? ['restart:x'] : []);
        if (restart) {
          const s = r.steps[0]!;
          assert.ok(s.action === 'restart' && s.id === c.id && s.key === containerKey(a.uid, 'x'));
        }
      });
    }

    it('starts a created-but-never-started container whatever the policy', () => {
      const a = mkPod('a', [{ name: 'x' }], { restartPolicy: 'Never' });
      assert.deepEqual(actions(plan([mkRunning(a, 'x', { state: 'created' })], [a], ctx()).steps), ['restart:x']);
    });

    it('leaves paused, stopping and unknown containers alone', () => {
      const a = mkPod('a', [{ name: 'x' }]);
      for (const state of ['paused', 'stopping', 'unknown'] as const) assert.deepEqual(plan([mkRunning(a, 'x', { state })], [a], ctx()).steps, []);
    });
  });

  it('delays a restart while backing off and asks to be requeued', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const b = mkPod('b', [{ name: 'y' }]);
    const seen: string[] = [];
    const r = plan([exited(a, 'x', 1), exited(b, 'y', 1)], [a, b], ctx({
      restartBackoff: (key, c, now) => {
        seen.push(`${key}@${now}:${c.state}`);
        return key.startsWith(a.uid) ? 7_000 : 3_000;
      },
    }));
    assert.deepEqual(r.steps, []);
    assert.equal(r.requeueAfterMs, 3_000);
    assert.deepEqual(r.waits.map((w) => [w.reason, w.container, w.remainingMs]), [['CrashLoopBackOff', 'x', 7_000], ['CrashLoopBackOff', 'y', 3_000]]);
    assert.deepEqual(seen, [`${a.uid}/x@${T0}:exited`, `${b.uid}/y@${T0}:exited`]);
  });

  it('pulls a missing image once for all its containers, and runs only on the next pass', () => {
    const a = mkPod('a', [{ name: 'x', image: 'nginx:1.25' }, { name: 'y', image: 'nginx:1.25' }]);
    const b = mkPod('b', [{ name: 'z', image: 'nginx:1.25' }, { name: 'w' }]);
    const r = plan([], [a, b], ctx());
    assert.deepEqual(actions(r.steps), ['run:w', 'pull:nginx:1.25']);
    const pull = r.steps[1]!;
    assert.ok(pull.action === 'pull');
    assert.deepEqual(pull.pods.map((p) => p.name), ['a', 'b']);
    const after = plan([], [a, b], ctx({ images: new Set(['docker.io/library/nginx:1.25', 'localhost/app:1']) }));
    assert.deepEqual(actions(after.steps), ['run:x', 'run:y', 'run:z', 'run:w']);
  });

  it('backs off failed pulls and runs', () => {
    const a = mkPod('a', [{ name: 'x', image: 'ghcr.io/o/missing:1' }, { name: 'y' }]);
    const r = plan([], [a], ctx({ pullBackoff: () => 4_000, runBackoff: () => 9_000 }));
    assert.deepEqual(r.steps, []);
    assert.deepEqual(r.waits.map((w) => w.reason), ['ImagePullBackOff', 'RunContainerBackOff']);
    assert.equal(r.requeueAfterMs, 4_000);
  });

  it('orders removes before restarts, runs and pulls', () => {
    const a = mkPod('a', [{ name: 'x' }, { name: 'y' }, { name: 'z', image: 'remote/img' }]);
    const orphan = mkRunning(mkPod('gone', [{ name: 'q' }]), 'q');
    const r = plan([exited(a, 'y', 1), orphan], [a], ctx());
    assert.deepEqual(r.steps.map((s) => s.action), ['remove', 'restart', 'run', 'pull']);
  });

  it('reports a container whose limits cannot be resolved without blocking the rest', () => {
    const a = mkPod('a', [{ name: 'bad', resources: { limits: { cpu: '1Gi' } } }, { name: 'ok' }]);
    const r = plan([], [a], ctx());
    assert.deepEqual(actions(r.steps), ['run:ok']);
    assert.equal(r.invalid.length, 1);
    assert.equal(r.invalid[0]!.container, 'bad');
  });

  it('matches short image names against fully qualified runtime names', () => {
    const images = new Set(['docker.io/library/nginx:latest', 'localhost/app:1', 'quay.io/x/y:2']);
    assert.ok(imagePresent(images, 'nginx'));
    assert.ok(imagePresent(images, 'app:1'));
    assert.ok(imagePresent(images, 'quay.io/x/y:2'));
    assert.ok(!imagePresent(images, 'nginx:1.25'));
    assert.ok(!imagePresent(images, 'quay.io/x/y'));
  });
});

describe('matchContainers', () => {
  it('keeps the current spec first, then running, then the newest; the rest are duplicates', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const old = { ...mkRunning(a, 'x', { id: 'old-running' }), labels: { ...mkRunning(a, 'x').labels, [LABELS.specHash]: 'stale' } };
    const current = exited(a, 'x', 1, { id: 'current-exited', createdAt: iso(T0 - 120_000) });
    const newer = exited(a, 'x', 1, { id: 'current-newer', createdAt: iso(T0 - 30_000) });
    const [m] = matchContainers([old, current, newer], [a], NODE).pods[0]!.containers;
    assert.equal(m!.kept?.id, 'current-newer');
    assert.deepEqual(m!.duplicates.map((c) => c.id), ['current-exited', 'old-running']);
    assert.equal(m!.hash, current.labels[LABELS.specHash]);
  });

  it('sets apart containers with no place in the target and ignores other nodes\' containers', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const gone = mkRunning(mkPod('gone', [{ name: 'q' }]), 'q');
    const renamed = { ...mkRunning(a, 'x', { id: 'renamed' }), labels: { ...mkRunning(a, 'x').labels, [LABELS.container]: 'old-name' } };
    const unlabeled: RuntimeContainer = { id: 'bare', name: 'bare', image: 'i', state: 'running', labels: managedSelector(NODE) };
    const foreign = { ...mkRunning(a, 'x', { id: 'foreign' }), labels: { ...mkRunning(a, 'x').labels, [LABELS.node]: 'edge-2' } };
    const m = matchContainers([gone, renamed, unlabeled, foreign], [a], NODE);
    assert.deepEqual(m.orphans.map((o) => [o.container.id, o.pod?.name]), [[gone.id, undefined], ['renamed', 'a'], ['bare', undefined]]);
    assert.equal(m.pods[0]!.containers[0]!.kept, undefined);
  });

  it('says why a spec cannot be hashed and still ranks what runs for it', () => {
    const a = mkPod('a', [{ name: 'x', resources: { limits: { cpu: '1Gi' } } }]);
    const running = { ...mkRunning(mkPod('a', [{ name: 'x' }]), 'x', { id: 'r' }) };
    const [m] = matchContainers([exited(mkPod('a', [{ name: 'x' }]), 'x', 1, { id: 'e' }), running], [a], NODE).pods[0]!.containers;
    assert.equal(m!.hash, undefined);
    assert.match(m!.hashError ?? '', /1Gi/);
    assert.equal(m!.kept?.id, 'r');
  });
});

describe('podReports', () => {
  const counts: ReportView = { restartCount: () => 0 };
  /** Reports as the agent makes them: about what the plan of the same containers matched and found invalid. */
  const reports = (pods: DesiredPod[], current: RuntimeContainer[], view: ReportView, now: number) => podReports(plan(current, pods, ctx({ now })), view, now);
  const phase = (pod: DesiredPod, current: RuntimeContainer[]) => reports([pod], current, counts, T0)[0]!;

  it('Pending with ContainerCreating while a container is missing or only created', () => {
    const a = mkPod('a', [{ name: 'x' }, { name: 'y' }]);
    const r = phase(a, [mkRunning(a, 'x'), mkRunning(a, 'y', { state: 'created' })]);
    assert.equal(r.phase, 'Pending');
    assert.deepEqual(r.containers.map((c) => [c.name, c.state, c.reason, c.ready]), [['x', 'running', undefined, true], ['y', 'waiting', 'ContainerCreating', false]]);
    assert.equal(phase(a, []).phase, 'Pending');
  });

  it('Running when all run, with ids, start times and restart counts', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const c = mkRunning(a, 'x');
    const r = reports([a], [c], { restartCount: (key) => (key === containerKey(a.uid, 'x') ? 3 : 0) }, T0)[0]!;
    assert.equal(r.phase, 'Running');
    assert.deepEqual(r.containers[0], { name: 'x', image: c.image, containerID: c.id, restartCount: 3, ready: true, state: 'running', startedAt: c.startedAt });
    assert.equal(r.startTime, c.startedAt);
  });

  it('Succeeded when all exited 0 and the policy does not restart', () => {
    for (const policy of ['OnFailure', 'Never'] as const) {
      const a = mkPod('a', [{ name: 'x' }, { name: 'y' }], { restartPolicy: policy });
      const r = phase(a, [exited(a, 'x', 0), exited(a, 'y', 0)]);
      assert.equal(r.phase, 'Succeeded');
      assert.deepEqual(r.containers.map((c) => [c.state, c.reason, c.exitCode]), [['terminated', 'Completed', 0], ['terminated', 'Completed', 0]]);
    }
  });

  it('Failed when all stopped and one failed under Never', () => {
    const a = mkPod('a', [{ name: 'x' }, { name: 'y' }], { restartPolicy: 'Never' });
    const r = phase(a, [exited(a, 'x', 0), exited(a, 'y', 2)]);
    assert.equal(r.phase, 'Failed');
    assert.equal(r.containers[1]!.reason, 'Error');
    assert.equal(r.containers[1]!.exitCode, 2);
  });

  it('Running while another container still runs, even under Never', () => {
    const a = mkPod('a', [{ name: 'x' }, { name: 'y' }], { restartPolicy: 'Never' });
    assert.equal(phase(a, [mkRunning(a, 'x'), exited(a, 'y', 2)]).phase, 'Running');
  });

  it('Running with CrashLoopBackOff under Always (exit 0 too) and OnFailure (exit ≠ 0)', () => {
    const tracker = new RestartTracker({ clock: () => T0 });
    const a = mkPod('a', [{ name: 'x' }]);
    const r = reports([a], [exited(a, 'x', 0)], tracker, T0)[0]!;
    assert.equal(r.phase, 'Running');
    const s = r.containers[0]!;
    assert.deepEqual([s.state, s.reason, s.ready, s.exitCode], ['waiting', 'CrashLoopBackOff', false, 0]);
    assert.equal(s.message, `back-off 10s restarting failed container=x pod=a_default(${a.uid})`);
    const b = mkPod('b', [{ name: 'x' }, { name: 'y' }], { restartPolicy: 'OnFailure' });
    const rb = reports([b], [exited(b, 'x', 0), exited(b, 'y', 1)], tracker, T0)[0]!;
    assert.equal(rb.phase, 'Running');
    assert.deepEqual(rb.containers.map((c) => c.reason), ['Completed', 'CrashLoopBackOff']);
  });

  it('stays equal between heartbeats while backing off', () => {
    const tracker = new RestartTracker({ clock: () => T0 });
    const a = mkPod('a', [{ name: 'x' }]);
    const cur = [exited(a, 'x', 1)];
    assert.deepEqual(reports([a], cur, tracker, T0), reports([a], cur, tracker, T0 + 4_000));
  });

  it('shows image pull and run failures', () => {
    let now = T0;
    const tracker = new RestartTracker({ clock: () => now });
    const a = mkPod('a', [{ name: 'x', image: 'ghcr.io/o/missing:1' }, { name: 'y' }]);
    tracker.pullFailed('ghcr.io/o/missing:1', 'manifest unknown');
    tracker.runFailed(containerKey(a.uid, 'y'), 'port 80 already in use');
    let r = reports([a], [], tracker, now)[0]!;
    assert.equal(r.phase, 'Pending');
    assert.deepEqual(r.containers.map((c) => [c.reason, c.message]), [['ImagePullBackOff', 'manifest unknown'], ['RunContainerError', 'port 80 already in use']]);
    now += 60_000;
    r = reports([a], [], tracker, now)[0]!;
    assert.equal(r.containers[0]!.reason, 'ErrImagePull');
  });

  it('reports the container the plan keeps among duplicates', () => {
    const a = mkPod('a', [{ name: 'x' }]);
    const keep = mkRunning(a, 'x', { id: 'keep', createdAt: iso(T0) });
    const stale = exited(a, 'x', 1, { id: 'stale', createdAt: iso(T0 - 100_000) });
    assert.equal(phase(a, [stale, keep]).containers[0]!.containerID, 'keep');
  });

  it('reports an unresolvable spec as CreateContainerConfigError', () => {
    const a = mkPod('a', [{ name: 'x', resources: { limits: { cpu: '1Gi' } } }]);
    const r = phase(a, []);
    assert.equal(r.containers[0]!.reason, 'CreateContainerConfigError');
    assert.equal(r.phase, 'Pending');
  });
});

describe('RestartTracker', () => {
  it('backs off 10s, 20s, 40s … capped at 300s, counted from the exit', () => {
    let now = T0;
    const t = new RestartTracker({ clock: () => now });
    const key = 'uid/x';
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      const c: RuntimeContainer = { id: 'c', name: 'c', image: 'i', labels: {}, state: 'exited', exitCode: 1, startedAt: iso(now - 1_000), finishedAt: iso(now) };
      const d = t.restartBackoff(key, c);
      delays.push(d);
      assert.equal(t.restartDelay(key, c), d);
      now += d - 1;
      assert.equal(t.restartBackoff(key, c), 1, 'not yet');
      now += 1;
      assert.equal(t.restartBackoff(key, c), 0, 'now');
      t.recordRestart(key, c);
      now += 2_000;
    }
    assert.deepEqual(delays, [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
    assert.equal(t.restartCount(key), 8);
  });

  it('starts over after a container ran 10 minutes, keeping the restart count', () => {
    let now = T0;
    const t = new RestartTracker({ clock: () => now });
    const short: RuntimeContainer = { id: 'c', name: 'c', image: 'i', labels: {}, state: 'exited', exitCode: 1, startedAt: iso(now - 1_000), finishedAt: iso(now) };
    for (let i = 0; i < 4; i++) t.recordRestart('k', short);
    assert.equal(t.restartDelay('k', short), 160_000);
    now += 3_600_000;
    const long = { ...short, startedAt: iso(now - 600_000), finishedAt: iso(now) };
    assert.equal(t.restartDelay('k', long), 10_000);
    t.recordRestart('k', long);
    assert.equal(t.restartDelay('k', short), 20_000);
    assert.equal(t.restartCount('k'), 5);
  });

  it('falls back to the last restart when the exit time is unknown', () => {
    let now = T0;
    const t = new RestartTracker({ clock: () => now });
    const created: RuntimeContainer = { id: 'c', name: 'c', image: 'i', labels: {}, state: 'created', finishedAt: '0001-01-01T00:00:00Z' };
    assert.equal(t.restartBackoff('k', created), 0);
    t.recordRestart('k', created);
    now += 5_000;
    assert.equal(t.restartBackoff('k', created), 15_000);
  });

  it('backs off pulls and runs per image and key, and forgets on success', () => {
    let now = T0;
    const t = new RestartTracker({ clock: () => now });
    t.pullFailed('img', 'e1');
    assert.equal(t.pullBackoff('img'), 10_000);
    t.pullFailed('img', 'e2');
    assert.equal(t.pullBackoff('img'), 20_000);
    assert.equal(t.pullBackoff('other'), 0);
    t.pullSucceeded('img');
    assert.equal(t.pullBackoff('img'), 0);
    t.runFailed('k', 'boom');
    now += 4_000;
    assert.equal(t.runBackoff('k'), 6_000);
    t.runSucceeded('k');
    assert.equal(t.runBackoff('k'), 0);
  });

  it('retains only state of target pods', () => {
    const t = new RestartTracker({ clock: () => T0 });
    const a = mkPod('a', [{ name: 'x' }]);
    const c: RuntimeContainer = { id: 'c', name: 'c', image: 'i', labels: {}, state: 'exited' };
    t.recordRestart(containerKey(a.uid, 'x'), c);
    t.recordRestart('gone/x', c);
    t.pullFailed('gone-image', 'e');
    t.retain([a]);
    assert.equal(t.restartCount(containerKey(a.uid, 'x')), 1);
    assert.equal(t.restartCount('gone/x'), 0);
    assert.equal(t.pullBackoff('gone-image'), 0);
  });

  it('gives plan a context wired to its clock', () => {
    const t = new RestartTracker({ clock: () => T0 });
    const a = mkPod('a', [{ name: 'x' }]);
    const r = plan([exited(a, 'x', 1, { finishedAt: iso(T0 - 4_000) })], [a], t.planContext(NODE, new Set()));
    assert.equal(r.requeueAfterMs, 6_000);
  });
});

// ---------------------------------------------------------------------------------------------
// applySteps against a scripted runtime: the executor table, events, error collection.
// ---------------------------------------------------------------------------------------------

function fakeRuntime(fail: Partial<Record<'run' | 'pull' | 'start' | 'stop' | 'remove', string>> = {}) {
  const calls: string[] = [];
  const maybeFail = (op: keyof typeof fail, arg: string) => {
    calls.push(`${op}:${arg}`);
    if (fail[op]) throw new Error(fail[op]);
  };
  const runtime: ContainerRuntime = {
    name: 'fake',
    version: async () => '0',
    list: async () => [],
    inspect: async () => undefined,
    run: async (spec) => {
      maybeFail('run', spec.name);
      return `id-${spec.name}`;
    },
    start: async (id) => maybeFail('start', id),
    stop: async (id, t) => maybeFail('stop', `${id}/${t}`),
    remove: async (id, grace) => maybeFail('remove', `${id}/${grace ?? 0}`),
    logs: async () => '',
    exec: async () => ({ exitCode: 0, output: '', timedOut: false }),
    pull: async (image) => maybeFail('pull', image),
    images: async () => [],
  };
  return { runtime, calls };
}

describe('applySteps', () => {
  const a = mkPod('a', [{ name: 'x' }, { name: 'y', image: 'remote/img:1' }]);

  it('runs every step, emits events, and collects failures without stopping', async () => {
    const { runtime, calls } = fakeRuntime({ pull: 'unauthorized' });
    const events: AgentEvent[] = [];
    const restarts = new RestartTracker({ clock: () => T0 });
    const orphan = mkRunning(mkPod('gone', [{ name: 'q' }]), 'q');
    const r = plan([orphan, exited(a, 'x', 1)], [a], ctx());
    const { errors } = await applySteps(r.steps, { runtime, logger: silentLogger, emit: (e) => events.push(e), restarts });
    assert.deepEqual(calls, [`remove:${orphan.id}/10`, `start:${exited(a, 'x', 1).id}`, 'pull:remote/img:1']);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.step.action, 'pull');
    assert.equal(errors[0]!.error.message, 'unauthorized');
    assert.deepEqual(events.map((e) => `${e.type}/${e.reason}`), ['Normal/Killing', 'Normal/Started', 'Normal/Pulling', 'Warning/Failed']);
    assert.match(events[3]!.message, /Failed to pull image "remote\/img:1": unauthorized/);
    assert.equal(events[3]!.involved.uid, a.uid);
    assert.equal(restarts.restartCount(containerKey(a.uid, 'x')), 1);
    assert.equal(restarts.pullBackoff('remote/img:1'), 10_000);
  });

  it('records run failures for back-off and reports Created/Started on success', async () => {
    const restarts = new RestartTracker({ clock: () => T0 });
    const events: AgentEvent[] = [];
    const bad = fakeRuntime({ run: 'port in use' });
    const steps = plan([], [mkPod('b', [{ name: 'x' }])], ctx()).steps;
    const res = await applySteps(steps, { runtime: bad.runtime, logger: silentLogger, emit: (e) => events.push(e), restarts });
    assert.equal(res.errors.length, 1);
    assert.equal(restarts.runBackoff(containerKey('uid-b-0000', 'x')), 10_000);
    const good = fakeRuntime();
    await applySteps(steps, { runtime: good.runtime, logger: silentLogger, emit: (e) => events.push(e), restarts });
    assert.equal(restarts.runBackoff(containerKey('uid-b-0000', 'x')), 0);
    assert.deepEqual(events.map((e) => e.reason), ['Failed', 'Created', 'Started']);
  });

  it('removes a running container with its grace period in one runtime call (no separate stop), a stopped one with none', async () => {
    const { runtime, calls } = fakeRuntime();
    const gone = mkPod('gone', [{ name: 'q' }, { name: 'r' }]);
    const running = mkRunning(gone, 'q');
    const stopped = exited(gone, 'r', 0);
    const steps = plan([running, stopped], [], ctx()).steps;
    const { errors } = await applySteps(steps, { runtime, logger: silentLogger, emit: () => {}, restarts: new RestartTracker() });
    assert.deepEqual(errors, []);
    assert.deepEqual(calls.sort(), [`remove:${running.id}/10`, `remove:${stopped.id}/0`].sort());
  });

  it('announces a crash back-off once per crash', async () => {
    const { runtime } = fakeRuntime();
    const restarts = new RestartTracker({ clock: () => T0 });
    const events: AgentEvent[] = [];
    const deps = { runtime, logger: silentLogger, emit: (e: AgentEvent) => events.push(e), restarts };
    const crashed = exited(a, 'x', 1, { finishedAt: iso(T0) });
    const pod = mkPod('a', [{ name: 'x' }]);
    for (let i = 0; i < 3; i++) await applyPlan(plan([crashed], [pod], restarts.planContext(NODE, new Set())), deps);
    assert.deepEqual(events.map((e) => `${e.reason}: ${e.message}`), [`BackOff: Back-off restarting failed container x in pod a_default(${a.uid})`]);
    const again = { ...crashed, finishedAt: iso(T0 - 1) };
    await applyPlan(plan([again], [pod], restarts.planContext(NODE, new Set())), deps);
    assert.equal(events.length, 2);
  });
});
