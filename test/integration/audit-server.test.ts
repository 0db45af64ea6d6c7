/**
 * Roles and the audit trail on a real server started as `drover server` would be (TLS, tokens,
 * audit log in DATA_DIR, pod security), driven through the real `drover` CLI: what an operator reads
 * in DATA_DIR/audit.log after a view token tried to change things and a device joined.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AuditEntry } from '../../server/audit/log.js';
import { drover, fails, ok } from '../helpers/cli.js';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

let t: TestServer;
let admin: Record<string, string>;

async function audit(): Promise<AuditEntry[]> {
  const text = await readFile(join(t.dataDir, 'audit.log'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

/** The record a call produced (the log is written as each response closes; bounded wait). */
async function record(pred: (e: AuditEntry) => boolean, what: string): Promise<AuditEntry> {
  for (let i = 0; i < 250; i++) {
    const e = (await audit()).find(pred);
    if (e) return e;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`no audit record for ${what}: ${JSON.stringify(await audit())}`);
}

before(async () => {
  t = await startTestServer();
  admin = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
});
after(async () => {
  await t?.stop();
});

describe('audit and roles on a running server', () => {
  it('a view token made with `drover token create --role view` reads, cannot apply or make tokens, and each refusal is in DATA_DIR/audit.log', async () => {
    const made = ok(await drover(admin, ['token', 'create', '--role', 'view', '--description', 'ops dashboard']));
    const viewToken = made.stdout.trim();
    const viewId = viewToken.split('.')[0]!;
    const view = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: viewToken };
    ok(await drover(admin, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Secret\nmetadata: { name: db }\nstringData: { password: correct-horse-battery }\n'));

    ok(await drover(view, ['get', 'pods']));
    const yaml = ok(await drover(view, ['get', 'secret', 'db', '-o', 'yaml'])).stdout;
    assert.ok(!yaml.includes(Buffer.from('correct-horse-battery').toString('base64')) && !yaml.includes('correct-horse'), yaml);
    assert.match(yaml, /password: /);
    assert.match(ok(await drover(admin, ['get', 'secret', 'db', '-o', 'yaml'])).stdout, new RegExp(Buffer.from('correct-horse-battery').toString('base64')));

    const cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: evil }\ndata: { a: "1" }\n';
    fails(await drover(view, ['apply', '-f', '-'], cm), /forbidden: token [a-z0-9]{6} \(role view\) may not create configmaps/);
    fails(await drover(view, ['delete', 'secret', 'db']), /may not delete secrets "db"/);
    fails(await drover(view, ['token', 'create', '--role', 'admin']), /needs the admin role/);
    assert.equal((await t.api('GET', '/api/v1/namespaces/default/configmaps/evil')).status, 404);

    const created = await record((e) => e.verb === 'token.create' && e.result === 201, 'token create');
    assert.deepEqual(created.who, { kind: 'token', tokenId: 'bootstrap-admin', role: 'admin', remote: '127.0.0.1' });
    const refused = await record((e) => e.verb === 'create' && e.result === 403 && e.resource.kind === 'configmaps', 'the refused apply');
    assert.deepEqual(refused.who, { kind: 'token', tokenId: viewId, role: 'view', remote: '127.0.0.1' });
    assert.deepEqual(refused.resource, { kind: 'configmaps', namespace: 'default' });
    await record((e) => e.verb === 'delete' && e.result === 403 && e.resource.name === 'db', 'the refused delete');
    await record((e) => e.verb === 'token.create' && e.result === 403, 'the refused token create');

    assert.equal((await stat(join(t.dataDir, 'audit.log'))).mode & 0o777, 0o600);
    const text = await readFile(join(t.dataDir, 'audit.log'), 'utf8');
    for (const secret of [viewToken.split('.')[1]!, t.token, 'correct-horse', Buffer.from('correct-horse-battery').toString('base64')]) {
      assert.ok(!text.includes(secret), 'the audit log holds a token or a Secret value');
    }
  });

  it('a device that joins is named in the audit record of its join, not anonymous', async () => {
    await t.joinNode('edge-audit');
    const e = await record((x) => x.result < 300 && x.resource.path === '/v1/join', 'the join');
    assert.equal(e.who.kind, 'node');
    assert.equal((e.who as { node: string }).node, 'edge-audit');
    assert.ok(!JSON.stringify(e).includes(t.joinToken.split('.').pop()!), 'the join token is in the audit log');
  });

  it('pod security holds on the running server: hostNetwork refused in default even for the admin', async () => {
    const pod = 'apiVersion: v1\nkind: Pod\nmetadata: { name: hostnet }\nspec:\n  hostNetwork: true\n  containers: [{ name: m, image: busybox }]\n';
    fails(await drover(admin, ['apply', '-f', '-'], pod), /spec\.hostNetwork: needs a namespace labelled drover\.io\/privileged=true/);
    await record((x) => x.result === 403 && x.resource.kind === 'pods' && x.who.kind === 'token' && x.who.role === 'admin', 'the refused host-network pod');
  });
});
