import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { indexRetained } from '../../server/mqtt/retained-index.js';

/** A real aedes broker with the index, on a free loopback port. */
async function broker(t: { after(fn: () => Promise<void> | void): void }) {
  const aedes = await Aedes.createBroker();
  const index = indexRetained((aedes as unknown as { persistence: Parameters<typeof indexRetained>[0] }).persistence);
  const server = createServer(aedes.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    await new Promise<void>((r) => aedes.close(() => r()));
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, index };
}

/** Subscribes to `filters` and collects what arrives within `ms` (retained messages come at once). */
async function retainedFor(url: string, filters: string[], ms = 300): Promise<string[]> {
  const c = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  const got: string[] = [];
  c.on('message', (topic, payload, packet) => {
    if (packet.retain) got.push(`${topic}=${payload.toString()}`);
  });
  await c.subscribeAsync(filters, { qos: 1 });
  await new Promise((r) => setTimeout(r, ms));
  await c.endAsync();
  return got.sort();
}

test('retained index: exact filters get their retained message from the index, wildcards and clears behave as before', async (t) => {
  const { url, index } = await broker(t);
  const pub = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  t.after(() => pub.endAsync());
  await pub.publishAsync('n/1/desired', 'one', { retain: true, qos: 1 });
  await pub.publishAsync('n/2/desired', 'two', { retain: true, qos: 1 });
  await pub.publishAsync('n/2/desired', 'two-b', { retain: true, qos: 1 });
  assert.equal(index.size(), 2);

  assert.deepEqual(await retainedFor(url, ['n/2/desired']), ['n/2/desired=two-b']);
  assert.deepEqual(await retainedFor(url, ['n/1/desired', 'n/3/desired']), ['n/1/desired=one']);
  assert.deepEqual(await retainedFor(url, ['n/+/desired']), ['n/1/desired=one', 'n/2/desired=two-b']);
  // An agent's inbox: its desired state (exact) and its requests (a last-level +), nothing of another node.
  await pub.publishAsync('n/1/req/a', 'ra', { retain: true, qos: 1 });
  await pub.publishAsync('n/1/req/b/deeper', 'deep', { retain: true, qos: 1 });
  await pub.publishAsync('n/2/req/a', 'other', { retain: true, qos: 1 });
  assert.deepEqual(await retainedFor(url, ['n/1/desired', 'n/1/req/+']), ['n/1/desired=one', 'n/1/req/a=ra']);
  // Filters the index does not answer (#, an inner +) still get what the persistence has, beside indexed ones.
  assert.deepEqual(await retainedFor(url, ['n/1/desired', 'n/+/req/a']), ['n/1/desired=one', 'n/1/req/a=ra', 'n/2/req/a=other']);
  assert.deepEqual(await retainedFor(url, ['n/1/#']), ['n/1/desired=one', 'n/1/req/a=ra', 'n/1/req/b/deeper=deep']);

  // An empty retained payload clears the topic for exact and wildcard subscribers alike.
  await pub.publishAsync('n/1/desired', '', { retain: true, qos: 1 });
  await pub.publishAsync('n/1/req/a', '', { retain: true, qos: 1 });
  assert.equal(index.size(), 3);
  assert.deepEqual(await retainedFor(url, ['n/1/req/+']), []);
  assert.deepEqual(await retainedFor(url, ['n/1/desired']), []);
  assert.deepEqual(await retainedFor(url, ['n/+/desired']), ['n/2/desired=two-b']);
});
