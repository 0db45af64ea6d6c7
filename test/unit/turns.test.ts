/** src/util/turns.ts: steps of one key one at a time, in order, a failure not stopping the next; keys side by side. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TurnsByKey } from '../../src/util/turns.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

test('steps of one key run one at a time in order; another key does not wait; a failure is its caller\'s', async () => {
  const turns = new TurnsByKey();
  const log: string[] = [];
  const step = (name: string, fail = false) => async () => {
    log.push(`${name} start`);
    await tick();
    log.push(`${name} end`);
    if (fail) throw new Error(name);
    return name;
  };
  const a1 = turns.take('a', step('a1', true));
  const a2 = turns.take('a', step('a2'));
  const b1 = turns.take('b', step('b1'));
  assert.equal(turns.has('a'), true);
  await assert.rejects(a1, /a1/);
  assert.equal(await a2, 'a2');
  assert.equal(await b1, 'b1');
  assert.ok(log.indexOf('a1 end') < log.indexOf('a2 start'), log.join(', '));
  assert.ok(log.indexOf('b1 start') < log.indexOf('a1 end'), log.join(', '));
  await turns.drain();
  await tick();
  assert.equal(turns.has('a'), false);
  assert.equal(turns.has('b'), false);
});
