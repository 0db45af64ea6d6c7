/**
 * The server's link on an external broker (a real Mosquitto): commands that wait in the server's persistent
 * session while it is down are handed to the door once it is wired, not dropped (review F6: a request is
 * never silently dropped).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { ServerLink, type LinkCommand } from '../../server/mqtt/link.js';
import { topics } from '../../src/contract/topics.js';
import { silentLogger } from '../../src/util/logger.js';
import { waitFor } from '../helpers/cluster.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

describe('server link on an external broker: commands queued while the server was away', () => {
  let mosq: Mosquitto;
  before(async () => {
    mosq = await startMosquitto();
  });
  after(async () => {
    await mosq?.stop();
  });

  test('a command published while the server was down reaches the door wired after the link connected', async () => {
    const logger = silentLogger;
    // First start: the persistent session and its subscription to drover/v1/cmd/+ exist at the broker.
    const first = await ServerLink.connect({ url: mosq.url, clientId: 'drover-server', logger, commands: true });
    await first.close();
    const op = await mqtt.connectAsync(mosq.url, { clientId: 'ops-early', protocolVersion: 5, reconnectPeriod: 0 });
    await op.publishAsync(topics.command('get'), JSON.stringify({ transaction: 'while-down', kind: 'nodes' }), { qos: 1 });
    await op.endAsync();
    // Restart: the queued command arrives with the connection, before the door is wired.
    const link = await ServerLink.connect({ url: mosq.url, clientId: 'drover-server', logger, commands: true });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const got: LinkCommand[] = [];
      link.onCommand((c) => got.push(c));
      const c = await waitFor('the queued command handed to the door', async () => got[0], 10_000);
      assert.equal(c.verb, 'get');
      assert.equal(JSON.parse(c.payload.toString()).transaction, 'while-down');
    } finally {
      await link.close();
    }
  });
});
