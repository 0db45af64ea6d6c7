/**
 * The agent's removes (agent/runtime/bounded.ts RemoveBatches): asked for together, they reach the
 * runtime as one call per grace period; a failed batch is retried one container at a time so the
 * failure lands on the container it belongs to; without removeMany each goes on its own.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RemoveBatches, boundedRuntime, Slots } from '../../agent/runtime/bounded.js';
import type { ContainerRuntime } from '../../agent/runtime/types.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

/** A runtime that records its remove calls; `broken` ids make any call naming them fail. */
function recording(broken: string[] = []) {
  const calls: Array<{ ids: string[]; grace: number }> = [];
  const fail = (ids: string[]) => {
    const bad = ids.filter((id) => broken.includes(id));
    if (bad.length) throw new Error(`cannot remove ${bad.join(', ')}`);
  };
  const runtime = new FakeRuntime() as ContainerRuntime;
  runtime.remove = async (id: string, grace = 0) => {
    calls.push({ ids: [id], grace });
    fail([id]);
  };
  runtime.removeMany = async (ids: string[], grace: number) => {
    calls.push({ ids, grace });
    fail(ids);
  };
  return { runtime, calls };
}

describe('RemoveBatches', () => {
  it('gathers removes asked for together into one runtime call per grace period, never giving a container another grace', async () => {
    const { runtime, calls } = recording();
    const b = new RemoveBatches(runtime);
    await Promise.all([b.remove('a', 10), b.remove('b', 10), b.remove('c', 2), b.remove('d', 10), b.remove('e')]);
    assert.deepEqual(
      calls.map((c) => `${c.grace}:${c.ids.join(',')}`).sort(),
      ['0:e', '10:a,b,d', '2:c'],
    );
    assert.equal(b.calls, 3);
  });

  it('removes asked for later go in a call of their own', async () => {
    const { runtime, calls } = recording();
    const b = new RemoveBatches(runtime);
    await b.remove('a', 1);
    await b.remove('b', 1);
    assert.deepEqual(calls.map((c) => c.ids), [['a'], ['b']]);
  });

  it('a failed batch is tried one by one: only the container that cannot be removed fails', async () => {
    const { runtime, calls } = recording(['bad']);
    const b = new RemoveBatches(runtime);
    const out = await Promise.allSettled([b.remove('ok1', 5), b.remove('bad', 5), b.remove('ok2', 5)]);
    assert.deepEqual(out.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((out[1] as PromiseRejectedResult).reason), /cannot remove bad/);
    assert.deepEqual(calls.map((c) => c.ids.join(',')), ['ok1,bad,ok2', 'ok1', 'bad', 'ok2']);
    assert.ok(calls.every((c) => c.grace === 5), 'the retries keep the grace period');
  });

  it('a runtime without removeMany gets one remove per container, and the bounded runtime routes removes here without taking a run slot', async () => {
    const fake = new FakeRuntime();
    const slots = new Slots(1);
    const b = new RemoveBatches(fake);
    const rt = boundedRuntime(fake, slots, b);
    const ids = await Promise.all(['x', 'y'].map((n) => rt.run({ name: n, image: 'img', env: {}, ports: [], labels: {} })));
    let release!: () => void;
    const held = slots.hold(() => new Promise<void>((r) => (release = r)));
    // Every run slot is taken: the removes still go through.
    await Promise.all(ids.map((id) => rt.remove(id, 3)));
    assert.equal(b.calls, 2);
    assert.deepEqual(await fake.list({}), []);
    release();
    await held;
  });
});
