/** When a pod report changes what a user sees of a pod's status (a store write) and when it does not (none). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PodStatus } from '../../src/api/pod.js';
import { statusesEqual } from '../../server/nodes/pod-status.js';

const running = (o: Partial<PodStatus> = {}): PodStatus =>
  ({
    phase: 'Running',
    podIP: '10.88.0.5',
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2026-11-29T10:00:00.000Z' }],
    containerStatuses: [{ name: 'web', image: 'web:1', ready: true, restartCount: 0, state: { running: { startedAt: '2026-11-29T10:00:00.000Z' } } }],
    lastReportTime: '2026-11-29T10:00:00.000Z',
    ...o,
  }) as PodStatus;

test('a later report of the same status is equal: only its report time differs', () => {
  assert.equal(statusesEqual(running(), running({ lastReportTime: '2026-11-29T10:05:00.000Z' })), true);
});

test('the same status with its members in another order is equal', () => {
  const a = running();
  const b = Object.fromEntries(Object.entries(running()).reverse()) as unknown as PodStatus;
  assert.equal(statusesEqual(a, b), true);
});

test('a change a user sees is not equal: phase, a restart, the pod IP, a condition', () => {
  assert.equal(statusesEqual(running(), running({ phase: 'Failed' })), false);
  const restarted = running();
  restarted.containerStatuses![0]!.restartCount = 1;
  assert.equal(statusesEqual(running(), restarted), false);
  assert.equal(statusesEqual(running(), running({ podIP: '10.88.0.6' })), false);
  assert.equal(statusesEqual(running(), running({ conditions: [] })), false);
});

test('no status before is never equal', () => {
  assert.equal(statusesEqual(undefined, running()), false);
});
