/**
 * An attacker against the MQTT port before (and just after) authenticating: a real aedes broker behind
 * the connection guard of server/mqtt/limits.ts, over TCP and TLS, attacked with raw sockets.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import forge from 'node-forge';
import mqtt, { type MqttClient } from 'mqtt';
import { Aedes } from 'aedes';
import { mqttConnectionGuard, type MqttConnectionGuard, type MqttLimits } from '../../server/mqtt/limits.js';
import { silentLogger } from '../../src/util/logger.js';

const PASSWORD = 'right-password';
const LIMITS: Partial<MqttLimits> = {
  preConnectMaxBytes: 64 * 1024,
  maxPacketBytes: 1024 * 1024,
  connectTimeoutMs: 1_500,
  connectRate: { perSecond: 2, burst: 40 },
};

interface Broker {
  port: number;
  guard: MqttConnectionGuard;
  aedes: Aedes;
  /** Authentications aedes was asked for: a refused connection must never get that far. */
  authAttempts: number;
  close(): Promise<void>;
}

async function startGuardedBroker(opts: { tls?: { key: string; cert: string }; limits?: Partial<MqttLimits>; authDelayMs?: number } = {}): Promise<Broker> {
  const b = { authAttempts: 0 } as Broker;
  const aedes = await Aedes.createBroker({
    authenticate: (_client, _user, password, done) => {
      b.authAttempts++;
      const ok = password?.toString() === PASSWORD;
      setTimeout(() => done(null, ok), opts.authDelayMs ?? 0);
    },
  });
  const guard = mqttConnectionGuard({ limits: { ...LIMITS, ...opts.limits }, logger: silentLogger });
  let server: Server;
  if (opts.tls) {
    server = createTlsServer({ key: opts.tls.key, cert: opts.tls.cert }, (s) => guard.handle(s, aedes.handle));
    server.on('connection', (raw: Socket) => guard.admit(raw));
  } else {
    server = createServer((s) => {
      if (guard.admit(s)) guard.handle(s, aedes.handle);
    });
  }
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  b.port = (server.address() as { port: number }).port;
  b.guard = guard;
  b.aedes = aedes;
  b.close = async () => {
    await new Promise<void>((r) => aedes.close(() => r()));
    await new Promise<void>((r) => server.close(() => r()));
  };
  return b;
}

/** Resolves when the server closed the socket; the bytes written and whether a CONNACK came back. */
function closed(s: Socket): Promise<{ gotBytes: number }> {
  let got = 0;
  s.on('data', (d: Buffer) => (got += d.length));
  s.on('error', () => {});
  return new Promise((resolve) => s.once('close', () => resolve({ gotBytes: got })));
}

/** Streams filler bytes into the socket until it closes (or `limit` bytes went out); returns how many were written. */
function stream(s: Socket, limit: number): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  return new Promise((resolve) => {
    s.once('close', () => resolve(sent));
    const pump = () => {
      while (!s.destroyed && sent < limit) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      if (sent >= limit) resolve(sent);
    };
    pump();
  });
}

/** A CONNECT fixed header whose remaining length announces `length` bytes (at most 256 MB - 1). */
function fixedHeader(type: number, length: number): Buffer {
  const bytes = [type << 4];
  do {
    let b = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) b |= 0x80;
    bytes.push(b);
  } while (length > 0);
  return Buffer.from(bytes);
}

/** A complete, valid MQTT 3.1.1 CONNECT with username/password. */
function connectPacket(clientId: string, password: string): Buffer {
  const str = (s: string) => {
    const b = Buffer.from(s);
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 60]), str(clientId), str('user'), str(password)]);
  return Buffer.concat([fixedHeader(1, body.length), body]);
}

/** The payload of the next message the client receives. */
const nextMessage = (c: MqttClient): Promise<Buffer> => new Promise((resolve) => c.once('message', (_t: string, payload: Buffer) => resolve(payload)));

const rawConnect = async (port: number, localAddress?: string): Promise<Socket> => {
  const s = netConnect({ port, host: '127.0.0.1', localAddress });
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
};

