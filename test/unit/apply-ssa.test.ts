/**
 * Server-side apply as `kubectl apply --server-side` drives it: create → change → re-apply, conflicts
 * with other managers (the scenarios of Kubernetes' "Server-Side Apply" documentation: a field set by
 * `kubectl scale` or by client-side apply conflicts; --force-conflicts takes it over; an omitted field
 * is removed unless someone else owns it), and the managedFields entries in Kubernetes' FieldsV1 form.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestError, isConflict } from '../../src/util/errors.js';
import { ApplyConflictError, fieldManagerOf, recordUpdate, requireFieldManager, serverSideApply, type ManagedFieldsEntry } from '../../server/api/apply.js';
import { applyPatch } from '../../server/api/patch.js';
import { scaleOf, withScale } from '../../server/api/subresources.js';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; managedFields?: ManagedFieldsEntry[]; [k: string]: unknown }; spec?: any; status?: unknown };

const T0 = '2026-11-28T00:30:00.123Z';
const T1 = '2026-11-28T00:31:00Z';

const manifest = (image = 'nginx:1.25', replicas = 2, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web' } },
  spec: {
    replicas,
    selector: { matchLabels: { app: 'web' } },
    template: { metadata: { labels: { app: 'web' }, creationTimestamp: null }, spec: { containers: [{ name: 'web', image, ports: [{ containerPort: 80 }] }] } },
    ...extra,
  },
});

const apply = (cur: Obj | undefined, cfg: unknown, manager = 'kubectl', force = false, now: string = T1) => serverSideApply<Obj>(cur, cfg, { fieldManager: manager, force, kind: 'Deployment', now });

/** What the store would hold: the applied object with the server's own fields. */
function stored(o: Obj): Obj {
  return { ...o, metadata: { ...o.metadata, namespace: 'default', uid: 'u-1', resourceVersion: '5', creationTimestamp: T0 }, status: { replicas: 2 } };
}

