/**
 * Operators on the embedded broker, tried as the review of the MQTT door attacked them (/work review F1, F2,
 * F7, F14): a `view` token cannot push an admin's reply name out by claiming thousands of names, cannot
 * hold more than a few subscriptions on one connection (aedes stores a big SUBSCRIBE in quadratic time),
 * cannot park replies in unlimited persistent sessions, and loses its session when its token is revoked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { MAX_OPERATOR_SUBSCRIPTIONS, MAX_PERSISTENT_SESSIONS_PER_TOKEN, MAX_REPLY_NAMES_PER_TOKEN } from '../../server/mqtt/broker.js';
import { topics } from '../../src/contract/topics.js';
import { connectRefusal, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

/** The SUBACK return codes (128: refused); mqtt.js rejects a SUBACK with a refusal in it, carrying the packet. */
async function suback(c: MqttClient, filters: string | string[], qos: 0 | 1 = 0): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filters, { qos })).map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw err;
    return granted;
  }
}

describe('operators on the embedded broker: limits per token', () => {
  let t: TestServer;
  const clients: MqttClient[] = [];
  const options = (clientId: string, token: string, clean = true): mqtt.IClientOptions => ({ clientId, username: 'ops', password: token, ca: t.ca, protocolVersion: 4, reconnectPeriod: 0, clean });
  const connect = async (clientId: string, token: string, clean = true) => {
    const c = await mqtt.connectAsync(t.mqttUrl, options(clientId, token, clean));
    clients.push(c);
    return c;
  };
  const apiToken = async (role: 'view' | 'admin'): Promise<{ id: string; token: string }> => {
    const r = await t.api('POST', '/drover/v1/tokens', { type: 'api', role, description: `limits ${role}` });
    assert.equal(r.status, 201, r.text);
    return { id: r.body.id, token: r.body.token };
  };

  before(async () => {
    t = await startTestServer();
  });
  after(async () => {
    for (const c of clients) await c.endAsync(true).catch(() => {});
    await t?.stop();
  });

  test("a view token that claims names up to its limit cannot push out an admin's name nor read its replies", async () => {
    const admin = await connect('ops-admin', t.token);
    const view = await apiToken('view');
    const v = await connect('ops-viewer', view.token);
    // Each filter on another reply name claims that name for the view token, up to its limit.
    const filters = Array.from({ length: MAX_REPLY_NAMES_PER_TOKEN + 10 }, (_, i) => topics.commandResponse('get', `squat-${i}`));
    let grantedTotal = 0;
    for (let i = 0; i < filters.length; i += 20) {
      const fresh = await connect(`viewer-${i}`, view.token).catch(() => undefined);
      if (!fresh) break;
      grantedTotal += (await suback(fresh, filters.slice(i, i + 20))).filter((q) => q !== 128).length;
    }
    assert.ok(grantedTotal < MAX_REPLY_NAMES_PER_TOKEN, `claims stop at the token's limit (granted ${grantedTotal})`);
    // The admin's name is still the admin's: the view token can neither read its replies nor take its id.
    assert.deepEqual(await suback(v, topics.commandResponse('get', 'ops-admin')), [128]);
    assert.equal(await connectRefusal(t.mqttUrl, options('ops-admin', view.token)), '5');
    assert.ok(admin.connected, 'the admin session was not kicked');
  });

  test(`one operator connection holds at most ${MAX_OPERATOR_SUBSCRIPTIONS} subscriptions; a packet of 2,000 filters is answered, the rest refused`, async () => {
    const c = await connect('ops-many', t.token);
    const filters = Array.from({ length: 2000 }, (_, i) => `${topics.commandResponse('get', 'ops-many')}/p${i}`);
    const granted = await suback(c, filters, 1);
    assert.equal(granted.length, filters.length);
    assert.equal(granted.filter((q) => q !== 128).length, MAX_OPERATOR_SUBSCRIPTIONS);
    // The server still answers a command at once on another connection.
    const r = await t.api('GET', '/api/v1/nodes');
    assert.equal(r.status, 200);
  });

  test(`a token may keep at most ${MAX_PERSISTENT_SESSIONS_PER_TOKEN} persistent sessions; clean sessions are not counted`, async () => {
    const view = await apiToken('view');
    for (let i = 0; i < MAX_PERSISTENT_SESSIONS_PER_TOKEN; i++) {
      const c = await connect(`keep-${i}`, view.token, false);
      await c.endAsync(true);
    }
    assert.equal(await connectRefusal(t.mqttUrl, options('keep-extra', view.token, false)), '5');
    // The same ids again, and clean sessions, are fine.
    const again = await connect('keep-0', view.token, false);
    assert.ok(again.connected);
    const clean = await connect('keep-clean', view.token, true);
    assert.ok(clean.connected);
  });

  test('a revoked token loses its MQTT session (no more fleet summaries)', async () => {
    const view = await apiToken('view');
    const c = await connect('ops-revoked', view.token);
    assert.deepEqual(await suback(c, topics.fleetSummary(), 1), [1]);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    const r = await t.api('DELETE', `/drover/v1/tokens/${view.id}`);
    assert.ok(r.status === 200 || r.status === 204, r.text);
    await waitFor('the session of the revoked token closed', async () => (c.connected ? undefined : true), 20_000);
    await closed;
    assert.equal(await connectRefusal(t.mqttUrl, options('ops-revoked', view.token)), '4');
  });
});
