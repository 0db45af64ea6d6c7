/**
 * One identity for several servers on one etcd (server/cluster/): the bootstrap data (CA, server client
 * identity, keyring, admin token) sealed in etcd with the server token, and the token table, node
 * credentials and default join token as shared documents. Driven through the modules on two (three)
 * data dirs against a real etcd, as two servers' starts would drive them; the two-process test is
 * servers-shared-identity.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { TokenStore } from '../../server/auth/tokens.js';
import { bootstrapFiles, CLUSTER_KEYS, joinCluster, publishRotatedKeyring, type ClusterIdentity } from '../../server/cluster/bootstrap.js';
import type { EtcdStore } from '../../server/store/etcd.js';
import { openStore } from '../../server/store/open.js';
import { loadOrCreateJoinToken } from '../../server/identity/bootstrap-token.js';
import { NodeCredentials, type CredentialChange } from '../../server/identity/node-credentials.js';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { Keyring } from '../../server/secrets/keyring.js';
import { silentLogger } from '../../src/util/logger.js';
import { waitFor } from '../helpers/cluster.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';

const TOKEN = 'cluster-identity-test-token-0123456789';

async function etcd(t: TestContext): Promise<EtcdCluster> {
  const e = await startEtcd();
  t.after(() => e.stop());
  return e;
}

async function dataDir(t: TestContext, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `drover-cluster-${name}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function join_(t: TestContext, e: EtcdCluster, dir: string, serverToken: string | undefined = TOKEN): Promise<ClusterIdentity> {
  const c = await joinCluster({ dataDir: dir, datastore: { datastoreEndpoint: e.endpoints[0] }, serverToken, logger: silentLogger });
  t.after(() => c.close());
  return c;
}

/** What a server's start opens after the bootstrap: PKI, token store, join token, node credentials. */
async function serverParts(dir: string, c: ClusterIdentity) {
  const pki = await loadOrCreatePki({ dir: join(dir, 'tls'), sans: serverSans([]), logger: silentLogger });
  const tokens = await TokenStore.open({ dataDir: dir, logger: silentLogger, doc: c.docs.tokens });
  const joinToken = await loadOrCreateJoinToken({ dataDir: dir, tokens, caHash: pki.caHash, logger: silentLogger, shared: c.docs.joinToken });
  const credentials = await NodeCredentials.open({ dataDir: dir, logger: silentLogger, doc: c.docs.nodes });
  const keyring = await Keyring.loadOrCreate(dir, silentLogger);
  return { pki, tokens, joinToken, credentials, keyring };
}

test('the first server uploads its identity, the second gets it in its data dir (0600 files, 0700 dirs); each keeps its own serving certificate; Secrets sealed by one open on the other', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  const ca = await join_(t, e, a);
  assert.equal(ca.created, true);
  const pa = await serverParts(a, ca);
  const cb = await join_(t, e, b);
  assert.equal(cb.created, false);
  const pb = await serverParts(b, cb);

  for (const rel of bootstrapFiles(b).all) {
    assert.equal(await readFile(join(b, rel), 'utf8'), await readFile(join(a, rel), 'utf8'), `${rel} is the cluster's`);
    assert.equal((await stat(join(b, rel))).mode & 0o777, 0o600, `${rel} is 0600`);
  }
  for (const d of ['', 'tls', 'secrets', 'auth']) assert.equal((await stat(join(b, d))).mode & 0o777, 0o700, `${d || 'the data dir'} is 0700`);
  assert.equal(pb.pki.caHash, pa.pki.caHash);
  assert.notEqual(pb.pki.server.cert, pa.pki.server.cert, 'each server issues its own serving certificate');
  assert.equal(pb.tokens.adminToken, pa.tokens.adminToken);
  assert.equal(pb.joinToken, pa.joinToken, 'one default join token');
  assert.equal(await readFile(join(b, 'join-token'), 'utf8'), `${pa.joinToken}\n`);
  const sealed = pa.keyring.seal(Buffer.from('s3cret'), '/registry/Secret/default/db');
  assert.equal(pb.keyring.unseal(sealed, '/registry/Secret/default/db').toString(), 's3cret');
});

