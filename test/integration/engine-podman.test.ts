import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { applyPlan } from '../../agent/engine/apply.js';
import { RestartTracker } from '../../agent/engine/restart-tracker.js';
import { containerName, LABELS, managedSelector } from '../../agent/engine/naming.js';
import { plan, toRunSpec, type Step } from '../../agent/engine/plan.js';
import { podReports } from '../../agent/engine/report.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import type { AgentEvent, DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const NODE = 'engine-test';
// busybox sh as PID 1 ignores SIGTERM unless it traps it; trapping keeps the stop fast.
const SLEEP_UNTIL_TERM = 'trap "exit 0" TERM; while true; do sleep 1; done';

let sb: PodmanSandbox;
let restarts: RestartTracker;
const events: AgentEvent[] = [];

function mkPod(image: string, o: Partial<DesiredPod['spec']> = {}): DesiredPod {
  return {
    uid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
    namespace: 'default',
    name: 'web',
    spec: {
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 2,
      containers: [{ name: 'main', image, command: ['sh', '-c', SLEEP_UNTIL_TERM], env: [{ name: 'GREETING', value: 'hi' }] }],
      ...o,
    },
  };
}

const list = () => sb.runtime.list(managedSelector(NODE));
const images = async () => new Set(await sb.runtime.images());

/** The agent loop in miniature: list → plan → apply until a plan has nothing left to do. */
async function converge(target: DesiredPod[]): Promise<Step[][]> {
  const rounds: Step[][] = [];
  for (let i = 0; i < 5; i++) {
    const r = plan(await list(), target, restarts.planContext(NODE, await images()));
    if (r.steps.length === 0) return rounds;
    rounds.push(r.steps);
    const { errors } = await applyPlan(r, { runtime: sb.runtime, logger: silentLogger, emit: (e) => events.push(e), restarts });
    assert.deepEqual(errors.map((e) => e.error.message), []);
  }
  throw new Error(`no convergence after 5 rounds: ${JSON.stringify(rounds.map((s) => s.map((x) => x.action)))}`);
}

const actions = (rounds: Step[][]) => rounds.map((steps) => steps.map((s) => (s.action === 'remove' ? `remove:${s.reason}` : s.action)));

describe('engine against real podman', { timeout: 180_000 }, () => {
  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    restarts = new RestartTracker();
  });
  after(async () => {
    await sb?.cleanup();
  });

  let firstId = '';

  test('empty node → run → running container with drover labels', async () => {
    const pod = mkPod('localhost/drover-test:1');
    assert.deepEqual(actions(await converge([pod])), [['run']]);
    const current = await list();
    assert.equal(current.length, 1);
    const c = current[0]!;
    firstId = c.id;
    assert.equal(c.state, 'running');
    assert.equal(c.name, containerName('default', 'web', 'main', pod.uid));
    assert.deepEqual(
      Object.fromEntries(Object.entries(c.labels).filter(([k]) => k.startsWith('drover.io/'))),
      toRunSpec(pod, 'main', NODE).labels,
    );
    assert.equal(c.labels[LABELS.node], NODE);
    assert.deepEqual(events.map((e) => e.reason), ['Created', 'Started']);

    const [report] = podReports(plan(current, [pod], restarts.planContext(NODE, await images())), restarts, Date.now());
    assert.equal(report!.phase, 'Running');
    assert.deepEqual([report!.containers[0]!.state, report!.containers[0]!.ready, report!.containers[0]!.containerID], ['running', true, c.id]);
  });

  test('re-plan with the same (re-published) desired state → zero steps, container untouched', async () => {
    const again = JSON.parse(JSON.stringify(mkPod('localhost/drover-test:1'))) as DesiredPod;
    // The runtime lists fully qualified names; the manifest's short reference matches one of them.
    const r = plan(await list(), [again], restarts.planContext(NODE, await images()));
    assert.deepEqual(r.steps, []);
    const [c] = await list();
    assert.equal(c!.id, firstId);
    assert.equal(c!.state, 'running');
  });

  test('changed image tag → container replaced (remove, then run)', async () => {
    await buildTestImage(sb, 'localhost/drover-test:2');
    const pod = mkPod('localhost/drover-test:2');
    events.length = 0;
    assert.deepEqual(actions(await converge([pod])), [['remove:spec-changed'], ['run']]);
    const current = await list();
    assert.equal(current.length, 1);
    const c: RuntimeContainer = current[0]!;
    assert.notEqual(c.id, firstId);
    assert.equal(c.state, 'running');
    assert.match(c.image, /drover-test:2$/);
    assert.equal(c.labels[LABELS.specHash], toRunSpec(pod, 'main', NODE).labels[LABELS.specHash]);
    assert.deepEqual(events.map((e) => e.reason), ['Killing', 'Created', 'Started']);
    assert.match(events[0]!.message, /definition changed/);
  });

  test('exited container under OnFailure waits out its back-off, then restarts', async () => {
    const pod: DesiredPod = {
      ...mkPod('localhost/drover-test:1', { restartPolicy: 'OnFailure' }),
      uid: 'a1b2c3d4-0000-0000-0000-000000000001',
      name: 'job',
    };
    pod.spec.containers[0]!.command = ['sh', '-c', 'exit 3'];
    const target = [mkPod('localhost/drover-test:2'), pod];
    assert.deepEqual(actions(await converge(target)), [['run']]);
    // Wait for the exit, then plan: the first restart is 10s after the exit.
    let crashed: RuntimeContainer | undefined;
    for (let i = 0; i < 100 && !crashed; i++) {
      crashed = (await list()).find((c) => c.labels[LABELS.pod] === 'job' && c.state === 'exited');
      if (!crashed) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(crashed, 'job container exited');
    assert.equal(crashed.exitCode, 3);
    const r = plan(await list(), target, restarts.planContext(NODE, await images()));
    assert.deepEqual(r.steps, []);
    assert.equal(r.waits[0]?.reason, 'CrashLoopBackOff');
    assert.ok(r.requeueAfterMs! > 0 && r.requeueAfterMs! <= 10_000, String(r.requeueAfterMs));
    const [, report] = podReports(r, restarts, Date.now());
    assert.equal(report!.phase, 'Running');
    assert.equal(report!.containers[0]!.reason, 'CrashLoopBackOff');

    // A tracker whose clock runs ahead stands in for waiting the 10 s.
    const ahead = new RestartTracker({ clock: () => Date.now() + 11_000 });
    const later = plan(await list(), target, ahead.planContext(NODE, await images()));
    assert.deepEqual(later.steps.map((s) => s.action), ['restart']);
    const { errors } = await applyPlan(later, { runtime: sb.runtime, logger: silentLogger, emit: () => {}, restarts: ahead });
    assert.deepEqual(errors, []);
    assert.equal(ahead.restartCount(`${pod.uid}/main`), 1);
  });

  test('pod gone from target → orphan removed', async () => {
    assert.deepEqual(actions(await converge([])), [['remove:orphan', 'remove:orphan']]);
    assert.deepEqual(await list(), []);
  });
});
