/**
 * Certificate renewal with a faked clock (k3s #2342, #12171: a device offline for months must come
 * back). The server issues a node certificate as if it were months ago, then runs on the real clock:
 * a certificate near its end (a third of its life left) and one already expired are both renewed by
 * the agent at start, over HTTPS with that certificate, and the node connects with the new one; the
 * old one is refused by the broker from then on.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { connectRefusal, freePort, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { agentClientId } from '../../src/contract/topics.js';

const DAY = 86400_000;

const ready = (n: any) => n?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';

describe('identity: certificate renewal', () => {
  const dirs: string[] = [];
  let running: TestServer | undefined;
  after(async () => {
    await running?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  for (const [label, daysAgo] of [
    ['near its end (65 of 365 days left)', 300],
    ['expired 35 days ago', 400],
  ] as const) {
    test(`a node certificate ${label} is renewed at start and the node connects with the new one`, async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'drover-renew-server-'));
      const stateDir = await mkdtemp(join(tmpdir(), 'drover-renew-agent-'));
      dirs.push(dataDir, stateDir);
      const apiPort = await freePort();
      const mqttPort = await freePort();
      const node = `edge-${daysAgo}`;

      // The join happens "daysAgo" days back: the server's clock is faked for issuing.
      const past = await startTestServer({ dataDir, apiPort, mqttPort, now: () => Date.now() - daysAgo * DAY });
      running = past;
      await past.addAgent({ node, runtime: new FakeRuntime(), stateDir });
      const oldCert = new X509Certificate(await readFile(join(stateDir, 'credentials', 'node.crt'), 'utf8'));
      const oldKey = await readFile(join(stateDir, 'credentials', 'node.key'), 'utf8');
      const issuedLeft = Date.parse(oldCert.validTo) - Date.now();
      assert.ok(issuedLeft < (366 - daysAgo) * DAY, `issued on the faked clock (${Math.round(issuedLeft / DAY)} days left)`);
      for (const a of past.agents) await a.close();
      past.agents.length = 0;
      await past.stop();

      // Months later, the server on the real clock; the device comes back with what it has.
      const now = await startTestServer({ dataDir, apiPort, mqttPort });
      running = now;
      assert.equal(now.joinToken, past.joinToken, 'the join token (and the CA it names) survives the restart');
      await now.addAgent({ node: node, runtime: new FakeRuntime(), stateDir });
      const newCert = new X509Certificate(await readFile(join(stateDir, 'credentials', 'node.crt'), 'utf8'));
      assert.notEqual(newCert.serialNumber, oldCert.serialNumber, 'a new certificate');
      const left = Date.parse(newCert.validTo) - Date.now();
      assert.ok(left > 364 * DAY, `a full life again (${Math.round(left / DAY)} days left)`);
      const cred = (await now.api('GET', `/drover/v1/nodes/${node}`)).body;
      assert.equal(cred.serial, newCert.serialNumber.replace(/^0+/, '').toUpperCase(), 'the server records the new one as current');
      await waitFor(`${node} Ready with the renewed certificate`, async () => ready((await now.api('GET', `/api/v1/nodes/${node}`)).body));

      // The old certificate (and its key) no longer gets in, even where it has not expired.
      const code = await connectRefusal(now.mqttUrl, { clientId: agentClientId(node), key: oldKey, cert: oldCert.toString(), ca: now.ca });
      // Superseded: CONNACK 4; expired: the TLS handshake fails first.
      if (daysAgo < 365) assert.equal(code, '4');
      else assert.match(code, /closed|expired|certificate/i);
      for (const a of now.agents) await a.close();
      now.agents.length = 0;
      await now.stop();
      running = undefined;
    });
  }
});
