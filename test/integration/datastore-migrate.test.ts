/**
 * `drover datastore migrate --from DIR --to ENDPOINT` as an operator moves a site from the embedded
 * LevelDB store to etcd: a real server on LevelDB makes a Deployment (its controllers make the
 * ReplicaSet and Pods, owned by uid) and holds a Secret; migrate is refused while that server runs,
 * then copies the store; the server started again on etcd with the same data dir (its keyring) serves
 * the same objects, the owner chain is the one its controllers keep acting on (scaling adds a Pod to the
 * same ReplicaSet), the Secret reads back through the API, and a second migrate is refused while it runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../server/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { fails, ok } from '../helpers/cli.js';
import { apiClient, freePort, trustCa, waitFor } from '../helpers/cluster.js';
import { datastoreCli } from '../helpers/datastore-cli.js';
import { startEtcd } from '../helpers/etcd.js';

type Api = ReturnType<typeof apiClient>;
interface Meta {
  name: string;
  uid: string;
  ownerReferences?: Array<{ uid: string; kind: string }>;
}

const deployment = (replicas: number) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'default' },
  spec: { replicas, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'docker.io/library/nginx:alpine' }] } } },
});

async function server(dataDir: string, datastoreEndpoint?: string): Promise<{ server: RunningServer; api: Api }> {
  const s = await startServer(
    { dataDir, apiHost: '127.0.0.1', apiPort: 0, mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() }, resyncMs: 1000, nodeMonitorMs: 1000, ...(datastoreEndpoint ? { datastoreEndpoint, serverToken: 'test-server-token-0123456789', leaderElectLeaseDuration: 4, leaderElectRenewDeadline: 3, leaderElectRetryPeriod: 1 } : {}) },
    silentLogger,
  );
  await trustCa(s.caCert);
  return { server: s, api: apiClient(s.apiUrl, s.adminToken) };
}

async function items(api: Api, path: string): Promise<Array<{ metadata: Meta }>> {
  const r = await api('GET', path);
  assert.equal(r.status, 200, r.text);
  return r.body.items;
}

test('migrate a LevelDB store into etcd: the server on etcd serves the same objects, owner chain and Secret', { timeout: 240_000 }, async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-migrate-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const endpoint = etcd.endpoints[0]!;

  let running: RunningServer | undefined;
  t.after(() => running?.close());
  const first = await server(dataDir);
  running = first.server;
  assert.equal((await first.api('POST', '/apis/apps/v1/namespaces/default/deployments', deployment(2))).status, 201);
  const secret = await first.api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 'migrated-s3cret' } });
  assert.equal(secret.status, 201, secret.text);
  await waitFor('the Deployment\'s ReplicaSet and 2 Pods', async () => (await items(first.api, '/api/v1/namespaces/default/pods')).length === 2, 60_000, 100);
  const dep = (await first.api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body.metadata as Meta;
  const [rs] = (await items(first.api, '/apis/apps/v1/namespaces/default/replicasets')).map((i) => i.metadata);
  const pods = (await items(first.api, '/api/v1/namespaces/default/pods')).map((i) => i.metadata);
  assert.equal(rs!.ownerReferences?.[0]?.uid, dep.uid);
  for (const p of pods) assert.equal(p.ownerReferences?.[0]?.uid, rs!.uid);

  // The server holds the store: refused, saying so; etcd untouched.
  fails(await datastoreCli(['datastore', 'migrate', '--from', dataDir, '--to', endpoint]), new RegExp(`a drover server is running on ${dataDir}: its LevelDB store .* is locked`));
  await first.server.close();
  running = undefined;

  const copied = ok(await datastoreCli(['datastore', 'migrate', '--from', dataDir, '--to', endpoint]), 'migrate');
  const m = new RegExp(`^copied (\\d+) object\\(s\\) into etcd at ${endpoint}: (.*); 1 Secret\\(s\\) sealed with key\\(s\\) k1\\n`).exec(copied.stdout);
  assert.ok(m, copied.stdout);
  assert.match(m[2]!, /\bDeployment 1\b.*\bPod 2\b.*\bReplicaSet 1\b.*\bSecret 1\b/);
  assert.match(copied.stdout, /\nrevisions: renumbered by etcd: written in their old order as revisions \d+-\d+ \(resourceVersions changed, uids kept: clients relist\)\n/);
  assert.match(copied.stdout, new RegExp(`\\nnote: the Secrets stay sealed with the keyring ${join(dataDir, 'secrets', 'keys.json')}: start servers on this etcd with --data-dir ${dataDir}, or copy that file`));

  const second = await server(dataDir, endpoint);
  running = second.server;
  const api = second.api;
  const dep2 = (await api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body.metadata as Meta;
  assert.equal(dep2.uid, dep.uid, 'the Deployment keeps its uid');
  const sec = await api('GET', '/api/v1/namespaces/default/secrets/db');
  assert.equal(sec.status, 200, sec.text);
  assert.equal(Buffer.from(sec.body.data.password, 'base64').toString(), 'migrated-s3cret', 'the Secret opens with the data dir\'s keyring');

  // The controllers on etcd act on the migrated chain: scaling adds a Pod to the same ReplicaSet.
  const current = (await api('GET', '/apis/apps/v1/namespaces/default/deployments/web')).body;
  const scaled = await api('PUT', '/apis/apps/v1/namespaces/default/deployments/web', { ...current, spec: { ...current.spec, replicas: 3 } });
  assert.equal(scaled.status, 200, scaled.text);
  await waitFor('3 Pods', async () => (await items(api, '/api/v1/namespaces/default/pods')).length === 3, 60_000, 100);
  const rsAfter = (await items(api, '/apis/apps/v1/namespaces/default/replicasets')).map((i) => i.metadata);
  assert.deepEqual(rsAfter.map((r) => r.uid), [rs!.uid], 'one ReplicaSet, the migrated one (not a new one)');
  const podsAfter = (await items(api, '/api/v1/namespaces/default/pods')).map((i) => i.metadata);
  for (const p of pods) assert.ok(podsAfter.some((q) => q.name === p.name && q.uid === p.uid), `pod ${p.name} kept its uid`);
  for (const p of podsAfter) assert.equal(p.ownerReferences?.[0]?.uid, rs!.uid, `${p.name} is owned by the migrated ReplicaSet`);

  // Run again while the etcd server runs: refused (it holds the leader key), even with --force.
  fails(await datastoreCli(['datastore', 'migrate', '--from', dataDir, '--to', endpoint, '--force']), /a drover server is running on etcd at .*holds the leader key \/drover\/leader/);
});