describe('server-side apply', () => {
  it('create: one Apply entry whose FieldsV1 is what Kubernetes shows for the same manifest', () => {
    const o = apply(undefined, manifest(), 'kubectl', false, T0);
    assert.deepEqual(o.metadata.managedFields, [
      {
        manager: 'kubectl',
        operation: 'Apply',
        apiVersion: 'apps/v1',
        time: '2026-11-28T00:30:00Z',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': { 'f:labels': { 'f:app': {} } },
          'f:spec': {
            'f:replicas': {},
            'f:selector': {},
            'f:template': {
              'f:metadata': { 'f:labels': { 'f:app': {} } },
              'f:spec': { 'f:containers': { 'k:{"name":"web"}': { '.': {}, 'f:image': {}, 'f:name': {}, 'f:ports': { 'k:{"containerPort":80,"protocol":"TCP"}': { '.': {}, 'f:containerPort': {} } } } } },
            },
          },
        },
      },
    ]);
    assert.equal(o.spec.template.metadata.creationTimestamp, undefined, 'nulls in the configuration are "not set"');
  });

  it('create → change → re-apply by the same manager: no conflict, the change lands, the entry is renewed', () => {
    const live = stored(apply(undefined, manifest(), 'kubectl', false, T0));
    const o = apply(live, manifest('nginx:1.27', 3));
    assert.equal(o.spec.template.spec.containers[0].image, 'nginx:1.27');
    assert.equal(o.spec.replicas, 3);
    assert.equal(o.metadata.uid, 'u-1');
    assert.deepEqual(o.status, { replicas: 2 }, 'status is not the applier\'s');
    assert.equal(o.metadata.managedFields!.length, 1);
    assert.equal(o.metadata.managedFields![0]!.time, T1);
  });

  it('a field kubectl scale changed (Update via /scale) conflicts: 409 in Kubernetes\' words; --force-conflicts takes it', () => {
    const live = stored(apply(undefined, manifest(), 'kubectl', false, T0));
    const scaled = recordUpdate(live, withScale(live, applyPatch(scaleOf(live as never), { spec: { replicas: 5 } }, 'merge', 'Scale')), 'kubectl-scale', T1, 'scale');
    assert.equal(scaled.spec.replicas, 5);
    let err: unknown;
    try {
      apply(scaled, manifest('nginx:1.25', 2));
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ApplyConflictError && isConflict(err) && err.code === 409);
    assert.equal(err.message, 'Apply failed with 1 conflict: conflict with "kubectl-scale" with subresource "scale" using apps/v1: .spec.replicas');
    assert.deepEqual(err.causes, [{ type: 'FieldManagerConflict', message: 'conflict with "kubectl-scale" with subresource "scale" using apps/v1', field: '.spec.replicas' }]);

    const forced = apply(scaled, manifest('nginx:1.25', 2), 'kubectl', true);
    assert.equal(forced.spec.replicas, 2);
    assert.deepEqual(forced.metadata.managedFields!.map((e) => e.manager), ['kubectl'], 'the scaler owned only replicas: its entry is gone');
    // Re-applying the same value that another manager set is no conflict: ownership is shared.
    const again = recordUpdate(forced, withScale(forced, { spec: { replicas: 2 } }), 'kubectl-scale', T1, 'scale');
    assert.equal(apply(again, manifest('nginx:1.25', 2)).spec.replicas, 2);
  });

  it('the applier\'s own Update entry is another manager: kubectl scale without --field-manager ("kubectl", subresource scale) conflicts', () => {
    const live = stored(apply(undefined, manifest(), 'kubectl', false, T0));
    const scaled = recordUpdate(live, withScale(live, { spec: { replicas: 7 } }), 'kubectl', T1, 'scale');
    assert.throws(() => apply(scaled, manifest()), { message: 'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas' });
  });

  it('fields of a client-side apply conflict with a server-side one (kubectl-client-side-apply), several listed per manager', () => {
    const csa = manifest('nginx:1.25', 2) as Obj;
    const live = stored(recordUpdate(undefined, stored(csa), 'kubectl-client-side-apply', T0));
    assert.throws(
      () => apply(live, manifest('nginx:1.27', 4)),
      (e: unknown) =>
        e instanceof ApplyConflictError &&
        e.message === 'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name="web"].image',
    );
    const same = apply(live, manifest('nginx:1.25', 2));
    assert.deepEqual(same.metadata.managedFields!.map((e) => [e.manager, e.operation]), [['kubectl-client-side-apply', 'Update'], ['kubectl', 'Apply']]);
  });

  it('a field the manager stops applying is removed; one another manager also owns stays', () => {
    const first = stored(apply(undefined, { ...manifest(), metadata: { name: 'web', labels: { app: 'web', tier: 'front', team: 'a' } } }, 'kubectl', false, T0));
    // Someone labels team=a by hand (kubectl label: an Update with the same value): now shared.
    const labelled = recordUpdate(first, applyPatch(first, { metadata: { labels: { owner: 'ops' } } }, 'merge', 'Deployment'), 'kubectl-label', T1);
    const o = apply(labelled, manifest());
    assert.deepEqual(o.metadata.labels, { app: 'web', owner: 'ops' });
    const withSidecar = stored(apply(o, { ...manifest(), spec: { ...manifest().spec, template: { ...manifest().spec.template, spec: { containers: [...manifest().spec.template.spec.containers, { name: 'log', image: 'busybox' }] } } } }));
    assert.equal(withSidecar.spec.template.spec.containers.length, 2);
    const dropped = apply(withSidecar, manifest());
    assert.deepEqual(dropped.spec.template.spec.containers.map((c: { name: string }) => c.name), ['web']);
  });

  it('a list element kept alive by another manager keeps its key fields when the applier drops it', () => {
    const two = { ...manifest(), spec: { ...manifest().spec, template: { ...manifest().spec.template, spec: { containers: [{ name: 'web', image: 'a' }, { name: 'log', image: 'busybox' }] } } } };
    const live = stored(apply(undefined, two, 'kubectl', false, T0));
    const edited = recordUpdate(live, applyPatch(live, { spec: { template: { spec: { containers: [{ name: 'log', args: ['-v'] }] } } } }, 'strategic', 'Deployment'), 'kubectl-edit', T1);
    const o = apply(edited, { ...manifest(), spec: { ...manifest().spec, template: { ...manifest().spec.template, spec: { containers: [{ name: 'web', image: 'a' }] } } } });
    assert.deepEqual(o.spec.template.spec.containers, [{ name: 'web', image: 'a' }, { name: 'log', args: ['-v'] }]);
  });

  it('associative lists merge by key: ports by containerPort + protocol (TCP when left out), env by name', () => {
    const live = stored(apply(undefined, manifest(), 'kubectl', false, T0));
    const o = apply(live, { ...manifest(), spec: { ...manifest().spec, template: { ...manifest().spec.template, spec: { containers: [{ name: 'web', image: 'nginx:1.25', ports: [{ containerPort: 80, protocol: 'TCP', name: 'http' }, { containerPort: 53, protocol: 'UDP' }] }] } } } });
    assert.deepEqual(o.spec.template.spec.containers[0].ports, [{ containerPort: 80, protocol: 'TCP', name: 'http' }, { containerPort: 53, protocol: 'UDP' }]);
  });

  it('a YAML body is read as kubectl sends it; refusals name the cause', () => {
    const yaml = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n';
    assert.equal(apply(undefined, yaml).spec.replicas, 1);
    const refusals: Array<[unknown, RegExp]> = [
      ['kind: Deployment\nmetadata: {name: web}\n', /apiVersion must be set/],
      [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web' } }, /is a Pod, but the path is for Deployment/],
      [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: {} }, /metadata\.name must be set/],
      [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', managedFields: [] } }, /managedFields must not be set/],
      ['a: [1\n', /not valid YAML or JSON/],
      ['a: 1\na: 2\n', /not valid YAML or JSON/],
      ['- 1\n', /must be an object/],
      [{ ...manifest(), spec: { template: { spec: { containers: [{ name: 'a' }, { name: 'a' }] } } } }, /duplicate element \[name="a"\]/],
      [{ ...manifest(), spec: { template: { spec: { containers: [{ image: 'x' }] } } } }, /element has no key field "name"/],
    ];
    for (const [cfg, re] of refusals) assert.throws(() => apply(undefined, cfg), (e: unknown) => e instanceof BadRequestError && re.test(e.message), String(re));
    const live = stored(apply(undefined, manifest(), 'kubectl', false, T0));
    assert.throws(() => apply(live, { ...manifest(), metadata: { name: 'web', namespace: 'other' } }), /namespace of the applied configuration \(other\)/);
  });
});