describe('mqtt limits: a hostile client before and after CONNECT', () => {
  let broker: Broker;
  before(async () => {
    broker = await startGuardedBroker();
  });
  after(async () => {
    await broker?.close();
  });

  test('8 connections each announcing a 256 MB CONNECT and streaming it do not make the broker buffer it', async () => {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 50);
    const sockets = await Promise.all(Array.from({ length: 8 }, () => rawConnect(broker.port)));
    const results = await Promise.all(
      sockets.map(async (s) => {
        const done = closed(s);
        s.write(fixedHeader(1, 256 * 1024 * 1024 - 1));
        const sent = await stream(s, 256 * 1024 * 1024);
        return { sent, ...(await done) };
      }),
    );
    clearInterval(sampler);
    const grewMiB = (rssPeak - rssBefore) / 2 ** 20;
    for (const r of results) {
      assert.equal(r.gotBytes, 0, 'no CONNACK: the connection never reached authentication');
      assert.ok(r.sent < 64 * 2 ** 20, `the broker closed the connection long before 256 MB (sent ${r.sent} bytes)`);
    }
    assert.ok(grewMiB < 50, `server RSS grew by ${grewMiB.toFixed(1)} MiB for 8 flooding connections (bound 50 MiB)`);
    assert.equal(broker.authAttempts, 0, 'aedes was never asked to authenticate the flood');
    assert.ok(broker.guard.refused()['pre-connect-size'] >= 8);
    console.log(`pre-auth flood, 8 connections x 256 MB announced: RSS ${(rssBefore / 2 ** 20).toFixed(0)} → peak ${(rssPeak / 2 ** 20).toFixed(0)} MiB`);

    // The broker still serves a well-behaved client.
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { username: 'user', password: PASSWORD, reconnectPeriod: 0 });
    await c.subscribeAsync('t/ok');
    const got = nextMessage(c);
    await c.publishAsync('t/ok', 'hello');
    assert.equal(String((await got)), 'hello');
    await c.endAsync();
  });

  test('a first packet that is not CONNECT closes the connection before aedes sees it', async () => {
    const s = await rawConnect(broker.port);
    const done = closed(s);
    // A PUBLISH (QoS 0) to a topic, as if already authenticated.
    const body = Buffer.concat([Buffer.from([0, 3]), Buffer.from('a/b'), Buffer.from('x')]);
    s.write(Buffer.concat([fixedHeader(3, body.length), body]));
    assert.equal((await done).gotBytes, 0);
    assert.ok(broker.guard.refused()['first-packet'] >= 1);
  });

  test('a remaining length longer than four bytes is malformed and closes the connection', async () => {
    const s = await rawConnect(broker.port);
    const done = closed(s);
    s.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]));
    assert.equal((await done).gotBytes, 0);
    assert.ok(broker.guard.refused().malformed >= 1);
  });

  test('many small packets pipelined behind a CONNECT while authentication is pending are refused', async () => {
    const slow = await startGuardedBroker({ authDelayMs: 500 });
    try {
      const s = await rawConnect(slow.port);
      const done = closed(s);
      s.write(connectPacket('pipeliner', PASSWORD));
      // Three 40 KiB PUBLISHes: each under the pre-CONNECT packet limit, and few enough for aedes' own queue
      // limit (42 packets), but aedes would hold them all until the CONNACK.
      const body = Buffer.concat([Buffer.from([0, 3]), Buffer.from('a/b'), Buffer.alloc(40 * 1024, 0x42)]);
      const publish = Buffer.concat([fixedHeader(3, body.length), body]);
      for (let i = 0; i < 3; i++) s.write(publish);
      assert.equal((await done).gotBytes, 0, 'closed before the CONNACK');
      assert.ok(slow.guard.refused()['pre-connect-size'] >= 1);
    } finally {
      await slow.close();
    }
  });

  test('after CONNACK a packet announcing more than the maximum packet size closes the connection', async () => {
    const s = await rawConnect(broker.port);
    const done = closed(s);
    s.write(connectPacket('big-sender', PASSWORD));
    await new Promise<void>((resolve) => s.once('data', () => resolve()));
    s.write(fixedHeader(3, 200 * 1024 * 1024));
    const sent = await stream(s, 256 * 1024 * 1024);
    await done;
    assert.ok(sent < 64 * 2 ** 20, `closed at once (sent ${sent})`);
    assert.ok(broker.guard.refused()['packet-size'] >= 1);

    // A packet under the limit (but far above the pre-CONNECT one) goes through once authenticated.
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { username: 'user', password: PASSWORD, reconnectPeriod: 0 });
    await c.subscribeAsync('t/big');
    const got = nextMessage(c);
    await c.publishAsync('t/big', Buffer.alloc(512 * 1024, 1));
    assert.equal((await got).length, 512 * 1024);
    await c.endAsync();
  });

  test('a connection that never completes CONNECT is closed after the connect timeout', async () => {
    const s = await rawConnect(broker.port);
    const done = closed(s);
    s.write(Buffer.from([0x10])); // half a fixed header, then silence
    assert.equal((await done).gotBytes, 0);
    assert.ok(broker.guard.refused().timeout >= 1);
  });

  test('a source that opens connections faster than its rate is refused; another source is not', async () => {
    const flood = await startGuardedBroker({ limits: { connectRate: { perSecond: 1, burst: 5 } } });
    try {
      const outcomes = await Promise.all(
        Array.from({ length: 15 }, async () => {
          const c = await mqtt
            .connectAsync(`mqtt://127.0.0.1:${flood.port}`, { username: 'user', password: PASSWORD, reconnectPeriod: 0, connectTimeout: 5_000 })
            .catch(() => undefined);
          await c?.endAsync();
          return c !== undefined;
        }),
      );
      const accepted = outcomes.filter(Boolean).length;
      assert.ok(accepted >= 5 && accepted <= 7, `about the burst of 5 accepted (got ${accepted} of 15)`);
      assert.ok(flood.guard.refused().rate >= 8);
      // 127.0.0.2 is another source address on the loopback: it has its own bucket.
      const other = await rawConnect(flood.port, '127.0.0.2');
      const answered = new Promise<Buffer>((resolve) => other.once('data', resolve));
      other.write(connectPacket('other-source', PASSWORD));
      assert.equal((await answered)[0], 0x20, 'CONNACK for another source');
      other.destroy();
    } finally {
      await flood.close();
    }
  });
});

