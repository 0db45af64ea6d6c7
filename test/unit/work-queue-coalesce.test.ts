import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkQueue } from '../../server/controllers/queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('work queue addSoon: a burst of adds for one key within the window is one pass; a later change is another; other keys are not held', async (t) => {
  const q = new WorkQueue();
  // The queue's timers do not hold the process open (a server stopping must not wait for them): this does.
  const alive = setInterval(() => undefined, 1000);
  t.after(() => {
    q.stop();
    clearInterval(alive);
  });
  for (let i = 0; i < 500; i++) q.addSoon('ds/a', 50);
  q.add('ds/b');
  assert.equal(await q.get(), 'ds/b', 'a plain add is not held behind the window');
  q.done('ds/b');
  assert.equal(q.length, 0, 'nothing of ds/a yet: its adds wait for the window');
  assert.equal(await q.get(), 'ds/a');
  // Changes while its pass runs: one more pass after it, not one per change.
  for (let i = 0; i < 100; i++) q.addSoon('ds/a', 20);
  await sleep(60);
  q.done('ds/a');
  assert.equal(await q.get(), 'ds/a');
  q.done('ds/a');
  await sleep(60);
  assert.equal(q.length, 0, 'no further pass: every change was gathered into the two');
});
