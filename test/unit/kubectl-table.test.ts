import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KINDS, kindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { tableParts } from '../../src/cli/output.js';
import { columnDefinitions, parseIncludeObject, tableVersion, toTable } from '../../server/api/table.js';

const KUBECTL_ACCEPT = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';

test('the Table is asked for only by the Accept kubectl get sends (v1 first), not by plain JSON clients', () => {
  assert.equal(tableVersion(KUBECTL_ACCEPT), 'v1');
  assert.equal(tableVersion('application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json'), 'v1beta1');
  assert.equal(tableVersion('application/json'), undefined);
  assert.equal(tableVersion(undefined), undefined);
  assert.equal(tableVersion('application/json;as=Table;v=v1;g=other.io'), undefined, 'another group\'s Table is not ours');
  assert.equal(tableVersion('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'), undefined);
});

test('every kind has drover\'s own columns, wide ones at priority 1 (what -o wide adds)', () => {
  for (const k of KINDS) {
    const defs = columnDefinitions(k);
    const base = tableParts(k, [], {}).headers;
    const wide = tableParts(k, [], { wide: true }).headers;
    // kubectl prints the names upper-cased: they must come back as drover's headers.
    assert.deepEqual(defs.map((d) => d.name.toUpperCase()), wide, k.kind);
    assert.deepEqual(defs.filter((d) => d.priority === 0).map((d) => d.name.toUpperCase()), base, k.kind);
  }
});

const pod = (name: string, ts: string): ApiObject => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app: 'web' }, creationTimestamp: ts, resourceVersion: '7' },
  spec: { containers: [{ name: 'c', image: 'busybox' }], nodeName: 'edge-1' },
  status: { phase: 'Running', hostIP: '10.0.0.1', containerStatuses: [{ name: 'c', ready: true, restartCount: 2, state: 'running' }] },
});

test('rows carry the cells drover prints and the object as asked (metadata by default, whole, or none)', () => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  const p = pod('web', '2026-01-01T00:00:00Z');
  const t = toTable(kindInfo('Pod'), [p], { now, listMeta: { resourceVersion: '9' } }) as { rows: Array<{ cells: string[]; object?: { kind: string; metadata: unknown } }>; metadata: unknown; kind: string; apiVersion: string };
  assert.equal(t.kind, 'Table');
  assert.equal(t.apiVersion, 'meta.k8s.io/v1');
  assert.deepEqual(t.metadata, { resourceVersion: '9' });
  assert.deepEqual(t.rows[0]!.cells.slice(0, 5), ['web', '1/1', 'Running', '2', '10m']);
  assert.deepEqual(t.rows[0]!.cells, tableParts(kindInfo('Pod'), [p], { wide: true, now }).rows[0], 'the same cells as drover get -o wide');
  assert.equal(t.rows[0]!.cells.at(-1), 'edge-1');
  assert.equal(t.rows[0]!.object!.kind, 'PartialObjectMetadata');
  assert.deepEqual(t.rows[0]!.object!.metadata, p.metadata, 'labels and namespace for --show-labels and -A');
  const whole = toTable(kindInfo('Pod'), [p], { includeObject: 'Object', now }) as { rows: Array<{ object: unknown }> };
  assert.deepEqual(whole.rows[0]!.object, p);
  const none = toTable(kindInfo('Pod'), [p], { includeObject: 'None', now }) as { rows: Array<{ object?: unknown }> };
  assert.equal(none.rows[0]!.object, undefined);
});

test('events keep each row with its own object (drover sorts events by time when it prints them)', () => {
  const ev = (name: string, t: string): ApiObject => ({ apiVersion: 'v1', kind: 'Event', metadata: { name, namespace: 'default' }, involvedObject: { kind: 'Pod', name }, reason: 'R', message: name, type: 'Normal', lastTimestamp: t });
  const t = toTable(kindInfo('Event'), [ev('late', '2026-01-01T00:05:00Z'), ev('early', '2026-01-01T00:01:00Z')]) as { rows: Array<{ cells: string[]; object: { metadata: { name: string } } }> };
  for (const row of t.rows) assert.equal(row.cells[4], row.object.metadata.name);
});

test('includeObject other than None, Metadata, Object is refused naming the parameter', () => {
  assert.equal(parseIncludeObject(null), 'Metadata');
  assert.throws(() => parseIncludeObject('Everything'), /includeObject/);
});
