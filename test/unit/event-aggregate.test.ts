import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AGGREGATE_AFTER_MESSAGES, AGGREGATE_WINDOW_MS, COMBINED_PREFIX, EventAggregator, type SimilarEvent } from '../../server/events/aggregate.js';

const created = (i: number, over: Partial<SimilarEvent> = {}): SimilarEvent => ({
  involved: { kind: 'ReplicaSet', namespace: 'default', name: 'web-1', uid: 'rs1' },
  type: 'Normal',
  reason: 'SuccessfulCreate',
  message: `Created pod: web-1-${i}`,
  component: 'replicaset-controller',
  ...over,
});

test('similar events fold from the tenth different message on, with the message marked combined', () => {
  let t = 0;
  const a = new EventAggregator(() => t);
  const out = Array.from({ length: 15 }, (_, i) => ((t += 1000), a.aggregate(created(i))));
  assert.deepEqual(out.slice(0, AGGREGATE_AFTER_MESSAGES - 1).map((r) => r.combined), Array(9).fill(false));
  assert.deepEqual(out.slice(AGGREGATE_AFTER_MESSAGES - 1).map((r) => r.combined), Array(6).fill(true));
  assert.equal(out[14]!.message, `${COMBINED_PREFIX}Created pod: web-1-14`);
  assert.equal(out[0]!.message, 'Created pod: web-1-0');
});

test('one message repeated is never combined; other reasons, objects and types count apart', () => {
  let t = 0;
  const a = new EventAggregator(() => t);
  for (let i = 0; i < 50; i++) assert.equal(a.aggregate(created(1)).combined, false, 'a crash loop keeps its own Event (counted)');
  for (let i = 0; i < 9; i++) a.aggregate(created(100 + i));
  assert.equal(a.aggregate(created(200, { reason: 'SuccessfulDelete' })).combined, false);
  assert.equal(a.aggregate(created(200, { involved: { kind: 'ReplicaSet', namespace: 'default', name: 'web-2', uid: 'rs2' } })).combined, false);
  assert.equal(a.aggregate(created(200, { type: 'Warning' })).combined, false);
  assert.equal(a.aggregate(created(200)).combined, true, 'the tenth different message of the first key');
});

test('the count starts again after ten quiet minutes, and the keys remembered are bounded', () => {
  let t = 0;
  const a = new EventAggregator(() => t, { after: 10, windowMs: AGGREGATE_WINDOW_MS, keysMax: 100 });
  for (let i = 0; i < 12; i++) a.aggregate(created(i));
  assert.equal(a.aggregate(created(99)).combined, true);
  t += AGGREGATE_WINDOW_MS + 1;
  assert.equal(a.aggregate(created(100)).combined, false, 'a new window');
  for (let i = 0; i < 1000; i++) a.aggregate(created(0, { involved: { kind: 'Pod', name: `p${i}` } }));
  assert.equal(a.size, 100);
});
