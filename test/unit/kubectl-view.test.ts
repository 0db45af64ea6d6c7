import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { isClientGo, kubernetesView } from '../../server/api/k8s-view.js';

test('client-go user agents (kubectl, helm) are told apart from drover\'s own clients', () => {
  assert.ok(isClientGo('kubectl/v1.32.4 (linux/amd64) kubernetes/6b77a2a'));
  assert.ok(isClientGo('helm/v3.16.0 (linux/arm64) kubernetes/$Format'.replace('$Format', 'abc123')));
  assert.ok(!isClientGo('node'));
  assert.ok(!isClientGo('drover/0.1.0'));
  assert.ok(!isClientGo(undefined));
});

const pod = (statuses: unknown[]): ApiObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: {}, status: { phase: 'Running', containerStatuses: statuses } });

test('container states become the objects Kubernetes\' ContainerState is, details kept', () => {
  const view = kubernetesView(
    pod([
      { name: 'a', image: 'i', ready: true, restartCount: 0, state: 'running', startedAt: '2026-01-01T00:00:00Z' },
      { name: 'b', image: 'i', ready: false, restartCount: 3, state: 'waiting', reason: 'CrashLoopBackOff', message: 'back-off' },
      { name: 'c', image: 'i', ready: false, restartCount: 0, state: 'terminated', exitCode: 2, reason: 'Error', startedAt: 's', finishedAt: 'f' },
    ]),
  );
  const cs = (view.status as { containerStatuses: Array<Record<string, unknown>> }).containerStatuses;
  assert.deepEqual(cs[0]!.state, { running: { startedAt: '2026-01-01T00:00:00Z' } });
  assert.equal(cs[0]!.started, true);
  assert.deepEqual(cs[1]!.state, { waiting: { reason: 'CrashLoopBackOff', message: 'back-off' } });
  assert.deepEqual(cs[2]!.state, { terminated: { exitCode: 2, reason: 'Error', startedAt: 's', finishedAt: 'f' } });
  assert.equal(cs[1]!.restartCount, 3);
});

test('the stored object is not changed, and other kinds pass through as they are', () => {
  const p = pod([{ name: 'a', image: 'i', ready: true, restartCount: 0, state: 'running' }]);
  kubernetesView(p);
  assert.equal((p.status as { containerStatuses: Array<{ state: unknown }> }).containerStatuses[0]!.state, 'running');
  const cm: ApiObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } };
  assert.equal(kubernetesView(cm), cm);
});
