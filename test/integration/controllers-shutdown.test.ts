/**
 * `replicas: 10,000` (the cap) on a real `drover server` process, then SIGTERM in the middle of the
 * scale-up: the process must exit within the 10 s a service manager allows (it blocked SIGTERM for over
 * 60 s with 1e9 replicas). The controllers, the scheduler and the store all have to let go.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Cleanup, serverProcess } from '../helpers/fault.js';
import { waitFor } from '../helpers/cluster.js';

describe('shutdown under a 10,000-replica scale-up', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('SIGTERM ends the server within 10 s while controllers create pods', async () => {
    const server = await serverProcess(cleanup);
    await server.start();
    const created = await server.api('POST', '/apis/apps/v1/namespaces/default/deployments', {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'huge' },
      spec: {
        replicas: 10_000,
        selector: { matchLabels: { app: 'huge' } },
        template: { metadata: { labels: { app: 'huge' } }, spec: { containers: [{ name: 'main', image: 'busybox' }] } },
      },
    });
    assert.equal(created.status, 201, created.text);
    await waitFor('pods being created', async () => ((await server.api('GET', '/api/v1/namespaces/default/pods')).body?.items?.length ?? 0) >= 300, 60_000, 200);

    const t0 = Date.now();
    server.proc.child.kill('SIGTERM');
    const exited = await Promise.race([server.proc.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
    const ms = Date.now() - t0;
    console.log(`drover server exited ${ms} ms after SIGTERM during a 10,000-replica scale-up`);
    assert.ok(exited, `the server exited within 10 s of SIGTERM\n${server.proc.output().slice(-2000)}`);
    assert.equal(exited.code, 0, `clean exit\n${server.proc.output().slice(-2000)}`);
  });
});
