import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BOOTSTRAP_ADMIN_ID, KEEP_DEAD_TOKENS_MS, TokenStore } from '../../server/auth/tokens.js';
import { TokenRefusedError, UnauthorizedError, ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'drover-auth-tokens-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
async function fresh(): Promise<{ store: TokenStore; dataDir: string; clock: { t: number } }> {
  const dataDir = join(root, `d${n++}`);
  const clock = { t: Date.parse('2026-01-01T00:00:00Z') };
  const store = await TokenStore.open({ dataDir, logger: silentLogger, now: () => clock.t });
  return { store, dataDir, clock };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TokenRefusedError, `expected TokenRefusedError, got ${String(err)}`);
    assert.ok(err instanceof UnauthorizedError);
    assert.equal(err.code, 401);
    return err.why;
  }
  assert.fail('the token was accepted');
}

describe('TokenStore', () => {
  it('keeps secrets only as hashes, in a 0600 file inside a 0700 dir', async () => {
    const { store, dataDir } = await fresh();
    const join1 = await store.createJoin({ ttlSeconds: 3600, uses: 2, labels: { zone: 'a' }, description: 'line 3' });
    const api = await store.createApi({ role: 'view', description: 'dashboard' });
    const files = await readdir(join(dataDir, 'auth'));
    assert.deepEqual(files, ['tokens.json'], 'no temp file left behind');
    const text = await readFile(join(dataDir, 'auth', 'tokens.json'), 'utf8');
    for (const t of [join1.token, api.token]) {
      const secret = t.split('.')[1]!;
      assert.ok(!text.includes(secret), 'a secret is on disk in clear');
    }
    assert.equal((await stat(join(dataDir, 'auth'))).mode & 0o777, 0o700);
    assert.equal((await stat(join(dataDir, 'auth', 'tokens.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'admin-token'))).mode & 0o777, 0o600);
    assert.match(join1.token, /^[a-z0-9]{6}\.[A-Za-z0-9_-]{32}$/);
    assert.equal(join1.token.split('.')[0], join1.id);
  });

  it('a join token is consumed once per use and then refused as used up', async () => {
    const { store } = await fresh();
    const { id, token } = await store.createJoin({ uses: 2, labels: { 'node-role.kubernetes.io/edge': 'true' } });
    assert.deepEqual(await store.redeemJoin(token), { id, labels: { 'node-role.kubernetes.io/edge': 'true' } });
    assert.equal(store.list().find((t) => t.id === id)?.usesLeft, 1);
    await store.redeemJoin(token);
    assert.equal(await refusal(store.redeemJoin(token)), 'used up');
  });

  it('checkJoin proves a token without spending a use; a used-up one counts only when allowed, expired and revoked never', async () => {
    const { store, clock } = await fresh();
    const one = await store.createJoin({ uses: 1, ttlSeconds: 60, labels: { zone: 'a' } });
    assert.deepEqual(store.checkJoin(one.token), { id: one.id, labels: { zone: 'a' }, usedUp: false });
    assert.deepEqual(store.checkJoin(one.token), { id: one.id, labels: { zone: 'a' }, usedUp: false }, 'a check spent the use');
    await store.redeemJoin(one.token);
    assert.throws(() => store.checkJoin(one.token), (e: unknown) => e instanceof TokenRefusedError && e.why === 'used up');
    assert.deepEqual(store.checkJoin(one.token, { allowUsedUp: true }), { id: one.id, labels: { zone: 'a' }, usedUp: true });
    assert.throws(() => store.checkJoin(`${one.id}.${'A'.repeat(32)}`, { allowUsedUp: true }), (e: unknown) => e instanceof TokenRefusedError && e.why === 'unknown');
    clock.t += 60_000;
    assert.throws(() => store.checkJoin(one.token, { allowUsedUp: true }), (e: unknown) => e instanceof TokenRefusedError && e.why === 'expired');
    const r = await store.createJoin({});
    await store.revoke(r.id);
    assert.throws(() => store.checkJoin(r.token, { allowUsedUp: true }), (e: unknown) => e instanceof TokenRefusedError && e.why === 'revoked');
  });

  it('two agents racing for the last use: exactly one wins', async () => {
    const { store } = await fresh();
    const { token } = await store.createJoin({ uses: 1 });
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => store.redeemJoin(token)));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });

  it('expiry follows the clock: accepted just before, refused at the deadline', async () => {
    const { store, clock } = await fresh();
    const j = await store.createJoin({ ttlSeconds: 60 });
    const a = await store.createApi({ role: 'admin', ttlSeconds: 60 });
    clock.t += 59_999;
    assert.equal(store.authenticateApi(a.token)?.role, 'admin');
    clock.t += 1;
    assert.equal(store.authenticateApi(a.token), undefined);
    assert.deepEqual(store.checkApi(a.token), { refused: 'expired', tokenId: a.id });
    assert.equal(await refusal(store.redeemJoin(j.token)), 'expired');
  });

  it('refuses revoked, unknown, tampered, malformed and cross-type tokens, naming why', async () => {
    const { store } = await fresh();
    const j = await store.createJoin({});
    const a = await store.createApi({ role: 'view' });
    assert.equal(await store.revoke(j.id), true);
    assert.equal(await refusal(store.redeemJoin(j.token)), 'revoked');
    assert.equal(await store.revoke('zzzzzz'), false);
    const tampered = `${a.id}.${'A'.repeat(32)}`;
    assert.equal(await refusal(store.redeemJoin(`zzzzzz.${'a'.repeat(32)}`)), 'unknown');
    assert.equal(await refusal(store.redeemJoin('not-a-token')), 'malformed');
    assert.equal(await refusal(store.redeemJoin(a.token)), 'wrong type');
    assert.deepEqual(store.checkApi(tampered), { refused: 'unknown' });
    assert.equal(store.authenticateApi(j.token), undefined);
    await store.revoke(a.id);
    assert.deepEqual(store.checkApi(a.token), { refused: 'revoked', tokenId: a.id });
    const err = await store.redeemJoin(j.token).catch((e: Error) => e);
    assert.ok(!String((err as Error).message).includes(j.token.split('.')[1]!), 'the refusal repeats the secret');
  });

  it('API tokens carry their role; the bootstrap admin token is admin and survives a restart', async () => {
    const { store, dataDir, clock } = await fresh();
    const v = await store.createApi({ role: 'view', description: 'ci' });
    assert.deepEqual(store.authenticateApi(v.token), { kind: 'api', tokenId: v.id, role: 'view', description: 'ci' });
    assert.equal(store.authenticateApi(store.adminToken)?.role, 'admin');
    assert.equal(store.authenticateApi(store.adminToken)?.tokenId, BOOTSTRAP_ADMIN_ID);
    const j = await store.createJoin({ uses: 3 });
    await store.redeemJoin(j.token);
    await store.revoke(v.id);

    const again = await TokenStore.open({ dataDir, logger: silentLogger, now: () => clock.t });
    assert.equal(again.adminToken, store.adminToken);
    assert.deepEqual(again.list(), store.list());
    assert.equal(again.authenticateApi(v.token), undefined, 'revocation lost on restart');
    assert.equal(again.list().find((t) => t.id === j.id)?.usesLeft, 2);
  });

  it('tokens dead for a week (revoked, expired, used up) are dropped at the next write; live ones stay', async () => {
    const { store, dataDir, clock } = await fresh();
    const revoked = await store.createJoin({});
    const expiring = await store.createJoin({ ttlSeconds: 3600 });
    const used = await store.createJoin({ uses: 1 });
    const live = await store.createApi({ role: 'view' });
    await store.revoke(revoked.id);
    await store.redeemJoin(used.token);
    clock.t += KEEP_DEAD_TOKENS_MS - 1;
    const mid = await store.createJoin({});
    assert.equal(store.list().length, 5, 'dropped before a week had passed');
    // The expiring one died an hour after the others: a week after that, it goes too.
    clock.t += 3600_000 + 1;
    const fresh2 = await store.createJoin({});
    assert.deepEqual(store.list().map((t) => t.id).sort(), [live.id, mid.id, fresh2.id].sort());
    assert.ok(!store.list().some((t) => [revoked.id, expiring.id, used.id].includes(t.id)));
    const again = await TokenStore.open({ dataDir, logger: silentLogger, now: () => clock.t });
    assert.equal(again.list().length, 3);
    assert.equal(again.authenticateApi(live.token)?.role, 'view');
  });

  it('list never shows secrets or hashes', async () => {
    const { store } = await fresh();
    const j = await store.createJoin({ labels: { a: 'b' }, uses: 1, ttlSeconds: 10 });
    const text = JSON.stringify(store.list());
    assert.ok(!text.includes(j.token.split('.')[1]!));
    assert.ok(!/[0-9a-f]{64}/.test(text));
    assert.deepEqual(store.list()[0], { id: j.id, type: 'join', createdAt: '2026-01-01T00:00:00.000Z', expiresAt: '2026-01-01T00:00:10.000Z', usesLeft: 1, labels: { a: 'b' }, revoked: false });
  });

  it('bad options are refused naming the field, and nothing is stored', async () => {
    const { store } = await fresh();
    const cases: Array<[Promise<unknown>, string]> = [
      [store.createJoin({ ttlSeconds: 0 }), 'ttl'],
      [store.createJoin({ ttlSeconds: 1.5 }), 'ttl'],
      [store.createJoin({ uses: -1 }), 'uses'],
      [store.createJoin({ labels: { 'bad key!': 'x' } }), 'labels'],
      [store.createJoin({ description: 'two\nlines' }), 'description'],
      [store.createApi({ role: 'root' as 'admin' }), 'role'],
    ];
    for (const [p, field] of cases) {
      const err = await p.catch((e: unknown) => e);
      assert.ok(err instanceof ValidationError, `expected a ValidationError for ${field}`);
      assert.ok(err.causes.some((c) => c.field.startsWith(field)), `${err.message} does not name ${field}`);
    }
    assert.deepEqual(store.list(), []);
  });

  it('a corrupt token file stops the start with a clear error instead of being overwritten', async () => {
    const { dataDir } = await fresh();
    await writeFile(join(dataDir, 'auth', 'tokens.json'), '{"version":1,"tokens":[{"id":"x"}]}', { mode: 0o600 });
    await assert.rejects(TokenStore.open({ dataDir, logger: silentLogger }), /tokens\.json is not a token file/);
    assert.equal(await readFile(join(dataDir, 'auth', 'tokens.json'), 'utf8'), '{"version":1,"tokens":[{"id":"x"}]}');
  });
});
