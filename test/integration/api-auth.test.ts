/**
 * Roles, token refusals, Secret redaction and the audit trail, tried as an attacker would: a real
 * ApiServer over HTTPS (openssl-made certificate), a LevelDB store behind admission, a TokenStore
 * on disk with a faked clock, the audit log on disk, and the server log captured.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { withAdmission } from '../../server/admission/store.js';
import { sendJson } from '../../server/api/respond.js';
import { ApiServer, PUBLIC_MAX_BODY_BYTES, type ExecQuery } from '../../server/api/server.js';
import { AuditLog, type AuditEntry } from '../../server/audit/log.js';
import { TokenStore } from '../../server/auth/tokens.js';
import { LevelStore } from '../../server/store/level.js';
import type { Store } from '../../server/store/types.js';

interface Reply {
  status: number;
  body: any;
  text: string;
}

let dir: string;
let tls: { key: string; cert: string; ca: string };
let base: string;
let api: ApiServer;
let level: LevelStore;
let store: Store;
let tokens: TokenStore;
let audit: AuditLog;
const clock = { t: Date.parse('2026-06-01T00:00:00Z') };
const logLines: string[] = [];
const execCalls: ExecQuery[] = [];
/** Every token this test handed out, to search the logs for afterwards. */
const issued: string[] = [];
let adminTok: string;
let viewTok: string;
let viewId: string;

