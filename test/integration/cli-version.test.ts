/**
 * `drover version` and `drover status` against a real server (HTTPS), with no server, and with a
 * token that may only view.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../helpers/http.js';
import { drover, fails, ok, ROOT } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

describe('drover version and status', () => {
  let t: TestServer;
  let env: Record<string, string>;
  let version: string;

  before(async () => {
    t = await startTestServer();
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
    version = (JSON.parse(await readFile(`${ROOT}/package.json`, 'utf8')) as { version: string }).version;
  });
  after(async () => t?.stop());

  it('prints client and server versions, both package.json\'s; -o json is kubectl-shaped', async () => {
    const r = ok(await drover(env, ['version']));
    // The Kubernetes API level first (kubectl warns on a minor skew past one), drover's own version after the +.
    const esc = version.replace(/\./g, '\\.');
    assert.match(r.stdout, new RegExp(`^Client Version: v1\\.32\\.0\\+drover-${esc} \\(drover ${esc}, MQTT contract v1, `));
    assert.match(r.stdout, new RegExp(`\\nServer Version: v1\\.32\\.0\\+drover-${esc} `));
    assert.equal(r.stderr, '');
    const j = JSON.parse(ok(await drover(env, ['version', '-o', 'json'])).stdout) as { clientVersion: Record<string, unknown>; serverVersion: Record<string, unknown> };
    for (const v of [j.clientVersion, j.serverVersion]) {
      assert.equal(v.major, '1');
      assert.equal(v.minor, '32');
      assert.equal(v.gitVersion, `v1.32.0+drover-${version}`);
      assert.match(String(v.platform), /^linux\/(amd64|arm64|arm)$/);
      assert.deepEqual((v.drover as { version: string; contract: number }).version, version);
    }
  });

  it('--client needs no server; an unreachable server still gets the client version, then one error line', async () => {
    const dead = { DROVER_SERVER: `https://127.0.0.1:${await freePort()}`, DROVER_TOKEN: 'x' };
    const c = ok(await drover(dead, ['version', '--client']));
    assert.match(c.stdout, /^Client Version: v\S+\+drover-/);
    assert.doesNotMatch(c.stdout, /Server Version/);
    const r = fails(await drover(dead, ['version']), /cannot get the server version: cannot reach the drover server at https:\/\/127\.0\.0\.1:\d+/);
    assert.match(r.stdout, /^Client Version: /);
  });

  it('a view token reads the versions, the server status and the fleet status; no token gets 401, not the version', async () => {
    const created = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view', description: 'dashboard' });
    assert.equal(created.status, 201, created.text);
    const view = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: String(created.body.token) };
    ok(await drover(view, ['version']));
    const s = JSON.parse(ok(await drover(view, ['status', '-o', 'json'])).stdout) as Record<string, unknown>;
    assert.equal(s.version, version);
    assert.equal(typeof s.storeRevision, 'number');
    assert.ok((s.uptimeSeconds as number) >= 0);
    assert.equal((s.nodes as { total: number }).total, 0);
    assert.equal(typeof s.brokerClients, 'number', 'the embedded broker knows its clients');
    assert.equal((JSON.parse(ok(await drover(view, ['fleet', 'status', '-o', 'json'])).stdout) as { nodes: { total: number } }).nodes.total, 0);
    const table = ok(await drover(view, ['status'])).stdout;
    assert.match(table, /^Server:\s+https:\/\/127\.0\.0\.1:\d+\nVersion:\s+\S+ \(MQTT contract v1\)\nUp:/);
    const anon = await fetch(`${t.apiUrl}/version`);
    assert.equal(anon.status, 401);
    fails(await drover({ DROVER_SERVER: t.apiUrl, DROVER_TOKEN: 'wrong' }, ['status']), /unauthorized/);
  });
});
