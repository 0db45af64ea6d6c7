/**
 * The server token of servers sharing an etcd datastore: read from a file or DROVER_SERVER_TOKEN (then
 * removed from the environment), refused when short or multi-line, and the key scrypt derives from it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { seal, unseal } from '../../src/util/aead.js';
import { deriveKey, newKdfParams, readServerToken, SERVER_TOKEN_ENV } from '../../server/cluster/server-token.js';

const TOKEN = 'abcdefghijklmnopqrstuvwxyz012345';

test('from DROVER_SERVER_TOKEN: read once and removed from the environment (no child inherits it)', async () => {
  const env: NodeJS.ProcessEnv = { [SERVER_TOKEN_ENV]: ` ${TOKEN}\n`, PATH: '/bin' };
  assert.equal(await readServerToken({ env }), TOKEN);
  assert.deepEqual(env, { PATH: '/bin' });
  assert.equal(await readServerToken({ env: {} }), undefined);
});

test('from --server-token-file (it wins over the variable); empty, missing, short or multi-line: refused naming the source', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-server-token-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'token');
  await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
  const env: NodeJS.ProcessEnv = { [SERVER_TOKEN_ENV]: 'the-variable-token-0123456789' };
  assert.equal(await readServerToken({ file, env }), TOKEN);
  assert.equal(env[SERVER_TOKEN_ENV], undefined);
  await writeFile(file, '\n');
  await assert.rejects(readServerToken({ file, env: {} }), new RegExp(`--server-token-file ${file} is empty`));
  await assert.rejects(readServerToken({ file: join(dir, 'nope'), env: {} }), new RegExp(`cannot read --server-token-file ${join(dir, 'nope')}: .*ENOENT`));
  await writeFile(file, 'short');
  await assert.rejects(readServerToken({ file, env: {} }), new RegExp(`the server token \\(--server-token-file ${file}\\) is 5 characters; use at least 16`));
  await assert.rejects(readServerToken({ env: { [SERVER_TOKEN_ENV]: 'line-one-0123456789\nline-two' } }), /the server token \(DROVER_SERVER_TOKEN\) holds control characters/);
});

test('the derived key: the same token and salt open what it sealed; another token or salt does not; absurd parameters refused', async () => {
  const params = newKdfParams();
  const key = await deriveKey(TOKEN, params);
  const sealed = seal(key, Buffer.from('ca key'), '/drover/cluster/bootstrap');
  const again = await deriveKey(TOKEN, params);
  assert.equal(unseal((id) => (id === again.id ? again.key : undefined), sealed, '/drover/cluster/bootstrap').toString(), 'ca key');
  for (const other of [await deriveKey(`${TOKEN}x`, params), await deriveKey(TOKEN, newKdfParams())]) {
    assert.throws(() => unseal((id) => (id === other.id ? other.key : undefined), sealed, '/drover/cluster/bootstrap'), /authentication with key "server-token" failed/);
  }
  await assert.rejects(deriveKey(TOKEN, { ...params, N: 2 ** 30 }), /names key derivation .* which this version does not use/);
});
