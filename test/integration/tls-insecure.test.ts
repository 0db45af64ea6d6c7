/**
 * `--insecure` (plain HTTP and MQTT): still no shared password. Agents join over HTTP and connect with
 * the per-node password they were given; the join token as an MQTT password, another node's
 * password, or a password with a foreign client id gets nowhere.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { connectRefusal, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

describe('--insecure: plain listeners, per-node passwords', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ insecure: true });
  });
  after(async () => {
    await t?.stop();
  });

  test('an agent joins over HTTP and connects with its own password', async () => {
    assert.match(t.apiUrl, /^http:\/\//);
    assert.match(t.mqttUrl, /^mqtt:\/\//);
    await t.addAgent({ node: 'edge-plain', runtime: new FakeRuntime() });
    await waitFor('edge-plain Ready', async () => (await t.api('GET', '/api/v1/nodes/edge-plain')).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True');
  });

  test('the join token, another node\'s password and a foreign client id are refused', async () => {
    const a = await t.joinNode('edge-a');
    const b = await t.joinNode('edge-b');
    assert.ok(a.password && b.password && a.password !== b.password);
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'drover-agent-edge-a', username: 'edge-a', password: t.joinToken }), '4');
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'drover-agent-edge-a', username: 'edge-a', password: b.password }), '4');
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'drover-agent-edge-b', username: 'edge-a', password: a.password }), '4');
    assert.equal(await connectRefusal(t.mqttUrl, { clientId: 'drover-server', username: 'drover-server', password: t.token }), '4');
    for (const name of ['+', '#', 'a/b']) assert.equal(await connectRefusal(t.mqttUrl, { clientId: `drover-agent-${name}`, username: name, password: a.password }), '4', name);
    const ok = await mqtt.connectAsync(t.mqttUrl, { clientId: 'drover-agent-edge-a', username: 'edge-a', password: a.password, protocolVersion: 4, reconnectPeriod: 0 });
    assert.equal(ok.connected, true);
    await ok.endAsync(true);
  });
});
