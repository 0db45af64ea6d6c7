/**
 * Node identity as an attacker meets it, on a server started the default way (TLS): holding the join
 * token is not enough to become a node that already joined, neither through the join nor through the
 * broker; wildcard names and foreign client ids are refused; an agent whose token names another CA
 * sends nothing; a client trusting another CA cannot talk to the broker; nothing plain listens.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { joinCluster, JoinRefusedError, renewCertificate } from '../../agent/join.js';
import { startAgent } from '../../agent/run.js';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { formatJoinToken, parseJoinToken } from '../../server/identity/join-token.js';
import { DELIVERY, encode, topics } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { connectRefusal, freePort, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

describe('identity: join, impersonation, TLS', () => {
  let t: TestServer;
  let otherCaDir: string;
  before(async () => {
    t = await startTestServer();
    otherCaDir = await mkdtemp(join(tmpdir(), 'drover-other-ca-'));
  });
  after(async () => {
    await t?.stop();
    await rm(otherCaDir, { recursive: true, force: true });
  });

  test('an agent joins with the token, then uses only its own certificate, stored 0600 in a 0700 dir', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'drover-agent-edge-a-'));
    await t.addAgent({ node: 'edge-a', runtime: new FakeRuntime(), stateDir });
    await waitFor('edge-a Ready', async () => (await t.api('GET', '/api/v1/nodes/edge-a')).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True');
    const dir = join(stateDir, 'credentials');
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    for (const f of await readdir(dir)) assert.equal((await stat(join(dir, f))).mode & 0o077, 0, `${f} is private`);
    const cred = await t.api('GET', '/drover/v1/nodes/edge-a');
    assert.equal(cred.status, 200, cred.text);
    assert.equal(cred.body.state, 'approved');
    // Restarted without any token: the stored certificate is enough.
    await t.agents.pop()!.close();
    const readyOf = async () => (await t.api('GET', '/api/v1/nodes/edge-a')).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status;
    await waitFor('edge-a offline after its agent stopped', async () => (await readyOf()) !== 'True');
    const again = await startAgent(
      { node: 'edge-a', serverUrl: t.apiUrl, stateDir, labels: {}, runtime: {}, heartbeatSeconds: 5, resyncSeconds: 2, keepaliveSeconds: 5 },
      { logger: silentLogger, runtime: new FakeRuntime() },
    );
    t.agents.push(again);
    await waitFor('edge-a Ready again', async () => (await readyOf()) === 'True');
    // With the same certificate: no new join happened.
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-a')).body.serial, cred.body.serial);
  });

  test('a second join as a node that already joined is refused (409), with the way out named', async () => {
    await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: t.joinToken, node: 'edge-a', logger: silentLogger }), (err: Error) => {
      assert.ok(err instanceof JoinRefusedError);
      assert.match(err.message, /\(409\): node edge-a already joined; `drover node revoke edge-a` first/);
      return true;
    });
  });

  test('a device whose join or renewal answer was lost asks again with the same key and gets a certificate; another key is refused', async () => {
    const { generateKeyPem } = await import('../../server/pki/x509.js');
    const k = generateKeyPem();
    const deviceKey = { key: k.privateKey, publicKey: k.publicKey };
    // A one-use token: a join refused as 409 spends nothing, and the repeated join needs no second use.
    const once = await t.api('POST', '/drover/v1/tokens', { type: 'join', uses: 1 });
    assert.equal(once.status, 201, once.text);
    await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: once.body.token, node: 'edge-a', logger: silentLogger }), /\(409\)/);
    const first = await joinCluster({ apiUrl: t.apiUrl, token: once.body.token, node: 'edge-lost', logger: silentLogger, deviceKey });
    // The answer never arrived: the same device (same key, its token) joins again.
    const second = await joinCluster({ apiUrl: t.apiUrl, token: once.body.token, node: 'edge-lost', logger: silentLogger, deviceKey });
    // The used-up token lets nobody else in.
    await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: once.body.token, node: 'edge-other', logger: silentLogger }), /\(401\)/);
    assert.notEqual(second.cert, first.cert);
    assert.equal(second.mqttPassword, undefined, 'a TLS server hands out no MQTT password');
    await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: t.joinToken, node: 'edge-lost', logger: silentLogger }), /\(409\): node edge-lost already joined/);
    // The key alone is not enough: a replayed join without a valid token is refused before anything is read.
    const bogus = formatJoinToken(parseJoinToken(t.joinToken).caHash, 'zzzzzz.' + 'A'.repeat(32));
    await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: bogus, node: 'edge-lost', logger: silentLogger, deviceKey }), /\(401\)/);
    const r = generateKeyPem();
    const renewKey = { key: r.privateKey, publicKey: r.publicKey };
    const renewed = await renewCertificate(second, { logger: silentLogger, deviceKey: renewKey });
    const again = await renewCertificate(second, { logger: silentLogger, deviceKey: renewKey });
    assert.notEqual(again.cert, renewed.cert);
    // The superseded certificate cannot renew for any other key.
    await assert.rejects(renewCertificate(second, { logger: silentLogger }), /\(401\): this certificate is no longer node edge-lost's current credential \(superseded\)/);
    const o = { url: t.mqttUrl, clientId: 'drover-agent-edge-lost', key: again.key, cert: again.cert, ca: t.ca, protocolVersion: 4 as const, reconnectPeriod: 0 };
    const c = await mqtt.connectAsync(o.url, o);
    await c.endAsync(true);
    assert.equal(await connectRefusal(t.mqttUrl, { ...o, key: second.key, cert: second.cert }), '4');
  });

  test('the join token as an MQTT password gets nowhere: no TLS without a certificate, and a node certificate with another id is refused', async () => {
    const url = t.mqttUrl;
    // The old way in: username = node, password = join token, over TLS but without a client certificate.
    assert.ok(await connectRefusal(url, { clientId: 'drover-agent-edge-a', username: 'edge-a', password: t.joinToken, ca: t.ca }));
    // A real node (edge-b) tries to be edge-a with its own certificate: username and client id say edge-a.
    const b = await t.joinNode('edge-b');
    assert.equal(await connectRefusal(url, { ...b, clientId: 'drover-agent-edge-a', username: 'edge-a' }), '4');
    // Wildcards as a name or id.
    for (const id of ['drover-agent-+', 'drover-agent-#', 'drover-agent-edge-b/x']) {
      assert.equal(await connectRefusal(url, { ...b, clientId: id, username: '+' }), '4', id);
    }
    // The genuine edge-a is still connected: nothing kicked it.
    const n = (await t.api('GET', '/api/v1/nodes/edge-a')).body;
    assert.equal(n.status.conditions.find((c: any) => c.type === 'Ready').status, 'True');
  });

  test('a node certificate reads only its own inbox and cannot publish as another node', async () => {
    const b = await t.joinNode('edge-c');
    const c = await mqtt.connectAsync(b.url, b);
    try {
      for (const filter of [topics.desired('edge-a'), 'drover/v1/nodes/+/desired', 'drover/v1/nodes/+/req/+', '#']) {
        await assert.rejects(c.subscribeAsync(filter, { qos: 0 }), /Subscribe error/, filter);
      }
      assert.deepEqual((await c.subscribeAsync(topics.desired('edge-c'), { qos: 0 })).map((g) => g.qos), [0]);
      // A forged status for edge-a: the broker drops the connection that tried.
      const closed = new Promise<void>((r) => c.once('close', () => r()));
      c.publish(topics.status('edge-a'), encode({ node: 'edge-a' }), DELIVERY.status);
      await closed;
    } finally {
      await c.endAsync(true);
    }
  });

  test('join names must be DNS subdomains: wildcards, slashes and the server client\'s name are refused before any certificate is made', async () => {
    // drover-server: on an external Mosquitto the CN is the username, and that one has the server's ACL.
    for (const node of ['+', '#', 'a/b', 'Edge', '', 'drover-server']) {
      await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: t.joinToken, node, logger: silentLogger }), (err: Error) => {
        assert.match(err.message, /\((422|400)\)/, node);
        return true;
      });
    }
    const list = await t.api('GET', '/drover/v1/nodes/');
    const names: string[] = list.body.items.map((n: any) => n.node);
    assert.ok(names.includes('edge-a'));
    for (const bad of ['+', '#', 'a/b', 'Edge', '', 'drover-server']) assert.ok(!names.includes(bad), `no credential for ${JSON.stringify(bad)}`);
  });

  test("an agent whose token names another CA stops at /cacerts and sends nothing else", async () => {
    const other = await loadOrCreatePki({ dir: otherCaDir, sans: serverSans([]), logger: silentLogger });
    // A server of another CA that records what it is sent: the agent must only ask for /cacerts.
    const seen: Array<{ method?: string; url?: string; auth?: string }> = [];
    const port = await freePort();
    const impostor = createHttpsServer({ key: other.server.key, cert: other.server.cert }, (req, res) => {
      seen.push({ method: req.method, url: req.url, auth: req.headers.authorization });
      res.end(req.url === '/cacerts' ? other.caCert : '{}');
    });
    await new Promise<void>((r) => impostor.listen(port, '127.0.0.1', () => r()));
    try {
      const err = await joinCluster({ apiUrl: `https://127.0.0.1:${port}`, token: t.joinToken, node: 'edge-z', logger: silentLogger }).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err instanceof JoinRefusedError, String(err));
      assert.match(err.message, /presents CA sha256 [0-9a-f]{64}, but the join token expects [0-9a-f]{64}: wrong server or someone in between; nothing was sent/);
      assert.deepEqual(seen, [{ method: 'GET', url: '/cacerts', auth: undefined }]);
      // The real server with a token naming the other CA: refused the same way, no credential made.
      const forged = formatJoinToken(other.caHash, parseJoinToken(t.joinToken).credential);
      await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: forged, node: 'edge-z', logger: silentLogger }), /nothing was sent/);
      assert.equal((await t.api('GET', '/drover/v1/nodes/edge-z')).status, 404);
    } finally {
      impostor.close();
    }
  });

  test('a client trusting another CA cannot connect to the broker or the API', async () => {
    const other = await loadOrCreatePki({ dir: otherCaDir, sans: serverSans([]), logger: silentLogger });
    const b = await t.joinNode('edge-d');
    assert.match(await connectRefusal(t.mqttUrl, { ...b, ca: other.caCert }), /SELF_SIGNED|UNABLE_TO_VERIFY|certificate/i);
    // A certificate from another CA (right CN) is refused by the handshake.
    const { generateKeyPem, issueCertificate } = await import('../../server/pki/x509.js');
    const k = generateKeyPem();
    const forged = issueCertificate({ subject: { cn: 'edge-d', o: 'drover:nodes' }, publicKeyPem: k.publicKey, issuer: { certPem: other.caCert, keyPem: other.caKey }, usage: 'client', days: 30, now: Date.now() });
    assert.ok(await connectRefusal(t.mqttUrl, { ...b, key: k.privateKey, cert: forged.pem }));
  });

  test('nothing plain listens: plain MQTT and plain HTTP to the ports get no answer', async () => {
    assert.ok(await connectRefusal(t.mqttUrl.replace('mqtts:', 'mqtt:'), { clientId: 'drover-agent-edge-a', username: 'edge-a', password: t.joinToken }));
    const plainHttp = await fetch(t.apiUrl.replace('https:', 'http:') + '/healthz').then(
      (r) => `answered ${r.status}`,
      (err: Error) => err.message,
    );
    assert.doesNotMatch(plainHttp, /^answered 200/);
  });
});
