import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { IDLE_GC_DEFAULTS, shouldCollect, startIdleGc } from '../../src/util/idle-gc.js';
import { silentLogger } from '../../src/util/logger.js';

const MiB = 1024 * 1024;

test('idle gc decides: only when quiet, only for a heap holding much more than it uses, not again for a heap that stayed as big', () => {
  const big = { total: 120 * MiB, used: 60 * MiB };
  assert.equal(shouldCollect({ utilization: 0.01, heap: big, totalAfterLast: undefined }), true);
  assert.equal(shouldCollect({ utilization: 0.2, heap: big, totalAfterLast: undefined }), false, 'busy: a pause would cost requests');
  assert.equal(shouldCollect({ utilization: 0.01, heap: { total: 63 * MiB, used: 60 * MiB }, totalAfterLast: undefined }), false, 'little slack');
  // What a server of 1,000 agents held at rest after placing one pod on each (bench/results/issue13-s27.md).
  assert.equal(shouldCollect({ utilization: 0.01, heap: { total: 67.4 * MiB, used: 54.5 * MiB }, totalAfterLast: undefined }), true, 'a burst\'s 13 MiB');
  assert.equal(shouldCollect({ utilization: 0.01, heap: big, totalAfterLast: 115 * MiB }), false, 'the last collection left it this big');
  assert.equal(shouldCollect({ utilization: 0.01, heap: big, totalAfterLast: 120 * MiB - IDLE_GC_DEFAULTS.regrowBytes }), true, 'grown again since');
});

test('the full collection gives back the heap a burst grew (a child process: its own heap)', async () => {
  const child = `
    const { fullGc } = await import(${JSON.stringify(new URL('../../src/util/idle-gc.ts', import.meta.url).href)});
    const { getHeapStatistics } = await import('node:v8');
    let burst = [];
    for (let i = 0; i < 400000; i++) burst.push({ i, s: 'x'.repeat(100) + i, a: [i, i + 1] });
    burst = undefined;
    const before = getHeapStatistics().total_heap_size;
    const gc = fullGc();
    gc?.();
    console.log(JSON.stringify({ exposed: typeof gc === 'function', before, after: getHeapStatistics().total_heap_size }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', child], { timeout: 60_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { exposed: boolean; before: number; after: number };
  assert.ok(r.exposed, 'gc is available without --expose-gc on the command line');
  assert.ok(r.before > 80 * MiB, `the burst grew the heap: ${(r.before / MiB).toFixed(1)} MiB`);
  assert.ok(r.after < r.before / 2, `heap given back: ${(r.before / MiB).toFixed(1)} → ${(r.after / MiB).toFixed(1)} MiB`);
});

test('the idle collection compacts: a burst whose survivors are scattered thinly gives its pages back', async () => {
  // One object in 20 survives, spread over every page of the burst: a plain full collection keeps those pages.
  const child = (compact: boolean) => `
    const { fullGc, compacting } = await import(${JSON.stringify(new URL('../../src/util/idle-gc.ts', import.meta.url).href)});
    const { getHeapStatistics } = await import('node:v8');
    let burst = [];
    for (let i = 0; i < 400000; i++) burst.push({ s: 'x' + i, a: [i, i + 1], o: { i } });
    globalThis.kept = burst.filter((_, i) => i % 20 === 0);
    burst = undefined;
    const gc = fullGc();
    ${compact ? 'compacting(gc)' : 'gc()'};
    const h = getHeapStatistics();
    console.log(JSON.stringify({ total: h.total_heap_size, used: h.used_heap_size }));
  `;
  const run = async (compact: boolean) => {
    // The plain run never compacts (--no-compact): on its own V8 compacts some full collections (3 in 10 here), which made this
    // baseline hold 13.7 MiB instead of ~75 at random.
    const flags = compact ? [] : ['--no-compact'];
    const { stdout } = await promisify(execFile)(process.execPath, ['--max-semi-space-size=2', ...flags, '--import', 'tsx', '--input-type=module', '-e', child(compact)], { timeout: 60_000 });
    return JSON.parse(stdout.trim().split('\n').pop()!) as { total: number; used: number };
  };
  const [plain, compacted] = [await run(false), await run(true)];
  const mib = (n: number) => (n / MiB).toFixed(1);
  assert.ok(plain.total > plain.used * 3, `without compaction the pages stay: ${mib(plain.total)} MiB held for ${mib(plain.used)} used`);
  assert.ok(compacted.total < plain.total / 2, `compacted: ${mib(compacted.total)} MiB held (plain: ${mib(plain.total)}) for ${mib(compacted.used)} used`);
});

test('the idle collector collects once its conditions hold, and stops', async () => {
  const gc = startIdleGc(silentLogger, { checkMs: 20, quietUtilization: 1, slackBytes: 0, regrowBytes: 0 });
  const alive = setInterval(() => undefined, 1000);
  try {
    for (let i = 0; i < 100 && gc.collections === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(gc.collections >= 1);
  } finally {
    gc.stop();
    clearInterval(alive);
  }
  const n = gc.collections;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(gc.collections, n, 'none after stop');
});
