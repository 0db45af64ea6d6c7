/**
 * `drover datastore snapshot save|restore` as an operator runs it, on real LevelDB data dirs and real
 * etcd members (Debian's etcd 3.4): every object comes back with its uid (an owner chain still holds),
 * Secrets travel sealed and open only with the keyring that sealed them, and everything an attacker or a
 * tired operator might try is refused with one error line naming the cause, nothing written: a truncated
 * or edited file, a non-empty target, a server running on the target, a missing or wrong keyring, etcd down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaderElection } from '../../server/leader/election.js';
import { Keyring, keyringPath } from '../../server/secrets/keyring.js';
import { storePath } from '../../server/secrets/rotate.js';
import { EtcdStore } from '../../server/store/etcd.js';
import { LevelStore } from '../../server/store/level.js';
import type { BackendStore } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { GoneError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { fails, ok } from '../helpers/cli.js';
import { freePort, waitFor } from '../helpers/cluster.js';
import { datastoreCli } from '../helpers/datastore-cli.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';

type T = { after(fn: () => Promise<void> | void): void };

const PASSWORD = `pw-${randomBytes(8).toString('hex')}`;

async function tempDir(t: T, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `drover-snap-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function etcd(t: T): Promise<EtcdCluster> {
  const c = await startEtcd();
  t.after(() => c.stop());
  return c;
}

/** A Deployment → ReplicaSet → Pod chain (ownerReferences by uid), ConfigMaps, and two Secrets; some objects updated, one deleted. */
async function populate(store: BackendStore): Promise<void> {
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
  const dep = await store.create({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' }, spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'nginx' }] } } } } as ApiObject);
  const owner = (o: ApiObject) => [{ apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name, uid: o.metadata.uid!, controller: true }];
  const rs = await store.create({ apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'web-1', namespace: 'default', ownerReferences: owner(dep) }, spec: { replicas: 1 } } as ApiObject);
  await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web-1-a', namespace: 'default', ownerReferences: owner(rs) }, spec: { containers: [{ name: 'c', image: 'nginx' }] } } as ApiObject);
  for (let i = 0; i < 20; i++) await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `cm-${i}`, namespace: 'default' }, data: { i: String(i) } });
  await store.update({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm-3', namespace: 'default' }, data: { i: 'three' } });
  await store.delete('ConfigMap', 'default', 'cm-4');
  for (const name of ['db', 'api']) {
    await store.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, data: { password: Buffer.from(PASSWORD).toString('base64') } } as ApiObject);
  }
  await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'last', namespace: 'default' }, data: {} });
}

const KINDS = ['Namespace', 'Deployment', 'ReplicaSet', 'Pod', 'ConfigMap', 'Secret'];

async function everything(store: BackendStore): Promise<ApiObject[]> {
  const all: ApiObject[] = [];
  for (const k of KINDS) all.push(...(await store.list(k)).items);
  return all;
}

const withoutRv = (objs: ApiObject[]) => objs.map((o) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } }));

/** A LevelDB data dir as a server leaves it: its keyring and its store, populated. */
async function levelDataDir(t: T): Promise<{ dir: string; objects: ApiObject[]; revision: number }> {
  const dir = await tempDir(t, 'src');
  const store = await LevelStore.open({ path: storePath(dir), secrets: await Keyring.loadOrCreate(dir) });
  await populate(store);
  const objects = await everything(store);
  const revision = store.revision();
  await store.close();
  return { dir, objects, revision };
}

async function openLevel(dir: string): Promise<LevelStore> {
  return LevelStore.open({ path: storePath(dir), secrets: await Keyring.load(dir) });
}

async function copyKeyring(from: string, to: string): Promise<void> {
  await mkdir(join(to, 'secrets'), { recursive: true, mode: 0o700 });
  await copyFile(keyringPath(from), keyringPath(to));
}

