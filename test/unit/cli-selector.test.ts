/** Label selectors as text: the one parser the CLI (`-l`) and the server (`?labelSelector=`) share. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSelector, requirementsMatch } from '../../src/api/selector.js';
import { matchesLabels, parseFieldSelector, parseLabelSelector } from '../../server/api/selectors.js';
import { BadRequestError } from '../../src/util/errors.js';

const pods: { name: string; labels: Record<string, string> }[] = [
  { name: 'a', labels: { app: 'a', tier: 'front' } },
  { name: 'b', labels: { app: 'b', legacy: 'yes' } },
  { name: 'c', labels: { app: 'c' } },
  { name: 'none', labels: {} },
];
const select = (s: string) => pods.filter((p) => requirementsMatch(parseSelector(s), p.labels)).map((p) => p.name);

describe('label selector parser', () => {
  it('set-based terms keep their commas inside the parentheses', () => {
    assert.deepEqual(parseSelector('app in (a,b)'), [{ key: 'app', operator: 'In', values: ['a', 'b'] }]);
    assert.deepEqual(parseSelector('app in (a, b),tier notin (back)'), [
      { key: 'app', operator: 'In', values: ['a', 'b'] },
      { key: 'tier', operator: 'NotIn', values: ['back'] },
    ]);
    assert.deepEqual(select('app in (a,b)'), ['a', 'b']);
    assert.deepEqual(select('app notin (a)'), ['b', 'c', 'none'], 'notin matches objects without the key, as in Kubernetes');
    assert.deepEqual(select('app in (a,b),!legacy'), ['a']);
  });

  it('equality terms, existence and absence', () => {
    assert.deepEqual(select('app=a'), ['a']);
    assert.deepEqual(select('app==b'), ['b']);
    assert.deepEqual(select('app!=a'), ['b', 'c', 'none']);
    assert.deepEqual(select('tier'), ['a']);
    assert.deepEqual(select('!tier'), ['b', 'c', 'none']);
    assert.deepEqual(select('app, !legacy ,app!=c'), ['a']);
    assert.deepEqual(select(''), ['a', 'b', 'c', 'none']);
    assert.deepEqual(parseSelector('example.com/role=edge'), [{ key: 'example.com/role', operator: 'Equals', value: 'edge' }]);
    assert.deepEqual(parseSelector('app='), [{ key: 'app', operator: 'Equals', value: '' }]);
  });

  it('numeric comparisons', () => {
    assert.equal(requirementsMatch(parseSelector('rev>3'), { rev: '4' }), true);
    assert.equal(requirementsMatch(parseSelector('rev<3'), { rev: '4' }), false);
    assert.equal(requirementsMatch(parseSelector('rev>3'), { rev: 'x' }), false);
  });

  it('a bad selector is a 400 naming the term and what is wrong', () => {
    const bad: Array<[string, RegExp]> = [
      ['app in (a,b', /in "app in \(a,b": missing "\)" after the values of "app"/],
      ['app in a,b', /in "app in a": expected "\(" after "in"/],
      ['app=web,tier in (x y)', /in "tier in \(x y\)": expected "," or "\)" in the values of "tier", found "y"/],
      ['app=Web!', /in "app=Web!": expected "," between terms, found "!"/],
      ['-bad=x', /label key "-bad" must start and end with a letter or digit/],
      ['app=a,,b', /an empty term: expected a label key, found ","/],
      ['app foo', /expected one of =, ==, !=, in, notin after "app", found "foo"/],
      ['Example.com/x=1', /prefix "Example.com" of label key/],
      ['app=' + 'v'.repeat(64), /longer than 63 characters/],
    ];
    for (const [s, re] of bad) {
      assert.throws(() => parseSelector(s), (err: unknown) => err instanceof BadRequestError && err.code === 400 && re.test(err.message), s);
    }
  });

  it('the server filters with the same parser', () => {
    const obj = (labels: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', labels } });
    const reqs = parseLabelSelector('app in (web,api),env notin (dev)');
    assert.equal(matchesLabels(obj({ app: 'api', env: 'prod' }), reqs), true);
    assert.equal(matchesLabels(obj({ app: 'api', env: 'dev' }), reqs), false);
    assert.equal(matchesLabels(obj({ app: 'db' }), reqs), false);
    assert.deepEqual(parseLabelSelector(null), []);
    assert.throws(() => parseLabelSelector('app in (web'), BadRequestError);
    assert.throws(() => parseFieldSelector('spec.nodeName=a,status.phase'), /"status\.phase" is not FIELD=VALUE/);
    assert.deepEqual(parseFieldSelector('spec.nodeName==a,status.phase!=Running'), [
      { path: ['spec', 'nodeName'], value: 'a', negate: false },
      { path: ['status', 'phase'], value: 'Running', negate: true },
    ]);
  });
});
