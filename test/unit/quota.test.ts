import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ResourceQuota } from '../../src/api/config.js';
import type { ApiObject } from '../../src/api/meta.js';
import { quotaViolation, usageOf } from '../../server/admission/quota.js';

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
