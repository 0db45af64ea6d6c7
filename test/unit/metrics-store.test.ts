/**
 * The store's figures for /metrics, on a real LevelDB store: each write timed at the interface with its
 * result (a conflict or a duplicate is the caller's, refused, not an error), and each group commit
 * reported with the writes it held, so 32 concurrent creates show up as fewer fsyncs than writes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metrics, parseExposition } from '../../bench/lib/metrics.js';
import { ServerMetrics } from '../../server/metrics/server-metrics.js';
import { timedStore } from '../../server/metrics/timed-store.js';
import { LevelStore } from '../../server/store/level.js';
import type { ApiObject } from '../../src/api/meta.js';

const cm = (name: string, resourceVersion?: string): ApiObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default', ...(resourceVersion ? { resourceVersion } : {}) }, data: { k: name } } as ApiObject);

test('writes by operation and result; group commits by size; a write the store cannot take is an error and no commit', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-metrics-store-'));
  const level = await LevelStore.open({ path: join(dir, 'db') });
  t.after(async () => {
    await level.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  const metrics = new ServerMetrics();
  level.onCommit((writes, seconds, ok) => metrics.commit(writes, seconds, ok));
  const store = timedStore(level, metrics);

  const made = await Promise.all(Array.from({ length: 32 }, (_, i) => store.create(cm(`c${i}`))));
  await assert.rejects(store.create(cm('c0')), /already exists/);
  await store.update({ ...made[1]!, data: { k: 'new' } } as ApiObject);
  await assert.rejects(store.update(cm('c2', '1')), /conflict|modified/i);
  await store.patch('ConfigMap', 'default', 'c3', (o) => ({ ...o, data: { k: 'p' } }));
  await store.delete('ConfigMap', 'default', 'c4');
  await assert.rejects(store.delete('ConfigMap', 'default', 'nope'), /not found/);

  const m = new Metrics(parseExposition((await metrics.exposition()).text));
  const n = (operation: string, result: string) => m.value('drover_store_write_duration_seconds_count', { operation, result });
  assert.equal(n('create', 'ok'), 32);
  assert.equal(n('create', 'refused'), 1);
  assert.equal(n('update', 'ok'), 1);
  assert.equal(n('update', 'refused'), 1);
  assert.equal(n('patch', 'ok'), 1);
  assert.equal(n('delete', 'ok'), 1);
  assert.equal(n('delete', 'refused'), 1);
  assert.equal(m.value('drover_store_write_duration_seconds_count', { result: 'error' }), 0);
  const batch = m.histogram('drover_store_commit_batch_writes');
  // 35 durable writes (32 creates, update, patch, delete) in fewer synced batches: group commit at work.
  assert.equal(batch.sum, 35);
  assert.ok(batch.count < 35, `${batch.count} commits for 35 writes`);
  assert.equal(m.histogram('drover_store_commit_duration_seconds').count, batch.count);
  assert.equal(m.value('drover_store_commit_failures_total'), 0);

  // A store that cannot write (closed): the write is an error (not refused), and no commit is reported.
  await level.close();
  await assert.rejects(store.create(cm('late')));
  const after = new Metrics(parseExposition((await metrics.exposition()).text));
  assert.equal(after.histogram('drover_store_commit_batch_writes').count, batch.count);
  assert.equal(after.value('drover_store_write_duration_seconds_count', { operation: 'create', result: 'error' }), 1);
});
