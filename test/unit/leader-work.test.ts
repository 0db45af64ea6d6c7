/** LeaderWork: what only the leader runs starts with a term and stops with it, fresh each term, one transition at a time. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaderWork, type LeaderTask } from '../../server/leader/leader-work.js';
import { silentLogger } from '../../src/util/logger.js';

function recorder() {
  const events: string[] = [];
  const task = (name: string, opts: { startMs?: number; failTimes?: number } = {}): LeaderTask => {
    let fails = opts.failTimes ?? 0;
    let built = 0;
    return {
      name,
      async start() {
        const n = ++built;
        if (opts.startMs) await new Promise((r) => setTimeout(r, opts.startMs));
        if (fails-- > 0) throw new Error(`${name} cannot start`);
        events.push(`start ${name}#${n}`);
        return { stop: () => void events.push(`stop ${name}#${n}`) };
      },
    };
  };
  return { events, task };
}

test('starts in order, stops in reverse; a new term builds new instances', async () => {
  const { events, task } = recorder();
  const work = new LeaderWork({ tasks: [task('scheduler'), task('controllers'), task('publisher')], logger: silentLogger });
  const t1 = new AbortController();
  await work.started(t1.signal);
  assert.deepEqual(work.names(), ['scheduler', 'controllers', 'publisher']);
  t1.abort();
  await work.stopped('lost');
  assert.deepEqual(work.names(), []);
  await work.started(new AbortController().signal);
  assert.deepEqual(events, ['start scheduler#1', 'start controllers#1', 'start publisher#1', 'stop publisher#1', 'stop controllers#1', 'stop scheduler#1', 'start scheduler#2', 'start controllers#2', 'start publisher#2']);
});

test('leadership lost during a slow start: nothing more starts, and what started is stopped before stopped() returns', async () => {
  const { events, task } = recorder();
  const work = new LeaderWork({ tasks: [task('a'), task('slow', { startMs: 200 }), task('c')], logger: silentLogger });
  const term = new AbortController();
  const starting = work.started(term.signal);
  await new Promise((r) => setTimeout(r, 50));
  term.abort();
  await work.stopped('renew deadline');
  await starting;
  assert.deepEqual(events, ['start a#1', 'start slow#1', 'stop slow#1', 'stop a#1']);
  assert.deepEqual(work.names(), []);
});

test('a component that fails to start: the others are stopped and all are tried again while the term lasts', async () => {
  const { events, task } = recorder();
  const work = new LeaderWork({ tasks: [task('a'), task('b', { failTimes: 2 })], logger: silentLogger, retry: { baseMs: 5, maxMs: 5 } });
  await work.started(new AbortController().signal);
  assert.deepEqual(events, ['start a#1', 'stop a#1', 'start a#2', 'stop a#2', 'start a#3', 'start b#3']);
  assert.deepEqual(work.names(), ['a', 'b']);
});

test('a component that never stops does not hold the others: it is left after the stop timeout', async () => {
  const events: string[] = [];
  const work = new LeaderWork({
    tasks: [
      { name: 'a', start: async () => ({ stop: () => void events.push('stop a') }) },
      { name: 'stuck', start: async () => ({ stop: () => new Promise<void>(() => {}) }) },
    ],
    logger: silentLogger,
    stopTimeoutMs: 50,
  });
  await work.started(new AbortController().signal);
  await work.stopped();
  assert.deepEqual(events, ['stop a']);
  assert.deepEqual(work.names(), []);
});
