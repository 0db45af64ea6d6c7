/**
 * The pre-authentication flood against a whole drover server, as the issue found it: clients announce a
 * 256 MB CONNECT and stream it. Plain MQTT (`--insecure`): anyone can connect. TLS: the handshake already
 * wants a node certificate, so the attacker here is a device holding one. Either way the server must close
 * the connections early and its RSS stay within a bound; the API and a real agent identity still work.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

const ANNOUNCED = 256 * 1024 * 1024 - 1;

/** Announces a 256 MB CONNECT and streams filler until the server closes the socket; returns bytes written. */
function flood(s: Socket): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  s.on('error', () => undefined);
  s.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]));
  return new Promise((resolve) => {
    s.once('close', () => resolve(sent));
    const pump = () => {
      while (!s.destroyed && sent < ANNOUNCED) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
    };
    pump();
  });
}

async function measure(attack: () => Promise<number[]>): Promise<{ sent: number[]; grewMiB: number; beforeMiB: number; peakMiB: number }> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  const sent = await attack();
  clearInterval(sampler);
  return { sent, grewMiB: (peak - before) / 2 ** 20, beforeMiB: before / 2 ** 20, peakMiB: peak / 2 ** 20 };
}

describe('mqtt limits on a running server', () => {
  describe('plain MQTT (--insecure)', () => {
    let cluster: TestServer;
    before(async () => {
      cluster = await startTestServer({ insecure: true });
    });
    after(async () => {
      await cluster?.stop();
    });

    test('8 unauthenticated connections announcing 256 MB CONNECTs are closed early; RSS stays within 50 MiB', async () => {
      const url = new URL(cluster.mqttUrl);
      assert.equal(url.protocol, 'mqtt:');
      const r = await measure(() =>
        Promise.all(
          Array.from({ length: 8 }, async () => {
            const s = netConnect({ host: url.hostname, port: Number(url.port) });
            await once(s, 'connect');
            return flood(s);
          }),
        ),
      );
      console.log(`server (plain), 8 x 256 MB pre-auth: RSS ${r.beforeMiB.toFixed(0)} → peak ${r.peakMiB.toFixed(0)} MiB; bytes written before close: ${r.sent.map((b) => (b / 2 ** 20).toFixed(1)).join(', ')} MiB`);
      for (const b of r.sent) assert.ok(b < 64 * 2 ** 20, `closed long before 256 MB (${b} bytes)`);
      assert.ok(r.grewMiB < 50, `RSS grew ${r.grewMiB.toFixed(1)} MiB`);
      assert.equal((await fetch(`${cluster.apiUrl}/healthz`)).status, 200);
    });
  });

  describe('MQTT over TLS', () => {
    let cluster: TestServer;
    before(async () => {
      cluster = await startTestServer();
    });
    after(async () => {
      await cluster?.stop();
    });

    test('a device with a valid certificate flooding before CONNECT is closed early; its real connection still works', async () => {
      const node = await cluster.joinNode('flooder');
      const url = new URL(node.url);
      assert.equal(url.protocol, 'mqtts:');
      const r = await measure(() =>
        Promise.all(
          Array.from({ length: 8 }, async () => {
            const s = tlsConnect({ host: url.hostname, port: Number(url.port), key: node.key, cert: node.cert, ca: node.ca });
            await once(s, 'secureConnect');
            return flood(s);
          }),
        ),
      );
      console.log(`server (TLS), 8 x 256 MB pre-auth: RSS ${r.beforeMiB.toFixed(0)} → peak ${r.peakMiB.toFixed(0)} MiB`);
      for (const b of r.sent) assert.ok(b < 64 * 2 ** 20, `closed long before 256 MB (${b} bytes)`);
      assert.ok(r.grewMiB < 50, `RSS grew ${r.grewMiB.toFixed(1)} MiB`);
      const c = await mqtt.connectAsync(node.url, node);
      assert.equal(c.connected, true);
      await c.endAsync();
    });
  });
});