test('two servers starting at once on an empty etcd agree on one CA, keyring, admin token and join token', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const dirs = [await dataDir(t, 'a'), await dataDir(t, 'b'), await dataDir(t, 'c')];
  const ids = await Promise.all(dirs.map((d) => join_(t, e, d)));
  assert.equal(ids.filter((c) => c.created).length, 1, 'exactly one uploaded');
  const parts = await Promise.all(dirs.map((d, i) => serverParts(d, ids[i]!)));
  for (const rel of bootstrapFiles(dirs[0]!).all) {
    const texts = await Promise.all(dirs.map((d) => readFile(join(d, rel), 'utf8')));
    assert.equal(new Set(texts).size, 1, `${rel} differs between the servers`);
  }
  assert.equal(new Set(parts.map((p) => p.joinToken)).size, 1, 'one default join token');
  // The servers that lost the race to make the default join token revoked theirs: one usable join token.
  await parts[0]!.tokens.refresh();
  assert.equal(parts[0]!.tokens.list().filter((x) => x.type === 'join' && !x.revoked).length, 1);
});

test('a wrong server token: one clear error naming the endpoint, nothing written to the data dir; no token: the error names the flag and the variable', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  await join_(t, e, await dataDir(t, 'a'));
  const b = await dataDir(t, 'b');
  await assert.rejects(join_(t, e, b, 'another-token-of-enough-length'), (err: Error) => {
    assert.equal(err.message, `the server token does not open the cluster's bootstrap data in etcd at ${e.endpoints[0]}`);
    return true;
  });
  for (const rel of bootstrapFiles(b).all) await assert.rejects(stat(join(b, rel)), { code: 'ENOENT' }, `${rel} was written`);
  await assert.rejects(joinCluster({ dataDir: b, datastore: { datastoreEndpoint: e.endpoints[0] }, serverToken: undefined, logger: silentLogger }), /this server joins the cluster in etcd at \S+, which needs the cluster's server token: --server-token-file FILE \(mode 0600\) or DROVER_SERVER_TOKEN \(the first server wrote it to its DATA_DIR\/server-token/);
  await assert.rejects(stat(join(b, 'server-token')), { code: 'ENOENT' }, 'a joining server generates no token');
  await assert.rejects(join_(t, e, b, 'short'), /the server token \(the one given\) is 5 characters; use at least 16/);
});

test('no token given to the first server on an empty etcd: it generates the cluster\'s token into DATA_DIR/server-token (0600), keeps using it after a restart, and a second server given that file joins', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const a = await dataDir(t, 'a');
  // join_'s default is the test token: joinCluster itself, with none.
  const noToken = async () => {
    const c = await joinCluster({ dataDir: a, datastore: { datastoreEndpoint: e.endpoints[0] }, serverToken: undefined, logger: silentLogger });
    t.after(() => c.close());
    return c;
  };
  const first = await noToken();
  assert.equal(first.created, true);
  const tokenFile = join(a, 'server-token');
  assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
  const token = (await readFile(tokenFile, 'utf8')).trim();
  assert.match(token, /^[0-9a-f]{64}$/);
  await first.close();
  // A restart of the first server, still with no token: the file is used, the cluster opens.
  const again = await noToken();
  assert.equal(again.created, false);
  assert.equal((await readFile(tokenFile, 'utf8')).trim(), token, 'not replaced');
  // Another server, given the token: the same CA.
  const b = await dataDir(t, 'b');
  await join_(t, e, b, token);
  assert.equal(await readFile(join(b, 'tls', 'ca.crt'), 'utf8'), await readFile(join(a, 'tls', 'ca.crt'), 'utf8'));
});

