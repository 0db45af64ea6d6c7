import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KINDS } from '../../src/api/kinds.js';
import { definitionName, openApiDocument, openApiV2, openApiV3, openApiV3Index } from '../../server/api/openapi.js';

type Schema = Record<string, unknown> & { properties?: Record<string, Schema>; items?: Schema };

test('every kind has a definition in its group version\'s v3 document and in v2, marked with its group-version-kind', () => {
  const v2 = openApiV2(KINDS, 'v1.0.0') as { definitions: Record<string, Schema> };
  for (const k of KINDS) {
    const doc = openApiV3(KINDS, k.groupVersion, 'v1.0.0') as { components: { schemas: Record<string, Schema> } };
    const s = doc.components.schemas[definitionName(k)];
    assert.ok(s, `${k.kind} missing from /openapi/v3 ${k.groupVersion}`);
    const [group, version] = k.groupVersion.includes('/') ? k.groupVersion.split('/') : ['', k.groupVersion];
    assert.deepEqual(s['x-kubernetes-group-version-kind'], [{ group, version, kind: k.kind }]);
    assert.ok(s.properties?.metadata, `${k.kind} has metadata`);
    assert.ok(v2.definitions[definitionName(k)], `${k.kind} missing from /openapi/v2`);
  }
});

test('each kind has a PATCH operation with fieldValidation (kubectl apply then lets the server validate)', () => {
  for (const k of KINDS) {
    const doc = openApiV3(KINDS, k.groupVersion, 'v') as { paths: Record<string, { patch?: { 'x-kubernetes-group-version-kind': { kind: string }; parameters: Array<{ name: string; in: string }> } }> };
    const patches = Object.values(doc.paths).flatMap((p) => (p.patch && p.patch['x-kubernetes-group-version-kind'].kind === k.kind ? [p.patch] : []));
    assert.equal(patches.length, 1, k.kind);
    assert.ok(patches[0]!.parameters.some((p) => p.name === 'fieldValidation' && p.in === 'query'));
  }
});

test('lists carry Kubernetes\' merge keys, so kubectl apply merges containers by name and ports by containerPort', () => {
  const doc = openApiV3(KINDS, 'apps/v1', 'v') as { components: { schemas: Record<string, Schema> } };
  const d = doc.components.schemas['io.k8s.api.apps.v1.Deployment']!;
  const podSpec = d.properties!.spec!.properties!.template!.properties!.spec!;
  const containers = podSpec.properties!.containers!;
  assert.equal(containers['x-kubernetes-patch-merge-key'], 'name');
  assert.equal(containers['x-kubernetes-patch-strategy'], 'merge');
  assert.deepEqual(containers['x-kubernetes-list-map-keys'], ['name']);
  assert.equal(containers.items!.properties!.ports!['x-kubernetes-patch-merge-key'], 'containerPort');
  assert.equal(containers.items!.properties!.volumeMounts!['x-kubernetes-patch-merge-key'], 'mountPath');
});

test('the v3 index points at a document for each group version; unknown paths give nothing', () => {
  const index = openApiV3Index(KINDS, 'v') as { paths: Record<string, { serverRelativeURL: string }> };
  for (const gv of new Set(KINDS.map((k) => k.groupVersion))) {
    const key = gv === 'v1' ? 'api/v1' : `apis/${gv}`;
    assert.match(index.paths[key]!.serverRelativeURL, new RegExp(`^/openapi/v3/${key}\\?hash=[0-9A-F]+$`));
    assert.ok(openApiDocument(KINDS, ['openapi', 'v3', ...key.split('/')], 'v'));
  }
  assert.equal(openApiDocument(KINDS, ['openapi', 'v3', 'apis', 'nosuch.io', 'v1'], 'v'), undefined);
  assert.equal(openApiDocument(KINDS, ['openapi', 'v4'], 'v'), undefined);
});
