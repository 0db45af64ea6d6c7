import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ResourceQuota } from '../../src/api/config.js';
import type { ApiObject } from '../../src/api/meta.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quotaViolation, usageOf } from '../../server/admission/quota.js';
import { QuotaTurns, withAdmission } from '../../server/admission/store.js';
import { LevelStore } from '../../server/store/level.js';
import { ForbiddenError } from '../../src/util/errors.js';

const pod = (name: string, req: { cpu?: string; memory?: string }, phase = 'Running'): ApiObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'q', uid: name },
  spec: { containers: [{ name: 'c', image: 'i', resources: { requests: req } }], restartPolicy: 'Always', terminationGracePeriodSeconds: 10 },
  status: { phase },
});
const quota = (hard: Record<string, string | number>): ResourceQuota => ({ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'compute' }, spec: { hard: hard as never } });

test('a pod within every quota is admitted', () => {
  assert.equal(quotaViolation(pod('c', { cpu: '500m', memory: '1Gi' }), [quota({ pods: 3, 'requests.memory': '2Gi' })], [pod('a', { memory: '512Mi' })]), undefined);
});

test('over the pod count: the message names the quota and the numbers', () => {
  const existing = [pod('a', {}), pod('b', {})];
  assert.equal(quotaViolation(pod('c', {}), [quota({ pods: 2 })], existing), 'exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2');
});

test('over the summed memory requests', () => {
  const v = quotaViolation(pod('c', { memory: '1Gi' }), [quota({ 'requests.memory': '2Gi' })], [pod('a', { memory: '1536Mi' })]);
  assert.equal(v, 'exceeded quota: compute, requested: requests.memory=1Gi, used: requests.memory=1.5Gi, limited: requests.memory=2Gi');
});

test('finished pods do not count against a quota', () => {
  assert.equal(quotaViolation(pod('c', {}), [quota({ pods: 1 })], [pod('a', {}, 'Succeeded')]), undefined);
  assert.deepEqual(usageOf(pod('x', { cpu: '1' }, 'Failed')), {});
});

/** A LevelStore on disk with namespace q under a quota of `pods` pods. */
async function quotaStore(t: { after(fn: () => Promise<void>): void }, pods: number): Promise<LevelStore> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-quota-'));
  const level = await LevelStore.open({ path: join(dir, 'db') });
  t.after(async () => {
    await level.close();
    await rm(dir, { recursive: true, force: true });
  });
  await level.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'q' } } as ApiObject);
  await level.create({ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'compute', namespace: 'q' }, spec: { hard: { pods } } } as ApiObject);
  return level;
}
const fresh = (i: number | string): ApiObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p-${i}`, namespace: 'q' }, spec: { containers: [{ name: 'c', image: 'i' }], restartPolicy: 'Always', terminationGracePeriodSeconds: 10 } });

test('creates sent side by side cannot get past a quota together (a ReplicaSet writes 256 at once)', async (t) => {
  const level = await quotaStore(t, 50);
  const store = withAdmission(level);
  const results = await Promise.allSettled(Array.from({ length: 256 }, (_, i) => store.create(fresh(i))));
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(results.length - refused.length, 50, 'exactly the quota is created');
  assert.equal((await level.list('Pod', 'q')).items.length, 50);
  assert.ok(refused.every((r) => r.reason instanceof ForbiddenError && /exceeded quota: compute, requested: pods=1, used: pods=50, limited: pods=50/.test(r.reason.message)), String(refused[0]?.reason));
  // The ones refused leave nothing behind: once a pod is deleted, one more fits, and only one.
  await store.delete('Pod', 'q', 'p-0');
  const again = await Promise.allSettled([store.create(fresh(1000)), store.create(fresh(1001))]);
  assert.deepEqual(again.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
});

test('a quota holds against creates that keep coming while earlier ones are being stored', async (t) => {
  const level = await quotaStore(t, 50);
  const store = withAdmission(level);
  for (let i = 0; i < 40; i++) await store.create(fresh(`old-${i}`));
  let next = 0;
  // 64 writers, each creating until refused: lists taken while others' creates are on their way to disk.
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      for (;;) {
        try {
          await store.create(fresh(next++));
        } catch (err) {
          if (err instanceof ForbiddenError) return;
          throw err;
        }
      }
    }),
  );
  assert.equal((await level.list('Pod', 'q')).items.length, 50);
});

test('a create refused as a duplicate leaves the quota as it was, and the API and controller stacks take turns', async (t) => {
  const level = await quotaStore(t, 2);
  const turns = new QuotaTurns();
  const api = withAdmission(level, { quotaTurns: turns });
  const controllers = withAdmission(level, { quotaTurns: turns });
  const results = await Promise.allSettled([api.create(fresh('x')), controllers.create(fresh('x')), api.create(fresh('y')), controllers.create(fresh('z'))]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 2);
  assert.equal((await level.list('Pod', 'q')).items.length, 2);
  const many = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => (i % 2 ? api : controllers).create(fresh(`m-${i}`))));
  assert.ok(many.every((r) => r.status === 'rejected' && r.reason instanceof ForbiddenError));
});

test('a create carrying an existing pod\'s uid in its body is counted against the quota like any other', async (t) => {
  const level = await quotaStore(t, 1);
  const store = withAdmission(level);
  const first = await store.create(fresh('a'));
  const sneaky = fresh('b');
  sneaky.metadata.uid = first.metadata.uid;
  await assert.rejects(store.create(sneaky), (err: unknown) => err instanceof ForbiddenError && /exceeded quota: compute/.test(err.message));
  assert.equal((await level.list('Pod', 'q')).items.length, 1);
});
