/**
 * What a device that joined (with the shared join token, or a replayed join request) can still do to the server:
 * - keep messages of up to 4 MiB **retained** on as many `drover/v1/nodes/NODE/res/<id>` topics as it likes: the
 *   embedded broker holds every one in the server's memory, forever (revoking the node does not clear them);
 * - replay the body of its own earlier join with any bearer string: the "lost answer" path issues a new
 *   certificate and a new MQTT password without a join token;
 * and what the server does not do for it: labels of the join token (`drover token create --labels`) are the
 * documented way to give a node a node-restriction.drover.io/ label, yet the Node never carries them.
 * Against a `drover server` process started as the README says.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { CONTRACT_VERSION } from '../../src/contract/index.js';
import { createCsr, generateKeyPem } from '../../server/pki/x509.js';
import { Cleanup, serverProcess, type ServerProcess } from '../helpers/fault.js';
import { joinNode, waitFor } from '../helpers/cluster.js';
import { agentHello } from '../fuzz/agent-reports.js';

function vmRssMiB(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((s) => Number(/VmRSS:\s+(\d+)/.exec(s)![1]) / 1024);
}

describe('attack: a joined device against the server', () => {
  const cleanup = new Cleanup();
  let s: ServerProcess;
  let mqttUrl: string;

  before(async () => {
    s = await serverProcess(cleanup);
    await s.start();
    mqttUrl = `mqtts://127.0.0.1:${s.mqttPort}`;
  });
  after(() => cleanup.run());

  test('50 retained 4 MiB messages on the node\'s own res/ topics do not grow the server by 100 MiB', async () => {
    const node = await joinNode(`https://127.0.0.1:${s.apiPort}`, s.joinToken, 'hoarder', mqttUrl);
    const c = await mqtt.connectAsync(node.url, { ...node, servername: 'localhost' });
    cleanup.add('hoarder client', () => c.endAsync(true));
    const pid = s.proc.child.pid!;
    const before = await vmRssMiB(pid);
    const payload = Buffer.alloc(4 * 1024 * 1024 - 1024, 0x41);
    let accepted = 0;
    // A refused publish may come as the connection closing, with the QoS 1 publish never acknowledged.
    const closed = new Promise<boolean>((resolve) => c.once('close', () => resolve(false)));
    for (let i = 0; i < 50; i++) {
      // A refused publish (or a dropped connection) is the server defending itself: stop there.
      const ok = await Promise.race([c.publishAsync(`drover/v1/nodes/hoarder/res/junk-${i}`, payload, { qos: 1, retain: true }).then(() => true, () => false), closed]);
      if (!ok || !c.connected) break;
      accepted++;
    }
    await c.endAsync(true);
    // Whatever the server keeps after the client is gone is what it holds for it.
    await new Promise((r) => setTimeout(r, 3000));
    const held = await vmRssMiB(pid);
    assert.ok(held - before < 100, `server RSS ${before.toFixed(0)} → ${held.toFixed(0)} MiB after ${accepted} retained 4 MiB answers from one node`);
  });

  test('a join request replayed with a made-up bearer is refused (no certificate, no MQTT password)', async () => {
    const ca = await readFile(join(s.dataDir, 'tls', 'ca.crt'), 'utf8');
    const credential = s.joinToken.split('::')[1]!;
    const key = generateKeyPem();
    const body = JSON.stringify({ node: 'replayed', csr: createCsr('replayed', key.privateKey, key.publicKey) });
    const first = await fetch(`https://127.0.0.1:${s.apiPort}/v1/join`, { method: 'POST', headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }, body });
    assert.equal(first.status, 200, await first.text());
    // Whoever saw that request body (a proxy log, an --insecure link) sends it again later, without the token.
    const replay = await fetch(`https://127.0.0.1:${s.apiPort}/v1/join`, { method: 'POST', headers: { authorization: 'Bearer made-up', 'content-type': 'application/json' }, body });
    const text = await replay.text();
    assert.ok(!text.includes('mqttPassword') && !text.includes('BEGIN CERTIFICATE'), `replayed join answered ${replay.status} with credentials: ${text.slice(0, 120)}`);
    assert.equal(replay.status, 401, text);
    void ca;
  });

  test('a node joined with a token created with --labels node-restriction.drover.io/zone=vault carries that label', async () => {
    const created = await s.api('POST', '/drover/v1/tokens', { type: 'join', uses: 1, labels: { 'node-restriction.drover.io/zone': 'vault' } });
    assert.equal(created.status, 201, created.text);
    const node = await joinNode(`https://127.0.0.1:${s.apiPort}`, created.body.token, 'vault-1', mqttUrl);
    const c = await mqtt.connectAsync(node.url, { ...node, servername: 'localhost' });
    cleanup.add('vault-1 client', () => c.endAsync(true));
    const hello = agentHello('vault-1', 'boot-vault-1');
    assert.equal(hello.contractVersion, CONTRACT_VERSION);
    await c.publishAsync('drover/v1/nodes/vault-1/hello', JSON.stringify(hello), { qos: 1, retain: true });
    const labels = await waitFor('Node vault-1', async () => (await s.api('GET', '/api/v1/nodes/vault-1')).body?.metadata?.labels as Record<string, string> | undefined);
    assert.equal(labels['node-restriction.drover.io/zone'], 'vault', `labels of Node vault-1: ${JSON.stringify(labels)}`);
  });
});
