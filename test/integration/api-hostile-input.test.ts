/**
 * Hostile requests against the HTTP API, sent raw (fetch would normalise `%2e%2e` away before it
 * leaves): a dot segment that climbs to the namespace, malformed escapes, an invented segment, and a
 * body nested 10,000 deep each get a 400 naming the cause, and nothing stored changes.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

function raw(cluster: TestServer, method: string, path: string, body?: string | Buffer, headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {}): Promise<{ status: number; text: string }> {
  const url = new URL(cluster.apiUrl);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, ca: cluster.ca, headers: { authorization: `Bearer ${cluster.token}`, ...headers } }, (res) => {
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

  test('a body over 3 MiB is a 413, a key named twice a 400 naming it, a YAML Content-Type a 415; nothing is stored', async () => {
    const big = Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big' }, data: { a: 'x'.repeat(3 * 1024 * 1024) } }));
    const tooBig = await raw(cluster, 'POST', '/api/v1/namespaces/victimns/configmaps', big);
    assert.equal(tooBig.status, 413, tooBig.text.slice(0, 200));
    assert.match(JSON.parse(tooBig.text).message, /larger than 3145728 bytes/);
    // Which of the two names would JSON.parse keep? Neither: the request is refused.
    const dup = await raw(cluster, 'POST', '/api/v1/namespaces/victimns/configmaps', '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"keep"},"data":{"a":"2"}}');
    assert.equal(dup.status, 400, dup.text);
    assert.match(JSON.parse(dup.text).message, /duplicate key "metadata\.name"/);
    const yaml = await raw(cluster, 'POST', '/api/v1/namespaces/victimns/configmaps', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n', { 'content-type': 'application/yaml' });
    assert.equal(yaml.status, 415, yaml.text);
    const list = await cluster.api('GET', '/api/v1/namespaces/victimns/configmaps');
    assert.deepEqual(list.body.items.map((c: any) => c.metadata.name), ['keep']);
    assert.deepEqual(list.body.items[0].data, { a: '1' });
  });
});
