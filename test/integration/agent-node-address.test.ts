/**
 * The address a node is known by (INTERNAL-IP, and every pod's hostIP) is the one its agent reaches
 * the server from: the local address of its MQTT connection, not the first interface it lists
 * (podman's bridge 10.88.0.1 came first once, after an agent restart in a network namespace), or the
 * one given with --node-ip. Over loopback (the server's own agent) it is the default route's address.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { readHardware } from '../../agent/hardware.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

const run = promisify(execFile);

/** An address of this host that no interface listing reports (it is on lo) and that is not loopback. */
const EXTRA_IP = '198.51.100.7';

describe('node address', () => {
  let t: TestServer;
  const agents: RunningAgent[] = [];
  const dirs: string[] = [];

  before(async () => {
    t = await startTestServer();
  });
  after(async () => {
    for (const a of agents) await a.close();
    await t?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** An agent joined through the API that dials the broker at `mqttUrl` (a proxy's mqtt:// is TLS passed through). */
  async function joinAgent(node: string, mqttUrl: string, nodeIP?: string): Promise<void> {
    const stateDir = await mkdtemp(join(tmpdir(), `drover-agent-${node}-`));
    dirs.push(stateDir);
    agents.push(
      await startAgent(
        {
          node, serverUrl: t.apiUrl, token: t.joinToken, mqttUrl: mqttUrl.replace(/^mqtt:/, 'mqtts:'), tlsServerName: 'localhost',
          stateDir, labels: {}, runtime: {}, heartbeatSeconds: 5, resyncSeconds: 2, keepaliveSeconds: 5, nodeIP,
        },
        { logger: silentLogger, runtime: new FakeRuntime() },
      ),
    );
  }

  const firstInternalIP = (node: string) =>
    waitFor(`${node} InternalIP`, async () => {
      const r = await t.api('GET', `/api/v1/nodes/${node}`);
      return (r.body?.status?.addresses as { type: string; address: string }[] | undefined)?.find((a) => a.type === 'InternalIP')?.address;
    });

  async function podHostIP(node: string): Promise<string> {
    const name = `on-${node}`;
    const r = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(r.status, 201, r.text);
    return waitFor(`pod ${name} Running with a hostIP`, async () => {
      const st = (await t.api('GET', `/api/v1/namespaces/default/pods/${name}`)).body?.status;
      return st?.phase === 'Running' && st.hostIP;
    });
  }

  test('the first address is the local address of the MQTT connection', async (tc) => {
    try {
      await run('ip', ['addr', 'add', `${EXTRA_IP}/32`, 'dev', 'lo']);
    } catch (err) {
      tc.skip(`cannot add ${EXTRA_IP} to lo: ${String(err)}`);
      return;
    }
    tc.after(() => run('ip', ['addr', 'del', `${EXTRA_IP}/32`, 'dev', 'lo']).then(() => undefined));
    // The broker listens on 127.0.0.1: a proxy on the extra address leads to it and notes where each
    // connection comes from, the agent's side of its socket.
    const { port: brokerPort } = new URL(t.mqttUrl);
    const peers: string[] = [];
    const proxy: Server = createServer((client) => {
      peers.push(client.remoteAddress ?? '');
      const upstream = connect(Number(brokerPort), '127.0.0.1');
      client.pipe(upstream).on('error', () => client.destroy());
      upstream.pipe(client).on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, EXTRA_IP, resolve));
    tc.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
    const port = (proxy.address() as { port: number }).port;

    assert.ok(!(await readHardware()).addresses.includes(EXTRA_IP), 'no interface listing reports it');
    await joinAgent('edge-conn', `mqtt://${EXTRA_IP}:${port}`);
    const ip = await firstInternalIP('edge-conn');
    assert.equal(ip, EXTRA_IP);
    assert.equal(peers[0], ip, "the server side sees the connection come from the node's address");
    assert.equal(await podHostIP('edge-conn'), EXTRA_IP);
  });

  test("over loopback (the server's own agent) it is the default route's address, not 127.0.0.1", async () => {
    await joinAgent('edge-local', t.mqttUrl);
    const ip = await firstInternalIP('edge-local');
    assert.notEqual(ip, '127.0.0.1');
    assert.equal(ip, (await readHardware()).addresses[0]);
  });

  test('--node-ip overrides it', async () => {
    await joinAgent('edge-fixed', t.mqttUrl, '192.0.2.44');
    const r = await waitFor('edge-fixed addresses', async () => (await t.api('GET', '/api/v1/nodes/edge-fixed')).body?.status?.addresses as { type: string; address: string }[] | undefined);
    const ips = r.filter((a) => a.type === 'InternalIP').map((a) => a.address);
    assert.equal(ips[0], '192.0.2.44');
    assert.equal(ips.filter((a) => a === '192.0.2.44').length, 1, 'listed once');
    assert.equal(await podHostIP('edge-fixed'), '192.0.2.44');
  });
});
