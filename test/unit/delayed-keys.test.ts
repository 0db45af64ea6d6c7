import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DelayedKeys, WorkQueue } from '../../server/controllers/queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('delayed keys fire in the order of their times, each once, not before its time', async () => {
  const fired: Array<{ key: string; at: number }> = [];
  const t0 = performance.now();
  const d = new DelayedKeys((key) => fired.push({ key, at: performance.now() - t0 }));
  d.set('a', 60);
  d.set('b', 10);
  d.set('c', 35);
  await sleep(120);
  assert.deepEqual(fired.map((f) => f.key), ['b', 'c', 'a']);
  assert.ok(fired[0]!.at >= 10 && fired[1]!.at >= 35 && fired[2]!.at >= 60, JSON.stringify(fired));
  assert.equal(d.size, 0);
});

test('setting a key again replaces its time, later or earlier; it still fires once', async () => {
  const fired: string[] = [];
  const d = new DelayedKeys((key) => fired.push(key));
  d.set('later', 10);
  d.set('later', 80);
  d.set('sooner', 500);
  d.set('sooner', 5);
  await sleep(40);
  assert.deepEqual(fired, ['sooner'], 'the moved-later key has not fired at its old time');
  await sleep(80);
  assert.deepEqual(fired, ['sooner', 'later']);
  await sleep(30);
  assert.deepEqual(fired, ['sooner', 'later'], 'no second firing from the replaced entries');
});

test('a fleet of keys set over and over: each fires exactly once, after its last time; clear fires nothing', async () => {
  const firedAt = new Map<string, number[]>();
  const lastDue = new Map<string, number>();
  const d = new DelayedKeys((key) => firedAt.set(key, [...(firedAt.get(key) ?? []), performance.now()]));
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 2000; i++) {
      const ms = (i * 7 + round * 13) % 50;
      // The time taken before set(): its own clock reading is no earlier, so the key is due no earlier than this.
      const t = performance.now();
      d.set(`n${i}`, ms);
      lastDue.set(`n${i}`, t + ms);
    }
  }
  await sleep(150);
  assert.equal(firedAt.size, 2000);
  for (const [key, times] of firedAt) {
    assert.equal(times.length, 1, `${key} fired ${times.length} times`);
    assert.ok(times[0]! >= lastDue.get(key)!, `${key} fired before its last time`);
  }
  const other = new DelayedKeys(() => assert.fail('a cleared key fired'));
  other.set('x', 5);
  other.clear();
  await sleep(30);
});

test('work queue addAfter: the key is queued after the delay; a stopped queue queues nothing', async (t) => {
  const q = new WorkQueue();
  const alive = setInterval(() => undefined, 1000);
  t.after(() => clearInterval(alive));
  q.addAfter('ns/a', 30);
  assert.equal(q.length, 0);
  await sleep(60);
  assert.equal(q.length, 1);
  assert.equal(await q.get(), 'ns/a');
  q.done('ns/a');
  q.addAfter('ns/b', 10);
  q.stop();
  await sleep(40);
  assert.equal(q.length, 0);
});

test('a delay beyond setTimeout\'s limit waits (no firing at once), and a delay that is not a number fires at once without holding up others', async () => {
  const fired: string[] = [];
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  const d = new DelayedKeys((key) => fired.push(key));
  try {
    d.set('deadline-in-30-days', 30 * 24 * 3600 * 1000);
    d.set('bad-date', Number.NaN);
    d.set('soon', 20);
    await sleep(60);
    assert.deepEqual(fired, ['bad-date', 'soon']);
    assert.equal(d.size, 1, 'the far key still waits');
    assert.deepEqual(warnings, [], 'no TimeoutOverflowWarning');
  } finally {
    d.clear();
    process.off('warning', onWarning);
  }
});
