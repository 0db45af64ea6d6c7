import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REDACTED_ANNOTATION, redactFor } from '../../server/auth/redact.js';
import { authorize, hasRole, type Verb } from '../../server/auth/roles.js';

const view = { role: 'view' as const, tokenId: 'v1ew00' };
const admin = { role: 'admin' as const, tokenId: 'adm000' };

describe('authorize', () => {
  it('view reads everything but tokens: get, list, watch, logs, metrics', () => {
    for (const verb of ['get', 'list', 'watch'] as Verb[]) {
      for (const resource of ['pods', 'secrets', 'deployments', 'nodes', 'metrics', 'events']) {
        assert.deepEqual(authorize(view, verb, { resource, namespace: 'default' }), { allowed: true }, `${verb} ${resource}`);
      }
    }
    assert.deepEqual(authorize(view, 'logs', { resource: 'pods/log', namespace: 'default', name: 'web' }), { allowed: true });
  });

  it('view may not change anything nor exec, and the reason names the token, the role and the verb', () => {
    for (const verb of ['create', 'update', 'delete', 'exec'] as Verb[]) {
      const d = authorize(view, verb, { resource: 'pods', namespace: 'default', name: 'web' });
      assert.equal(d.allowed, false, verb);
      assert.ok(!d.allowed && d.reason.includes(`token v1ew00 (role view) may not ${verb} pods "web" in namespace default`), !d.allowed ? d.reason : '');
    }
  });

  it('token management is admin only, reads included', () => {
    for (const verb of ['get', 'list', 'create', 'delete'] as Verb[]) {
      const d = authorize(view, verb, { resource: 'tokens' });
      assert.equal(d.allowed, false, verb);
      assert.match(!d.allowed ? d.reason : '', /admin role only/);
      assert.deepEqual(authorize(admin, verb, { resource: 'tokens' }), { allowed: true });
    }
  });

  it('admin may do everything', () => {
    for (const verb of ['get', 'list', 'watch', 'logs', 'create', 'update', 'delete', 'exec'] as Verb[]) {
      assert.deepEqual(authorize(admin, verb, { resource: 'pods/exec', namespace: 'x' }), { allowed: true });
    }
  });

  it('hasRole: the least role a route needs', () => {
    assert.deepEqual(hasRole(view, 'view', 'GET /x'), { allowed: true });
    assert.deepEqual(hasRole(admin, 'view', 'GET /x'), { allowed: true });
    const d = hasRole(view, 'admin', 'POST /drover/v1/nodes/n/approve');
    assert.equal(d.allowed, false);
    assert.match(!d.allowed ? d.reason : '', /token v1ew00 \(role view\) may not POST \/drover\/v1\/nodes\/n\/approve: it needs the admin role/);
  });
});

describe('redactFor', () => {
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'db', namespace: 'default', annotations: { owner: 'team' } },
    type: 'Opaque',
    data: { password: Buffer.from('s3cr3t!').toString('base64'), user: Buffer.from('admin').toString('base64') },
  };

  it('view sees every key, no value, and the decoded sizes (as describe shows them)', () => {
    const r = redactFor('view', secret);
    const text = JSON.stringify(r);
    assert.ok(!text.includes(secret.data.password) && !text.includes('s3cr3t!'));
    assert.ok(!text.includes(secret.data.user));
    const data = r.data as Record<string, string>;
    assert.deepEqual(Object.keys(data), ['password', 'user']);
    assert.equal(Buffer.from(data.password!, 'base64').toString(), '*******');
    assert.equal(Buffer.from(data.user!, 'base64').length, 5);
    assert.equal(r.metadata.annotations?.[REDACTED_ANNOTATION], 'values hidden from the view role');
    assert.equal(r.metadata.annotations?.owner, 'team');
    assert.equal(secret.data.password, Buffer.from('s3cr3t!').toString('base64'), 'the stored object was changed');
  });

  it('stringData is masked too; admins and other kinds are untouched', () => {
    const withString = { ...secret, stringData: { token: 'abc' } };
    assert.deepEqual(redactFor('view', withString).stringData, { token: '***' });
    assert.equal(redactFor('admin', secret), secret);
    const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } };
    assert.equal(redactFor('view', cm), cm);
  });
});
