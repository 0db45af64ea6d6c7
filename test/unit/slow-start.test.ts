/**
 * Slow-start batches of pod writes (server/controllers/still-wanted.ts): 1, 2, 4, … up to the batch limit, a failed
 * write stopping the run after its batch; a reconcile that writes thousands of pods over several passes goes on at
 * the size its previous pass reached instead of starting at 1 again (issue 13, placement throughput).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { MAX_POD_WRITES_PER_STEP, POD_WRITE_BATCH_MAX, PodWriteSteps, slowStartBatches } from '../../server/controllers/still-wanted.js';
import { LevelStore } from '../../server/store/level.js';

/** Steps that remember the size of every batch they allowed. */
class RecordedSteps extends PodWriteSteps {
  readonly batches: number[] = [];
  override async take(n: number): Promise<number> {
    const k = await super.take(n);
    if (k > 0) this.batches.push(k);
    return k;
  }
}

describe('slow-start pod write batches', () => {
  let dir: string;
  let store: LevelStore;
  let owner: ApiObject;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-slow-start-'));
    store = await LevelStore.open({ path: join(dir, 'store') });
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } } as ApiObject);
    owner = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner', namespace: 'default' }, data: {} } as ApiObject);
  });
  after(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('doubles from 1 up to the limit, and stops at the per-pass cap', async () => {
    const steps = new RecordedSteps(store, owner);
    const out = await slowStartBatches(steps, 2000, async (i) => i);
    assert.equal(out.length, MAX_POD_WRITES_PER_STEP, 'one pass writes at most the cap');
    assert.deepEqual(steps.batches.slice(0, 8), [1, 2, 4, 8, 16, 32, 64, 128]);
    assert.ok(steps.batches.every((b) => b <= POD_WRITE_BATCH_MAX));
    assert.equal(steps.reached, POD_WRITE_BATCH_MAX, 'every write succeeded: the next pass may start at the limit');
  });

  it('a next pass started where the last one reached writes its 500 in a few batches, not ten', async () => {
    const first = new RecordedSteps(store, owner);
    await slowStartBatches(first, 2000, async (i) => i);
    const next = new RecordedSteps(store, owner, undefined, first.reached);
    await slowStartBatches(next, 1500, async (i) => i);
    // One write first (whatever changed between the passes costs one failed write), then the size reached.
    assert.deepEqual(next.batches, [1, 256, 243]);
    assert.ok(first.batches.length >= 9, `the first pass slow-started: ${first.batches.join(',')}`);
  });

  it('a failed write ends the run after its batch, with its error; the failing batch does not count as reached', async () => {
    const steps = new RecordedSteps(store, owner);
    let calls = 0;
    await assert.rejects(
      slowStartBatches(steps, 100, async (i) => {
        calls++;
        if (i === 5) throw new Error('admission refused pod 5');
        return i;
      }),
      /admission refused pod 5/,
    );
    // Batches 1, 2 and then 4 (writes 3..6, the one with index 5 failing): nothing after it.
    assert.deepEqual(steps.batches, [1, 2, 4]);
    assert.equal(calls, 7);
    assert.equal(steps.reached, 4, 'what the last successful batch (2) led to, not past the failing one');
  });

  it('a pass that goes on at a carried size whose first write fails stops after that one write', async () => {
    const steps = new RecordedSteps(store, owner, undefined, POD_WRITE_BATCH_MAX);
    let calls = 0;
    await assert.rejects(
      slowStartBatches(steps, 500, async () => {
        calls++;
        throw new Error('exceeded quota');
      }),
      /exceeded quota/,
    );
    assert.deepEqual(steps.batches, [1]);
    assert.equal(calls, 1);
  });

  it('a pass stops when its owner is gone', async () => {
    const gone = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'gone', namespace: 'default' }, data: {} } as ApiObject);
    const steps = new RecordedSteps(store, gone, undefined, POD_WRITE_BATCH_MAX);
    let n = 0;
    const out = await slowStartBatches(steps, 1000, async (i) => {
      if (++n === 1) await store.delete('ConfigMap', 'default', 'gone');
      return i;
    });
    assert.equal(out.length, 1, 'the batch under way completes (the first write, alone), the next is not started');
    assert.match(steps.stopped ?? '', /gone/);
  });
});