test("a data dir of another cluster (its own CA) is refused, naming the file, and keeps its files; one whose keyring was rotated here uploads it, a third server gets it", { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const a = await dataDir(t, 'a');
  await join_(t, e, a);
  const foreign = await dataDir(t, 'foreign');
  await loadOrCreatePki({ dir: join(foreign, 'tls'), sans: serverSans([]), logger: silentLogger });
  const ownCa = await readFile(join(foreign, 'tls', 'ca.key'), 'utf8');
  await assert.rejects(join_(t, e, foreign), new RegExp(`${join(foreign, 'tls', 'ca.crt')} is not the cluster's CA .*this data dir belongs to another cluster; move ${join(foreign, 'tls')} away`));
  assert.equal(await readFile(join(foreign, 'tls', 'ca.key'), 'utf8'), ownCa);

  // rotate-key on a's data dir (every server stopped): its keyring's primary is k2, the cluster's k1.
  const ring = await Keyring.load(a, silentLogger);
  await ring.addPrimaryKey();
  await ring.dropNonPrimaryKeys();
  await join_(t, e, a);
  const c = await dataDir(t, 'c');
  await join_(t, e, c);
  assert.deepEqual((await Keyring.load(c, silentLogger)).keyIds(), ['k2']);
  assert.equal(await readFile(join(c, 'secrets', 'keys.json'), 'utf8'), await readFile(join(a, 'secrets', 'keys.json'), 'utf8'));
});

test('rotate-key publishes the rotated keyring into the bootstrap data (with the server token only): a server started next takes it from etcd', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  await join_(t, e, a);
  await join_(t, e, b);
  const ring = await Keyring.load(a, silentLogger);
  await ring.addPrimaryKey();
  const store = (await openStore({ levelPath: '', datastoreEndpoint: e.endpoints[0], logger: silentLogger })) as EtcdStore;
  t.after(() => store.close());
  await assert.rejects(publishRotatedKeyring({ store, dataDir: a, serverToken: 'another-token-of-enough-length', logger: silentLogger }), /the server token does not open the cluster's bootstrap data/);
  assert.equal(await publishRotatedKeyring({ store, dataDir: a, serverToken: TOKEN, logger: silentLogger }), true);
  // b's data dir still has k1 alone: the cluster's (newer) keyring replaces it at b's next start.
  await join_(t, e, b);
  assert.deepEqual((await Keyring.load(b, silentLogger)).keyIds(), ['k1', 'k2']);
  // rotate-key drops the old key in a's data dir after publishing: the same primary key, so a starts (no conflict).
  await ring.dropNonPrimaryKeys();
  await join_(t, e, a);
  assert.equal((await Keyring.load(a, silentLogger)).primaryKeyId, 'k2');
});

test("the server's MQTT client certificate renewed near its expiry becomes the cluster's: the next server takes the new one", { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  await join_(t, e, a);
  const first = await readFile(join(a, 'tls', 'client-drover-server.crt'), 'utf8');
  // 300 days on: 65 of its 365 left, under the 90 at which it is re-issued.
  const later = await joinCluster({ dataDir: a, datastore: { datastoreEndpoint: e.endpoints[0] }, serverToken: TOKEN, logger: silentLogger, now: () => Date.now() + 300 * 86400_000 });
  t.after(() => later.close());
  const renewed = await readFile(join(a, 'tls', 'client-drover-server.crt'), 'utf8');
  assert.notEqual(renewed, first);
  await join_(t, e, b);
  assert.equal(await readFile(join(b, 'tls', 'client-drover-server.crt'), 'utf8'), renewed);
  assert.equal(await readFile(join(b, 'tls', 'client-drover-server.key'), 'utf8'), await readFile(join(a, 'tls', 'client-drover-server.key'), 'utf8'));
});

test('a single server moved onto etcd (datastore migrate) keeps its CA, tokens, node credentials and join token, and a second server gets them all', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const a = await dataDir(t, 'level');
  // As one server on LevelDB: its own files.
  const pki = await loadOrCreatePki({ dir: join(a, 'tls'), sans: serverSans([]), logger: silentLogger });
  const fileTokens = await TokenStore.open({ dataDir: a, logger: silentLogger });
  const api = await fileTokens.createApi({ role: 'admin' });
  const joinK10 = await loadOrCreateJoinToken({ dataDir: a, tokens: fileTokens, caHash: pki.caHash, logger: silentLogger });
  const fileCreds = await NodeCredentials.open({ dataDir: a, logger: silentLogger });
  await fileCreds.issue('edge-old', { serial: '0BEEF', notAfter: new Date(Date.now() + 86400_000), state: 'approved', keySha256: 'd'.repeat(64) });

  const pa = await serverParts(a, await join_(t, e, a));
  const b = await dataDir(t, 'b');
  const pb = await serverParts(b, await join_(t, e, b));
  for (const p of [pa, pb]) {
    assert.equal(p.pki.caHash, pki.caHash, 'the CA its devices trust');
    assert.ok('identity' in p.tokens.checkApi(api.token), 'its API token');
    assert.equal(p.credentials.check('edge-old', 'BEEF'), 'ok', 'its node');
    assert.equal(p.joinToken, joinK10, 'the join token its devices hold');
    assert.equal(p.tokens.checkJoin(joinK10.split('::')[1]!).id, joinK10.split('::')[1]!.split('.')[0]);
  }
});

