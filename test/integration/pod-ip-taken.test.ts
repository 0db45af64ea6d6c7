/**
 * Server + agent on a runtime that tells its bridge subnet and refuses the first address asked for
 * with podman's own words (another container holds it): the agent gives that address up, says so in
 * a Warning event, runs the pod on another one (its env's status.podIP included), and an agent
 * restart finds the pod's address again in the container's label.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BridgeSubnet, RunSpec } from '../../agent/runtime/types.js';
import { RuntimeError } from '../../src/util/errors.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

const NODE = 'edge-ip';

/** FakeRuntime with a bridge subnet; the first address asked for is held by "another container". */
class BridgeRuntime extends FakeRuntime {
  refused: string | undefined;
  /** Env of every container run, by its first label's pod/container. */
  readonly envs: Array<{ ip?: string; env: Record<string, string> }> = [];

  async bridgeSubnet(): Promise<BridgeSubnet> {
    return { subnet: '10.99.0.0/24', gateway: '10.99.0.1' };
  }

  override async run(spec: RunSpec): Promise<string> {
    if (spec.ip && (this.refused === undefined || this.refused === spec.ip)) {
      this.refused = spec.ip;
      throw new RuntimeError(`podman start failed: unable to start container "0123abcd": IPAM error: requested ip address ${spec.ip} is already allocated to container ID 7f0a28b4d295`);
    }
    this.envs.push({ ip: spec.ip, env: spec.env });
    return super.run(spec);
  }
}

describe('a pod address the runtime refuses as taken', { timeout: 120_000 }, () => {
  let cluster: TestServer;
  const runtime = new BridgeRuntime();
  let stateDir: string;

  before(async () => {
    cluster = await startTestServer();
    stateDir = await mkdtemp(join(tmpdir(), 'drover-ip-taken-'));
  });
  after(async () => {
    await cluster?.stop();
  });

  test('is given up for another (Warning AddressInUse), which the pod runs on and reports; an agent restart keeps it', async () => {
    let agent = await cluster.addAgent({ node: NODE, runtime, stateDir, resyncSeconds: 1, heartbeatSeconds: 1 });
    const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web' },
      spec: { nodeName: NODE, containers: [{ name: 'main', image: 'localhost/app:1', env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }] }, { name: 'side', image: 'localhost/app:1' }] },
    });
    assert.equal(created.status, 201, created.text);
    const pod = await waitFor('pod web Running with a podIP', async () => {
      const p = (await cluster.api('GET', '/api/v1/namespaces/default/pods/web')).body;
      return p?.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    }, 60_000);
    const refused = runtime.refused;
    assert.ok(refused, 'the first address was refused');
    const podIP = pod.status.podIP as string;
    assert.match(podIP, /^10\.99\.0\.\d+$/);
    assert.notEqual(podIP, refused);
    assert.notEqual(podIP, '10.99.0.1', 'never the gateway');
    const main = runtime.envs.find((e) => e.ip);
    assert.deepEqual(main, { ip: podIP, env: { POD_IP: podIP } }, 'the first container runs on the new address, and its env says so');
    assert.equal(runtime.envs.filter((e) => e.ip).length, 1, 'only the first container asks for the address');
    const events = (await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=web')).body.items as Array<{ reason: string; type: string; message: string }>;
    const said = events.find((e) => e.reason === 'AddressInUse');
    assert.ok(said, JSON.stringify(events.map((e) => e.reason)));
    assert.equal(said.type, 'Warning');
    assert.match(said.message, new RegExp(`Address ${refused!.replace(/\./g, '\\.')} is already in use on the fake bridge network: the pod gets another address`));

    // A new agent process over the same containers: the address comes back from the label, nothing is re-created.
    await agent.close();
    const runs = runtime.envs.length;
    const restartedAt = Date.now();
    agent = await cluster.addAgent({ node: NODE, runtime, stateDir, resyncSeconds: 1, heartbeatSeconds: 1 });
    const again = await waitFor('a report from the new agent', async () => {
      const p = (await cluster.api('GET', '/api/v1/namespaces/default/pods/web')).body;
      return Date.parse(p?.status?.lastReportTime ?? '') > restartedAt ? p : undefined;
    }, 30_000);
    assert.equal(again.status.podIP, podIP);
    assert.equal(runtime.envs.length, runs, 'no container was run again');
    await agent.close();
  });
});
