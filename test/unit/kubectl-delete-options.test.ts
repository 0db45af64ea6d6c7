import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deleteOptionsOf, protobufDeleteOptions } from '../../server/api/delete-options.js';

// Protobuf by hand: key = (field << 3) | wire type; length-delimited fields are (key, length, bytes).
const ld = (field: number, bytes: Buffer): Buffer => Buffer.concat([Buffer.from([(field << 3) | 2, bytes.length]), bytes]);
const str = (field: number, s: string): Buffer => ld(field, Buffer.from(s));
/** k8s envelope → runtime.Unknown{typeMeta{apiVersion v1, kind DeleteOptions}, raw: DeleteOptions}. */
const envelope = (options: Buffer): Buffer =>
  Buffer.concat([Buffer.from('k8s\0', 'latin1'), ld(1, Buffer.concat([str(1, 'v1'), str(2, 'DeleteOptions')])), ld(2, options)]);

test('kubectl drain\'s protobuf DeleteOptions: a dry run is seen (nothing is deleted), propagationPolicy is skipped', () => {
  const grace = Buffer.from([1 << 3, 0]); // gracePeriodSeconds = 0 (varint)
  assert.deepEqual(protobufDeleteOptions(envelope(Buffer.concat([grace, str(4, 'Background'), str(5, 'All')]))), { dryRun: true });
  assert.deepEqual(protobufDeleteOptions(envelope(Buffer.concat([grace, str(4, 'Background')]))), { dryRun: false });
});

test('protobuf preconditions are read; a dry run of another kind or a broken body is a 400, not a delete', () => {
  const pre = ld(2, Buffer.concat([str(1, 'uid-1'), str(2, '42')]));
  assert.deepEqual(protobufDeleteOptions(envelope(pre)), { dryRun: false, preconditions: { uid: 'uid-1', resourceVersion: '42' } });
  assert.throws(() => protobufDeleteOptions(envelope(str(5, 'Some'))), /dryRun/);
  assert.throws(() => protobufDeleteOptions(Buffer.from('not protobuf')), /envelope/);
  assert.throws(() => protobufDeleteOptions(Buffer.concat([Buffer.from('k8s\0', 'latin1'), Buffer.from([0x12, 0x7f, 0x01])])), /truncated/);
});

test('JSON DeleteOptions (kubectl delete): dryRun All, preconditions, an empty body', () => {
  const json = (o: unknown) => Buffer.from(JSON.stringify(o));
  assert.deepEqual(deleteOptionsOf(json({ kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background', dryRun: ['All'] }), 'application/json'), { dryRun: true });
  assert.deepEqual(deleteOptionsOf(Buffer.alloc(0), undefined), { dryRun: false });
  assert.deepEqual(deleteOptionsOf(json({ preconditions: { resourceVersion: '7' } }), 'application/json'), { dryRun: false, preconditions: { uid: undefined, resourceVersion: '7' } });
  assert.throws(() => deleteOptionsOf(json({ dryRun: 'All' }), 'application/json'), /dryRun/);
  assert.throws(() => deleteOptionsOf(Buffer.from('{'), 'application/json'), /DeleteOptions/);
});