test('LevelDB → snapshot → a fresh data dir: every object as it was (uid, resourceVersion), Secrets sealed in the file and readable after', { timeout: 60_000 }, async (t) => {
  const src = await levelDataDir(t);
  const out = await tempDir(t, 'out');
  const file = join(out, 'backup.snap');
  const saved = ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', src.dir]), 'save');
  assert.match(saved.stdout, new RegExp(`^saved 26 object\\(s\\) from LevelDB store ${storePath(src.dir)} at revision ${src.revision} to ${file} \\(\\d+ bytes, sha256 [0-9a-f]{64}\\): ConfigMap 20, Deployment 1, Namespace 1, Pod 1, ReplicaSet 1, Secret 2; 2 Secret\\(s\\) sealed with key\\(s\\) k1\\n`));
  assert.match(saved.stdout, /note: the Secrets in it open only with the keyring/);
  assert.equal((await stat(file)).mode & 0o777, 0o600, 'the snapshot is private');
  const bytes = await readFile(file);
  const { gunzipSync } = await import('node:zlib');
  const body = gunzipSync(bytes.subarray(4096)).toString();
  assert.ok(!body.includes(PASSWORD) && !body.includes(Buffer.from(PASSWORD).toString('base64')), 'no Secret value in the file, plain or base64');
  assert.match(body, /"sealed":"k8s:enc:aesgcm:v1:k1:/);

  const dst = await tempDir(t, 'dst');
  // Without the keyring that sealed them, the restore refuses before writing (a server would make a new one and fail every Secret).
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', dst]), new RegExp(`2 Secret\\(s\\) are sealed with key\\(s\\) k1 and there is no keyring at ${keyringPath(dst)}.*copy secrets/keys.json`));
  // A keyring, but another one (a fresh server's): refused naming a Secret.
  await Keyring.loadOrCreate(dst);
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', dst]), /the keyring .* does not open 2 of 2 Secret\(s\), sealed with k1: secrets "default\/(api|db)": .*nothing was written/);
  {
    const s = await openLevel(dst);
    assert.deepEqual(await everything(s), [], 'nothing was written');
    await s.close();
  }
  await copyKeyring(src.dir, dst);
  const restored = ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', dst]), 'restore');
  assert.match(restored.stdout, new RegExp(`^restored 26 object\\(s\\) into LevelDB store ${storePath(dst)}: ConfigMap 20, .*Secret 2; 2 Secret\\(s\\) sealed with key\\(s\\) k1\\nrevisions: kept`));

  const store = await openLevel(dst);
  t.after(() => store.close());
  assert.deepEqual(await everything(store), src.objects, 'every object, uid and resourceVersion included');
  const secret = (await store.get('Secret', 'default', 'db')) as ApiObject & { data: Record<string, string> };
  assert.equal(Buffer.from(secret.data.password!, 'base64').toString(), PASSWORD);
  const pod = (await store.get('Pod', 'default', 'web-1-a'))!;
  const rs = (await store.get('ReplicaSet', 'default', 'web-1'))!;
  assert.equal(pod.metadata.ownerReferences![0]!.uid, rs.metadata.uid);
  assert.equal(store.revision(), src.revision);
  // The change log did not travel: a watch from before the snapshot relists; writes continue after it.
  assert.throws(() => store.watch(src.revision - 5, () => {}), GoneError);
  const next = await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'after', namespace: 'default' }, data: {} });
  assert.equal(next.metadata.resourceVersion, String(src.revision + 1));
});

