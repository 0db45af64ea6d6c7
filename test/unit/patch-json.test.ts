/**
 * JSON patch (RFC 6902, examples of its Appendix A), JSON merge patch (RFC 7386, its Appendix A table),
 * and what patchObject refuses: unknown media types, bodies that are not JSON, patches that rename or
 * move the object.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ApiObject } from '../../src/api/meta.js';
import { BadRequestError } from '../../src/util/errors.js';
import { applyJsonPatch, applyMergePatch, JsonPatchError } from '../../server/api/json-patch.js';
import { patchObject, patchTypeOf } from '../../server/api/patch.js';
import { UnsupportedMediaTypeError } from '../../server/api/respond.js';

const JSON_PATCH = 'application/json-patch+json';
const MERGE = 'application/merge-patch+json';

describe('JSON patch (RFC 6902 Appendix A)', () => {
  const ok: Array<[string, unknown, unknown[], unknown]> = [
    ['A.1 adding an object member', { foo: 'bar' }, [{ op: 'add', path: '/baz', value: 'qux' }], { foo: 'bar', baz: 'qux' }],
    ['A.2 adding an array element', { foo: ['bar', 'baz'] }, [{ op: 'add', path: '/foo/1', value: 'qux' }], { foo: ['bar', 'qux', 'baz'] }],
    ['A.3 removing an object member', { baz: 'qux', foo: 'bar' }, [{ op: 'remove', path: '/baz' }], { foo: 'bar' }],
    ['A.4 removing an array element', { foo: ['bar', 'qux', 'baz'] }, [{ op: 'remove', path: '/foo/1' }], { foo: ['bar', 'baz'] }],
    ['A.5 replacing a value', { baz: 'qux', foo: 'bar' }, [{ op: 'replace', path: '/baz', value: 'boo' }], { baz: 'boo', foo: 'bar' }],
    ['A.6 moving a value', { foo: { bar: 'baz', waldo: 'fred' }, qux: { corge: 'grault' } }, [{ op: 'move', from: '/foo/waldo', path: '/qux/thud' }], { foo: { bar: 'baz' }, qux: { corge: 'grault', thud: 'fred' } }],
    ['A.7 moving an array element', { foo: ['all', 'grass', 'cows', 'eat'] }, [{ op: 'move', from: '/foo/1', path: '/foo/3' }], { foo: ['all', 'cows', 'eat', 'grass'] }],
    ['A.8 testing a value: success', { baz: 'qux', foo: ['a', 2, 'c'] }, [{ op: 'test', path: '/baz', value: 'qux' }, { op: 'test', path: '/foo/1', value: 2 }], { baz: 'qux', foo: ['a', 2, 'c'] }],
    ['A.10 adding a nested member object', { foo: 'bar' }, [{ op: 'add', path: '/child', value: { grandchild: {} } }], { foo: 'bar', child: { grandchild: {} } }],
    ['A.14 ~ escape ordering', { '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: 10 }], { '/': 9, '~1': 10 }],
    ['A.16 adding an array value', { foo: ['bar'] }, [{ op: 'add', path: '/foo/-', value: ['abc', 'def'] }], { foo: ['bar', ['abc', 'def']] }],
    ['copy', { a: { b: 1 } }, [{ op: 'copy', from: '/a', path: '/c' }], { a: { b: 1 }, c: { b: 1 } }],
  ];
  for (const [name, doc, patch, want] of ok) it(name, () => assert.deepEqual(applyJsonPatch(doc, patch), want));

  const failing: Array<[string, unknown, unknown[], RegExp]> = [
    ['A.9 testing a value: error', { baz: 'qux' }, [{ op: 'test', path: '/baz', value: 'bar' }], /op 0 \(test \/baz\): test failed: the value is "qux", not "bar"/],
    ['A.12 adding to a nonexistent target', { foo: 'bar' }, [{ op: 'add', path: '/baz/bat', value: 'qux' }], /op 0 \(add \/baz\/bat\): the path does not exist/],
    ['A.15 comparing strings and numbers', { '/': 9, '~1': 10 }, [{ op: 'test', path: '/~01', value: '10' }], /test failed/],
    ['remove of a missing member', { a: 1 }, [{ op: 'remove', path: '/b' }], /op 0 \(remove \/b\): the path does not exist/],
    ['replace of a missing member', { a: 1 }, [{ op: 'replace', path: '/b', value: 2 }], /op 0 \(replace \/b\)/],
    ['array index out of range', { a: [1] }, [{ op: 'add', path: '/a/3', value: 2 }], /index 3 is out of range/],
    ['leading-zero index (RFC 6901)', { a: [1, 2] }, [{ op: 'remove', path: '/a/01' }], /"01" is not an array index/],
    ['a move into its own child', { a: { b: {} } }, [{ op: 'move', from: '/a', path: '/a/b/c' }], /cannot be moved into its own child/],
    ['an unknown op', { a: 1 }, [{ op: 'frob', path: '/a' }], /unknown op "frob"/],
    ['a missing value', { a: 1 }, [{ op: 'add', path: '/b' }], /missing "value"/],
    ['a path that is not a pointer', { a: 1 }, [{ op: 'remove', path: 'a' }], /is not a JSON pointer/],
  ];
  for (const [name, doc, patch, re] of failing) {
    it(`refused: ${name}`, () => {
      assert.throws(() => applyJsonPatch(doc, patch), (e: unknown) => e instanceof JsonPatchError && e.code === 400 && re.test(e.message));
    });
  }

  it('a patch that doubles the document by copies is stopped at the copy limit; more than 10000 ops refused', () => {
    // Each copy of /a into itself doubles it: 40 of them would be 2^40 times the start.
    const doubling = Array.from({ length: 40 }, () => ({ op: 'copy', from: '/a', path: '/a/-' }));
    assert.throws(() => applyJsonPatch({ a: ['x'.repeat(1000)] }, doubling), (e: unknown) => e instanceof JsonPatchError && /copies of this patch add up to more than/.test(e.message));
    assert.throws(() => applyJsonPatch({}, Array.from({ length: 10_001 }, () => ({ op: 'test', path: '', value: {} }))), /at most 10000 operations, got 10001/);
  });

  it('all or nothing: a failing op after successful ones leaves the document as it was', () => {
    const doc = { a: 1, list: [1, 2] };
    assert.throws(() => applyJsonPatch(doc, [{ op: 'add', path: '/b', value: 2 }, { op: 'remove', path: '/list/0' }, { op: 'test', path: '/a', value: 5 }]), /op 2/);
    assert.deepEqual(doc, { a: 1, list: [1, 2] });
  });
});

describe('JSON merge patch (RFC 7386 Appendix A)', () => {
  const table: Array<[unknown, unknown, unknown]> = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  table.forEach(([target, patch, want], i) => it(`row ${i + 1}: ${JSON.stringify(patch)}`, () => assert.deepEqual(applyMergePatch(target, patch), want)));
});

function pod(): ApiObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'default', labels: { app: 'web' } },
    spec: { containers: [{ name: 'web', image: 'nginx' }] },
    status: { phase: 'Running' },
  };
}

describe('patchObject', () => {
  it('kubectl label / annotate (merge patch) add and remove labels', () => {
    const out = patchObject(pod(), '{"metadata":{"labels":{"tier":"front","app":null},"annotations":{"note":"x"}}}', MERGE);
    assert.deepEqual(out.metadata.labels, { tier: 'front' });
    assert.deepEqual(out.metadata.annotations, { note: 'x' });
  });

  it('media types: parameters ignored, anything else is 415 naming the accepted ones', () => {
    assert.equal(patchTypeOf('application/merge-patch+json; charset=utf-8'), 'merge');
    assert.equal(patchTypeOf('application/apply-patch+yaml'), 'apply');
    assert.equal(patchTypeOf('application/json'), undefined);
    for (const ct of ['application/json', undefined, 'text/plain']) {
      assert.throws(() => patchObject(pod(), '{}', ct), (e: unknown) => e instanceof UnsupportedMediaTypeError && e.code === 415 && /application\/strategic-merge-patch\+json/.test(e.message));
    }
  });

  it('a patch that renames, moves or re-kinds the object is refused, naming the field', () => {
    const tries: Array<[string, string, RegExp]> = [
      ['{"metadata":{"name":"other"}}', MERGE, /^metadata\.name: a patch may not change it \("web" → "other"\)/],
      ['{"metadata":{"namespace":"kube-system"}}', 'application/strategic-merge-patch+json', /^metadata\.namespace/],
      ['[{"op":"replace","path":"/kind","value":"Deployment"}]', JSON_PATCH, /^kind/],
      ['[{"op":"remove","path":"/metadata/name"}]', JSON_PATCH, /^metadata\.name: .*"web" → null/],
      ['[{"op":"replace","path":"","value":{"kind":"Pod"}}]', JSON_PATCH, /^apiVersion/],
      ['{"apiVersion":"batch/v1"}', MERGE, /^apiVersion/],
    ];
    for (const [body, ct, re] of tries) assert.throws(() => patchObject(pod(), body, ct), (e: unknown) => e instanceof BadRequestError && re.test(e.message), body);
  });

  it('another apiVersion the kind accepts (drover.io/v1) is the same object: kept as stored', () => {
    const out = patchObject(pod(), '{"apiVersion":"drover.io/v1","metadata":{"labels":{"x":"y"}}}', MERGE);
    assert.equal(out.apiVersion, 'v1');
    assert.equal(out.metadata.labels?.x, 'y');
  });

  it('bodies that are not JSON, not an object, name a key twice or nest too deep are 400', () => {
    assert.throws(() => patchObject(pod(), '{"metadata":', MERGE), /not valid JSON/);
    assert.throws(() => patchObject(pod(), '["x"]', MERGE), /must be a JSON object/);
    assert.throws(() => patchObject(pod(), '{"metadata":{"labels":{"a":"1","a":"2"}}}', MERGE), /names the key "a" twice/);
    assert.throws(() => patchObject(pod(), '{"a":'.repeat(100) + '1' + '}'.repeat(100), MERGE), /nested more than/);
    assert.throws(() => patchObject(pod(), '{}', 'application/apply-patch+yaml'), /serverSideApply/);
  });
});
