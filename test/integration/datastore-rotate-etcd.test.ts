/**
 * `drover secrets rotate-key` on a server whose datastore is etcd (server/secrets/rotate.ts with the
 * datastore flags): refused while a server runs on that etcd (it holds the leader key), keyring
 * untouched; with the server stopped every Secret is re-encrypted with the new key, the old key leaves
 * the keyring and etcd's history (no revision still holds a k1 ciphertext), and the restarted server
 * serves the Secrets. A Secret sealed with a key the keyring lacks stops the rotation, old keys kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { startServer, type RunningServer } from '../../server/run.js';
import { rotateSecretsKey } from '../../server/secrets/rotate.js';
import { silentLogger } from '../../src/util/logger.js';
import { apiClient, freePort, trustCa } from '../helpers/cluster.js';
import { startEtcd } from '../helpers/etcd.js';

const VALUE = 'rotate-on-etcd-value';

async function server(dataDir: string, endpoint: string): Promise<RunningServer> {
  const s = await startServer(
    { dataDir, apiHost: '127.0.0.1', apiPort: 0, mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() }, datastoreEndpoint: endpoint, resyncMs: 1000, nodeMonitorMs: 1000, leaderElectLeaseDuration: 4, leaderElectRenewDeadline: 3, leaderElectRetryPeriod: 1 },
    silentLogger,
  );
  await trustCa(s.caCert);
  return s;
}

/** Every value etcd holds for the Secrets at any revision it still has, raw. */
async function secretHistory(client: Etcd3): Promise<string[]> {
  const now = Number((await client.get('/drover/none').exec()).header.revision);
  const values: string[] = [];
  for (let rev = now; rev >= 1; rev--) {
    try {
      const r = await client.getAll().prefix('/drover/registry/Secret/').revision(String(rev)).exec();
      for (const kv of r.kvs) values.push(kv.value.toString());
    } catch (err) {
      if (/compacted/.test(String(err))) break;
      throw err;
    }
  }
  return values;
}

test('rotate-key with an etcd datastore: refused while a server runs; then every Secret under the new key, the old one gone from keyring and etcd history', { timeout: 180_000 }, async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const endpoint = etcd.endpoints[0]!;
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-rotate-etcd-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const client = new Etcd3({ hosts: endpoint });
  t.after(() => client.close());

  let running: RunningServer | undefined = await server(dataDir, endpoint);
  t.after(() => running?.close());
  const api = apiClient(running.apiUrl, running.adminToken);
  for (const name of ['db', 'api']) {
    const r = await api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { password: VALUE } });
    assert.equal(r.status, 201, r.text);
  }
  // An update, so etcd's history holds an older k1 ciphertext too.
  const cur = (await api('GET', '/api/v1/namespaces/default/secrets/db')).body;
  assert.equal((await api('PUT', '/api/v1/namespaces/default/secrets/db', { ...cur, stringData: { password: VALUE } })).status, 200);
  assert.ok((await secretHistory(client)).some((v) => v.startsWith('k8s:enc:aesgcm:v1:k1:')));

  const keysPath = join(dataDir, 'secrets', 'keys.json');
  const before = await readFile(keysPath, 'utf8');
  await assert.rejects(rotateSecretsKey(dataDir, silentLogger, { datastoreEndpoint: endpoint }), /cannot rotate the secrets key while a server runs on etcd at .* holds the leader key \/drover\/leader\): stop every drover server on this etcd/);
  assert.equal(await readFile(keysPath, 'utf8'), before, 'the keyring is untouched');

  await running.close();
  running = undefined;
  const r = await rotateSecretsKey(dataDir, silentLogger, { datastoreEndpoint: endpoint });
  assert.equal(r.keyId, 'k2');
  assert.deepEqual(r.droppedKeys, ['k1']);
  assert.equal(r.objects, 2);
  assert.match((r.notes ?? []).join('\n'), new RegExp(`every other server on etcd at ${endpoint} needs the new keyring before it starts: copy ${keysPath}`));
  assert.deepEqual(JSON.parse(await readFile(keysPath, 'utf8')).keys.map((k: { id: string }) => k.id), ['k2']);
  const history = await secretHistory(client);
  assert.ok(history.length >= 2);
  assert.deepEqual(history.filter((v) => !v.startsWith('k8s:enc:aesgcm:v1:k2:')), [], 'no revision etcd still holds has a Secret under another key, or in the clear');

  running = await server(dataDir, endpoint);
  const api2 = apiClient(running.apiUrl, running.adminToken);
  for (const name of ['db', 'api']) {
    const s = await api2('GET', `/api/v1/namespaces/default/secrets/${name}`);
    assert.equal(s.status, 200, s.text);
    assert.equal(Buffer.from(s.body.data.password, 'base64').toString(), VALUE);
  }
  await running.close();
  running = undefined;

  // A Secret sealed with a key this keyring does not have (another server's): the rotation stops, naming it, and keeps the keys.
  const foreign = await mkdtemp(join(tmpdir(), 'drover-rotate-foreign-'));
  t.after(() => rm(foreign, { recursive: true, force: true }));
  const { Keyring } = await import('../../server/secrets/keyring.js');
  const other = await Keyring.loadOrCreate(foreign);
  const key = '/registry/Secret/default/foreign';
  await client.put(`/drover${key}`).value(other.seal(Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'foreign', namespace: 'default', uid: 'x' } })), key));
  await assert.rejects(rotateSecretsKey(dataDir, silentLogger, { datastoreEndpoint: endpoint }), /1 Secret\(s\) could not be decrypted and were not re-encrypted \(old keys kept\): .*secrets "default\/foreign"/);
  assert.deepEqual(JSON.parse(await readFile(keysPath, 'utf8')).keys.map((k: { id: string }) => k.id), ['k2', 'k3']);
});
