/**
 * Validation sees what a user sent before anything else does: a member named "__proto__" stays a member (refused
 * as an unknown field, never a way to give the object inherited fields a check would miss), and a YAML alias that
 * makes a cycle is a validation error naming the field, not a crash.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseObject } from '../../src/api/validate.js';
import { validateSources } from '../../src/cli/manifests.js';
import { ValidationError } from '../../src/util/errors.js';

test('a "__proto__" member in a body is an unknown field; its contents are not taken as the object\'s', () => {
  const body = JSON.parse(
    '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"__proto__":{"hostNetwork":true},"containers":[{"name":"c","image":"busybox"}]}}',
  ) as unknown;
  assert.throws(
    () => parseObject(body),
    (err: unknown) => err instanceof ValidationError && err.causes.some((c) => c.field === 'spec.__proto__' && /unknown field/.test(c.message)),
  );
  const kindFromProto = JSON.parse('{"__proto__":{"apiVersion":"v1","kind":"Pod"},"metadata":{"name":"p"},"spec":{"containers":[]}}') as unknown;
  assert.throws(() => parseObject(kindFromProto), (err: unknown) => err instanceof ValidationError && err.causes.some((c) => c.field === 'kind' && c.message === 'required'));
});

test('a YAML manifest whose alias makes a cycle is refused with the field named', () => {
  const text = 'apiVersion: v1\nkind: ConfigMap\nmetadata: &m\n  name: cm\n  labels:\n    x: *m\n';
  assert.throws(() => validateSources([{ name: 'manifest', text }]), /metadata\.labels\.x: expected a string, got an object/);
});
