/**
 * TLS session resumption on the embedded broker (issue 13, mass reconnect): a device that reconnects offers the
 * ticket of its last session and the broker resumes it instead of a full handshake — after a server restart too,
 * since the ticket key is kept in DATA_DIR/tls. Resumption must not let in what a full handshake would refuse: a
 * revoked node, a certificate that expired since the ticket was issued, a ticket sealed by another key.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { freePort, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../server/mqtt/broker.js';
import { certificateHash, issueCertificate } from '../../server/pki/x509.js';
import { loadOrCreateTicketKey, TICKET_KEY_FILE } from '../../server/pki/session-tickets.js';
import { keepTlsSession } from '../../src/util/tls-session.js';
import { silentLogger } from '../../src/util/logger.js';

const ready = (n: any) => n?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';

/** The broker's handshake counters from /metrics. */
async function handshakes(t: TestServer): Promise<{ full: number; resumed: number }> {
  const text = (await t.api('GET', '/metrics')).text;
  const value = (resumed: boolean) => Number(new RegExp(`^drover_mqtt_tls_handshakes_total\\{resumed="${resumed}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { full: value(false), resumed: value(true) };
}

/** Connects once; resolves with the client (connected) or the refusal (CONNACK code, or 'closed' when the socket was cut). */
function connectOnce(url: string, opts: mqtt.IClientOptions, session?: Buffer): Promise<{ client?: MqttClient; session?: Buffer; refused?: string }> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, manualConnect: true, ...opts, ...(session ? { session } : {}) });
    keepTlsSession(c);
    c.once('connect', () => resolve({ client: c, session: (c.options as { session?: Buffer }).session }));
    c.once('error', (err: Error & { code?: unknown }) => {
      c.end(true);
      resolve({ refused: String(err.code ?? err.message) });
    });
    c.once('close', () => resolve({ refused: 'closed' }));
    c.connect();
  });
}

describe('mqtt: TLS session resumption', () => {
  const dirs: string[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('an agent resumes its TLS session after the server restarts (same ticket key, kept 0600 in the data dir)', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'drover-resume-server-'));
    const stateDir = await mkdtemp(join(tmpdir(), 'drover-resume-agent-'));
    dirs.push(dataDir, stateDir);
    const apiPort = await freePort();
    const mqttPort = await freePort();
    const first = await startTestServer({ dataDir, apiPort, mqttPort });
    cleanups.push(() => first.stop());
    const agent = await first.addAgent({ node: 'edge-resume', runtime: new FakeRuntime(), stateDir, reconnectMaxSeconds: 1 });
    cleanups.push(() => agent.close());
    await waitFor('edge-resume Ready', async () => ready((await first.api('GET', '/api/v1/nodes/edge-resume')).body));
    const keyFile = join(dataDir, 'tls', TICKET_KEY_FILE);
    const mode = (await stat(keyFile)).mode & 0o777;
    assert.equal(mode, 0o600, `ticket key file mode ${mode.toString(8)}`);
    const key = await readFile(keyFile, 'utf8');
    const before = await handshakes(first);
    assert.ok(before.full >= 1 && before.resumed === 0, `first connections are full handshakes: ${JSON.stringify(before)}`);

    // The agent stays up: the server goes away under it and comes back on the same data dir and ports.
    first.agents.length = 0;
    await first.stop();
    const second = await startTestServer({ dataDir, apiPort, mqttPort });
    cleanups.push(() => second.stop());
    assert.equal(await readFile(keyFile, 'utf8'), key, 'the restarted server keeps the ticket key');
    await waitFor('the agent reconnected to the restarted server with a resumed session', async () => (await handshakes(second)).resumed >= 1, 20_000, 200);
    const counts = await handshakes(second);
    // The server's own link does a full handshake (a new process has no session); the agent does not.
    assert.equal(counts.full, 1, `only the server's own link shook hands in full: ${JSON.stringify(counts)}`);
    await waitFor('edge-resume Ready on the restarted server', async () => ready((await second.api('GET', '/api/v1/nodes/edge-resume')).body));
  });

  test('a revoked node offering a ticket from before its revocation is refused (the resumed session is checked as a new one)', async () => {
    const t = await startTestServer();
    cleanups.push(() => t.stop());
    dirs.push(t.dataDir);
    const opts = await t.joinNode('edge-revoked');
    const first = await connectOnce(opts.url, opts);
    assert.ok(first.client, `the node connects: ${first.refused}`);
    await waitFor('a session ticket', async () => (first.client!.options as { session?: Buffer }).session);
    const session = (first.client!.options as { session?: Buffer }).session!;
    first.client!.end(true);
    // Still allowed: the ticket resumes.
    const again = await connectOnce(opts.url, opts, session);
    assert.ok(again.client, `resumes while allowed: ${again.refused}`);
    again.client!.end(true);
    const resumedBefore = (await handshakes(t)).resumed;
    assert.ok(resumedBefore >= 1, 'the reconnect was a resumed handshake');

    const revoked = await t.api('POST', '/drover/v1/nodes/edge-revoked/revoke', {});
    assert.equal(revoked.status, 200, revoked.text);
    const refused = await connectOnce(opts.url, opts, session);
    refused.client?.end(true);
    assert.equal(refused.refused, '5', `a revoked node is refused (CONNACK 5) even with a valid ticket: ${refused.refused ?? 'connected'}`);
    assert.equal((await handshakes(t)).resumed, resumedBefore + 1, 'the refused attempt did resume its TLS session: the refusal is the broker\'s check, not a full handshake failing');
  });

  test('broker: a certificate that expired after its ticket was issued is refused; a ticket sealed by another key gets a full handshake', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-resume-broker-'));
    dirs.push(dir);
    const pem = () => generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const caKey = pem();
    const now = Date.now();
    const ca = issueCertificate({ subject: { cn: 'test-ca' }, publicKeyPem: caKey.publicKey, selfKeyPem: caKey.privateKey, usage: 'ca', days: 1, now }).pem;
    const issuer = { certPem: ca, keyPem: caKey.privateKey };
    const serverKey = pem();
    const serverCert = issueCertificate({ subject: { cn: 'broker' }, publicKeyPem: serverKey.publicKey, issuer, usage: 'server', days: 1, now, dnsNames: ['localhost'], ips: ['127.0.0.1'] }).pem;
    const clientKey = pem();
    // Valid for 8 more seconds (notBefore is an hour back).
    const shortCert = issueCertificate({ subject: { cn: 'edge-short', o: 'drover:nodes' }, publicKeyPem: clientKey.publicKey, issuer, usage: 'client', days: 8 / 86400, now: Date.now() }).pem;
    const expiresAt = Date.parse(new X509Certificate(shortCert).validTo);
    const port = await freePort();
    const start = async (ticketKeys: Buffer): Promise<EmbeddedBroker> =>
      startEmbeddedBroker({
        tls: { host: '127.0.0.1', port, key: serverKey.privateKey, cert: serverCert, ca, ticketKeys, sessionTimeoutSeconds: 3600 },
        authenticate: (a) => (a.peer ? { principal: { role: 'agent', node: a.peer.cn } } : { refuse: 'bad-credentials', why: 'no certificate' }),
        logger: silentLogger,
      });
    const caHash = certificateHash(ca);
    const { key } = await loadOrCreateTicketKey({ dir, caHash, logger: silentLogger });
    assert.deepEqual((await loadOrCreateTicketKey({ dir, caHash, logger: silentLogger })).key, key, 'the same file and CA: the same key (a restart resumes)');
    assert.notDeepEqual((await loadOrCreateTicketKey({ dir, caHash: 'ab'.repeat(32), logger: silentLogger })).key, key, 'another CA: another key (old tickets do not open)');
    let broker = await start(key);
    cleanups.push(() => broker.close());
    const url = `mqtts://127.0.0.1:${port}`;
    const opts: mqtt.IClientOptions = { clientId: 'agent-edge-short', key: clientKey.privateKey, cert: shortCert, ca, servername: 'localhost' };

    const first = await connectOnce(url, opts);
    assert.ok(first.client, `connects with its certificate: ${first.refused}`);
    await waitFor('a session ticket', async () => (first.client!.options as { session?: Buffer }).session);
    const session = (first.client!.options as { session?: Buffer }).session!;
    first.client!.end(true);

    // Another ticket key (a server whose key was renewed): the ticket is not opened, the handshake is a full one.
    await broker.close();
    broker = await start(Buffer.alloc(48, 1));
    const other = await connectOnce(url, opts, session);
    assert.ok(other.client, `a full handshake with the certificate still valid: ${other.refused}`);
    other.client!.end(true);
    assert.deepEqual({ full: broker.traffic().tlsHandshakes.full, resumed: broker.traffic().tlsHandshakes.resumed }, { full: 1, resumed: 0 });
    assert.ok(Date.now() < expiresAt, 'the machine was too slow: the certificate expired before the full-handshake case ran');

    // Back to the key that sealed the ticket, after the certificate expired: resumed, then refused.
    await broker.close();
    broker = await start(key);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now() + 1500)));
    const expired = await connectOnce(url, opts, session);
    expired.client?.end(true);
    assert.ok(!expired.client, 'an expired certificate does not get in through a resumed session');
    assert.equal(expired.refused, 'closed', 'cut before CONNECT');
    assert.equal(broker.traffic().tlsHandshakes.resumed, 1, 'the ticket was accepted (resumed): the refusal is the broker\'s own expiry check');
  });
});