test('tokens: one made on A works on B once its watch delivers it, one revoked on B is refused on A; the last use of a join token goes to one server only', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  const pa = await serverParts(a, await join_(t, e, a));
  const pb = await serverParts(b, await join_(t, e, b));

  const made = await pa.tokens.createApi({ role: 'view', description: 'made on A' });
  const createdAt = Date.now();
  const seenAt = await waitFor('B to accept the token made on A', async () => ('identity' in pb.tokens.checkApi(made.token) ? Date.now() : undefined), 10_000, 5);
  t.diagnostic(`a token created on A was accepted by B ${seenAt - createdAt} ms later`);
  assert.equal(pa.tokens.list().length, pb.tokens.list().length);

  assert.equal(await pb.tokens.revoke(made.id), true);
  await waitFor('A to refuse the token revoked on B', async () => {
    const r = pa.tokens.checkApi(made.token);
    return 'refused' in r && r.refused === 'revoked';
  }, 10_000, 5);

  const once = await pa.tokens.createJoin({ uses: 1 });
  await waitFor('B to know the join token', async () => pb.tokens.list().some((x) => x.id === once.id));
  const results = await Promise.allSettled([pa.tokens.redeemJoin(once.token), pb.tokens.redeemJoin(once.token)]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `both redeemed the last use: ${JSON.stringify(results.map((r) => r.status))}`);
  const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.match((refused.reason as Error).message, /used up/);
});

test('etcd stopped and started again under running servers: the watches come back by themselves, a token made on A afterwards works on B', { timeout: 90_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  const pa = await serverParts(a, await join_(t, e, a));
  const pb = await serverParts(b, await join_(t, e, b));
  await e.members[0]!.stop();
  await assert.rejects(pa.tokens.createApi({ role: 'view' }), /unreachable/, 'a change while etcd is down fails, naming why');
  assert.equal(pa.tokens.list().length, pb.tokens.list().length, 'and changes nothing');
  await e.members[0]!.start();
  const made = await waitFor('A to make a token once etcd is back', async () => pa.tokens.createApi({ role: 'view' }).catch(() => undefined), 30_000, 200);
  await waitFor('B to accept it', async () => 'identity' in pb.tokens.checkApi(made.token), 30_000, 20);
});

test('node credentials: joined through A is known on B, approved on B is approved on A, revoked on A is refused on B (B told, to cut the session)', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  const pa = await serverParts(a, await join_(t, e, a));
  const pb = await serverParts(b, await join_(t, e, b));
  const changes: CredentialChange[] = [];
  pb.credentials.onChange((c) => changes.push(c));

  await pa.credentials.issue('edge-1', { serial: '0A1B2C', notAfter: new Date(Date.now() + 86400_000), state: 'pending', keySha256: 'f'.repeat(64) });
  await waitFor('B to know edge-1 as pending', async () => pb.credentials.check('edge-1', 'A1B2C') === 'pending');
  await pb.credentials.approve('edge-1');
  await waitFor('A to see edge-1 approved', async () => pa.credentials.check('edge-1', 'A1B2C') === 'ok');
  await pa.credentials.revoke('edge-1');
  await waitFor('B to refuse edge-1', async () => pb.credentials.check('edge-1', 'A1B2C') === 'revoked');
  assert.deepEqual(changes.map((c) => c.after?.state), ['pending', 'revoked'], 'B is told of the changes it did not make');
});

