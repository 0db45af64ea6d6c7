/**
 * Several servers on one broker: each its own client id (one id would make them take each other's
 * session), never one an operator or a node could take, and one shared-subscription group.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isOperatorClientId, isReservedClientId, mosquittoAcl, serverClientId, sharedFilter, SERVER_CLIENT_ID, topics } from '../../src/contract/topics.js';
import { ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { loadOrCreateServerId } from '../../server/mqtt/server-id.js';

test('a server id becomes drover-server-ID; none keeps drover-server; an id that would change the topic or session meaning is refused', () => {
  assert.equal(serverClientId(), SERVER_CLIENT_ID);
  assert.equal(serverClientId('edge-hub-1'), 'drover-server-edge-hub-1');
  for (const bad of ['', 'a/b', 'a+b', '#', 'x'.repeat(49), 'a b']) assert.throws(() => serverClientId(bad), (e) => e instanceof ValidationError && /server-id/.test(e.message), bad);
});

test('operators cannot take a server\'s client id, old or new', () => {
  for (const id of ['drover-server', 'drover-server-a', 'drover-server-edge-hub-1']) {
    assert.equal(isReservedClientId(id), true, id);
    assert.equal(isOperatorClientId(id), false, id);
  }
  assert.equal(isOperatorClientId('drover-serverx'), true);
});

test('shared filters: the drover group, and the ACL grants the servers\' username the filters under it', () => {
  assert.equal(sharedFilter(topics.status('+')), '$share/drover/drover/v1/nodes/+/status');
  assert.match(mosquittoAcl(SERVER_CLIENT_ID), /^user drover-server\ntopic readwrite drover\/v1\/#$/m);
});

test('the server id is kept in the data dir: the same across restarts, different per data dir, a bad one named', async () => {
  const a = await mkdtemp(join(tmpdir(), 'drover-server-id-'));
  const b = await mkdtemp(join(tmpdir(), 'drover-server-id-'));
  try {
    const first = await loadOrCreateServerId(a, silentLogger);
    assert.equal(serverClientId(first).startsWith('drover-server-'), true);
    assert.equal(await loadOrCreateServerId(a, silentLogger), first);
    assert.equal((await readFile(join(a, 'server-id'), 'utf8')).trim(), first);
    assert.notEqual(await loadOrCreateServerId(b, silentLogger), first);
    await writeFile(join(b, 'server-id'), 'a/b\n');
    await assert.rejects(loadOrCreateServerId(b, silentLogger), /server-id.*a\/b|invalid server id/);
  } finally {
    await rm(a, { recursive: true, force: true });
    await rm(b, { recursive: true, force: true });
  }
});
