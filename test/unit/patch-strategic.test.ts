/**
 * Strategic merge patch as Kubernetes' API server applies it. The first group are cases of
 * kubernetes/apimachinery pkg/util/strategicpatch/patch_test.go (strategicMergePatchRawTestCases and
 * createStrategicMergePatchTestCaseData; named by their Description there) on its MergeItem test struct;
 * the others are the patches kubectl itself sends for drover's kinds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { BadRequestError } from '../../src/util/errors.js';
import { kindMerge, patchMetaPaths, type FieldMerge } from '../../server/api/patch-meta.js';
import { patchObject } from '../../server/api/patch.js';
import { strategicMerge } from '../../server/api/strategic-merge.js';

// MergeItem of patch_test.go, by its struct tags.
const item: FieldMerge = { fields: {} };
Object.assign(item.fields!, {
  mergingList: { strategy: 'merge', mergeKey: 'name', items: item },
  nonMergingList: { items: item },
  mergingIntList: { strategy: 'merge' },
  retainKeysMap: { strategy: 'retainKeys', fields: { mergingList: { strategy: 'merge', mergeKey: 'name', items: item }, mergingIntList: { strategy: 'merge' } } },
  retainKeysMergingList: { strategy: 'merge,retainKeys', mergeKey: 'name', items: item },
});

const SMP = 'application/strategic-merge-patch+json';

describe('strategic merge: cases of Kubernetes strategicpatch/patch_test.go', () => {
  const cases: Array<[string, unknown, unknown, unknown]> = [
    ['delete map from merging list (three-way)', { mergingList: [{ name: 1 }, { name: 2, other: 'b' }] }, { '$setElementOrder/mergingList': [{ name: 2 }], mergingList: [{ name: 1, $patch: 'delete' }] }, { mergingList: [{ name: 2, other: 'b' }] }],
    [
      'delete an item in a list and preserve order (three-way)',
      { mergingList: [{ name: 1, other: 'a' }, { name: 2, value: 2, other: 'b' }, { name: 3, value: 3 }] },
      { '$setElementOrder/mergingList': [{ name: 2 }, { name: 1 }], mergingList: [{ name: 3, $patch: 'delete' }] },
      { mergingList: [{ name: 2, value: 2, other: 'b' }, { name: 1, other: 'a' }] },
    ],
    [
      'change an item in a list and preserve order (three-way)',
      { mergingList: [{ name: 1, other: 'a' }, { name: 2, value: 2, other: 'b' }, { name: 3, value: 3 }] },
      { '$setElementOrder/mergingList': [{ name: 2 }, { name: 3 }, { name: 1 }], mergingList: [{ name: 3, value: 'x' }] },
      { mergingList: [{ name: 2, value: 2, other: 'b' }, { name: 3, value: 'x' }, { name: 1, other: 'a' }] },
    ],
    ['$deleteFromPrimitiveList should delete item from a list with merge patch strategy', { mergingIntList: [1, 2, 3] }, { '$deleteFromPrimitiveList/mergingIntList': [2] }, { mergingIntList: [1, 3] }],
    ['$deleteFromPrimitiveList should delete item from a list without merge patch strategy', { nonMergingIntList: [1, 2, 3] }, { '$deleteFromPrimitiveList/nonMergingIntList': [2] }, { nonMergingIntList: [1, 3] }],
    ['$deleteFromPrimitiveList of nonexistent item in primitive list should not add the item to the list', { mergingIntList: [1, 2] }, { '$deleteFromPrimitiveList/mergingIntList': [3] }, { mergingIntList: [1, 2] }],
    ['$deleteFromPrimitiveList on nonexistent primitive list should not add the primitive list', { foo: 'bar' }, { '$deleteFromPrimitiveList/mergingIntList': [3] }, { foo: 'bar' }],
    ['retainKeys map adds a field and clear a field (three-way)', { retainKeysMap: { name: 'foo', other: 'a' } }, { retainKeysMap: { $retainKeys: ['name', 'value'], value: 'bar' } }, { retainKeysMap: { name: 'foo', value: 'bar' } }],
    ['replace non merging list nested in merging list (three-way)', { mergingList: [{ name: 1, other: 'a', nonMergingList: [{ name: 1 }, { name: 2, value: 2 }] }, { name: 2 }] }, { '$setElementOrder/mergingList': [{ name: 1 }, { name: 2 }], mergingList: [{ name: 1, nonMergingList: [{ name: 1, value: 1 }] }] }, { mergingList: [{ name: 1, other: 'a', nonMergingList: [{ name: 1, value: 1 }] }, { name: 2 }] }],
    ['delete items in lists of scalars (three-way)', { mergingIntList: [1, 2, 3] }, { '$setElementOrder/mergingIntList': [1], '$deleteFromPrimitiveList/mergingIntList': [2, 3] }, { mergingIntList: [1] }],
    ['replace list with $patch: replace', { mergingList: [{ name: 1, value: 'a' }, { name: 2 }] }, { mergingList: [{ name: 3 }, { $patch: 'replace' }] }, { mergingList: [{ name: 3 }] }],
    ['nil value deletes a field (createStrategicMergePatchTestCaseData "delete field from map")', { name: 1, value: 1, other: 'a' }, { value: null }, { name: 1, other: 'a' }],
  ];
  for (const [name, current, patch, want] of cases) {
    it(name, () => {
      assert.deepEqual(strategicMerge(current, patch, item), want);
    });
  }

  it('retainKeys: a patch that sets a field its $retainKeys does not list is refused (ErrBadPatchFormatForRetainKeys)', () => {
    assert.throws(() => strategicMerge({ retainKeysMap: { name: 'a' } }, { retainKeysMap: { $retainKeys: ['name'], value: 'x' } }, item), (e: unknown) => e instanceof BadRequestError && /retainKeysMap\.value/.test(e.message));
  });
  it('an element of a merged list without its merge key is refused, naming the list', () => {
    assert.throws(() => strategicMerge({ mergingList: [{ name: 1 }] }, { mergingList: [{ value: 2 }] }, item), (e: unknown) => e instanceof BadRequestError && /mergingList\[0\].*merge key "name"/.test(e.message));
  });
  it('an unknown $patch directive is refused', () => {
    assert.throws(() => strategicMerge({ mergingList: [{ name: 1 }] }, { mergingList: [{ name: 1, $patch: 'explode' }] }, item), /unknown \$patch directive "explode"/);
  });
});

function deployment(): ApiObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default', labels: { app: 'web' }, annotations: { 'deployment.kubernetes.io/revision': '2' }, resourceVersion: '7' },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          containers: [
            { name: 'web', image: 'nginx:1.25', ports: [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 443, protocol: 'TCP' }], env: [{ name: 'A', value: '1' }, { name: 'B', value: '2' }], volumeMounts: [{ name: 'data', mountPath: '/data' }] },
            { name: 'sidecar', image: 'busybox', command: ['sh', '-c', 'sleep 1d'] },
          ],
          volumes: [{ name: 'data', emptyDir: {} }],
          tolerations: [{ key: 'edge', operator: 'Exists' }],
        },
      },
    },
  };
}

const spec = (o: ApiObject) => (o.spec as { template: { spec: { containers: Array<Record<string, unknown>>; tolerations?: unknown[]; volumes?: unknown[] } } }).template.spec;

describe('strategic merge on drover kinds (what kubectl sends)', () => {
  it('containers merge by name: changing one image keeps the other container and the untouched fields', () => {
    const out = patchObject(deployment(), JSON.stringify({ spec: { template: { spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } } }), SMP);
    const cs = spec(out).containers;
    assert.deepEqual(cs.map((c) => [c.name, c.image]), [['web', 'nginx:1.27'], ['sidecar', 'busybox']]);
    assert.equal((cs[0]!.ports as unknown[]).length, 2);
    assert.equal((cs[0]!.env as unknown[]).length, 2);
  });

  it('a JSON merge patch of the same body replaces the whole list (the difference users notice)', () => {
    const out = patchObject(deployment(), JSON.stringify({ spec: { template: { spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } } }), 'application/merge-patch+json');
    assert.deepEqual(spec(out).containers, [{ name: 'web', image: 'nginx:1.27' }]);
  });

  it('env: $patch: delete removes one variable by name, a new one is added', () => {
    const patch = { spec: { template: { spec: { containers: [{ name: 'web', env: [{ name: 'A', $patch: 'delete' }, { name: 'C', value: '3' }] }] } } } };
    const out = patchObject(deployment(), JSON.stringify(patch), SMP);
    // Kubernetes' normalizeElementOrder puts an element the live list does not know before the live
    // ones; kubectl sends $setElementOrder/env whenever the order matters (next case).
    assert.deepEqual(spec(out).containers[0]!.env, [{ name: 'C', value: '3' }, { name: 'B', value: '2' }]);
    const ordered = { spec: { template: { spec: { containers: [{ name: 'web', '$setElementOrder/env': [{ name: 'B' }, { name: 'C' }], env: [{ name: 'A', $patch: 'delete' }, { name: 'C', value: '3' }] }] } } } };
    assert.deepEqual(spec(patchObject(deployment(), JSON.stringify(ordered), SMP)).containers[0]!.env, [{ name: 'B', value: '2' }, { name: 'C', value: '3' }]);
  });

  it('ports merge by containerPort; volumeMounts by mountPath', () => {
    const patch = { spec: { template: { spec: { containers: [{ name: 'web', ports: [{ containerPort: 443, name: 'https' }, { containerPort: 8080 }], volumeMounts: [{ mountPath: '/data', readOnly: true }] }] } } } };
    const c = spec(patchObject(deployment(), JSON.stringify(patch), SMP)).containers[0]!;
    assert.deepEqual(c.ports, [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 443, protocol: 'TCP', name: 'https' }, { containerPort: 8080 }]);
    assert.deepEqual(c.volumeMounts, [{ name: 'data', mountPath: '/data', readOnly: true }]);
  });

  it('tolerations and command have no merge key: replaced whole', () => {
    const patch = { spec: { template: { spec: { tolerations: [{ key: 'gpu', operator: 'Exists' }], containers: [{ name: 'sidecar', command: ['true'] }] } } } };
    const out = patchObject(deployment(), JSON.stringify(patch), SMP);
    assert.deepEqual(spec(out).tolerations, [{ key: 'gpu', operator: 'Exists' }]);
    assert.deepEqual(spec(out).containers[1]!.command, ['true']);
  });

  it('$setElementOrder/containers (kubectl apply) reorders the merged list', () => {
    const patch = { spec: { template: { spec: { '$setElementOrder/containers': [{ name: 'sidecar' }, { name: 'web' }], containers: [{ name: 'web', image: 'nginx:2' }] } } } };
    const out = patchObject(deployment(), JSON.stringify(patch), SMP);
    assert.deepEqual(spec(out).containers.map((c) => c.name), ['sidecar', 'web']);
    assert.equal(spec(out).containers[1]!.image, 'nginx:2');
  });

  it('kubectl rollout restart: a template annotation is added, nothing else moves', () => {
    const before = deployment();
    const patch = `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-28T00:30:00Z"}}}}}`;
    const out = patchObject(before, patch, SMP);
    const tmpl = (out.spec as { template: { metadata: Record<string, unknown> } }).template;
    assert.deepEqual(tmpl.metadata, { labels: { app: 'web' }, annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-11-28T00:30:00Z' } });
    assert.deepEqual(spec(out), spec(before));
  });

  it('kubectl rollout undo (a JSON patch, polymorphichelpers/rollback.go) and an SMP $patch: replace both swap the whole template', () => {
    const old = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.24' }] } };
    const patch = [{ op: 'replace', path: '/spec/template', value: old }, { op: 'replace', path: '/metadata/annotations', value: { 'deployment.kubernetes.io/revision': '1' } }];
    const viaJson = patchObject(deployment(), JSON.stringify(patch), 'application/json-patch+json');
    assert.deepEqual((viaJson.spec as { template: unknown }).template, old);
    const viaSmp = patchObject(deployment(), JSON.stringify({ spec: { template: { $patch: 'replace', ...old } } }), SMP);
    assert.deepEqual((viaSmp.spec as { template: unknown }).template, old);
  });

  it('null removes a label; a $patch: delete map removes the field', () => {
    const out = patchObject(deployment(), JSON.stringify({ metadata: { labels: { app: null } }, spec: { template: { spec: { volumes: [{ name: 'data', $patch: 'delete' }], tolerations: null } } } }), SMP);
    assert.deepEqual(out.metadata.labels, {});
    assert.deepEqual(spec(out).volumes, []);
    assert.equal(spec(out).tolerations, undefined);
  });

  it('kubectl apply switching RollingUpdate → Recreate: $retainKeys on spec.strategy clears rollingUpdate', () => {
    const d = deployment();
    (d.spec as Record<string, unknown>).strategy = { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } };
    const out = patchObject(d, '{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"}}}', SMP);
    assert.deepEqual((out.spec as Record<string, unknown>).strategy, { type: 'Recreate' });
    assert.throws(() => patchObject(d, '{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":{"maxSurge":1}}}}', SMP), /spec\.strategy\.rollingUpdate: the patch sets a field that its \$retainKeys does not list/);
  });

  it('the stored object is never modified by a patch', () => {
    const before = deployment();
    const copy = structuredClone(before);
    patchObject(before, JSON.stringify({ spec: { template: { spec: { containers: [{ name: 'web', $patch: 'delete' }] } } } }), SMP);
    assert.deepEqual(before, copy);
  });

  it('the merge-key table names what OpenAPI must mark (x-kubernetes-patch-merge-key)', () => {
    const meta = patchMetaPaths('Deployment');
    assert.deepEqual(meta['spec.template.spec.containers'], { strategy: 'merge', mergeKey: 'name' });
    assert.deepEqual(meta['spec.template.spec.containers[].ports'], { strategy: 'merge', mergeKey: 'containerPort' });
    assert.deepEqual(meta['spec.template.spec.volumes'], { strategy: 'merge,retainKeys', mergeKey: 'name' });
    assert.deepEqual(meta['status.conditions'], { strategy: 'merge', mergeKey: 'type' });
    assert.equal(meta['spec.template.spec.tolerations'], undefined);
    assert.deepEqual(patchMetaPaths('Pod')['spec.containers[].env'], { strategy: 'merge', mergeKey: 'name' });
    assert.equal(kindMerge('ConfigMap').fields?.spec, undefined);
  });
});
