/**
 * /scale and /status: what `kubectl scale` (a merge patch on .../scale), `kubectl get --subresource=scale`
 * and a status writer see and may change.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { BadRequestError, ConflictError, ValidationError, isConflict } from '../../src/util/errors.js';
import { applyPatch } from '../../server/api/patch.js';
import { scaleOf, withScale, withStatus } from '../../server/api/subresources.js';

function deployment(): ApiObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'prod', uid: 'u-1', resourceVersion: '41', creationTimestamp: '2026-11-28T00:00:00Z' },
    spec: { replicas: 3, selector: { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['a', 'b'] }] }, template: { metadata: { labels: { app: 'web', tier: 'a' } }, spec: { containers: [{ name: 'web', image: 'nginx' }] } } },
    status: { replicas: 2, readyReplicas: 2 },
  };
}

describe('scale subresource', () => {
  it('GET: an autoscaling/v1 Scale with the selector as a label-selector string', () => {
    assert.deepEqual(scaleOf(deployment()), {
      apiVersion: 'autoscaling/v1',
      kind: 'Scale',
      metadata: { name: 'web', namespace: 'prod', uid: 'u-1', resourceVersion: '41', creationTimestamp: '2026-11-28T00:00:00Z' },
      spec: { replicas: 3 },
      status: { replicas: 2, selector: 'app=web,tier in (a,b)' },
    });
  });

  it('kubectl scale --replicas 5: a merge patch on the Scale changes spec.replicas and nothing else', () => {
    const d = deployment();
    const out = withScale(d, applyPatch(scaleOf(d), { spec: { replicas: 5 } }, 'merge', 'Scale'));
    assert.equal((out.spec as { replicas: number }).replicas, 5);
    assert.deepEqual({ ...(out.spec as object), replicas: 3 }, d.spec);
    assert.deepEqual(out.status, d.status);
    assert.equal((d.spec as { replicas: number }).replicas, 3, 'the stored object is untouched');
  });

  it('PUT with a stale resourceVersion is a 409 Conflict (kubectl scale --resource-version)', () => {
    assert.throws(() => withScale(deployment(), { kind: 'Scale', apiVersion: 'autoscaling/v1', metadata: { name: 'web', resourceVersion: '40' }, spec: { replicas: 1 } }), (e: unknown) => e instanceof ConflictError && isConflict(e) && /deployments\.apps "web"/.test(e.message));
  });

  it('refuses what is not a Scale of this object, and counts that are not whole numbers from 0', () => {
    const refusals: Array<[unknown, new (...a: never[]) => Error, RegExp]> = [
      [{ spec: { replicas: -1 } }, ValidationError, /spec\.replicas: must be a whole number from 0, got -1/],
      [{ spec: { replicas: '3' } }, ValidationError, /spec\.replicas: must be a whole number from 0, got "3"/],
      [{ spec: { replicas: 1.5 } }, ValidationError, /spec\.replicas/],
      [{ spec: {} }, ValidationError, /spec\.replicas: required/],
      [{ kind: 'Deployment', spec: { replicas: 1 } }, BadRequestError, /path takes a Scale/],
      [{ metadata: { name: 'other' }, spec: { replicas: 1 } }, BadRequestError, /does not match the name in the path \(web\)/],
      [{ apiVersion: 'autoscaling/v2', spec: { replicas: 1 } }, BadRequestError, /autoscaling\/v1/],
      [[1], BadRequestError, /Scale object/],
    ];
    for (const [body, cls, re] of refusals) assert.throws(() => withScale(deployment(), body), (e: unknown) => e instanceof cls && re.test((e as Error).message), JSON.stringify(body));
  });

  it('a kind without /scale is refused', () => {
    const ds = { ...deployment(), kind: 'DaemonSet' };
    assert.throws(() => scaleOf(ds), /DaemonSet has no scale subresource/);
    assert.throws(() => withScale(ds, { spec: { replicas: 1 } }), /DaemonSet has no scale subresource/);
  });
});

describe('status subresource', () => {
  it('PUT .../status takes only the status: a spec or label change in the body is ignored', () => {
    const d = deployment();
    const body = { ...structuredClone(d), metadata: { ...d.metadata, labels: { evil: 'yes' } }, spec: { replicas: 100 }, status: { replicas: 3, readyReplicas: 3 } };
    const out = withStatus(d, body);
    assert.deepEqual(out.status, { replicas: 3, readyReplicas: 3 });
    assert.deepEqual(out.spec, d.spec);
    assert.deepEqual(out.metadata, d.metadata);
  });

  it('PATCH .../status: a merge patch on the whole object, then only its status is kept', () => {
    const d = deployment();
    const patched = applyPatch(d, { spec: { replicas: 0 }, status: { readyReplicas: 1 } }, 'merge', 'Deployment');
    const out = withStatus(d, patched);
    assert.deepEqual(out.status, { replicas: 2, readyReplicas: 1 });
    assert.equal((out.spec as { replicas: number }).replicas, 3);
  });

  it('a status body for another object or a stale version is refused', () => {
    assert.throws(() => withStatus(deployment(), { kind: 'Pod', status: {} }), /the body is a Pod/);
    assert.throws(() => withStatus(deployment(), { metadata: { name: 'x' }, status: {} }), /does not match the name/);
    assert.throws(() => withStatus(deployment(), { metadata: { resourceVersion: '1' }, status: {} }), (e: unknown) => isConflict(e));
  });
});
