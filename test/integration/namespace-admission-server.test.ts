/**
 * A server's admission reads namespaces from its object cache (LevelDB: the cache holds every write before it
 * is acknowledged). What a client just wrote about a namespace counts for its very next create: a namespace made
 * a moment ago takes pods, a label just added lets a host-network pod in, a namespace just deleted takes nothing
 * more, and one that does not exist is named in the refusal. Real server, real LevelDB.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(async () => {
  await server?.stop();
});

const pod = (name: string, hostNetwork = false) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name },
  spec: { ...(hostNetwork ? { hostNetwork: true } : {}), containers: [{ name: 'main', image: 'busybox' }] },
});

test('each create sees the namespace as the write just before it left it', async () => {
  for (let i = 0; i < 5; i++) {
    const ns = `fresh-${i}`;
    assert.equal((await server.api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })).status, 201);
    // At once: no wait for any watch to catch up.
    const created = await server.api('POST', `/api/v1/namespaces/${ns}/pods`, pod('web'));
    assert.equal(created.status, 201, created.text);

    const refused = await server.api('POST', `/api/v1/namespaces/${ns}/pods`, pod('host', true));
    assert.equal(refused.status, 403, refused.text);
    const labelled = await server.api('GET', `/api/v1/namespaces/${ns}`);
    labelled.body.metadata.labels = { ...labelled.body.metadata.labels, 'drover.io/privileged': 'true' };
    assert.equal((await server.api('PUT', `/api/v1/namespaces/${ns}`, labelled.body)).status, 200);
    const allowed = await server.api('POST', `/api/v1/namespaces/${ns}/pods`, pod('host', true));
    assert.equal(allowed.status, 201, allowed.text);

    assert.equal((await server.api('DELETE', `/api/v1/namespaces/${ns}`)).status, 200);
    const late = await server.api('POST', `/api/v1/namespaces/${ns}/configmaps`, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'late' }, data: {} });
    // The DELETE answers once the namespace and its content are gone.
    assert.equal(late.status, 404, late.text);
    assert.match(late.body.message, new RegExp(`namespaces "${ns}"`));
    assert.equal((await server.api('GET', `/api/v1/namespaces/${ns}/configmaps/late`)).status, 404);
  }
});

test('a create in a namespace that does not exist is refused, naming it', async () => {
  const r = await server.api('POST', '/api/v1/namespaces/nowhere/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: {} });
  assert.equal(r.status, 404, r.text);
  assert.match(r.body.message, /namespaces "nowhere"/);
});
