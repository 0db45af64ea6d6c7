/**
 * `drover token create/list/revoke` against a real API server: the token is printed once, the list
 * never shows a secret, a revoked token stops working, and a view token cannot make tokens.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { withAdmission } from '../../server/admission/store.js';
import { ApiServer } from '../../server/api/server.js';
import { TokenStore } from '../../server/auth/tokens.js';
import { LevelStore } from '../../server/store/level.js';
import { makeContext } from '../../src/cli/context.js';
import { parseLabelList, parseTtl, registerTokenCommands } from '../../src/cli/token.js';
import { silentLogger } from '../../src/util/logger.js';
import { apiClient } from '../helpers/http.js';

let dir: string;
let level: LevelStore;
let server: ApiServer;
let tokens: TokenStore;
let url: string;

async function drover(token: string, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string; error?: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command('drover').exitOverride().configureOutput({ writeOut: (s) => out.push(s), writeErr: (s) => err.push(s) });
  registerTokenCommands(program, makeContext({ stdout: (s) => out.push(s), stderr: (s) => err.push(s), env: { DROVER_CONFIG: join(dir, 'no-config') } }));
  try {
    await program.parseAsync(['node', 'drover', ...args, '--server', url, '--token', token]);
    return { ok: true, stdout: out.join(''), stderr: err.join('') };
  } catch (e) {
    return { ok: false, stdout: out.join(''), stderr: err.join(''), error: (e as Error).message };
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-token-cli-'));
  level = await LevelStore.open({ path: join(dir, 'store'), logger: silentLogger });
  const store = withAdmission(level);
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  tokens = await TokenStore.open({ dataDir: dir, logger: silentLogger });
  server = new ApiServer({ store, logger: silentLogger, tokens, formatJoin: (t) => `K10${'ab'.repeat(32)}::${t}`, logs: async () => '', ready: () => true });
  url = (await server.listen('127.0.0.1', 0)).url;
});

after(async () => {
  await server?.close();
  await level?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('drover token', () => {
  it('create prints only the K10 join token (24h by default), list shows it without its secret, revoke ends it', async () => {
    const c = await drover(tokens.adminToken, ['token', 'create', '--uses', '2', '--labels', 'zone=north,tier=gw', '--description', 'line 3 gateways']);
    assert.ok(c.ok, c.error);
    const printed = c.stdout.trim();
    assert.match(printed, /^K10(ab){32}::[a-z0-9]{6}\.[A-Za-z0-9_-]{32}$/);
    const id = printed.split('::')[1]!.split('.')[0]!;
    const secret = printed.split('.')[1]!;
    assert.match(c.stderr, new RegExp(`token ${id} created`));
    const info = tokens.list().find((t) => t.id === id)!;
    assert.equal(Date.parse(info.expiresAt!) - Date.parse(info.createdAt), 24 * 3600 * 1000);

    const l = await drover(tokens.adminToken, ['token', 'list']);
    assert.ok(l.ok, l.error);
    const [header, ...rows] = l.stdout.trimEnd().split('\n');
    assert.match(header!, /^ID\s+TYPE\s+ROLE\s+USES\s+EXPIRES\s+LABELS\s+DESCRIPTION$/);
    const row = rows.find((r) => r.startsWith(id))!;
    assert.match(row, new RegExp(`^${id}\\s+join\\s+2\\s+${info.expiresAt!.replace(/[.]/g, '\\.')}\\s+zone=north,tier=gw\\s+line 3 gateways$`));
    assert.ok(!l.stdout.includes(secret));

    const r = await drover(tokens.adminToken, ['token', 'revoke', id]);
    assert.ok(r.ok, r.error);
    assert.equal(r.stdout, `token ${id} revoked\n`);
    await assert.rejects(tokens.redeemJoin(printed.split('::')[1]!), /revoked/);
    assert.match((await drover(tokens.adminToken, ['token', 'list'])).stdout, new RegExp(`${id}\\s+join\\s+2\\s+revoked`));
  });

  it('create --role view makes an API token that reads but cannot write; --ttl 0 never expires', async () => {
    const c = await drover(tokens.adminToken, ['token', 'create', '--role', 'view', '--ttl', '0', '--description', 'grafana']);
    assert.ok(c.ok, c.error);
    const token = c.stdout.trim();
    assert.match(token, /^[a-z0-9]{6}\.[A-Za-z0-9_-]{32}$/);
    const asView = apiClient(url, token);
    assert.equal((await asView('GET', '/api/v1/pods')).status, 200);
    assert.equal((await asView('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } })).status, 403);
    const info = tokens.list().find((t) => t.id === token.split('.')[0]);
    assert.equal(info?.expiresAt, undefined);
    assert.equal(info?.role, 'view');

    const denied = await drover(token, ['token', 'create', '--role', 'admin']);
    assert.equal(denied.ok, false);
    assert.match(denied.error!, /forbidden: .*\(role view\).*needs the admin role/);
    const denyList = await drover(token, ['token', 'list']);
    assert.equal(denyList.ok, false);
  });

  it('bad flags are refused before anything is sent, naming the flag', async () => {
    const before = tokens.list().length;
    for (const [args, msg] of [
      [['--role', 'root'], /invalid --role "root"/],
      [['--role', 'view', '--uses', '3'], /--uses and --labels are for join tokens/],
      [['--uses', '0'], /invalid --uses "0"/],
      [['--ttl', '5ms'], /invalid --ttl "5ms"/],
      [['--labels', 'novalue'], /invalid --labels entry "novalue"/],
    ] as Array<[string[], RegExp]>) {
      const r = await drover(tokens.adminToken, ['token', 'create', ...args]);
      assert.equal(r.ok, false, args.join(' '));
      assert.match(r.error!, msg);
    }
    const badLabel = await drover(tokens.adminToken, ['token', 'create', '--labels', 'bad key!=x']);
    assert.equal(badLabel.ok, false);
    assert.match(badLabel.error!, /labels\.bad key!/);
    assert.equal(tokens.list().length, before);
    assert.equal(parseTtl('7d'), 7 * 86400);
    assert.equal(parseTtl('90s'), 90);
    assert.deepEqual(parseLabelList('a=1, b=,c=x=y'), { a: '1', b: '', c: 'x=y' });
  });
});
