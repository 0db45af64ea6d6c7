/** Updates that change what Kubernetes keeps immutable are refused, in Kubernetes' words; allowed ones pass. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertMutable, immutableChanges } from '../../src/api/immutability.js';
import type { ApiObject } from '../../src/api/meta.js';
import { parseObject } from '../../src/api/validate.js';
import { ValidationError } from '../../src/util/errors.js';

const KUBERNETES_TEXT =
  'Pod "nginx" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

function pod(spec: Record<string, unknown> = {}, container: Record<string, unknown> = {}): ApiObject {
  return parseObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nginx', labels: { app: 'nginx' } }, spec: { containers: [{ name: 'nginx', image: 'nginx:1.25', command: ['nginx'], ...container }], ...spec } }).object;
}

function refused(old: ApiObject, next: ApiObject): ValidationError {
  try {
    assertMutable(old, next);
  } catch (e) {
    assert.ok(e instanceof ValidationError);
    assert.equal(e.code, 422);
    return e;
  }
  assert.fail('the update was allowed');
}

test('a pod\'s command or nodeSelector change is refused with Kubernetes\' sentence, naming what changed', () => {
  const e = refused(pod(), pod({}, { command: ['sh'] }));
  assert.equal(e.message.split('\n')[0], KUBERNETES_TEXT);
  assert.match(e.message, /\n  changed: spec\.containers\[0\]\.command$/);
  const e2 = refused(pod(), pod({ nodeSelector: { site: 'north' } }));
  assert.match(e2.message, /changed: spec\.nodeSelector/);
});

test('image, labels, a lower activeDeadlineSeconds and added tolerations are allowed; the same manifest again too', () => {
  const t = { key: 'k', operator: 'Exists', effect: 'NoSchedule' };
  const old = pod({ activeDeadlineSeconds: 100, tolerations: [t] });
  assertMutable(old, pod({ activeDeadlineSeconds: 100, tolerations: [t] }));
  assertMutable(old, pod({ activeDeadlineSeconds: 50, tolerations: [t, { key: 'k2', operator: 'Exists' }] }, { image: 'nginx:1.27' }));
  const relabeled = pod({ activeDeadlineSeconds: 100, tolerations: [t] });
  relabeled.metadata.labels = { app: 'other' };
  assertMutable(old, relabeled);
  // An empty list where the stored object has none is no change (kubectl round trips).
  assertMutable(pod(), pod({}, { env: [] }));
});

test('activeDeadlineSeconds may not grow nor go; a toleration may not be removed; containers not added', () => {
  assert.deepEqual(immutableChanges(pod({ activeDeadlineSeconds: 10 }), pod({ activeDeadlineSeconds: 20 })), [{ field: 'spec.activeDeadlineSeconds', message: 'Invalid value: 20: must be less than or equal to previous value' }]);
  assert.equal(immutableChanges(pod({ activeDeadlineSeconds: 10 }), pod())[0]!.message, 'Invalid value: "null": must not update from a positive integer to nil value');
  assert.deepEqual(immutableChanges(pod({ tolerations: [{ key: 'a', operator: 'Exists' }] }), pod()), [{ field: 'spec.tolerations', message: 'Forbidden: existing toleration can not be modified except its tolerationSeconds' }]);
  const two = parseObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nginx' }, spec: { containers: [{ name: 'a', image: 'x' }, { name: 'b', image: 'x' }] } }).object;
  assert.deepEqual(immutableChanges(pod(), two), [{ field: 'spec.containers', message: 'Forbidden: pod updates may not add or remove containers' }]);
});

test('terminationGracePeriodSeconds and hostNetwork are spec fields like any other: refused', () => {
  assert.match(refused(pod(), pod({ terminationGracePeriodSeconds: 30 })).message, /changed: spec\.terminationGracePeriodSeconds/);
  assert.match(refused(pod(), pod({ hostNetwork: true })).message, /changed: spec\.hostNetwork/);
});

const workload = (kind: string, apiVersion: string, selector: Record<string, string>, extra: Record<string, unknown> = {}) =>
  parseObject({
    apiVersion,
    kind,
    metadata: { name: 'web' },
    spec: { selector: { matchLabels: selector }, template: { metadata: { labels: { app: 'web', tier: 'x' } }, spec: { restartPolicy: kind === 'Job' ? 'Never' : 'Always', containers: [{ name: 'c', image: 'i' }] } }, ...extra },
  }).object;

for (const [kind, apiVersion, group] of [['Deployment', 'apps/v1', 'apps'], ['ReplicaSet', 'apps/v1', 'apps'], ['DaemonSet', 'apps/v1', 'apps'], ['Job', 'batch/v1', 'batch']] as const) {
  test(`${kind}: spec.selector is immutable ("field is immutable"), the rest of the spec is not (Jobs aside)`, () => {
    const e = refused(workload(kind, apiVersion, { app: 'web' }), workload(kind, apiVersion, { app: 'web', tier: 'x' }));
    assert.equal(e.message, `${kind}.${group} "web" is invalid: spec.selector: Invalid value: {"matchLabels":{"app":"web","tier":"x"}}: field is immutable`);
  });
}

test('Deployment: template and replicas change freely', () => {
  assertMutable(workload('Deployment', 'apps/v1', { app: 'web' }), workload('Deployment', 'apps/v1', { app: 'web' }, { replicas: 5 }));
});

test('Job: template, completions and completionMode are immutable; parallelism is not', () => {
  const old = workload('Job', 'batch/v1', { app: 'web' });
  assertMutable(old, workload('Job', 'batch/v1', { app: 'web' }, { parallelism: 4 }));
  assert.deepEqual(immutableChanges(old, workload('Job', 'batch/v1', { app: 'web' }, { completions: 3 })).map((c) => c.field), ['spec.completions']);
  assert.deepEqual(immutableChanges(old, workload('Job', 'batch/v1', { app: 'web' }, { completionMode: 'Indexed' })).map((c) => c.field), ['spec.completionMode']);
  const changed = workload('Job', 'batch/v1', { app: 'web' });
  (changed.spec as any).template.spec.containers[0].image = 'other';
  assert.match(refused(old, changed).message, /^Job\.batch "web" is invalid: spec\.template: Invalid value: .*: field is immutable$/);
});

test('other kinds (ConfigMap) and a kind change are not this check\'s business', () => {
  const cm = (v: string) => parseObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: v } }).object;
  assertMutable(cm('1'), cm('2'));
});
