/**
 * A persistent MQTT session on the embedded broker (aedes) gets its messages in the order they were published,
 * each once: those queued while it was away first, then those published while it comes back. The README's
 * command door relies on it (`mosquitto_sub -c` reads six replies after sending six requests); aedes on its
 * own lets a live message overtake the queued ones (moscajs/aedes#649), and under a steady stream it then
 * closed the returning connection (602 of 1,116 messages received, in the order 0,401,1,2,402…).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { silentLogger } from '../../src/util/logger.js';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../server/mqtt/broker.js';
import { freePort, waitFor } from '../helpers/cluster.js';

let broker: EmbeddedBroker;
let publisher: mqtt.MqttClient;

before(async () => {
  // Everyone is let in as the server role: the order of delivery is what is tested, not the ACL.
  broker = await startEmbeddedBroker({ plain: { host: '127.0.0.1', port: await freePort() }, authenticate: () => ({ principal: { role: 'server' } }), logger: silentLogger });
  publisher = await mqtt.connectAsync(broker.url, { clientId: 'drover-server', protocolVersion: 4, reconnectPeriod: 0 });
});

after(async () => {
  await publisher?.endAsync();
  await broker?.close();
});

const TOPIC = 'drover/v1/order-test/seq';

async function reader(clientId: string, got: number[]): Promise<mqtt.MqttClient> {
  const client = mqtt.connect(broker.url, { clientId, clean: false, protocolVersion: 4, reconnectPeriod: 0 });
  // Listening before CONNACK: the queued messages follow it at once.
  client.on('message', (_topic, payload) => got.push(Number(payload.toString())));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

for (const [round, queued, mixed] of [[1, 400, false], [2, 40, false], [3, 400, true]] as const) {
  const live = mixed ? 'more at QoS 0 and 1 in turn' : 'more';
  test(`round ${round}: ${queued} messages queued while away, ${live} published while the session comes back: all ${mixed ? 'QoS 1 ones ' : ''}arrive once, in order${mixed ? ' (each QoS in its order)' : ''}`, async () => {
    const clientId = `drover-agent-order-${round}`;
    const first: number[] = [];
    const away = await reader(clientId, first);
    await away.subscribeAsync(TOPIC, { qos: 1 });
    await away.endAsync();

    let next = 0;
    const qos1: number[] = [];
    const publish = (qos: 0 | 1) => {
      const n = next++;
      if (qos === 1) qos1.push(n);
      return publisher.publishAsync(TOPIC, String(n), { qos });
    };
    await Promise.all(Array.from({ length: queued }, () => publish(1)));

    // Publish on while the reader reconnects and its queue is replayed, and a while after. (An agent's inbox
    // carries both: exec requests at QoS 0, the rest at QoS 1.)
    let pumpOn = true;
    const pumping = (async () => {
      while (pumpOn) await publish(mixed && next % 2 === 1 ? 0 : 1);
    })();
    const got: number[] = [];
    const back = await reader(clientId, got);
    let closedAt: number | undefined;
    back.on('close', () => (closedAt ??= got.length));
    try {
      await waitFor('messages published after the reconnect', async () => (got.some((n) => n >= queued + 50) ? true : undefined), 20_000);
      pumpOn = false;
      await pumping;
      const expected = mixed ? qos1[qos1.length - 1]! : next - 1;
      await waitFor('every message published', async () => (got.includes(expected) ? true : undefined), 20_000).catch((err: Error) => {
        const closed = closedAt === undefined ? 'the connection stayed open' : `the broker closed the connection after ${closedAt}`;
        throw new Error(`${err.message}: ${got.length} of ${next} received, ${closed}; first ${got.slice(0, 6).join(',')}`);
      });
      // A short wait for any duplicate still on its way.
      await new Promise((r) => setTimeout(r, 200));
      // MQTT orders the messages of one QoS (4.6): a QoS 0 one published before a queued QoS 1 one may follow it.
      const qos1Set = new Set(qos1);
      for (const [which, seq] of mixed ? [['QoS 1', got.filter((n) => qos1Set.has(n))], ['QoS 0', got.filter((n) => !qos1Set.has(n))]] as const : [['', got]] as const) {
        const outOfOrder = seq.findIndex((n, i) => i > 0 && n <= seq[i - 1]!);
        assert.equal(outOfOrder, -1, `${which} message ${seq[outOfOrder]} arrived after ${seq[outOfOrder - 1]} (${got.length} received, ${next} published)`);
      }
      if (!mixed) assert.deepEqual(got, Array.from({ length: next }, (_, i) => i));
      else assert.deepEqual(qos1.filter((n) => !got.includes(n)), [], 'every QoS 1 message arrives');
    } finally {
      pumpOn = false;
      await pumping;
      await back.endAsync();
    }
  });
}
