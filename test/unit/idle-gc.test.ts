import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { IDLE_GC_DEFAULTS, shouldCollect } from '../../src/util/idle-gc.js';

const MiB = 1024 * 1024;

test('idle gc decides: only when quiet, only for a heap holding much more than it uses, not again for a heap that stayed as big', () => {
  const big = { total: 120 * MiB, used: 60 * MiB };
  assert.equal(shouldCollect({ utilization: 0.01, heap: big, totalAfterLast: undefined }), true);
  assert.equal(shouldCollect({ utilization: 0.2, heap: big, totalAfterLast: undefined }), false, 'busy: a pause would cost requests');
  assert.equal(shouldCollect({ utilization: 0.01, heap: { total: 70 * MiB, used: 60 * MiB }, totalAfterLast: undefined }), false, 'little slack');
  assert.equal(shouldCollect({ utilization: 0.01, heap: big, totalAfterLast: 115 * MiB }), false, 'the last collection left it this big');
  assert.equal(shouldCollect({ utilization: 0.01, heap: big, totalAfterLast: 120 * MiB - IDLE_GC_DEFAULTS.regrowBytes }), true, 'grown again since');
});

test('a process that grew its heap in a burst and keeps allocating a little gets the heap back', async () => {
  // A child process (its own heap): a burst of 200k objects dropped, then a trickle of small allocations
  // (as keepalives are), with the idle collector checking every 200 ms.
  const child = `
    const { startIdleGc } = await import(${JSON.stringify(new URL('../../src/util/idle-gc.ts', import.meta.url).href)});
    const { getHeapStatistics } = await import('node:v8');
    const logger = { debug() {}, info() {}, warn() {}, error() {} };
    let burst = [];
    for (let i = 0; i < 400000; i++) burst.push({ i, s: 'x'.repeat(100) + i, a: [i, i + 1] });
    burst = undefined;
    const before = getHeapStatistics().total_heap_size;
    // quietUtilization high: this test runs beside others on a busy machine; the decision itself is the test above.
    const gc = startIdleGc(logger, { checkMs: 200, quietUtilization: 0.5 });
    const trickle = setInterval(() => { globalThis.keep = Array.from({ length: 50 }, (_, k) => ({ k })); }, 5);
    await new Promise((r) => setTimeout(r, 2500));
    clearInterval(trickle);
    gc.stop();
    console.log(JSON.stringify({ before, after: getHeapStatistics().total_heap_size, collections: gc.collections }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { timeout: 60_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { before: number; after: number; collections: number };
  assert.ok(r.before > 80 * MiB, `the burst grew the heap: ${(r.before / MiB).toFixed(1)} MiB`);
  assert.ok(r.collections >= 1, 'the idle collector ran');
  assert.ok(r.after < r.before / 2, `heap given back: ${(r.before / MiB).toFixed(1)} → ${(r.after / MiB).toFixed(1)} MiB`);
});