describe('mqtt limits over TLS', () => {
  let broker: Broker;
  before(async () => {
    broker = await startGuardedBroker({ tls: selfSigned() });
  });
  after(async () => {
    await broker?.close();
  });

  const tlsRaw = async (): Promise<TLSSocket> => {
    const s = tlsConnect({ port: broker.port, host: '127.0.0.1', rejectUnauthorized: false });
    s.on('error', () => {});
    await once(s, 'secureConnect');
    return s;
  };

  test('the pre-CONNECT limit holds on a TLS connection, and a TLS client still works', async () => {
    const s = await tlsRaw();
    const done = closed(s);
    s.write(fixedHeader(1, 256 * 1024 * 1024 - 1));
    const sent = await stream(s, 256 * 1024 * 1024);
    assert.equal((await done).gotBytes, 0);
    assert.ok(sent < 64 * 2 ** 20, `closed early (sent ${sent})`);
    assert.ok(broker.guard.refused()['pre-connect-size'] >= 1);

    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, { username: 'user', password: PASSWORD, reconnectPeriod: 0, rejectUnauthorized: false });
    await c.subscribeAsync('t/tls');
    const got = nextMessage(c);
    await c.publishAsync('t/tls', Buffer.alloc(200 * 1024, 2));
    assert.equal((await got).length, 200 * 1024);
    await c.endAsync();
  });
});

/** A throwaway self-signed certificate for 127.0.0.1 (the CA and node certificates are another module's). */
function selfSigned(): { key: string; cert: string } {
  const keys = forge.pki.rsa.generateKeyPair(2048);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3_600_000);
  const attrs = [{ name: 'commonName', value: '127.0.0.1' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { key: forge.pki.privateKeyToPem(keys.privateKey), cert: forge.pki.certificateToPem(cert) };
}
