import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CACHE_KEY_FILE } from '../../agent/cache-key.js';
import { EventJournal } from '../../agent/journal.js';
import { TargetState } from '../../agent/target.js';
import type { payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { grepDir } from '../helpers/disk-grep.js';

const VALUE = `s3cr3t-${randomBytes(6).toString('hex')}`;
const B64 = Buffer.from(VALUE).toString('base64');

function desired(generation: number, node = 'edge-a'): payloads.Desired {
  return {
    node,
    generation,
    ts: new Date().toISOString(),
    configMaps: [],
    secrets: [{ namespace: 'default', name: 'db', type: 'Opaque', data: { password: B64 } }],
    pods: [
      {
        uid: 'uid-1',
        namespace: 'default',
        name: 'web',
        spec: { containers: [{ name: 'main', image: 'localhost/app:1', env: [{ name: 'PW', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] }] },
      },
    ] as never,
  };
}

async function stateDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-agent-cache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('the cached desired state keeps Secret values encrypted with the node key, and a restarted agent reads them back', async (t) => {
  const dir = await stateDir(t);
  const target = new TargetState(dir, silentLogger);
  await target.load('edge-a');
  assert.equal(await target.accept(desired(1)), true);
  assert.deepEqual((await grepDir(dir, [VALUE, B64])).hits, []);
  assert.match(await readFile(join(dir, 'desired.json'), 'utf8'), /"sealedSecrets":"k8s:enc:aesgcm:v1:node:/);
  assert.equal((await stat(join(dir, CACHE_KEY_FILE))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'desired.json'))).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  const reloaded = await new TargetState(dir, silentLogger).load('edge-a');
  assert.equal(reloaded.corrupt, undefined);
  assert.equal(reloaded.desired?.secrets[0]?.data.password, B64);
});

test('an old plaintext cache (format 1) still loads, and the next save encrypts it', async (t) => {
  const dir = await stateDir(t);
  await writeFile(join(dir, 'desired.json'), JSON.stringify({ format: 1, savedAt: 'then', desired: desired(3) }), { mode: 0o644 });
  await chmod(dir, 0o755);
  const target = new TargetState(dir, silentLogger);
  const r = await target.load('edge-a');
  assert.equal(r.desired?.secrets[0]?.data.password, B64);
  assert.equal((await stat(dir)).mode & 0o777, 0o700, 'a loose state dir is tightened at start');
  assert.ok((await grepDir(dir, [B64])).hits.length > 0, 'the old file is plaintext, as written by the old agent');
  await target.accept(desired(4));
  assert.deepEqual((await grepDir(dir, [VALUE, B64])).hits, []);
  assert.equal((await stat(join(dir, 'desired.json'))).mode & 0o777, 0o600);
});

test('a tampered cache, or one opened with another node key, is moved aside naming why, never read as garbage', async (t) => {
  for (const attack of ['tamper', 'other-key'] as const) {
    const dir = await stateDir(t);
    await new TargetState(dir, silentLogger).accept(desired(1));
    if (attack === 'tamper') {
      const file = JSON.parse(await readFile(join(dir, 'desired.json'), 'utf8'));
      const env = file.sealedSecrets as string;
      const raw = Buffer.from(env.slice(env.lastIndexOf(':') + 1), 'base64');
      raw[raw.length - 20]! ^= 1;
      file.sealedSecrets = env.slice(0, env.lastIndexOf(':') + 1) + raw.toString('base64');
      await writeFile(join(dir, 'desired.json'), JSON.stringify(file));
    } else {
      await writeFile(join(dir, CACHE_KEY_FILE), randomBytes(32).toString('base64'), { mode: 0o600 });
    }
    const r = await new TargetState(dir, silentLogger).load('edge-a');
    assert.equal(r.desired, undefined, attack);
    assert.match(r.corrupt ?? '', /Secrets cannot be decrypted: authentication with key "node" failed/, attack);
    assert.ok((await readdir(dir)).some((n) => n.startsWith('desired.json.corrupt-')), attack);
  }
});

test("a cache copied from another node's state dir (with its key) does not open as this node's", async (t) => {
  const dir = await stateDir(t);
  await new TargetState(dir, silentLogger).accept(desired(1, 'edge-a'));
  // The attacker rewrites the clear part to claim the cache is edge-b's: the sealed part is bound to edge-a.
  const file = JSON.parse(await readFile(join(dir, 'desired.json'), 'utf8'));
  file.desired.node = 'edge-b';
  await writeFile(join(dir, 'desired.json'), JSON.stringify(file));
  const r = await new TargetState(dir, silentLogger).load('edge-b');
  assert.equal(r.desired, undefined);
  assert.match(r.corrupt ?? '', /Secrets cannot be decrypted/);
});

test('without its key file the cache says the node key is missing', async (t) => {
  const dir = await stateDir(t);
  await new TargetState(dir, silentLogger).accept(desired(1));
  await rm(join(dir, CACHE_KEY_FILE));
  const r = await new TargetState(dir, silentLogger).load('edge-a');
  assert.match(r.corrupt ?? '', /node key .*cache\.key is missing/);
});

test('the event journal is 0600 in a 0700 dir, also when an older version left it looser', async (t) => {
  const dir = await stateDir(t);
  const path = join(dir, 'events.jsonl');
  await writeFile(path, `${JSON.stringify({ format: 1, dropped: 0, seq: 0 })}\n`, { mode: 0o644 });
  await chmod(path, 0o644);
  await chmod(dir, 0o755);
  const journal = new EventJournal({ path, logger: silentLogger });
  await journal.load();
  journal.push({ type: 'Warning', reason: 'BackOff', message: 'm', involved: { kind: 'Node', name: 'edge-a' }, ts: new Date().toISOString() } as never);
  await journal.flush();
  await journal.close();
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
});
