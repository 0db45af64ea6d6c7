/**
 * A drover server with etcd as its datastore (`--datastore-endpoint`), against a real etcd 3.4: the
 * issue's "when etcd is not there": unreachable at start → one clear error naming the endpoint and
 * exit 1; lost while running → the API answers 503 with the cause (never a hang, never a 500), and
 * everything resumes by itself when etcd returns, a watch opened before the outage included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../server/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { spawnDrover } from '../helpers/cli.js';
import { apiClient, freePort, trustCa, waitFor } from '../helpers/cluster.js';
import { startEtcd } from '../helpers/etcd.js';

const configMap = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: name } });

test('drover server --datastore-endpoint where no etcd answers: exits 1 with one line naming the endpoint', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-server-etcd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const child = spawnDrover({}, ['server', '--data-dir', dir, '--disable-agent', '--api-port', String(await freePort()), '--mqtt-port', String(await freePort()), '--datastore-endpoint', endpoint]);
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  child.stdout.resume();
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 1, stderr);
  const errors = stderr.split('\n').filter((l) => l.startsWith('error: '));
  assert.equal(errors.length, 1, stderr);
  assert.match(errors[0]!, new RegExp(`^error: etcd at ${endpoint} unreachable: .*ECONNREFUSED`));
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
});

test('a server on etcd: etcd stopped → the API answers 503 naming etcd, etcd back → the same server serves again and an open watch gets the later change', async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-server-etcd-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const server = await startServer(
    { dataDir, apiHost: '127.0.0.1', apiPort: 0, mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() }, datastoreEndpoint: etcd.endpoints[0], serverToken: 'test-server-token-0123456789', resyncMs: 1000, nodeMonitorMs: 1000 },
    silentLogger,
  );
  t.after(() => server.close());
  await trustCa(server.caCert);
  const api = apiClient(server.apiUrl, server.adminToken);
  const created = await api('POST', '/api/v1/namespaces/default/configmaps', configMap('before'));
  assert.equal(created.status, 201, created.text);

  // A watch from the create's revision, opened before the outage, read as kubectl reads it.
  const watch = await fetch(`${server.apiUrl}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${created.body.metadata.resourceVersion}`, { headers: { authorization: `Bearer ${server.adminToken}` } });
  assert.equal(watch.status, 200);
  let streamed = '';
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of watch.body as unknown as AsyncIterable<Uint8Array>) {
      streamed += decoder.decode(chunk, { stream: true });
      if (streamed.includes('"after"')) return;
    }
  })();

  await etcd.members[0]!.stop();
  for (const [method, path, body] of [['GET', '/api/v1/namespaces/default/configmaps/before'], ['GET', '/api/v1/namespaces/default/configmaps'], ['POST', '/api/v1/namespaces/default/configmaps', configMap('lost')]] as const) {
    const r = await api(method, path, body);
    assert.equal(r.status, 503, `${method} ${path}: ${r.text}`);
    assert.equal(r.body.reason, 'StoreUnavailable');
    assert.match(r.body.message, new RegExp(`^etcd at ${etcd.endpoints[0]} unreachable: `));
    assert.doesNotMatch(r.text, /\bat .*\.ts:\d+/, 'no stack in the answer');
  }

  await etcd.members[0]!.start();
  await waitFor('the API to serve again', async () => (await api('GET', '/api/v1/namespaces/default/configmaps/before')).status === 200, 30_000);
  const after = await api('POST', '/api/v1/namespaces/default/configmaps', configMap('after'));
  assert.equal(after.status, 201, after.text);
  await waitFor('the watch opened before the outage to stream the later create', async () => streamed.includes('"after"'), 30_000);
  await reading;
  const events = streamed.trim().split('\n').map((l) => JSON.parse(l) as { type: string; object: { metadata: { name: string } } });
  assert.deepEqual(events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED after'], 'exactly the change after its resourceVersion, once');
  assert.equal((await api('GET', '/api/v1/namespaces/default/configmaps/lost')).status, 404, 'the create refused during the outage did not land');
});
