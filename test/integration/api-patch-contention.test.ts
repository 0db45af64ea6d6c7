/**
 * PATCH and server-side apply without a resourceVersion never answer 409 because another write landed in
 * between (Kubernetes' API server retries them itself: kubectl scale/patch/apply never see that conflict,
 * while controllers keep writing the object's status). Many concurrent patches of one object all land;
 * a patch that names a stale resourceVersion still gets its 409.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

const PATH = '/api/v1/namespaces/default/configmaps/contended';

describe('PATCH under contention', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
    const made = await t.api('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'contended' }, data: {} });
    assert.equal(made.status, 201, made.text);
  });
  after(async () => {
    await t?.stop();
  });

  const patch = (body: unknown, type: string) =>
    fetch(`${t.apiUrl}${PATH}${type === 'application/apply-patch+yaml' ? '?fieldManager=m' : ''}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${t.token}`, 'content-type': type },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));

  test('40 concurrent merge, strategic and json patches of one object: every one 200, every change kept', async () => {
    const kinds = ['application/merge-patch+json', 'application/strategic-merge-patch+json', 'application/json-patch+json'];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const type = kinds[i % 3]!;
        const body = type === 'application/json-patch+json' ? [{ op: 'add', path: `/data/k${i}`, value: String(i) }] : { data: { [`k${i}`]: String(i) } };
        return patch(body, type);
      }),
    );
    assert.deepEqual(results.filter((r) => r.status !== 200), []);
    const got = (await t.api('GET', PATH)).body;
    assert.equal(Object.keys(got.data).length, 40);
  });

  test('20 concurrent server-side applies by different managers: every one 200, every field kept', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(`${t.apiUrl}${PATH}?fieldManager=m${i}`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/apply-patch+yaml' },
          body: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'contended' }, data: { [`a${i}`]: 'x' } }),
        }).then(async (r) => ({ status: r.status, text: await r.text() })),
      ),
    );
    assert.deepEqual(results.filter((r) => r.status !== 200), []);
    const got = (await t.api('GET', PATH)).body;
    for (let i = 0; i < 20; i++) assert.equal(got.data[`a${i}`], 'x');
  });

  test('a patch naming a stale resourceVersion is still a 409', async () => {
    const r = await patch({ metadata: { resourceVersion: '1' }, data: { late: 'x' } }, 'application/merge-patch+json');
    assert.equal(r.status, 409, r.text);
    assert.equal((await t.api('GET', PATH)).body.data.late, undefined);
  });
});
