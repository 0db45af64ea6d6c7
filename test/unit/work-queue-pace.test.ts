import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkQueue } from '../../server/controllers/queue.js';
import { PACE_FROM_REPLICAS, paceFor } from '../../server/controllers/runner.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a ReplicaSet of a few hundred replicas is never paced; thousands are, a second at most', () => {
  assert.equal(paceFor(0), 0);
  assert.equal(paceFor(PACE_FROM_REPLICAS - 1), 0);
  assert.equal(paceFor(5_000), 500);
  assert.equal(paceFor(1_000_000), 1000);
});

test('work queue pacing: children changes after a paced pass wait for its time, gathered into one pass; the key\'s own change does not wait; an unpaced key is not held', async (t) => {
  const q = new WorkQueue();
  const alive = setInterval(() => undefined, 1000);
  t.after(() => {
    q.stop();
    clearInterval(alive);
  });
  // A big ReplicaSet's pass ends asking to be paced; its pods then change 300 times.
  q.add('rs/big');
  assert.equal(await q.get(), 'rs/big');
  q.pace('rs/big', 80);
  q.done('rs/big');
  for (let i = 0; i < 300; i++) q.addPaced('rs/big');
  // A small one (never paced) is woken at once by its pod.
  q.addPaced('rs/small');
  assert.equal(await q.get(), 'rs/small', 'an unpaced key is queued at once');
  q.done('rs/small');
  assert.equal(q.length, 0, 'the big one waits for its pace');
  assert.equal(await q.get(), 'rs/big', 'then one pass for all 300 changes');
  q.pace('rs/big', 80);
  // Changes while that pass runs: after it, still paced, and one pass for them all.
  for (let i = 0; i < 50; i++) q.addPaced('rs/big');
  q.done('rs/big');
  assert.equal(q.length, 0, 'children changes during the pass wait for the pace too');
  assert.equal(await q.get(), 'rs/big');
  q.pace('rs/big', 10_000);
  q.done('rs/big');
  // Its own change (a scale) is not held by the pace.
  q.addPaced('rs/big');
  q.add('rs/big');
  assert.equal(await q.get(), 'rs/big', 'the key\'s own change is queued at once');
  // A pass that asks for no pace lifts it.
  q.pace('rs/big', 0);
  q.done('rs/big');
  await sleep(5);
  q.addPaced('rs/big');
  assert.equal(await q.get(), 'rs/big');
  q.done('rs/big');
  assert.equal(q.length, 0);
});
