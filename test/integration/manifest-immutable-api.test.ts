/**
 * Through the real API (TLS server, LevelDB): a PUT or a merge PATCH that changes what Kubernetes keeps
 * immutable is a 422 in Kubernetes' words and stores nothing; an image change or a label still goes
 * through. A selector/template mismatch is refused at create. Ignored fields come back as Warning headers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

const POD = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'nginx', labels: { app: 'nginx' } }, spec: { containers: [{ name: 'nginx', image: 'nginx:1.25', command: ['nginx'] }] } };

describe('manifest checks through the API', () => {
  let t: TestServer;
  /** A request with its own Content-Type, and the response headers (the helper's api() has neither). */
  const call = async (method: string, path: string, body: unknown, contentType = 'application/json') => {
    const res = await fetch(t.apiUrl + path, { method, headers: { authorization: `Bearer ${t.token}`, 'content-type': contentType }, body: JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, text, body: JSON.parse(text), warning: res.headers.get('warning') ?? '' };
  };
  before(async () => {
    t = await startTestServer();
  });
  after(async () => {
    await t?.stop();
  });

  test('a pod\'s command changed by PUT or PATCH: 422 "Pod "nginx" is invalid: spec: Forbidden: ...", stored pod unchanged', async () => {
    assert.equal((await t.api('POST', '/api/v1/namespaces/default/pods', POD)).status, 201);
    const cur = (await t.api('GET', '/api/v1/namespaces/default/pods/nginx')).body;
    const put = await t.api('PUT', '/api/v1/namespaces/default/pods/nginx', { ...cur, spec: { ...cur.spec, containers: [{ ...cur.spec.containers[0], command: ['sh'] }] } });
    assert.equal(put.status, 422, put.text);
    assert.match(put.body.message, /^Pod "nginx" is invalid: spec: Forbidden: pod updates may not change fields other than `spec\.containers\[\*\]\.image`,`spec\.initContainers\[\*\]\.image`,`spec\.activeDeadlineSeconds`,`spec\.tolerations` \(only additions to existing tolerations\),`spec\.terminationGracePeriodSeconds` \(allow it to be set to 1 if it was previously negative\)\n  changed: spec\.containers\[0\]\.command$/);
    const patch = await call('PATCH', '/api/v1/namespaces/default/pods/nginx', { spec: { nodeSelector: { site: 'north' } } }, 'application/merge-patch+json');
    assert.equal(patch.status, 422, patch.text);
    assert.match(patch.body.message, /changed: spec\.nodeSelector/);
    const after = (await t.api('GET', '/api/v1/namespaces/default/pods/nginx')).body;
    assert.deepEqual(after.spec.containers[0].command, ['nginx']);
    assert.equal(after.spec.nodeSelector, undefined);
    // (The scheduler may have written status meanwhile: the spec is what must be as stored.)
    assert.deepEqual(after.spec, cur.spec);
  });

  test('an image or a label change goes through', async () => {
    const img = await call('PATCH', '/api/v1/namespaces/default/pods/nginx', { spec: { containers: [{ name: 'nginx', image: 'nginx:1.27' }] } }, 'application/strategic-merge-patch+json');
    assert.equal(img.status, 200, img.text);
    assert.equal(img.body.spec.containers[0].image, 'nginx:1.27');
    const lbl = await call('PATCH', '/api/v1/namespaces/default/pods/nginx', { metadata: { labels: { tier: 'web' } } }, 'application/merge-patch+json');
    assert.equal(lbl.status, 200, lbl.text);
  });

  test('Deployment: mismatched selector refused at create; a selector change refused at update', async () => {
    const dep = (labels: Record<string, string>, selector: Record<string, string>) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { replicas: 0, selector: { matchLabels: selector }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image: 'nginx' }] } } } });
    const bad = await t.api('POST', '/apis/apps/v1/namespaces/default/deployments', dep({ app: 'api' }, { app: 'web' }));
    assert.equal(bad.status, 422, bad.text);
    assert.match(bad.body.message, /spec\.template\.metadata\.labels: Invalid value: map\[string\]string\{"app":"api"\}: `selector` does not match template `labels`/);
    assert.equal((await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).status, 404);
    assert.equal((await t.api('POST', '/apis/apps/v1/namespaces/default/deployments', dep({ app: 'web', v: '1' }, { app: 'web' }))).status, 201);
    const cur = (await t.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
    const put = await t.api('PUT', '/apis/apps/v1/namespaces/default/deployments/web', { ...cur, spec: { ...cur.spec, selector: { matchLabels: { app: 'web', v: '1' } } } });
    assert.equal(put.status, 422, put.text);
    assert.match(put.body.message, /^Deployment\.apps "web" is invalid: spec\.selector: Invalid value: .*: field is immutable$/);
  });

  test('an ignored field comes back as a Warning header naming it', async () => {
    const pod = { ...POD, metadata: { name: 'prop' }, spec: { volumes: [{ name: 'v', emptyDir: {} }], containers: [{ name: 'c', image: 'nginx', volumeMounts: [{ name: 'v', mountPath: '/v', mountPropagation: 'Bidirectional' }] }] } };
    const r = await call('POST', '/api/v1/namespaces/default/pods', pod);
    assert.equal(r.status, 201, r.text);
    assert.match(r.warning, /299 - "spec\.containers\[0\]\.volumeMounts\[0\]\.mountPropagation: Bidirectional is ignored by drover \(mounts are private\)"/);
  });
});