test('LevelDB refusals: a running server (its lock), a dir with no store, a non-empty target (unless --force), a damaged snapshot: nothing written', { timeout: 60_000 }, async (t) => {
  const src = await levelDataDir(t);
  const out = await tempDir(t, 'out');
  const file = join(out, 'backup.snap');

  // A server holds the store: save refuses, saying so (and writes no file); restore too, below.
  const running = await openLevel(src.dir);
  fails(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', src.dir]), new RegExp(`a drover server is running on ${src.dir}: its LevelDB store .* is locked .*stop the server`));
  await assert.rejects(stat(file));
  await running.close();
  const missing = join(out, 'no-such-dir');
  fails(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', missing]), /no drover store in .*no-such-dir .*is --data-dir the server's data dir\?/);
  await assert.rejects(stat(missing), 'a mistyped --data-dir is not created');

  ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', src.dir]));
  const running2 = await openLevel(src.dir);
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', src.dir]), /a drover server is running on .*stop the server/);
  await running2.close();

  // A non-empty target: refused; with --force its objects are replaced by the snapshot's.
  const dst = await tempDir(t, 'dst');
  await copyKeyring(src.dir, dst);
  {
    const s = await openLevel(dst);
    await s.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
    for (let i = 0; i < 40; i++) await s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `other-${i}`, namespace: 'default' }, data: {} });
    await s.close();
  }
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', dst]), new RegExp(`LevelDB store ${storePath(dst)} already holds 41 object\\(s\\): use an empty one, or add --force to replace them`));

  // A damaged snapshot is refused before the target is looked at, even with --force.
  const good = await readFile(file);
  const bad = Buffer.from(good);
  bad[bad.length - 20] ^= 0xff;
  const badFile = join(out, 'bad.snap');
  await writeFile(badFile, bad);
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', badFile, '--data-dir', dst, '--force']), /bad\.snap is damaged or was edited: the sha256 of its body is .*nothing was restored/);
  await writeFile(badFile, good.subarray(0, good.length - 100));
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', badFile, '--data-dir', dst, '--force']), /bad\.snap is truncated: \d+ bytes, its header says \d+; nothing was restored/);
  {
    const s = await openLevel(dst);
    assert.equal((await s.list('ConfigMap')).items.length, 40, 'the target is untouched');
    await s.close();
  }

  ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', dst, '--force']), 'restore --force');
  const s = await openLevel(dst);
  t.after(() => s.close());
  assert.deepEqual(await everything(s), src.objects, 'exactly the snapshot: the target\'s own objects are gone');
  assert.ok(s.revision() >= 41, 'the revision never goes back in a data dir');
});

test('etcd → snapshot → another etcd and into LevelDB: uids kept, revisions renumbered in order (etcd) or kept (LevelDB), Secrets open with the keyring', { timeout: 120_000 }, async (t) => {
  const [a, b] = [await etcd(t), await etcd(t)];
  const keyDir = await tempDir(t, 'keys');
  const keyring = await Keyring.loadOrCreate(keyDir);
  const source = await EtcdStore.open({ endpoints: a.endpoints, secrets: keyring });
  await populate(source);
  const objects = await everything(source);
  await source.close();

  const out = await tempDir(t, 'out');
  const file = join(out, 'etcd.snap');
  const saved = ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--datastore-endpoint', a.endpoints[0]!]), 'save from etcd');
  assert.match(saved.stdout, new RegExp(`^saved 26 object\\(s\\) from etcd at ${a.endpoints[0]} at revision \\d+`));

  // Into etcd b, checked against the keyring's data dir.
  const r = ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', b.endpoints[0]!, '--data-dir', keyDir]), 'restore into etcd');
  assert.match(r.stdout, new RegExp(`^restored 26 object\\(s\\) into etcd at ${b.endpoints[0]}: .*\\nrevisions: renumbered by etcd: written in their old order as revisions \\d+-\\d+`));
  assert.match(r.stdout, new RegExp(`note: the Secrets stay sealed with the keyring ${keyringPath(keyDir)}`));
  const target = await EtcdStore.open({ endpoints: b.endpoints, secrets: keyring });
  const back = await everything(target);
  await target.close();
  assert.deepEqual(withoutRv(back), withoutRv(objects), 'every object, uid included');
  // Renumbered in the old order (objects written in one transaction share its revision): never inverted.
  const rv = (objs: ApiObject[]) => new Map(objs.map((o) => [`${o.kind}/${o.metadata.name}`, Number(o.metadata.resourceVersion)]));
  const [oldRv, newRv] = [rv(objects), rv(back)];
  for (const [x, ox] of oldRv) for (const [y, oy] of oldRv) if (ox < oy) assert.ok(newRv.get(x)! <= newRv.get(y)!, `${x} was written before ${y}`);

  // Into LevelDB: the Secrets (sealed in etcd without a resourceVersion) are sealed again with it.
  const dst = await tempDir(t, 'dst');
  await copyKeyring(keyDir, dst);
  ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--data-dir', dst]), 'restore into LevelDB');
  const level = await openLevel(dst);
  t.after(() => level.close());
  assert.deepEqual(await everything(level), objects, 'resourceVersions are etcd\'s, kept');
  const secret = (await level.get('Secret', 'default', 'api')) as ApiObject & { data: Record<string, string> };
  assert.equal(Buffer.from(secret.data.password!, 'base64').toString(), PASSWORD);
  assert.match(String(await level.secretKeyUsage().then((u) => Object.keys(u).join())), /^k1$/);
});

