/**
 * LevelStore's own behaviour: background compaction of its change log, and its data dir lock. What
 * every store does (create/update/patch/delete, watch, compaction through compact(), reopen) is the
 * contract suite's, run against LevelStore and EtcdStore alike: test/integration/store-contract.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LevelStore } from '../../server/store/level.js';
import type { ApiObject } from '../../src/api/meta.js';
import { GoneError, StoreError } from '../../src/util/errors.js';
import { assertConsecutive, collect } from '../helpers/store-watch.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'drover-store-'));
}

/** Opens a store in a fresh temp dir and removes it after the test. */
async function withStore(t: { after(fn: () => Promise<void>): void }, opts: { compactKeep?: number } = {}): Promise<{ store: LevelStore; dir: string }> {
  const dir = await tempDir();
  const store = await LevelStore.open({ path: join(dir, 'db'), ...opts });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, dir };
}

function pod(name: string, namespace = 'default', spec: unknown = { containers: [{ name: 'c', image: 'nginx' }] }): ApiObject {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec };
}

test('compaction keeps the last compactKeep log entries; watching from a compacted revision is GoneError', async (t) => {
  const { store } = await withStore(t, { compactKeep: 10 });
  for (let i = 0; i < 30; i++) await store.create(pod(`p${i}`));
  // Background compaction runs once the log is keep 10 + slack 16 long (at revision 26) and trims it
  // to 10; it is queued on the writer, so the next write finds it done.
  await store.create(pod('trigger'));
  assert.equal(store.compactedRevision(), 16);

  await store.compact();
  assert.equal(store.compactedRevision(), 21);
  assert.throws(() => store.watch(0, () => {}), (err: unknown) => err instanceof GoneError && err.code === 410);
  assert.throws(() => store.watch(20, () => {}), GoneError);

  const events = await collect(store, 21, (es) => es.length === 10);
  assertConsecutive(events, 22, 31);

  // Objects are untouched by compaction.
  assert.equal((await store.list('Pod')).items.length, 31);
});

test('opening a data dir that is already open fails with a clear message', async (t) => {
  const { dir } = await withStore(t);
  await assert.rejects(LevelStore.open({ path: join(dir, 'db') }), (err: unknown) => err instanceof StoreError && /data dir .* is in use/.test(err.message));
});
