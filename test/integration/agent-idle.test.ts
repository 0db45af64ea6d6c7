/**
 * An idle agent stays idle: with nothing to change it asks its runtime only at the resync period and
 * heartbeats, not in a loop (each ask is a `podman ps` on a device).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

class CountingRuntime extends FakeRuntime {
  lists = 0;
  override async list(labels: Record<string, string>) {
    this.lists++;
    return super.list(labels);
  }
}

describe('agent at rest', () => {
  let t: TestServer;
  const rt = new CountingRuntime();

  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'edge-idle', runtime: rt, heartbeatSeconds: 2, resyncSeconds: 30 });
  });
  after(() => t?.stop());

  test('with a running pod and nothing to do, the runtime is listed a handful of times in 4 s, not in a loop', async () => {
    const r = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'calm' }, spec: { containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(r.status, 201, r.text);
    await waitFor('pod Running', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/calm')).body?.status?.phase === 'Running');
    await new Promise((res) => setTimeout(res, 1000));
    const before = rt.lists;
    await new Promise((res) => setTimeout(res, 4000));
    const calls = rt.lists - before;
    console.log(`[idle agent] runtime list calls in 4 s at rest: ${calls}`);
    // Two heartbeats (each samples usage) and no resync due: a few calls, not hundreds.
    assert.ok(calls <= 6, `${calls} list calls in 4 s`);
  });
});
