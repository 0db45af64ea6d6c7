import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { Keyring, keyringPath } from '../../server/secrets/keyring.js';
import { rotateSecretsKey, storePath } from '../../server/secrets/rotate.js';
import { LevelStore } from '../../server/store/level.js';
import type { WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { StoreError } from '../../src/util/errors.js';
import { createLogger } from '../../src/util/logger.js';
import { Writable } from 'node:stream';
import { grepDir } from '../helpers/disk-grep.js';

const VALUE = `hunter2-${randomBytes(6).toString('hex')}`;
const B64 = Buffer.from(VALUE).toString('base64');

function secret(name: string, value = VALUE, namespace = 'default'): ApiObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type: 'Opaque', data: { password: Buffer.from(value).toString('base64') } } as ApiObject;
}

async function dataDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-secrets-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function open(dir: string, encrypted = true): Promise<LevelStore> {
  return LevelStore.open({ path: storePath(dir), ...(encrypted ? { secrets: await Keyring.loadOrCreate(dir) } : {}) });
}

/** Create, update (value kept in the new version too), delete: every write path that carries the Secret. */
async function writeAllPaths(store: LevelStore): Promise<void> {
  await store.create(secret('db'));
  const cur = await store.get('Secret', 'default', 'db');
  await store.update({ ...cur!, metadata: { ...cur!.metadata, labels: { touched: 'yes' } } });
  await store.patch('Secret', 'default', 'db', (s) => ({ ...s, metadata: { ...s.metadata, annotations: { a: 'b' } } }));
  await store.create(secret('gone'));
  await store.delete('Secret', 'default', 'gone');
}

test('a Secret value is nowhere on disk in plaintext or base64 (objects, change log, LevelDB .log/.ldb files), and still reads back', async (t) => {
  const dir = await dataDir(t);
  const store = await open(dir);
  await writeAllPaths(store);
  assert.equal(Buffer.from((await store.get('Secret', 'default', 'db'))!.data!.password!, 'base64').toString(), VALUE);
  const { items } = await store.list('Secret');
  assert.deepEqual(items.map((s) => s.metadata.name), ['db']);
  const events: WatchEvent[] = [];
  await new Promise<void>((resolve) => {
    const w = store.watch(0, (e) => {
      events.push(e);
      if (events.length === 5) {
        w.close();
        resolve();
      }
    });
  });
  assert.ok(events.every((e) => e.object.kind === 'Secret' && (e.object as unknown as { data: Record<string, string> }).data.password === B64), 'watch replay decrypts');
  await store.close();
  const { hits, files } = await grepDir(dir, [VALUE, B64]);
  assert.ok(files > 3, `expected LevelDB files, found ${files}`);
  assert.deepEqual(hits, []);
});

test('control: without the keyring the same writes leave the value on disk (so the scan above can see it)', async (t) => {
  const dir = await dataDir(t);
  const store = await open(dir, false);
  await writeAllPaths(store);
  await store.close();
  const { hits } = await grepDir(dir, [B64]);
  assert.ok(hits.length > 0, 'the scan finds a plaintext Secret');
});

test('key file, keyring dir and store dir are private; a loose existing one is tightened', async (t) => {
  const dir = await dataDir(t);
  const store = await open(dir);
  await store.close();
  assert.equal((await stat(keyringPath(dir))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'secrets'))).mode & 0o777, 0o700);
  assert.equal((await stat(storePath(dir))).mode & 0o777, 0o700);
  const { chmod } = await import('node:fs/promises');
  await chmod(keyringPath(dir), 0o644);
  await chmod(storePath(dir), 0o755);
  (await open(dir)).close();
  assert.equal((await stat(keyringPath(dir))).mode & 0o777, 0o600);
  assert.equal((await stat(storePath(dir))).mode & 0o777, 0o700);
});

test('a wrong key gives an error naming the Secret, not garbage; other objects still read', async (t) => {
  const dir = await dataDir(t);
  const store = await open(dir);
  await store.create(secret('db'));
  await store.create({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'default' }, data: { a: 'b' } } as ApiObject);
  await store.close();
  // Same key id, other key material: what a restored backup with the wrong key file looks like.
  const file = JSON.parse(await readFile(keyringPath(dir), 'utf8'));
  file.keys[0].key = randomBytes(32).toString('base64');
  await writeFile(keyringPath(dir), JSON.stringify(file));
  const logged: string[] = [];
  const destination = new Writable({ write: (c, _e, cb) => (logged.push(String(c)), cb()) });
  const wrong = await LevelStore.open({ path: storePath(dir), secrets: await Keyring.loadOrCreate(dir), logger: createLogger({ name: 't', destination }) });
  t.after(() => wrong.close());
  assert.ok(logged.some((l) => /does not decrypt the stored Secrets/.test(l) && /secrets \\"default\/db\\"/.test(l)), `said at start: ${logged.join('')}`);
  await assert.rejects(wrong.get('Secret', 'default', 'db'), (err: Error) => err instanceof StoreError && /cannot decrypt secrets "default\/db"/.test(err.message) && /authentication/.test(err.message));
  await assert.rejects(wrong.list('Secret'), /secrets "default\/db"/);
  assert.equal((await wrong.get('ConfigMap', 'default', 'cfg'))?.data?.a, 'b');
});

