/**
 * Per-pod workers in the reconciler, on the fake runtime: a pod whose stop hangs never delays
 * another pod's start, one pod's steps stay in order, and runtime calls stay within the bound.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { AgentConfig } from '../../agent/config.js';
import { containerName } from '../../agent/engine/naming.js';
import { stepsByWorker, workerKey } from '../../agent/engine/pod-workers.js';
import type { Step } from '../../agent/engine/plan.js';
import { RestartTracker } from '../../agent/engine/restart-tracker.js';
import { ProbeManager } from '../../agent/probes/manager.js';
import { Reconciler } from '../../agent/reconciler.js';
import type { NodeStatus } from '../../agent/reporter.js';
import { Slots } from '../../agent/runtime/bounded.js';
import { TargetState } from '../../agent/target.js';
import { VolumeManager } from '../../agent/volume-manager.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeRuntime, type FakeOp } from '../helpers/fake-runtime.js';

const NODE = 'edge-w';
const IMAGE = 'localhost/app:1';
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function pod(name: string, o: { image?: string; command?: string[] } = {}): DesiredPod {
  return {
    uid: `uid-${name}`,
    namespace: 'default',
    name,
    spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 20, containers: [{ name: 'main', image: o.image ?? IMAGE, ...(o.command ? { command: o.command } : {}) }] },
  } as DesiredPod;
}

/** A gate the test opens: calls wait on it until then. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function agent(gateFn: (op: FakeOp, subject: string) => Promise<void> | undefined, o: { watchesExits?: boolean } = {}) {
  const stateDir = await mkdtemp(join(tmpdir(), 'drover-workers-'));
  dirs.push(stateDir);
  const runtime = new FakeRuntime({ gate: gateFn, ...o });
  await runtime.pull(IMAGE);
  // The exit watcher, to tell it of an exit by container id as podman does.
  let onExit: ((id?: string) => void) | undefined;
  const watch = runtime.watchExits;
  if (watch) Object.defineProperty(runtime, 'watchExits', { value: (labels: Record<string, string>, cb: (id?: string) => void) => ((onExit = cb), watch(labels, cb)) });
  const target = new TargetState(stateDir, silentLogger);
  const reports: NodeStatus[] = [];
  let generation = 0;
  const cfg = { node: NODE, serverUrl: 'https://unused', stateDir, labels: {}, heartbeatSeconds: 30, resyncSeconds: 60, keepaliveSeconds: 15, runtime: {} } satisfies AgentConfig;
  const r: Reconciler = new Reconciler({
    cfg,
    runtime,
    target,
    restarts: new RestartTracker({ baseMs: 20 }),
    volumes: new VolumeManager(stateDir, silentLogger),
    probes: new ProbeManager({ runtime, logger: silentLogger, onReadiness: () => r.onProbeReadiness(), onFailure: () => {}, onKill: () => {} }),
    logger: silentLogger,
    now: () => Date.now(),
    hostIP: () => '192.0.2.1',
    emit: () => {},
    report: (s) => reports.push(s),
  });
  await r.start();
  const desire = (pods: DesiredPod[]) => r.onDesired({ node: NODE, generation: ++generation, pods, configMaps: [], secrets: [], ts: new Date().toISOString() });
  const of = (p: DesiredPod) => runtime.byName(containerName(p.namespace, p.name, 'main', p.uid));
  const has = (p: DesiredPod) => of(p)?.state === 'running';
  const gone = (p: DesiredPod) => of(p) === undefined;
  return { r, runtime, desire, has, gone, of, reports, exitEvent: (id: string) => onExit?.(id) };
}

describe('per-pod workers', () => {
  it('a pod whose graceful stop (its remove) hangs does not delay the start of another pod, and the removal still completes', async () => {
    const hang = gate();
    const slow = pod('slow');
    const slowName = containerName('default', 'slow', 'main', slow.uid);
    const a = await agent((op, subject) => (op === 'remove' && subject === slowName ? hang.wait : undefined));
    a.desire([slow]);
    await until('slow running', () => a.has(slow));
    // slow is deleted (its stop hangs), and an unrelated pod arrives.
    const fresh = pod('fresh');
    a.desire([fresh]);
    await until('the stop of slow under way', () => a.runtime.inFlight.remove === 1);
    await until('fresh running while slow still stops', () => a.has(fresh));
    assert.equal(a.runtime.inFlight.remove, 1, 'the stop of slow is still hanging');
    assert.ok(!a.gone(slow), 'slow is not removed before its stop returns');
    // The report shows fresh running without waiting for slow.
    await until('fresh reported', () => a.reports.some((s) => s.pods.some((p) => p.name === 'fresh' && p.phase === 'Running')));
    hang.open();
    await until('slow removed once its stop returns', () => a.gone(slow));
    await a.r.stop();
  });

  it("one pod's steps run in order (the old container is stopped and removed before the new one runs), never two at once", async () => {
    const hold = gate();
    const v1 = pod('web');
    const oldName = containerName('default', 'web', 'main', v1.uid);
    let held = false;
    const a = await agent((op, subject) => {
      if (op === 'remove' && subject === oldName && !held) {
        held = true;
        return hold.wait;
      }
      return undefined;
    });
    a.desire([v1]);
    await until('web running', () => a.has(v1));
    const oldId = a.of(v1)!.id;
    // A changed spec: the container is replaced (same name, so the order matters to the runtime too).
    const v2 = pod('web', { command: ['sleep', '1000'] });
    a.desire([v2, pod('other')]);
    await until('the old container stopping', () => a.runtime.inFlight.remove === 1);
    await until('other running beside it', () => a.has(pod('other')));
    assert.ok(!a.runtime.calls.some((c) => c.op === 'run' && c.subject === oldName && a.runtime.calls.indexOf(c) > a.runtime.calls.findIndex((x) => x.op === 'remove' && x.subject === oldName)), 'web is not run again while its old container stops');
    hold.open();
    await until('web replaced', () => a.has(v2) && a.of(v2)!.id !== oldId);
    const web = a.runtime.calls.filter((c) => c.subject === oldName);
    const removeEnd = web.findIndex((c) => c.op === 'remove' && c.phase === 'end');
    const runAgain = web.findIndex((c, i) => c.op === 'run' && c.phase === 'begin' && i > 1);
    assert.ok(removeEnd >= 0 && removeEnd < runAgain, `remove (with its graceful stop), then run: ${JSON.stringify(web)}`);
    assert.ok(!web.some((c) => c.op === 'stop'), 'no separate stop call before the remove');
    // Never two calls of one pod at once: every begin is followed by its end before the next begin.
    for (let i = 0; i < web.length; i += 2) assert.deepEqual([web[i]!.phase, web[i + 1]!.phase, web[i]!.op], ['begin', 'end', web[i + 1]!.op], JSON.stringify(web));
    await a.r.stop();
  });

  it('runs at most 4 runtime calls at once however many pods arrive together, and all of them start', async () => {
    const release = gate();
    const a = await agent((op) => (op === 'run' ? release.wait : undefined));
    const pods = Array.from({ length: 10 }, (_, i) => pod(`p${i}`));
    a.desire(pods);
    // Every pod's run is either in the runtime or waiting for a slot.
    await until('all runs handed out', () => a.runtime.inFlight.run + a.r.runtimeSlots.waiting === 10);
    assert.equal(a.runtime.inFlight.run, 4);
    release.open();
    await until('all running', () => pods.every((p) => a.has(p)));
    assert.equal(a.r.runtimeSlots.peak, 4);
    await a.r.stop();
  });
});

describe('the hot path', () => {
  it('a new pod goes to Running and is reported with no runtime list (state kept from the workers and exit events); an exit is listed and restarted', async () => {
    const a = await agent(() => undefined, { watchesExits: true });
    const first = pod('first');
    a.desire([first]);
    await until('first reported running', () => a.reports.some((s) => s.pods.some((p) => p.name === 'first' && p.phase === 'Running')));
    const lists = a.runtime.listCalls;
    const second = pod('second');
    a.desire([first, second]);
    await until('second reported running', () => a.reports.some((s) => s.pods.some((p) => p.name === 'second' && p.phase === 'Running')));
    assert.equal(a.runtime.listCalls, lists, 'no list between the new desired state and the report');
    // A crash is not the workers' doing: the exit event makes the next reconcile list, and the
    // container is started again (restartPolicy Always).
    const name = containerName('default', 'second', 'main', second.uid);
    a.runtime.exit(name, 3);
    await until('second restarted after its exit', () => a.runtime.calls.some((c) => c.op === 'start' && c.subject === name && c.phase === 'end'));
    assert.ok(a.runtime.listCalls > lists, 'the exit was listed');
    await until('second running again', () => a.has(second));
    await a.r.stop();
  });
});

describe('exit events', () => {
  it('the exit of a container the agent is removing lists nothing; an exit it did not cause makes the next reconcile list', async () => {
    const hold = gate();
    const leaving = pod('leaving');
    const leavingName = containerName('default', 'leaving', 'main', leaving.uid);
    const a = await agent((op, subject) => (op === 'remove' && subject === leavingName ? hold.wait : undefined), { watchesExits: true });
    const staying = pod('staying');
    a.desire([leaving, staying]);
    await until('both running', () => a.has(leaving) && a.has(staying));
    const reported = (name: string) => () => a.reports.some((s) => s.pods.some((p) => p.name === name && p.phase === 'Running'));
    // leaving is deleted; its removal (graceful stop included) is under way when its exit event comes.
    a.desire([staying]);
    await until('leaving being removed', () => a.runtime.inFlight.remove === 1);
    a.exitEvent(a.of(leaving)!.id);
    const lists = a.runtime.listCalls;
    const third = pod('third');
    a.desire([staying, third]);
    await until('third reported running', reported('third'));
    assert.equal(a.runtime.listCalls, lists, 'the removal\'s own exit event made no reconcile list');
    // An exit nobody asked for (a crash): the next reconcile lists.
    a.exitEvent(a.of(staying)!.id);
    const fourth = pod('fourth');
    a.desire([staying, third, fourth]);
    await until('fourth reported running', reported('fourth'));
    assert.ok(a.runtime.listCalls > lists, 'a crash is listed');
    hold.open();
    await until('leaving removed', () => a.gone(leaving));
    await a.r.stop();
  });
});

describe('stepsByWorker', () => {
  const ref = (uid: string) => ({ uid, namespace: 'default', name: uid });
  it("keeps each pod's steps in plan order, a pull on its image's worker and a podless leftover on its own", () => {
    const steps: Step[] = [
      { action: 'remove', id: '1', name: 'a-old', reason: 'spec-changed', running: true, graceSeconds: 5, pod: ref('a'), container: 'main' },
      { action: 'remove', id: '2', name: 'stray', reason: 'orphan', running: false, graceSeconds: 5 },
      { action: 'run', key: 'a/main', pod: ref('a'), container: 'main', spec: { name: 'a-new', image: IMAGE, env: {}, ports: [], labels: {} } },
      { action: 'pull', image: 'busybox', pods: [ref('b')] },
    ];
    const by = stepsByWorker(steps);
    assert.deepEqual([...by.keys()], ['pod:a', 'container:stray', 'image:busybox']);
    assert.deepEqual(by.get('pod:a')!.map((s) => s.action), ['remove', 'run']);
    assert.equal(workerKey(steps[3]!), 'image:busybox');
  });
});

describe('Slots', () => {
  it('never holds more than its size and hands a freed slot to the next caller', async () => {
    const slots = new Slots(2);
    const gates = Array.from({ length: 5 }, () => gate());
    let running = 0;
    let most = 0;
    const all = gates.map((g) =>
      slots.hold(async () => {
        running++;
        most = Math.max(most, running);
        await g.wait;
        running--;
      }),
    );
    await until('two running, three waiting', () => running === 2 && slots.waiting === 3);
    for (const g of gates) g.open();
    await Promise.all(all);
    assert.equal(most, 2);
    assert.equal(slots.peak, 2);
    assert.throws(() => new Slots(0), /positive integer/);
  });
});