describe('field managers of other writes (recordUpdate)', () => {
  it('create records every field for its manager; an edit moves the changed fields to the editor', () => {
    const created = recordUpdate(undefined, stored(manifest() as Obj), 'kubectl-create', T0);
    assert.equal(created.metadata.managedFields!.length, 1);
    const f = created.metadata.managedFields![0]!;
    assert.equal(f.operation, 'Update');
    assert.deepEqual(Object.keys(f.fieldsV1), ['f:metadata', 'f:spec']);
    assert.deepEqual((f.fieldsV1['f:metadata'] as Record<string, unknown>)['f:labels'], { '.': {}, 'f:app': {} });
    const edited = recordUpdate(created, applyPatch(created, { spec: { replicas: 9 } }, 'merge', 'Deployment'), 'kubectl-edit', T1);
    const [c, e] = edited.metadata.managedFields!;
    assert.equal((c!.fieldsV1['f:spec'] as Record<string, unknown>)['f:replicas'], undefined);
    assert.deepEqual(e, { manager: 'kubectl-edit', operation: 'Update', apiVersion: 'apps/v1', time: T1, fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:replicas': {} } } });
  });

  it('a write that changes nothing adds no entry; a removed field is owned by nobody; [] clears', () => {
    const created = recordUpdate(undefined, stored(manifest() as Obj), 'kubectl-create', T0);
    assert.deepEqual(recordUpdate(created, structuredClone(created), 'other', T1).metadata.managedFields, created.metadata.managedFields);
    const unlabelled = recordUpdate(created, applyPatch(created, { metadata: { labels: null } }, 'merge', 'Deployment'), 'kubectl-label', T1);
    assert.equal((unlabelled.metadata.managedFields![0]!.fieldsV1['f:metadata'] as unknown), undefined);
    const cleared = recordUpdate(created, { ...structuredClone(created), metadata: { ...created.metadata, managedFields: [] } }, 'x', T1);
    assert.equal(cleared.metadata.managedFields, undefined);
  });

  it('a /status write records status fields under its own entry (subresource status); spec ownership is untouched', () => {
    const created = recordUpdate(undefined, stored(manifest() as Obj), 'kubectl-create', T0);
    const next = recordUpdate(created, { ...structuredClone(created), status: { replicas: 2, readyReplicas: 2 } }, 'drover-controller', T1, 'status');
    const entry = next.metadata.managedFields!.find((e) => e.manager === 'drover-controller')!;
    assert.deepEqual(entry, { manager: 'drover-controller', operation: 'Update', apiVersion: 'apps/v1', time: T1, fieldsType: 'FieldsV1', fieldsV1: { 'f:status': { 'f:readyReplicas': {} } }, subresource: 'status' });
    assert.deepEqual(next.metadata.managedFields![0], created.metadata.managedFields![0]);
  });

  it('malformed managedFields in a PUT body are refused, naming the entry', () => {
    const created = recordUpdate(undefined, stored(manifest() as Obj), 'kubectl-create', T0);
    assert.throws(() => recordUpdate(created, { ...created, metadata: { ...created.metadata, managedFields: [{ manager: 'x' }] as never } }, 'y', T1), /metadata\.managedFields\[0\]: needs a manager and an operation/);
    assert.throws(() => recordUpdate(created, { ...created, metadata: { ...created.metadata, managedFields: [{ manager: 'x', operation: 'Update', fieldsV1: { spec: {} } }] as never } }, 'y', T1), /fieldsV1 key "spec"/);
  });

  it('the manager name: ?fieldManager, else the User-Agent up to "/"; apply requires one', () => {
    assert.equal(fieldManagerOf(new URLSearchParams('fieldManager=kubectl-edit'), 'kubectl/v1.32.0 (linux/amd64)'), 'kubectl-edit');
    assert.equal(fieldManagerOf(new URLSearchParams(''), 'kubectl/v1.32.0 (linux/amd64) kubernetes/abc'), 'kubectl');
    assert.equal(fieldManagerOf(new URLSearchParams(''), undefined), 'unknown');
    assert.throws(() => requireFieldManager(new URLSearchParams('')), /fieldManager is required/);
    assert.throws(() => fieldManagerOf(new URLSearchParams(`fieldManager=${'x'.repeat(129)}`)), /at most 128/);
    assert.throws(() => fieldManagerOf(new URLSearchParams('fieldManager=a%0Ab')), /control characters/);
  });
});