test('etcd refusals: a server running on it (the leader key), a non-empty etcd (unless --force), etcd down (one line naming the endpoint)', { timeout: 120_000 }, async (t) => {
  const a = await etcd(t);
  const src = await levelDataDir(t);
  const out = await tempDir(t, 'out');
  const file = join(out, 'backup.snap');
  ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', src.dir]));

  const election = new LeaderElection({ endpoints: a.endpoints, identity: 'server-a', leaseDurationSeconds: 6, renewDeadlineSeconds: 4, retryPeriodSeconds: 1, logger: silentLogger });
  election.start();
  await waitFor('server-a leads', async () => election.isLeader(), 20_000, 50);
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', a.endpoints[0]!]), /a drover server is running on etcd at .* \(server-a holds the leader key \/drover\/leader.*stop every server on this etcd/);
  await election.close();

  ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', a.endpoints[0]!]), 'restore');
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', a.endpoints[0]!]), new RegExp(`etcd at ${a.endpoints[0]} already holds 26 object\\(s\\): use an empty one, or add --force`));
  {
    const s = await EtcdStore.open({ endpoints: a.endpoints });
    await s.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'extra', namespace: 'default' }, data: {} });
    await s.close();
  }
  const forced = ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', a.endpoints[0]!, '--force']), 'restore --force');
  // Not checked without --data-dir: the command says what every server needs.
  assert.match(forced.stdout, /note: the Secrets stay sealed with key\(s\) k1: every server on this etcd needs the keyring .*they were not checked/);
  const s = await EtcdStore.open({ endpoints: a.endpoints });
  t.after(() => s.close());
  assert.equal(await s.get('ConfigMap', 'default', 'extra'), undefined, '--force replaced what was there');
  assert.equal((await s.list('ConfigMap')).items.length, 20);

  const nobody = `http://127.0.0.1:${await freePort()}`;
  for (const args of [
    ['datastore', 'snapshot', 'save', join(out, 'x.snap'), '--datastore-endpoint', nobody],
    ['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', nobody],
  ]) {
    fails(await datastoreCli(args), new RegExp(`^error: etcd at ${nobody} unreachable: `));
  }
  await assert.rejects(stat(join(out, 'x.snap')), 'no file written when the source is down');
});

test('etcd with client certificates: save and restore with the --datastore-cafile/certfile/keyfile flags; a certificate etcd does not trust is refused naming the endpoint', { timeout: 120_000 }, async (t) => {
  const secure = await startEtcd({ tls: true });
  t.after(() => secure.stop());
  const tls = secure.tls!;
  const endpoint = secure.endpoints[0]!;
  const src = await levelDataDir(t);
  const out = await tempDir(t, 'out');
  const file = join(out, 'backup.snap');
  ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', src.dir]));
  const flags = (cert: string, key: string) => ['--datastore-endpoint', endpoint, '--datastore-cafile', tls.caFile, '--datastore-certfile', cert, '--datastore-keyfile', key];

  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, ...flags(tls.strangerCertFile, tls.strangerKeyFile)]), new RegExp(`^error: etcd at ${endpoint} unreachable: .*etcd refused the client certificate`));
  fails(await datastoreCli(['datastore', 'snapshot', 'restore', file, '--datastore-endpoint', endpoint]), new RegExp(`^error: etcd at ${endpoint} unreachable: .*not signed by --datastore-cafile`));
  ok(await datastoreCli(['datastore', 'snapshot', 'restore', file, ...flags(tls.clientCertFile, tls.clientKeyFile), '--data-dir', src.dir]), 'restore over TLS');
  const again = join(out, 'again.snap');
  const saved = ok(await datastoreCli(['datastore', 'snapshot', 'save', again, ...flags(tls.clientCertFile, tls.clientKeyFile)]), 'save over TLS');
  assert.match(saved.stdout, new RegExp(`^saved 26 object\\(s\\) from etcd at ${endpoint} `));
  // TLS files without an endpoint are a mistake, not ignored.
  fails(await datastoreCli(['datastore', 'snapshot', 'save', again, '--data-dir', src.dir, '--datastore-cafile', tls.caFile]), /datastoreCafile: given without datastoreEndpoint/);
});

