/**
 * The runner's pacing wiring, on a real store: a controller whose pass asks to be paced is woken by its
 * children's changes and by its own status writes no sooner than the pace, every change meanwhile gathered
 * into one pass; a spec change of its own object (a new generation) is not held. Without the wiring, a
 * 5,000-replica ReplicaSet writing its status after each pass woke itself back to back.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { silentLogger } from '../../src/util/logger.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { LevelStore } from '../../server/store/level.js';
import { waitFor } from '../helpers/cluster.js';

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PACE_MS = 4_000;

test('a paced controller: children and its own status wait for the pace, gathered into one pass; its spec change does not wait', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-pace-'));
  const store = await LevelStore.open({ path: join(dir, 'db'), logger: silentLogger });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  await store.create({ apiVersion: 'v1', kind: 'Widget', metadata: { name: 'w', namespace: 'default' }, spec: { size: 1 } } as unknown as ApiObject);
  const passes: number[] = [];
  const runner = new ControllerRunner({
    store,
    logger: silentLogger,
    resyncMs: 3_600_000,
    controllers: [
      {
        name: 'widgets',
        kind: 'Widget',
        watches: [{ kind: 'Part', keys: () => ['default/w'] }],
        async reconcile() {
          passes.push(performance.now());
          // Each pass writes its own status, as a ReplicaSet does.
          await store.patch('Widget', 'default', 'w', (cur) => ({ ...cur, status: { passes: passes.length } }) as never);
          return { paceMs: PACE_MS };
        },
      },
    ],
  });
  await runner.start();
  t.after(() => runner.stop());
  await waitFor('the first pass', async () => passes.length === 1 || undefined, 10_000);
  // Its own status write and 30 children's changes: nothing at once.
  for (let i = 0; i < 30; i++) await store.create({ apiVersion: 'v1', kind: 'Part', metadata: { name: `p${i}`, namespace: 'default' } } as unknown as ApiObject);
  await settle(500);
  assert.equal(passes.length, 1, 'no pass before the pace, for the status write or the children');
  await waitFor('one pass once the pace has passed', async () => passes.length === 2 || undefined, 15_000);
  assert.ok(passes[1]! - passes[0]! >= PACE_MS - 50, `the second pass waited for the pace (${Math.round(passes[1]! - passes[0]!)} ms)`);
  // A spec change (new generation) is not held, though the pass just asked for a pace again.
  await store.patch('Widget', 'default', 'w', (cur) => ({ ...cur, spec: { size: 2 } }) as never);
  await waitFor('a pass for the spec change', async () => passes.length === 3 || undefined, 15_000);
  assert.ok(passes[2]! - passes[1]! < PACE_MS, `the spec change was not paced (${Math.round(passes[2]! - passes[1]!)} ms)`);
  // That pass's status write is paced again: no pass at once after it.
  await settle(500);
  assert.equal(passes.length, 3);
});
