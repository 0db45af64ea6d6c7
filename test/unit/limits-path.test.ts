/**
 * Names in API paths, as an attacker writes them: only DNS-1123 names reach a route; the 400 quotes none of
 * what was sent (a token pasted into a path must not come back in a message or a log).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertObjectNames, isPathName, pathSegments } from '../../server/api/path.js';

test('object names in a path must be DNS-1123 names; the error names the part, not its text', () => {
  for (const ok of ['web', 'web-1', 'a', 'my.app.v2', '0', 'x'.repeat(253)]) assert.ok(isPathName(ok), ok);
  const token = 'abc123.AbCdEfGhIjKlMnOpQrStUvWxYz012345';
  for (const bad of ['UPPER', 'under_score', '-lead', 'trail-', '.dot', 'x'.repeat(254), '<script>', 'sp ace', '\u0000', 'ünï', '', token]) {
    assert.ok(!isPathName(bad), JSON.stringify(bad));
    assert.throws(
      () => assertObjectNames({ namespace: 'default', name: bad }),
      (err: Error) => /the name in the path \(\d+ characters\) is not a valid name/.test(err.message) && (bad.length < 3 || !err.message.includes(bad)),
    );
  }
  assert.throws(() => assertObjectNames({ namespace: 'Kube_System' }), /the namespace in the path/);
  assert.doesNotThrow(() => assertObjectNames({ namespace: 'default', name: 'web' }));
  assert.doesNotThrow(() => assertObjectNames({}));
});

test('segments are decoded one by one after splitting: dot segments and escaped slashes are refused', () => {
  assert.deepEqual(pathSegments('/api/v1/namespaces/default/configmaps/web?x=%ZZ'), ['api', 'v1', 'namespaces', 'default', 'configmaps', 'web']);
  for (const bad of ['/api/v1/namespaces/x/configmaps/%2e%2e', '/api/v1/namespaces/x%2Fconfigmaps', '/api/v1/%ZZ', '/api/v1/namespaces/..']) {
    assert.throws(() => pathSegments(bad), /not allowed|malformed escape/, bad);
  }
});
