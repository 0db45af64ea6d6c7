/**
 * A dead container runtime on a device: the node turns NotReady with the runtime's error as the
 * reason (after repeated failures, not one), a RuntimeUnavailable event says why, and the node is
 * Ready again once the runtime answers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RuntimeError } from '../../src/util/errors.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

class BreakableRuntime extends FakeRuntime {
  broken = false;
  override async list(labels: Record<string, string>) {
    if (this.broken) throw new RuntimeError('podman ps failed: cannot connect to the storage: database is locked');
    return super.list(labels);
  }
}

describe('runtime down on a node', () => {
  let t: TestServer;
  const rt = new BreakableRuntime();
  const ready = async () => (await t.api('GET', '/api/v1/nodes/edge-rt')).body?.status?.conditions?.find((c: any) => c.type === 'Ready');

  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'edge-rt', runtime: rt, heartbeatSeconds: 1, resyncSeconds: 1 });
    await waitFor('Ready', async () => (await ready())?.status === 'True');
  });
  after(() => t?.stop());

  test('NotReady with the cause, an event, then Ready again when it recovers', async () => {
    rt.broken = true;
    const down = await waitFor('NotReady RuntimeUnhealthy', async () => {
      const c = await ready();
      return c?.status === 'False' && c.reason === 'RuntimeUnhealthy' ? c : undefined;
    }, 20_000);
    assert.match(down.message, /podman ps failed: cannot connect to the storage: database is locked/);
    const events = await waitFor('RuntimeUnavailable event', async () => {
      const r = await t.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=edge-rt');
      return r.body?.items?.find((e: any) => e.reason === 'RuntimeUnavailable');
    });
    assert.match(events.message, /container runtime fake failed: podman ps failed/);
    rt.broken = false;
    await waitFor('Ready again', async () => (await ready())?.status === 'True', 20_000);
  });
});