test('a tampered ciphertext, or one moved to another Secret, fails naming the Secret', async (t) => {
  const dir = await dataDir(t);
  const store = await open(dir);
  await store.create(secret('a', 'value-of-a'));
  await store.create(secret('b', 'value-of-b'));
  await store.close();
  const db = new ClassicLevel<string, unknown>(storePath(dir), { valueEncoding: 'json' });
  const a = (await db.get('/registry/Secret/default/a')) as string;
  const b = (await db.get('/registry/Secret/default/b')) as string;
  // Attacker with write access to the files: b's row gets a's ciphertext (would expose a's value as b's).
  await db.put('/registry/Secret/default/b', a);
  // and a's ciphertext gets one byte flipped.
  const raw = Buffer.from(a.slice(a.lastIndexOf(':') + 1), 'base64');
  raw[raw.length - 20]! ^= 1;
  await db.put('/registry/Secret/default/a', a.slice(0, a.lastIndexOf(':') + 1) + raw.toString('base64'));
  await db.close();
  assert.ok(b.startsWith('k8s:enc:aesgcm:v1:k1:'), b.slice(0, 30));
  const s = await open(dir);
  t.after(() => s.close());
  await assert.rejects(s.get('Secret', 'default', 'b'), /cannot decrypt secrets "default\/b"/);
  await assert.rejects(s.get('Secret', 'default', 'a'), /cannot decrypt secrets "default\/a"/);
});

test('Secrets written before encryption are readable, and encrypted (off the disk files too) at the next start with the keyring', async (t) => {
  const dir = await dataDir(t);
  const plain = await open(dir, false);
  await writeAllPaths(plain);
  await plain.close();
  const store = await open(dir);
  assert.equal((await store.get('Secret', 'default', 'db'))?.data?.password, B64);
  assert.deepEqual(await store.secretKeyUsage(), { k1: 6 });
  await store.close();
  assert.deepEqual((await grepDir(dir, [VALUE, B64])).hits, []);
});

test('rotate-key: new primary key, every Secret re-encrypted, old key gone from the keyring and its ciphertext from the files', async (t) => {
  const dir = await dataDir(t);
  const store = await open(dir);
  await writeAllPaths(store);
  await store.create(secret('other', 'x', 'kube-system'));
  await store.close();
  const oldKey = JSON.parse(await readFile(keyringPath(dir), 'utf8')).keys[0].key as string;
  const r = await rotateSecretsKey(dir);
  assert.deepEqual(r, { keyId: 'k2', droppedKeys: ['k1'], objects: 2, logEntries: 6, plaintext: 0 });
  const ring = await readFile(keyringPath(dir), 'utf8');
  assert.ok(!ring.includes(oldKey) && !ring.includes('"k1"'), ring);
  assert.equal((await stat(keyringPath(dir))).mode & 0o777, 0o600);
  assert.deepEqual((await grepDir(dir, ['k8s:enc:aesgcm:v1:k1:', VALUE, B64])).hits, []);
  const after = await open(dir);
  t.after(() => after.close());
  assert.equal((await after.get('Secret', 'default', 'db'))?.data?.password, B64);
  assert.deepEqual(await after.secretKeyUsage(), { k2: 8 });
});

test('rotate-key refuses while the server holds the store, and changes nothing', async (t) => {
  const dir = await dataDir(t);
  const running = await open(dir);
  t.after(() => running.close());
  await running.create(secret('db'));
  const before = await readFile(keyringPath(dir), 'utf8');
  await assert.rejects(rotateSecretsKey(dir), /while the server runs.*stop the server/);
  assert.equal(await readFile(keyringPath(dir), 'utf8'), before);
  assert.equal((await running.get('Secret', 'default', 'db'))?.data?.password, B64);
});

test('rotate-key on a data dir without a keyring says so', async (t) => {
  const dir = await dataDir(t);
  await assert.rejects(rotateSecretsKey(dir), /no secrets keyring at .*keys\.json: start the server once/);
  await assert.rejects(stat(join(dir, 'secrets')), { code: 'ENOENT' }, 'nothing created');
});
