/**
 * EtcdStore against real etcd members (Debian's etcd 3.4) and real faults: a member stopped, paused and
 * restarted under a running store; compaction behind a watch's back; a 3-member cluster losing its
 * leader to kill -9; TLS with client certificates; Secrets at rest. The contract every store keeps is
 * test/integration/store-contract.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { sendError } from '../../server/api/respond.js';
import { Keyring } from '../../server/secrets/keyring.js';
import { EtcdStore, type EtcdStoreOptions } from '../../server/store/etcd.js';
import { LevelStore } from '../../server/store/level.js';
import { openStore } from '../../server/store/open.js';
import type { WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { LeaderElection } from '../../server/leader/election.js';
import { GoneError, NotLeaderError, StoreError, StoreUnavailableError, ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { waitFor } from '../helpers/cluster.js';
import { etcdLeader, startEtcd, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';

type After = { after(fn: () => Promise<void> | void): void };

const pod = (name: string): ApiObject => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'nginx' }] } });

async function etcdFor(t: After, n = 1, opts: { tls?: boolean } = {}): Promise<EtcdCluster> {
  const c = n === 1 ? await startEtcd(opts) : await startEtcdCluster(n, opts);
  t.after(() => c.stop());
  return c;
}

async function storeOn(t: After, opts: EtcdStoreOptions): Promise<EtcdStore> {
  const store = await EtcdStore.open({ prefix: `/t-${randomBytes(4).toString('hex')}/`, ...opts });
  t.after(() => store.close());
  return store;
}

/** How long `p` took to settle, and its outcome. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; value?: T; err?: unknown }> {
  const t0 = performance.now();
  try {
    return { ms: performance.now() - t0, value: await p };
  } catch (err) {
    return { ms: performance.now() - t0, err };
  }
}

function assertUnavailable(err: unknown, endpoint: string): void {
  assert.ok(err instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  assert.ok(err instanceof StoreError, 'a StoreError too (503 StoreUnavailable)');
  assert.equal(err.code, 503);
  assert.ok(err.message.startsWith(`etcd at ${endpoint} unreachable: `), err.message);
}

test('open against an endpoint where no etcd listens: one StoreUnavailableError naming it, at once', async () => {
  const { freePort } = await import('../helpers/http.js');
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  const r = await timed(EtcdStore.open({ endpoints: [endpoint], callTimeoutMs: 3000 }));
  assertUnavailable(r.err, endpoint);
  assert.match((r.err as Error).message, /ECONNREFUSED|No connection established/);
  // "Fails instead of hanging", bounded generously for a loaded machine (connection refused is immediate).
  assert.ok(r.ms < 15_000, `failed after ${r.ms} ms`);
  await assert.rejects(EtcdStore.open({ endpoints: ['etcd-1:2379'] }), /datastoreEndpoint: "etcd-1:2379" is not http\(s\):\/\/host:port/);
  await assert.rejects(EtcdStore.open({ endpoints: ['https://a:2379', 'http://b:2379'] }), /mixes https and http/);
});

test('etcd stopped mid-run: calls fail fast naming the endpoint, the API answers 503 with the cause; etcd back: the same store works and a watch opened before delivers every change exactly once', async (t) => {
  const etcd = await etcdFor(t);
  const endpoint = etcd.endpoints[0]!;
  const store = await storeOn(t, { endpoints: etcd.endpoints, prefix: '/outage/', callTimeoutMs: 2000 });
  const base = store.revision();
  const seen: WatchEvent[] = [];
  const w = store.watch(base, (e) => seen.push(e));
  t.after(() => w.close());
  for (let i = 0; i < 5; i++) await store.create(pod(`before-${i}`));
  await waitFor('the watch to see the first writes', async () => seen.length === 5);

  await etcd.members[0]!.stop();
  const calls: Array<() => Promise<unknown>> = [() => store.get('Pod', 'default', 'before-0'), () => store.list('Pod'), () => store.create(pod('lost')), () => store.patch('Pod', 'default', 'before-1', (p) => p), () => store.delete('Pod', 'default', 'before-2')];
  for (const call of calls) {
    const r = await timed(call());
    assertUnavailable(r.err, endpoint);
    // The behaviour is "fails instead of hanging": bounded generously, a loaded CI machine is slow.
    assert.ok(r.ms < 15_000, `a call took ${r.ms} ms with etcd down (call timeout 2000)`);
  }

  // The API's error path: a store call's error becomes a 503 Status with its message (server/api/respond.ts).
  const err = await store.get('Pod', 'default', 'x').catch((e: unknown) => e);
  const api = createServer((_req, res) => sendError(res, err));
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => api.close(() => r())));
  const res = await fetch(`http://127.0.0.1:${(api.address() as { port: number }).port}/`);
  const status = (await res.json()) as { code: number; reason: string; message: string };
  assert.equal(res.status, 503);
  assert.equal(status.reason, 'StoreUnavailable');
  assert.match(status.message, new RegExp(`^etcd at ${endpoint} unreachable: `));

  // Another client writes as soon as etcd is back, while this store's watch is still reconnecting.
  await etcd.members[0]!.start();
  const other = await storeOn(t, { endpoints: etcd.endpoints, prefix: '/outage/' });
  for (let i = 0; i < 5; i++) await other.create(pod(`other-${i}`));
  await waitFor('the same store to answer again', async () => (await store.get('Pod', 'default', 'before-0').catch(() => undefined)) !== undefined, 30_000);
  for (let i = 0; i < 5; i++) await store.create(pod(`after-${i}`));
  await waitFor('the watch to see every write', async () => seen.some((e) => e.object.metadata.name === 'after-4'), 30_000);
  const names = seen.map((e) => e.object.metadata.name);
  assert.deepEqual(names, [...[0, 1, 2, 3, 4].map((i) => `before-${i}`), ...[0, 1, 2, 3, 4].map((i) => `other-${i}`), ...[0, 1, 2, 3, 4].map((i) => `after-${i}`)], 'each change once, in order, none lost');
  assert.deepEqual(seen.map((e) => e.revision), seen.map((_, i) => base + 1 + i));
  assert.equal(await store.get('Pod', 'default', 'lost'), undefined, 'the create refused during the outage did not land');
});

test('kill -9 of a single etcd under concurrent writes: every acknowledged write is there after the restart', async (t) => {
  const etcd = await etcdFor(t);
  const store = await storeOn(t, { endpoints: etcd.endpoints, prefix: '/kill9/', callTimeoutMs: 2000 });
  const acked = new Set<string>();
  let refused = 0;
  let stop = false;
  const writers = Array.from({ length: 8 }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      try {
        acked.add((await store.create(pod(`w${w}-${i}`))).metadata.name);
      } catch (err) {
        assert.ok(err instanceof StoreUnavailableError, `a write failed otherwise: ${String(err)}`);
        refused += 1;
        stop = true;
      }
    }
  });
  await waitFor('some writes acknowledged', async () => acked.size >= 200, 20_000, 10);
  await etcd.members[0]!.kill();
  await Promise.all(writers);
  assert.ok(refused > 0, 'writes in flight at the kill were refused, not acknowledged');
  await etcd.members[0]!.start();
  const after = await storeOn(t, { endpoints: etcd.endpoints, prefix: '/kill9/' });
  const stored = new Set((await after.list('Pod')).items.map((p) => p.metadata.name));
  const lost = [...acked].filter((n) => !stored.has(n));
  assert.deepEqual(lost, [], `${lost.length} of ${acked.size} acknowledged writes lost`);
  t.diagnostic(`${acked.size} acknowledged, ${stored.size} stored (${stored.size - acked.size} landed without an answer), ${refused} refused`);
});

test('a list longer than one range request (2,000 keys) is whole and at one revision while writes go on', async (t) => {
  const etcd = await etcdFor(t);
  const store = await storeOn(t, { endpoints: etcd.endpoints });
  const names = Array.from({ length: 2_300 }, (_, i) => `p${String(i).padStart(5, '0')}`);
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < names.length) await store.create(pod(names[next++]!));
  }));
  // Updates race the list: each item must be as it was at the list's revision, none after.
  let stop = false;
  let patched = 0;
  const churn = (async () => {
    for (let i = 0; !stop; i++, patched++) await store.patch('Pod', 'default', names[(i * 7919) % names.length]!, (p) => ({ ...p, metadata: { ...p.metadata, labels: { n: String(i) } } }));
  })();
  const { items, revision } = await store.list('Pod');
  stop = true;
  await churn;
  assert.deepEqual(items.map((p) => p.metadata.name), names);
  assert.ok(items.every((p) => Number(p.metadata.resourceVersion) <= revision), 'no item newer than the list revision');
  assert.ok(patched > 0);
});

test('etcd paused (holds its connections, answers nothing): calls fail with StoreUnavailableError at the call timeout, then work once it resumes', async (t) => {
  const etcd = await etcdFor(t);
  const store = await storeOn(t, { endpoints: etcd.endpoints, callTimeoutMs: 1500 });
  await store.create(pod('a'));
  etcd.members[0]!.pause();
  t.after(() => etcd.members[0]!.resume());
  const r = await timed(store.get('Pod', 'default', 'a'));
  assertUnavailable(r.err, etcd.endpoints[0]!);
  // Nothing answers, so it waits out its timeout; then it gives up rather than hang (bounded generously).
  assert.ok(r.ms >= 1000 && r.ms < 15_000, `gave up after ${r.ms} ms (call timeout 1500)`);
  etcd.members[0]!.resume();
  await waitFor('the store to answer again', async () => (await store.get('Pod', 'default', 'a').catch(() => undefined)) !== undefined, 30_000);
  assert.equal((await store.create(pod('b'))).metadata.name, 'b');
});

test('history compacted behind a watch (by another server): the watch ends with GoneError "list again"; the store refuses to watch from there at once afterwards', async (t) => {
  const etcd = await etcdFor(t);
  const store = await storeOn(t, { endpoints: etcd.endpoints });
  const base = store.revision();
  for (let i = 0; i < 10; i++) await store.create(pod(`p${i}`));
  // Another server on the same etcd compacts; this store has not heard of it.
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.after(() => client.close());
  await client.kv.compact({ revision: base + 8 });
  assert.equal(store.compactedRevision() < base + 8, true);
  const gone = await new Promise<Error>((resolve) => {
    store.watch(base + 2, () => assert.fail('no event from compacted history'), { onError: resolve });
  });
  assert.ok(gone instanceof GoneError, `${gone.name}: ${gone.message}`);
  assert.equal(gone.code, 410);
  assert.match(gone.message, /compacted.*list again/);
  assert.throws(() => store.watch(base + 3, () => {}), GoneError, 'the floor learnt from etcd is checked synchronously');
  // From the floor on, the watch works.
  const events: WatchEvent[] = [];
  const w = store.watch(base + 8, (e) => events.push(e));
  t.after(() => w.close());
  await waitFor('events after the floor', async () => events.length === 2);
  assert.deepEqual(events.map((e) => e.revision), [base + 9, base + 10]);
  // A new store finds the floor when it opens.
  const again = await storeOn(t, { endpoints: etcd.endpoints });
  assert.equal(again.compactedRevision(), base + 8);
});

test('3-member cluster: kill -9 of the leader, writes keep succeeding and none acknowledged is lost; a watch sees each once', async (t) => {
  const etcd = await etcdFor(t, 3);
  // Generous call timeout: on a loaded CI machine an election plus the retry can take longer than 5 s;
  // what is tested is that the writes succeed, not how fast.
  const store = await storeOn(t, { endpoints: etcd.endpoints, callTimeoutMs: 15_000 });
  const base = store.revision();
  const seen: WatchEvent[] = [];
  const w = store.watch(base, (e) => seen.push(e));
  t.after(() => w.close());
  for (let i = 0; i < 20; i++) await store.create(pod(`before-${i}`));
  const leader = await etcdLeader(etcd);
  assert.ok(leader, 'a leader');
  await leader.kill();
  const acked: string[] = [];
  const failed: string[] = [];
  for (let i = 0; i < 40; i++) {
    try {
      acked.push((await store.create(pod(`after-${i}`))).metadata.name);
    } catch (err) {
      failed.push(`${i}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  assert.deepEqual(failed, [], 'every write after the kill succeeds');
  const { items } = await store.list('Pod');
  assert.equal(items.length, 60);
  await waitFor('the watch to see every write', async () => seen.length === 60, 30_000);
  assert.deepEqual(seen.map((e) => e.revision), seen.map((_, i) => base + 1 + i), 'each revision once, in order');
  const newLeader = await etcdLeader(etcd);
  assert.ok(newLeader && newLeader !== leader);
});

test('TLS with client certificates: the CA and client certificate connect; no client certificate or one from another CA is refused with the cause', async (t) => {
  const etcd = await etcdFor(t, 1, { tls: true });
  const tls = etcd.tls!;
  const [ca, cert, key, strangerCert, strangerKey] = await Promise.all([tls.caFile, tls.clientCertFile, tls.clientKeyFile, tls.strangerCertFile, tls.strangerKeyFile].map((f) => readFile(f)));
  assert.match(etcd.endpoints[0]!, /^https:/);
  // As the server opens it: k3s's flags, files named.
  const store = await openStore({ levelPath: '/nonexistent', logger: silentLogger, datastoreEndpoint: ` ${etcd.endpoints[0]}, `, datastoreCafile: tls.caFile, datastoreCertfile: tls.clientCertFile, datastoreKeyfile: tls.clientKeyFile });
  t.after(() => store.close());
  assert.ok(store instanceof EtcdStore);
  const created = await store.create(pod('over-tls'));
  assert.deepEqual(await store.get('Pod', 'default', 'over-tls'), created);
  await assert.rejects(
    openStore({ levelPath: '/nonexistent', logger: silentLogger, datastoreEndpoint: etcd.endpoints[0], datastoreCafile: join(tmpdir(), 'no-such-ca.pem') }),
    (err: unknown) => err instanceof ValidationError && /datastoreCafile: cannot read .*no-such-ca\.pem: ENOENT/.test(err.message),
  );
  for (const bad of [{ ca }, { ca, cert: strangerCert, key: strangerKey }]) {
    const r = await timed(EtcdStore.open({ endpoints: etcd.endpoints, tls: bad, callTimeoutMs: 3000 }));
    assertUnavailable(r.err, etcd.endpoints[0]!);
    assert.match((r.err as Error).message, /bad certificate.*\(etcd refused the client certificate: --datastore-certfile/);
  }
  // Members whose certificate the given CA did not sign (no CA given: the system's roots).
  const r = await timed(EtcdStore.open({ endpoints: etcd.endpoints, tls: { cert, key }, callTimeoutMs: 3000 }));
  assertUnavailable(r.err, etcd.endpoints[0]!);
  assert.match((r.err as Error).message, /not signed by --datastore-cafile/);
  await assert.rejects(EtcdStore.open({ endpoints: etcd.endpoints, tls: { ca, cert } }), /datastoreCertfile: a client certificate and its key go together/);
});

test('Secrets are sealed in etcd (no plaintext, no base64 in any value), read back, and plaintext ones are sealed at the next open with the keyring', async (t) => {
  const etcd = await etcdFor(t);
  const dir = await mkdtemp(join(tmpdir(), 'drover-etcd-secrets-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const value = `hunter2-${randomBytes(6).toString('hex')}`;
  const b64 = Buffer.from(value).toString('base64');
  const secret = (name: string): ApiObject => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'Opaque', data: { password: b64 } }) as ApiObject;
  const prefix = '/sealed/';
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.after(() => client.close());
  const everything = async () => (await client.getAll().prefix(prefix).strings()) as Record<string, string>;

  const plain = await EtcdStore.open({ endpoints: etcd.endpoints, prefix });
  await plain.create(secret('old'));
  await plain.close();
  assert.ok(Object.values(await everything()).some((v) => v.includes(b64)), 'control: without the keyring the value is there to find');

  const keyring = await Keyring.loadOrCreate(dir);
  const store = await storeOn(t, { endpoints: etcd.endpoints, prefix, secrets: keyring });
  assert.deepEqual(await store.secretKeyUsage(), { [keyring.primaryKeyId]: 1 }, 'the plaintext Secret was sealed at open');
  await store.create(secret('db'));
  const cur = (await store.get('Secret', 'default', 'db'))!;
  await store.update({ ...cur, metadata: { ...cur.metadata, labels: { touched: 'yes' } } });
  assert.equal(((await store.get('Secret', 'default', 'db')) as unknown as { data: { password: string } }).data.password, b64);
  const values = await everything();
  const hits = Object.entries(values).filter(([, v]) => v.includes(value) || v.includes(b64));
  assert.deepEqual(hits, []);
  assert.ok(values[`${prefix}registry/Secret/default/db`]!.startsWith(`k8s:enc:aesgcm:v1:${keyring.primaryKeyId}:`));
  // A sealed value moved to another Secret's key does not open: it names the Secret, not garbage.
  await client.put(`${prefix}registry/Secret/default/old`).value(values[`${prefix}registry/Secret/default/db`]!);
  await assert.rejects(store.get('Secret', 'default', 'old'), /cannot decrypt secrets "default\/old"/);
});

test('openStore: no datastore endpoint is the embedded LevelDB store; TLS files without an endpoint are refused, not ignored', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-open-store-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const store = await openStore({ levelPath: join(dir, 'store'), logger: silentLogger, datastoreEndpoint: '' });
  t.after(() => store.close());
  assert.ok(store instanceof LevelStore);
  await store.create(pod('local'));
  // One server on its own LevelDB: nothing to fence; closing the view leaves the store open.
  const view = store.fenced(() => undefined);
  assert.equal((await view.create(pod('unfenced'))).metadata.name, 'unfenced');
  await view.close();
  assert.equal((await store.get('Pod', 'default', 'unfenced'))?.metadata.name, 'unfenced');
  await assert.rejects(
    openStore({ levelPath: join(dir, 'other'), logger: silentLogger, datastoreCafile: '/etc/ssl/ca.pem' }),
    (err: unknown) => err instanceof ValidationError && /datastoreCafile: given without datastoreEndpoint/.test(err.message),
  );
});

test('fenced writes (the leader\'s components): refused with NotLeaderError and not written once the leader key is gone or re-created; the unfenced store (the API) goes on', async (t) => {
  const etcd = await etcdFor(t);
  const store = await storeOn(t, { endpoints: etcd.endpoints });
  const elect = (identity: string) => {
    const e = new LeaderElection({ client: store.etcd, name: '/fence-test/leader', identity, leaseDurationSeconds: 6, renewDeadlineSeconds: 4, retryPeriodSeconds: 1, logger: silentLogger });
    t.after(() => e.close());
    e.start();
    return e;
  };
  const a = elect('a');
  await waitFor('a to lead', async () => a.isLeader(), 30_000);
  const view = store.fenced(() => a.fence());
  const web = await view.create(pod('web'));
  assert.equal((await view.patch('Pod', 'default', 'web', (p) => ({ ...p, metadata: { ...p.metadata, labels: { by: 'a' } } })))!.metadata.labels!.by, 'a');

  // The lease revoked behind a's back (what an expiry looks like): a fence taken while a believed it
  // led no longer holds, whatever a believes.
  const stale = a.fence()!;
  await store.etcd.leaseClient.leaseRevoke({ ID: (stale as typeof stale & { leaseId: string }).leaseId });
  const zombie = store.fenced(() => stale);
  const refused = (err: unknown) => err instanceof NotLeaderError && err.code === 503 && /does not lead.*pods "default\/(web|db)".*not made/.test(err.message);
  await assert.rejects(zombie.create(pod('db')), refused);
  await assert.rejects(zombie.patch('Pod', 'default', 'web', (p) => ({ ...p, metadata: { ...p.metadata, labels: { by: 'zombie' } } })), refused);
  await assert.rejects(zombie.update({ ...web, metadata: { ...web.metadata, resourceVersion: undefined, labels: { by: 'zombie' } } }), refused);
  await assert.rejects(zombie.delete('Pod', 'default', 'web'), refused);
  assert.equal(await store.get('Pod', 'default', 'db'), undefined, 'the refused create wrote nothing');
  assert.equal((await store.get('Pod', 'default', 'web'))!.metadata.labels!.by, 'a', 'the refused patch, update and delete wrote nothing');
  assert.equal((await store.create(pod('db'))).metadata.name, 'db', 'the API writes through the store itself');

  // Another server wins the key (re-created, another create revision): the old fence stays refused,
  // the new leader's writes go through; no fence at all is refused before anything is sent.
  const b = elect('b');
  await waitFor('b to lead', async () => b.isLeader(), 30_000);
  await assert.rejects(zombie.create(pod('late')), NotLeaderError);
  assert.equal((await store.fenced(() => b.fence()).patch('Pod', 'default', 'web', (p) => ({ ...p, metadata: { ...p.metadata, labels: { by: 'b' } } })))!.metadata.labels!.by, 'b');
  await assert.rejects(store.fenced(() => undefined).create(pod('nobody')), NotLeaderError);
  await zombie.close();
  assert.ok(await store.get('Pod', 'default', 'web'), 'closing a view leaves the store open');
  assert.equal(await store.get('Pod', 'default', 'late'), undefined);
  assert.equal(await store.get('Pod', 'default', 'nobody'), undefined);
});