function call(method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string>; ca?: string | null } = {}): Promise<Reply> {
  const data = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  return new Promise((resolve, reject) => {
    const req = request(
      base + path,
      {
        method,
        ca: opts.ca === null ? undefined : (opts.ca ?? tls.ca),
        headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(data ? { 'content-type': 'application/json' } : {}), ...opts.headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body, text });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** The first `n` lines of a watch stream, then the connection is dropped. */
function watchLines(path: string, token: string, n: number): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { ca: tls.ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        const lines = buf.split('\n').filter(Boolean);
        if (lines.length >= n) {
          resolve(lines.slice(0, n).map((l) => JSON.parse(l)));
          req.destroy();
        }
      });
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

async function auditEntries(): Promise<AuditEntry[]> {
  const text = await readFile(join(dir, 'audit.log'), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

/** The audit record a request produced (written once its response closed; bounded wait). */
async function auditFor(pred: (e: AuditEntry) => boolean, what: string): Promise<AuditEntry> {
  for (let i = 0; i < 250; i++) {
    const e = (await auditEntries()).find(pred);
    if (e) return e;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`no audit record for ${what}; have ${JSON.stringify(await auditEntries())}`);
}

const podBody = (name: string, spec: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { containers: [{ name: 'main', image: 'busybox' }], ...spec } });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-api-auth-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const cert = await readFile(join(dir, 'c.pem'), 'utf8');
  tls = { key: await readFile(join(dir, 'k.pem'), 'utf8'), cert, ca: cert };
  const logger = pino({ level: 'debug' }, new Writable({ write: (c, _e, cb) => (logLines.push(String(c)), cb()) }));
  level = await LevelStore.open({ path: join(dir, 'store'), logger });
  store = withAdmission(level);
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  tokens = await TokenStore.open({ dataDir: dir, logger, now: () => clock.t });
  audit = await AuditLog.open({ dataDir: dir, logger });
  api = new ApiServer({
    store,
    logger,
    tokens,
    audit,
    tls,
    formatJoin: (t) => `K10cafe::${t}`,
    // Stands for /v1/join: a route anyone may call, which reads its body before knowing who is calling.
    extraRoutes: [{ method: 'POST', path: '/test/public', access: 'public', handle: async (_req, res, ctx) => sendJson(res, 200, { got: await ctx.body() }) }],
    logs: async () => 'log text',
    exec: async (q) => {
      execCalls.push(q);
      if (q.command[0] === 'hang') await new Promise((r) => setTimeout(r, 1500));
      return { exitCode: 0, output: 'ran', timedOut: false };
    },
    ready: () => true,
  });
  base = (await api.listen('127.0.0.1', 0)).url;
  adminTok = tokens.adminToken;
  const v = await tokens.createApi({ role: 'view', description: 'dashboard' });
  viewTok = v.token;
  viewId = v.id;
  issued.push(adminTok, viewTok);
});

after(async () => {
  await api?.close();
  await audit?.close();
  await level?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('API authentication and roles', () => {
  it('serves HTTPS; a client that does not trust the CA is refused at the handshake', async () => {
    assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await call('GET', '/api/v1/namespaces', { token: adminTok })).status, 200);
    await assert.rejects(call('GET', '/healthz', { ca: null }), /self-signed|self signed/);
  });

  it('no token, a garbage token, a tampered token: 401, with an audit record naming the address, not the token', async () => {
    const none = await call('GET', '/api/v1/namespaces/default/secrets');
    assert.equal(none.status, 401);
    const tampered = `${viewId}.${'x'.repeat(32)}`;
    const bad = await call('DELETE', '/api/v1/namespaces/default', { token: tampered });
    assert.equal(bad.status, 401);
    assert.equal((await call('GET', '/api/v1/pods', { headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } })).status, 401);
    const e = await auditFor((x) => x.verb === 'DELETE' && x.result === 401, 'the tampered DELETE');
    assert.equal(e.who.kind, 'anonymous');
    assert.equal((e.who as { remote?: string }).remote, '127.0.0.1');
    assert.ok(!JSON.stringify(await auditEntries()).includes('x'.repeat(32)));
    assert.ok(await store.get('Namespace', '', 'default'), 'the namespace went away');
  });

  it('a view token reads but cannot apply, update, delete, exec or manage tokens: 403 naming role and verb, nothing changes, each refusal audited', async () => {
    assert.equal((await call('POST', '/api/v1/namespaces/default/configmaps', { token: adminTok, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { a: '1' } } })).status, 201);
    await store.create({ ...podBody('web'), metadata: { name: 'web', namespace: 'default' }, spec: { ...podBody('web').spec, nodeName: 'n1' } } as never);
    const before = await store.revision();
    const tokensBefore = tokens.list().length;

    assert.equal((await call('GET', '/api/v1/namespaces/default/configmaps/cfg', { token: viewTok })).status, 200);
    assert.equal((await call('GET', '/api/v1/namespaces/default/pods/web/log', { token: viewTok })).text, 'log text');
    assert.equal((await call('GET', '/apis/metrics.k8s.io/v1beta1/namespaces/default/pods', { token: viewTok })).status, 404, 'metrics: not served here, but not forbidden');
    assert.equal((await call('GET', '/apis/metrics.k8s.io/v1beta1/namespaces/%ZZ/pods', { token: viewTok })).status, 400);
    assert.equal((await call('GET', '/apis/metrics.k8s.io/v1beta1/nodes')).status, 401);

    const attempts: Array<[string, string, unknown, string]> = [
      ['POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'evil' }, data: {} }, 'create'],
      ['PUT', '/api/v1/namespaces/default/configmaps/cfg', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { a: 'pwned' } }, 'update'],
      ['DELETE', '/api/v1/namespaces/default/configmaps/cfg', undefined, 'delete'],
      ['DELETE', '/api/v1/namespaces/default', undefined, 'delete'],
      ['POST', '/api/v1/namespaces/default/pods/web/exec', { command: ['sh', '-c', 'id'] }, 'exec'],
      ['POST', '/drover/v1/tokens', { type: 'api', role: 'admin' }, 'token.create'],
      ['GET', '/drover/v1/tokens', undefined, 'GET /drover/v1/tokens'],
    ];
    for (const [method, path, body, verb] of attempts) {
      const r = await call(method, path, { token: viewTok, body });
      assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
      assert.equal(r.body.reason, 'Forbidden');
      assert.match(r.body.message, new RegExp(`token ${viewId} \\(role view\\) may not`), r.body.message);
      if (!verb.includes('token')) assert.match(r.body.message, new RegExp(`may not ${verb} `));
      const e = await auditFor((x) => x.result === 403 && x.verb === verb && (x.resource.path === path || path.includes(x.resource.kind)), `${method} ${path}`);
      assert.deepEqual(e.who, { kind: 'token', tokenId: viewId, role: 'view', remote: '127.0.0.1' });
      assert.match(e.reason ?? '', /role view/);
    }
    assert.equal(await store.revision(), before, 'the store changed');
    assert.equal((await store.get('ConfigMap', 'default', 'cfg'))?.data?.a, '1');
    assert.equal(execCalls.length, 0, 'the exec reached the node');
    assert.equal(tokens.list().length, tokensBefore, 'a token was created');
  });

  it('a view token sees Secret keys but not values, in get, list and watch; admin sees them', async () => {
    const created = await call('POST', '/api/v1/namespaces/default/secrets', { token: adminTok, body: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: 'hunter2-very-secret' } } });
    assert.equal(created.status, 201, created.text);
    const value = Buffer.from('hunter2-very-secret').toString('base64');
    const got = await call('GET', '/api/v1/namespaces/default/secrets/db', { token: viewTok });
    const listed = await call('GET', '/api/v1/secrets', { token: viewTok });
    const watched = await watchLines('/api/v1/namespaces/default/secrets?watch=1', viewTok, 1);
    for (const [how, text, obj] of [['get', got.text, got.body], ['list', listed.text, listed.body.items[0]], ['watch', JSON.stringify(watched), watched[0].object]] as const) {
      assert.ok(!text.includes(value) && !text.includes('hunter2'), `${how} shows the value`);
      assert.deepEqual(Object.keys(obj.data), ['password'], how);
      assert.equal(Buffer.from(obj.data.password, 'base64').length, 'hunter2-very-secret'.length, how);
      assert.equal(obj.metadata.annotations['drover.io/redacted'], 'values hidden from the view role');
    }
    assert.equal((await call('GET', '/api/v1/namespaces/default/secrets/db', { token: adminTok })).body.data.password, value);
    // The masked copy, applied back by an admin, would overwrite the value with asterisks: refused.
    const back = await call('PUT', '/api/v1/namespaces/default/secrets/db', { token: adminTok, body: got.body });
    assert.equal(back.status, 422, back.text);
    assert.match(back.body.message, /metadata\.annotations\.drover\.io\/redacted: this Secret was read with its values hidden/);
    assert.equal((await call('GET', '/api/v1/namespaces/default/secrets/db', { token: adminTok })).body.data.password, value);
  });

  it('revoked and expired API tokens are 401 naming why; the audit keeps the token id', async () => {
    const r = await call('POST', '/drover/v1/tokens', { token: adminTok, body: { type: 'api', role: 'admin', ttlSeconds: 3600, description: 'ci' } });
    assert.equal(r.status, 201, r.text);
    const short = r.body.token as string;
    issued.push(short);
    assert.equal((await call('GET', '/api/v1/pods', { token: short })).status, 200);
    clock.t += 3600_000;
    const expired = await call('POST', '/api/v1/namespaces/default/configmaps', { token: short, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'late' } } });
    assert.equal(expired.status, 401);
    assert.match(expired.body.message, new RegExp(`token ${r.body.id} is expired`));
    const e = await auditFor((x) => x.result === 401 && x.who.kind === 'anonymous' && x.who.tokenId === r.body.id, 'the expired token');
    assert.match(e.reason ?? '', /expired/);

    const other = await call('POST', '/drover/v1/tokens', { token: adminTok, body: { type: 'api', role: 'view' } });
    issued.push(other.body.token);
    const del = await call('DELETE', `/drover/v1/tokens/${other.body.id}`, { token: adminTok });
    assert.equal(del.status, 200, del.text);
    const revoked = await call('GET', '/api/v1/pods', { token: other.body.token });
    assert.equal(revoked.status, 401);
    assert.match(revoked.body.message, /revoked/);
    assert.equal((await call('DELETE', '/drover/v1/tokens/zzzzzz', { token: adminTok })).status, 404);
  });

  it('token routes: join tokens come back in the K10 form once, the list never has secrets', async () => {
    const j = await call('POST', '/drover/v1/tokens', { token: adminTok, body: { type: 'join', ttlSeconds: 600, uses: 1, labels: { zone: 'north' }, description: 'line 2' } });
    assert.equal(j.status, 201, j.text);
    assert.match(j.body.token, /^K10cafe::[a-z0-9]{6}\.[A-Za-z0-9_-]{32}$/);
    assert.equal(j.body.expiresAt, new Date(clock.t + 600_000).toISOString());
    issued.push(j.body.token);
    const list = await call('GET', '/drover/v1/tokens', { token: adminTok });
    const mine = list.body.items.find((t: { id: string }) => t.id === j.body.id);
    assert.deepEqual(mine, { id: j.body.id, type: 'join', description: 'line 2', createdAt: new Date(clock.t).toISOString(), expiresAt: j.body.expiresAt, usesLeft: 1, labels: { zone: 'north' }, revoked: false });
    for (const t of issued) assert.ok(!list.text.includes(t.split('.')[1] ?? t));
    const bad = await call('POST', '/drover/v1/tokens', { token: adminTok, body: { type: 'api', role: 'root', uses: 3 } });
    assert.equal(bad.status, 422);
    assert.deepEqual(bad.body.details.causes.map((c: { field: string }) => c.field), ['uses']);
    const badRole = await call('POST', '/drover/v1/tokens', { token: adminTok, body: { type: 'api', role: 'root' } });
    assert.equal(badRole.status, 422);
    assert.match(badRole.body.message, /role: must be one of admin, view/);
    // A token pasted into a path: refused, and the server log (debug level here) keeps only its id.
    const named = await call('GET', `/api/v1/namespaces/default/configmaps/${viewTok}`, { token: adminTok });
    assert.equal(named.status, 400, 'a token is not a valid name');
    assert.ok(!named.text.includes(viewTok.split('.')[1]!), 'the answer echoes the token');
    assert.equal((await call('DELETE', `/api/v1/namespaces/default/configmaps/${viewTok}`, { token: viewTok })).status, 403);
    assert.ok(logLines.some((l) => l.includes(`${viewId}.<redacted>`)), 'the refusal was not logged at all');
    assert.equal((await call('DELETE', `/api/v1/namespaces/default/configmaps/${adminTok}`, { token: viewTok })).status, 403);
    await auditFor((x) => x.result === 403 && x.resource.name === '<admin-token>', 'the admin token pasted into a path');
    // The whole token pasted into a revoke: only the id is used, and the secret is not in the audit.
    assert.equal((await call('DELETE', `/drover/v1/tokens/${j.body.token.replace('K10cafe::', '')}`, { token: adminTok })).status, 200);
    await auditFor((x) => x.verb === 'token.revoke' && x.result === 200 && (x.resource.path ?? '').includes('<redacted>'), 'the revoke by whole token');
  });

  it('mutations by admin are audited with their result, failed ones with the reason', async () => {
    const ok = await call('POST', '/api/v1/namespaces/default/configmaps', { token: adminTok, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'audited' }, data: {} } });
    assert.equal(ok.status, 201);
    const bad = await call('POST', '/api/v1/namespaces/default/pods', { token: adminTok, body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'noimage' }, spec: { containers: [{ name: 'a' }] } } });
    assert.equal(bad.status, 422);
    const e1 = await auditFor((x) => x.verb === 'create' && x.resource.kind === 'configmaps' && x.result === 201, 'the create');
    assert.deepEqual(e1.resource, { kind: 'configmaps', namespace: 'default' });
    assert.equal(e1.who.kind, 'token');
    assert.equal(e1.reason, undefined);
    const e2 = await auditFor((x) => x.verb === 'create' && x.resource.kind === 'pods' && x.result === 422, 'the refused create');
    assert.match(e2.reason ?? '', /spec\.containers\[0\]\.image: required/);
    assert.match(e2.ts, /^\d{4}-\d\d-\d\dT/);
    // Reads by a valid token are not audited (only mutations and refusals).
    assert.ok(!(await auditEntries()).some((x) => x.verb === 'get' && x.result === 200));
  });

  it('a public route reads no big body before authentication: 411 without a length, 413 above 64 KiB, nothing buffered', async () => {
    assert.deepEqual((await call('POST', '/test/public', { body: { node: 'n1' } })).body, { got: { node: 'n1' } });
    const big = JSON.stringify({ pad: 'x'.repeat(PUBLIC_MAX_BODY_BYTES) });
    const tooBig = await call('POST', '/test/public', { raw: big });
    assert.equal(tooBig.status, 413);
    assert.match(tooBig.body.message, /larger than 65536 bytes for \/test\/public/);
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(base + '/test/public', { method: 'POST', ca: tls.ca, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      // Never ends: a flood sender's body. The answer must come anyway.
      req.write('{"pad":"');
    });
    assert.equal(chunked, 411);
    // Kubernetes routes keep the 3 MiB limit for authenticated callers (a manifest with a big ConfigMap).
    const cm = await call('POST', '/api/v1/namespaces/default/configmaps', { token: adminTok, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'big' }, data: { a: 'x'.repeat(200_000) } } });
    assert.equal(cm.status, 201, cm.text.slice(0, 200));
  });

  it('an exec the caller hangs up on is still audited (499)', async () => {
    const req = request(base + '/api/v1/namespaces/default/pods/web/exec', { method: 'POST', ca: tls.ca, headers: { authorization: `Bearer ${adminTok}`, 'content-type': 'application/json' } });
    req.on('error', () => {});
    req.end(JSON.stringify({ command: ['hang'] }));
    for (let i = 0; i < 250 && !execCalls.some((q) => q.command[0] === 'hang'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(execCalls.some((q) => q.command[0] === 'hang'), 'the exec never reached the node');
    req.destroy();
    const e = await auditFor((x) => x.verb === 'exec' && x.result === 499, 'the abandoned exec');
    assert.deepEqual(e.resource, { kind: 'pods', namespace: 'default', name: 'web', sub: 'exec' });
    assert.match(e.reason ?? '', /closed the connection/);
  });

  it('no token or secret reaches the audit log or the server log', async () => {
    await audit.close();
    const auditText = await readFile(join(dir, 'audit.log'), 'utf8');
    assert.ok(auditText.length > 0);
    const logText = logLines.join('');
    assert.ok(logText.length > 0);
    for (const t of issued) {
      const secret = t.includes('.') ? t.split('.').pop()! : t;
      assert.ok(!auditText.includes(secret), 'a token secret is in the audit log');
      assert.ok(!logText.includes(secret), 'a token secret is in the server log');
    }
    for (const s of ['hunter2', Buffer.from('hunter2-very-secret').toString('base64')]) {
      assert.ok(!auditText.includes(s) && !logText.includes(s), 'a Secret value is logged');
    }
  });
});