test('save from etcd while a server keeps writing: the snapshot is the store at its header\'s revision, across read chunks', { timeout: 180_000 }, async (t) => {
  const a = await etcd(t);
  const store = await EtcdStore.open({ endpoints: a.endpoints });
  t.after(() => store.close());
  const cm = (name: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { v: name } });
  // More than one read chunk (2,000 keys) of objects before the save starts.
  for (let i = 0; i < 2500; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => store.create(cm(`before-${i + k}`))));
  let writing = true;
  let written = 0;
  const writer = (async () => {
    while (writing) {
      await store.create(cm(`during-${written}`));
      await store.delete('ConfigMap', 'default', `before-${written}`);
      written += 1;
    }
  })();
  const out = await tempDir(t, 'out');
  const file = join(out, 'live.snap');
  // Let the writer get going, so the save runs while it writes.
  await waitFor('writes under way', async () => written >= 20, 30_000, 10);
  ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--datastore-endpoint', a.endpoints[0]!]), 'save while writing');
  writing = false;
  await writer;
  assert.ok(written > 20);

  const { readSnapshot } = await import('../../server/store/snapshot.js');
  const { header, objects } = await readSnapshot(file);
  const { Etcd3 } = await import('etcd3');
  const client = new Etcd3({ hosts: a.endpoints });
  t.after(() => client.close());
  const atRevision = await client.getAll().prefix('/drover/registry/').revision(String(header.revision)).keys();
  assert.deepEqual(objects.map((o) => `/drover${o.key}`).sort(), atRevision.sort(), 'exactly the keys etcd held at that revision');
  assert.ok(objects.every((o) => o.revision! <= header.revision));
  // Each write pair is create-then-delete: at one revision, `during-n` present means `before-n` gone.
  const keys = new Set(objects.map((o) => o.key));
  for (let n = 0; n < written; n++) if (keys.has(`/registry/ConfigMap/default/during-${n + 1}`)) assert.ok(!keys.has(`/registry/ConfigMap/default/before-${n}`));
});

test('a snapshot re-written with two Secrets\' sealed values swapped (checksum recomputed) is refused: a sealed value opens only under its own name', { timeout: 60_000 }, async (t) => {
  const src = await levelDataDir(t);
  const out = await tempDir(t, 'out');
  const file = join(out, 'backup.snap');
  ok(await datastoreCli(['datastore', 'snapshot', 'save', file, '--data-dir', src.dir]));
  const { readSnapshot, writeSnapshot } = await import('../../server/store/snapshot.js');
  const { header, objects } = await readSnapshot(file);
  const db = objects.find((o) => o.key === '/registry/Secret/default/db')!;
  const api = objects.find((o) => o.key === '/registry/Secret/default/api')!;
  [db.value, api.value] = [api.value, db.value];
  const forged = join(out, 'forged.snap');
  await writeSnapshot(forged, header.source, header.revision, objects);
  for (const target of ['level', 'etcd'] as const) {
    const dst = await tempDir(t, 'dst');
    await copyKeyring(src.dir, dst);
    const args = target === 'level' ? ['--data-dir', dst] : ['--datastore-endpoint', (await etcd(t)).endpoints[0]!, '--data-dir', dst];
    fails(await datastoreCli(['datastore', 'snapshot', 'restore', forged, ...args]), /does not open 2 of 2 Secret\(s\), sealed with k1: secrets "default\/api": .*; secrets "default\/db": .*nothing was written/);
  }
});
