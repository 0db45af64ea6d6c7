/**
 * The address a node is known by (INTERNAL-IP, and every pod's hostIP) is the one its agent reaches
 * the server from: the local address of its MQTT connection, not the first interface it lists
 * (podman's bridge 10.88.0.1 came first once, after an agent restart in a network namespace), or the
 * one given with --node-ip.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readHardware } from '../../agent/hardware.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

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

  async function joinAgent(node: string, nodeIP?: string): Promise<void> {
    const stateDir = await mkdtemp(join(tmpdir(), `drover-agent-${node}-`));
    dirs.push(stateDir);
    agents.push(
      await startAgent(
        { node, serverUrl: t.mqttUrl, token: t.joinToken, stateDir, labels: {}, runtime: {}, heartbeatSeconds: 5, resyncSeconds: 2, keepaliveSeconds: 5, nodeIP },
        { logger: silentLogger, runtime: new FakeRuntime() },
      ),
    );
  }

  const internalIPs = async (node: string): Promise<string[] | undefined> => {
    const r = await t.api('GET', `/api/v1/nodes/${node}`);
    const ips = (r.body?.status?.addresses as { type: string; address: string }[] | undefined)?.filter((a) => a.type === 'InternalIP').map((a) => a.address);
    return ips?.length ? ips : undefined;
  };

  async function podHostIP(node: string): Promise<string> {
    const name = `on-${node}`;
    const r = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name }, spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(r.status, 201, r.text);
    return waitFor(`pod ${name} Running with a hostIP`, async () => {
      const st = (await t.api('GET', `/api/v1/namespaces/default/pods/${name}`)).body?.status;
      return st?.phase === 'Running' && st.hostIP;
    });
  }

  test('the first address is the local address of the MQTT connection', async () => {
    await joinAgent('edge-conn');
    // The test server listens on 127.0.0.1: the agent's socket is bound to 127.0.0.1 there, an
    // address no interface listing reports (loopback is left out of those).
    assert.ok(!(await readHardware()).addresses.includes('127.0.0.1'));
    const ips = await waitFor('edge-conn InternalIP', () => internalIPs('edge-conn'));
    assert.equal(ips[0], '127.0.0.1');
    assert.equal(await podHostIP('edge-conn'), '127.0.0.1');
  });

  test('--node-ip overrides it', async () => {
    await joinAgent('edge-fixed', '192.0.2.44');
    const ips = await waitFor('edge-fixed InternalIP', () => internalIPs('edge-fixed'));
    assert.equal(ips[0], '192.0.2.44');
    assert.equal(ips.filter((a) => a === '192.0.2.44').length, 1, 'listed once');
    assert.equal(await podHostIP('edge-fixed'), '192.0.2.44');
  });
});
