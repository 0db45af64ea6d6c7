/**
 * `drover secrets rotate-key` as an operator runs it, on a real server's data dir: refused while the
 * server runs, then with the server stopped a new key re-encrypts every Secret and the old key is
 * gone (from the key file and from every file of the store); the restarted server serves the Secrets.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { drover } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/cluster.js';
import { grepDir } from '../helpers/disk-grep.js';

const VALUE = `rotate-${randomBytes(8).toString('hex')}`;
const B64 = Buffer.from(VALUE).toString('base64');

test('rotate-key: refused while the server runs; then re-encrypts every Secret and drops the old key', { timeout: 180_000 }, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-rotate-'));
  let cluster: TestServer | undefined = await startTestServer({ dataDir });
  after(async () => {
    await cluster?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  for (const name of ['db', 'api']) {
    const r = await cluster.api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { password: VALUE } });
    assert.equal(r.status, 201, r.text);
  }
  const keysPath = join(dataDir, 'secrets', 'keys.json');
  const before = await readFile(keysPath, 'utf8');
  const oldKey = JSON.parse(before).keys[0].key as string;

  const busy = await drover({}, ['secrets', 'rotate-key', '--data-dir', dataDir]);
  assert.equal(busy.code, 1, busy.stderr);
  assert.match(busy.stderr, /^error: cannot rotate the secrets key while the server runs: .*stop the server and run it again\n$/);
  assert.equal(await readFile(keysPath, 'utf8'), before, 'the keyring is untouched');

  await cluster.stop();
  cluster = undefined;
  const ok = await drover({}, ['secrets', 'rotate-key', '--data-dir', dataDir]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^secrets key rotated: k2 is the primary key; re-encrypted 2 Secret\(s\) and \d+ change-log entr(y|ies) \(0 were plaintext\); dropped old key\(s\) k1\n$/);
  const after_ = await readFile(keysPath, 'utf8');
  assert.ok(!after_.includes(oldKey), 'the old key material is gone from the key file');
  assert.deepEqual(JSON.parse(after_).keys.map((k: { id: string }) => k.id), ['k2']);
  assert.deepEqual((await grepDir(dataDir, ['k8s:enc:aesgcm:v1:k1:', VALUE, B64])).hits, []);

  cluster = await startTestServer({ dataDir });
  for (const name of ['db', 'api']) {
    const r = await cluster.api('GET', `/api/v1/namespaces/default/secrets/${name}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.data.password, B64);
  }
});
