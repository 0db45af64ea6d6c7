import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KINDS } from '../../src/api/kinds.js';
import { apiGroupList, apiResourceList, discoveryDocument } from '../../server/api/discovery.js';

type Resource = { name: string; kind: string; namespaced: boolean; verbs: string[]; shortNames?: string[]; singularName: string };
const resources = (gv: string, opts = {}) => (apiResourceList(KINDS, gv, opts)?.resources ?? []) as Resource[];

test('every kind of the kind table is discoverable in its group version, with its short names and the verbs kubectl needs', () => {
  for (const k of KINDS) {
    const r = resources(k.groupVersion).find((x) => x.name === k.plural);
    assert.ok(r, `${k.plural} missing from ${k.groupVersion}`);
    assert.equal(r.kind, k.kind);
    assert.equal(r.singularName, k.singular);
    assert.equal(r.namespaced, k.namespaced);
    assert.deepEqual(r.shortNames ?? [], k.shortNames);
    for (const v of ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']) assert.ok(r.verbs.includes(v), `${k.plural} lacks ${v}`);
  }
});

test('every named group of the kind table is in /apis once, with metrics.k8s.io only when metrics are served', () => {
  const names = (opts = {}) => (apiGroupList(KINDS, opts).groups as Array<{ name: string; preferredVersion: { groupVersion: string } }>).map((g) => g.preferredVersion.groupVersion);
  const expected = [...new Set(KINDS.map((k) => k.groupVersion).filter((gv) => gv.includes('/')))];
  assert.deepEqual(names(), expected);
  assert.deepEqual(names({ metrics: true }), [...expected, 'metrics.k8s.io/v1beta1']);
  assert.ok(!names().includes('v1'), 'the core group is /api, not /apis');
});

test('subresources follow their kind, and only kinds drover has get them', () => {
  const opts = { subresources: { 'pods/log': { verbs: ['get'] }, 'deployments/scale': { verbs: ['get', 'update', 'patch'], kind: 'Scale', group: 'autoscaling', version: 'v1' }, 'nosuch/status': { verbs: ['get'] } } };
  const core = resources('v1', opts).map((r) => r.name);
  assert.equal(core[core.indexOf('pods') + 1], 'pods/log');
  const apps = resources('apps/v1', opts);
  assert.equal(apps.find((r) => r.name === 'deployments/scale')?.kind, 'Scale');
  assert.ok(![...core, ...apps.map((r) => r.name)].includes('nosuch/status'));
});

test('paths that are not discovery documents, or name a group drover lacks, give nothing (a 404, not an empty list)', () => {
  assert.equal(discoveryDocument(KINDS, ['api', 'v2'], 'h'), undefined);
  assert.equal(discoveryDocument(KINDS, ['apis', 'nosuch.io', 'v1'], 'h'), undefined);
  assert.equal(discoveryDocument(KINDS, ['apis', 'nosuch.io'], 'h'), undefined);
  assert.equal(discoveryDocument(KINDS, ['apis', 'metrics.k8s.io', 'v1beta1'], 'h'), undefined, 'metrics only when served');
  assert.equal(discoveryDocument(KINDS, ['api', 'v1', 'pods'], 'h'), undefined);
  assert.deepEqual(discoveryDocument(KINDS, ['api'], 'h:1')?.versions, ['v1']);
});