test('an attacker reading every key and value in etcd (history included) finds no CA or client key, keyring key, admin, API or join token, nor any token or node secret hash', { timeout: 60_000 }, async (t) => {
  const e = await etcd(t);
  const [a, b] = [await dataDir(t, 'a'), await dataDir(t, 'b')];
  const pa = await serverParts(a, await join_(t, e, a));
  const pb = await serverParts(b, await join_(t, e, b));
  const api = await pa.tokens.createApi({ role: 'admin' });
  const join1 = await pb.tokens.createJoin({ uses: 3, labels: { site: 'north' } });
  await pa.credentials.issue('edge-7', { serial: '7777', notAfter: new Date(Date.now() + 86400_000), state: 'approved', keySha256: 'e'.repeat(64), secret: 'plain-listener-password-of-edge-7' });

  const secrets = new Map<string, string>();
  const pemBody = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  secrets.set('CA key', pemBody(pa.pki.caKey).slice(0, 64));
  secrets.set('client key', pemBody(pa.pki.serverClient.key).slice(0, 64));
  for (const k of (JSON.parse(await readFile(join(a, 'secrets', 'keys.json'), 'utf8')) as { keys: { key: string }[] }).keys) {
    secrets.set('keyring key', k.key);
    secrets.set('keyring key (hex)', Buffer.from(k.key, 'base64').toString('hex'));
  }
  for (const [what, tok] of [['admin token', pa.tokens.adminToken], ['API token', api.token], ['join token', join1.token], ['default join token', pa.joinToken.split('::')[1]!], ['node password', 'plain-listener-password-of-edge-7']] as const) {
    const secret = tok.includes('.') ? tok.split('.')[1]! : tok;
    secrets.set(what, secret);
    secrets.set(`${what} sha256`, createHash('sha256').update(secret).digest('hex'));
  }
  secrets.set('private key marker', 'PRIVATE KEY');
  secrets.set('node name', 'edge-7');
  secrets.set('join token label', 'north');

  const client = new Etcd3({ hosts: e.endpoints });
  t.after(() => client.close());
  const now = Number((await client.get('/none').exec()).header.revision);
  let values = 0;
  const keys = new Set<string>();
  for (let rev = 1; rev <= now; rev++) {
    const r = await client.getAll().prefix('').revision(String(rev)).exec();
    for (const kv of r.kvs) {
      keys.add(kv.key.toString());
      const text = `${kv.key.toString()} ${kv.value.toString('utf8')} ${kv.value.toString('base64')}`;
      values++;
      for (const [what, s] of secrets) assert.ok(!text.includes(s), `${what} in the clear under ${kv.key.toString()} at revision ${rev}`);
    }
  }
  for (const k of Object.values(CLUSTER_KEYS)) assert.ok(keys.has(k), `${k} written`);
  t.diagnostic(`${values} key/value versions scanned over ${now} revisions`);
});

test('the file form is unchanged on one server: tokens.json and nodes.json as before, no etcd', async (t) => {
  const dir = await dataDir(t, 'level');
  const tokens = await TokenStore.open({ dataDir: dir, logger: silentLogger });
  const made = await tokens.createApi({ role: 'view' });
  const file = JSON.parse(await readFile(join(dir, 'auth', 'tokens.json'), 'utf8'));
  assert.equal(file.version, 1);
  assert.equal(file.tokens[0].id, made.id);
  assert.equal((await stat(join(dir, 'auth', 'tokens.json'))).mode & 0o777, 0o600);
  const creds = await NodeCredentials.open({ dataDir: dir, logger: silentLogger });
  await creds.preapprove('n1');
  assert.match(await readFile(join(dir, 'auth', 'nodes.json'), 'utf8'), /^\{\n  "version": 1,\n  "nodes": \[\n    \{\n      "node": "n1",\n      "state": "approved",/);
  // A damaged file stops the start, naming it.
  await mkdir(join(dir, 'x', 'auth'), { recursive: true });
  await writeFile(join(dir, 'x', 'auth', 'nodes.json'), '{"version":1,"nodes":[{"node":1}]}');
  await assert.rejects(NodeCredentials.open({ dataDir: join(dir, 'x'), logger: silentLogger }), new RegExp(`${join(dir, 'x', 'auth', 'nodes.json')} is not a valid node credential file`));
});
