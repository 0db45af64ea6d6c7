/**
 * The hold on a returning persistent session's live deliveries, on a stand-in client (the real broker's
 * behaviour is tested in test/integration/mqtt-session-order.test.ts): what is released, in which order,
 * and the bound on what a slow replay can make it hold.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { keepSessionOrder, MAX_HELD, type HeldPacket } from '../../server/mqtt/session-order.js';

function setup() {
  const persistence = { updated: [] as HeldPacket[], async outgoingUpdate(_c: object, p: HeldPacket) { this.updated.push(p); } };
  const order = keepSessionOrder(persistence);
  const delivered: string[] = [];
  const client = Object.assign(new EventEmitter(), {
    closed: false,
    deliverQoS: (p: HeldPacket, cb: () => void) => { delivered.push(`qos${p.qos}:${p.brokerCounter}`); cb(); },
    deliver0: (p: HeldPacket, cb: () => void) => { delivered.push(`0:${p.brokerCounter}`); cb(); },
    close() { this.closed = true; },
  });
  return { persistence, order, client, delivered };
}

const packet = (counter: number, qos = 1): HeldPacket => ({ qos, brokerId: 'b', brokerCounter: counter });
const tick = () => new Promise((r) => setImmediate(r));

test('live deliveries wait for the replay, then go out in their order, without those the replay sent', async () => {
  const { persistence, order, client, delivered } = setup();
  order.hold(client);
  let acked = 0;
  client.deliverQoS(packet(5), () => acked++);
  client.deliver0(packet(6, 0), () => acked++);
  client.deliverQoS(packet(7), () => acked++);
  // The replay sends the queued 1-4 and 5 (queued before its snapshot).
  for (const n of [1, 2, 3, 4, 5]) await persistence.outgoingUpdate(client, packet(n));
  await tick();
  assert.equal(acked, 3, "the broker's emitter is not kept waiting");
  assert.deepEqual(delivered, [], 'nothing live before the replay is done');
  client.emit('connected');
  assert.deepEqual(delivered, ['0:6', 'qos1:7']);
  client.deliverQoS(packet(8), () => {});
  assert.deepEqual(delivered, ['0:6', 'qos1:7', 'qos1:8'], 'after the replay, deliveries pass straight through');
});

test('a QoS 0 delivery through the QoS path is never taken for a replayed one', async () => {
  const { persistence, order, client, delivered } = setup();
  order.hold(client);
  client.deliverQoS(packet(3, 0), () => {});
  await persistence.outgoingUpdate(client, packet(3));
  client.emit('connected');
  assert.deepEqual(delivered, ['qos0:3']);
});

test(`a replay that holds more than ${MAX_HELD} live messages disconnects the client`, async () => {
  const { order, client, delivered } = setup();
  order.hold(client);
  for (let n = 1; n <= MAX_HELD; n++) client.deliverQoS(packet(n), () => {});
  assert.equal(client.closed, false);
  client.deliverQoS(packet(MAX_HELD + 1), () => {});
  assert.equal(client.closed, true);
  client.emit('connected');
  assert.deepEqual(delivered, [], 'what was held stays in the session queue for the next connection');
});
