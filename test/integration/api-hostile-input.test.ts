/**
 * Hostile requests against the HTTP API, sent raw (fetch would normalise `%2e%2e` away before it
 * leaves): a dot segment that climbs to the namespace, malformed escapes, an invented segment, and a
 * body nested 10,000 deep each get a 400 naming the cause, and nothing stored changes.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

function raw(cluster: TestServer, method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  const url = new URL(cluster.apiUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { authorization: `Bearer ${cluster.token}`, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('api: hostile paths and bodies', () => {
  let cluster: TestServer;
  before(async () => {
    cluster = await startTestServer();
    const ns = await cluster.api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'victimns' } });
    assert.equal(ns.status, 201, ns.text);
    const cm = await cluster.api('POST', '/api/v1/namespaces/victimns/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'keep' }, data: { a: '1' } });
    assert.equal(cm.status, 201, cm.text);
  });
  after(async () => {
    await cluster?.stop();
  });

  test('a dot segment is refused and does not reach the namespace', async () => {
    for (const seg of ['%2e%2e', '%2E%2E', '..', '.', '%2e']) {
      const r = await raw(cluster, 'DELETE', `/api/v1/namespaces/victimns/configmaps/${seg}`);
      assert.equal(r.status, 400, `${seg}: ${r.text}`);
      assert.match(r.text, /not allowed/);
    }
    assert.equal((await cluster.api('GET', '/api/v1/namespaces/victimns')).status, 200, 'the namespace is still there');
    assert.equal((await cluster.api('GET', '/api/v1/namespaces/victimns/configmaps/keep')).status, 200, 'and what is in it');
  });

  test('a malformed escape or an escaped slash is a 400 naming the segment, not a 500', async () => {
    const bad = await raw(cluster, 'GET', '/api/v1/namespaces/victimns/configmaps/%ZZ');
    assert.equal(bad.status, 400, bad.text);
    assert.equal(JSON.parse(bad.text).message, 'malformed escape in path segment "%ZZ"');
    const slash = await raw(cluster, 'DELETE', '/api/v1/namespaces/victimns%2Fconfigmaps%2Fkeep');
    assert.equal(slash.status, 400, slash.text);
    assert.equal((await cluster.api('GET', '/api/v1/namespaces/victimns/configmaps/keep')).status, 200);
  });

  test('a body nested 10,000 deep is a 400, and the server keeps serving', async () => {
    const deep = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000);
    const r = await raw(cluster, 'POST', '/api/v1/namespaces/victimns/configmaps', deep);
    assert.equal(r.status, 400, r.text.slice(0, 200));
    assert.match(r.text, /nested more than \d+ levels/);
    const ok = await cluster.api('GET', '/api/v1/namespaces/victimns/configmaps');
    assert.equal(ok.status, 200);
    assert.equal(ok.body.items.length, 1);
  });
});
