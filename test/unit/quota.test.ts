import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ResourceQuota } from '../../src/api/config.js';
import type { ApiObject } from '../../src/api/meta.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quotaViolation, usageOf } from '../../server/admission/quota.js';
import { withAdmission } from '../../server/admission/store.js';
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

test('creates sent side by side cannot get past a quota together (a ReplicaSet writes 256 at once)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-quota-'));
  const level = await LevelStore.open({ path: join(dir, 'db') });
  t.after(async () => {
    await level.close();
    await rm(dir, { recursive: true, force: true });
  });
  const store = withAdmission(level);
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'q' } } as ApiObject);
  await store.create({ apiVersion: 'v1', kind: 'ResourceQuota', metadata: { name: 'compute', namespace: 'q' }, spec: { hard: { pods: 50 } } } as ApiObject);
  const fresh = (i: number): ApiObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: `p-${i}`, namespace: 'q' }, spec: { containers: [{ name: 'c', image: 'i' }], restartPolicy: 'Always', terminationGracePeriodSeconds: 10 } });
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
