/**
 * `drover sim`'s engine (src/sim/run.ts runSim) against a real server (store, controllers, embedded
 * broker over TLS): 20 simulated agents in two forked worker processes join with the join token,
 * register, run a DaemonSet's pods and, once stopped as by a power loss, are judged lost (last will,
 * missed heartbeats). Everything asserted is read from the API.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runSim, simNodeName, SIM_DEFAULTS, type RunningSim, type SimOptions } from '../../src/sim/run.js';
import { ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

const NODES = 20;

interface ApiNode {
  metadata: { name: string };
  status?: { conditions?: Array<{ type: string; status: string }> };
}
const readyOf = (n: ApiNode) => n.status?.conditions?.find((c) => c.type === 'Ready')?.status;

describe(`drover sim: ${NODES} simulated agents in worker processes`, () => {
  let cluster: TestServer;
  let sim: RunningSim | undefined;
  const opts = (o: Partial<SimOptions> = {}): SimOptions => ({
    ...SIM_DEFAULTS,
    server: cluster.apiUrl,
    joinToken: cluster.joinToken,
    nodes: NODES,
    workers: 2,
    prefix: 'simt',
    heartbeatSeconds: 2,
    keepaliveSeconds: 5,
    reportSeconds: 0,
    ...o,
  });
  const nodes = async (): Promise<ApiNode[]> => {
    const r = await cluster.api('GET', '/api/v1/nodes');
    assert.equal(r.status, 200, r.text);
    return (r.body.items as ApiNode[]).filter((n) => n.metadata.name.startsWith('simt-'));
  };

  before(async () => {
    cluster = await startTestServer();
  });
  after(async () => {
    await sim?.stop();
    await cluster?.stop();
  });

  test('a bad option is refused naming it, and nothing joins', async () => {
    await assert.rejects(runSim(opts({ prefix: 'Bad_Prefix' }), silentLogger), (err: unknown) => err instanceof ValidationError && /--prefix/.test(err.message));
    await assert.rejects(runSim(opts({ server: 'ftp://127.0.0.1:1' }), silentLogger), /--server/);
    assert.equal((await nodes()).length, 0);
  });

  test('a join token for another cluster joins no node', async () => {
    // Same form, another CA hash: the simulated devices check the CA before they send anything, as agents do.
    const forged = cluster.joinToken.replace(/^K10([0-9a-f])/, (_m, c: string) => `K10${c === '0' ? '1' : '0'}`);
    const bad = await runSim(opts({ joinToken: forged, nodes: 3, workers: 0, prefix: 'simt' }), silentLogger);
    try {
      assert.equal(bad.joined.ok, 0);
      assert.equal(bad.joined.failed, 3);
      assert.match(bad.joined.errorSamples[0] ?? '', /does not match the join token/);
    } finally {
      await bad.stop();
    }
    assert.equal((await nodes()).length, 0);
  });

  test(`${NODES} nodes join and turn Ready`, async () => {
    sim = await runSim(opts(), silentLogger);
    assert.equal(sim.joined.ok, NODES, sim.joined.errorSamples.join('; '));
    assert.equal(sim.fleet.pids.length, 2, 'agents run in two worker processes');
    await waitFor(`${NODES} Ready nodes`, async () => {
      const ns = await nodes();
      return ns.length === NODES && ns.every((n) => readyOf(n) === 'True');
    }, 60_000, 250);
    const names = (await nodes()).map((n) => n.metadata.name).sort();
    assert.deepEqual(names, Array.from({ length: NODES }, (_, i) => simNodeName('simt', i)));
  });

  test("a DaemonSet's pods are reported Running on every simulated node", async () => {
    const ds = {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'simds', namespace: 'default' },
      spec: {
        selector: { matchLabels: { app: 'simds' } },
        template: { metadata: { labels: { app: 'simds' } }, spec: { containers: [{ name: 'c', image: 'localhost/busybox:latest', resources: { requests: { cpu: '10m', memory: '8Mi' } } }] } },
      },
    };
    const r = await cluster.api('POST', '/apis/apps/v1/namespaces/default/daemonsets', ds);
    assert.equal(r.status, 201, r.text);
    const pods = await waitFor('a Running simds pod on every node', async () => {
      const p = await cluster.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dsimds');
      const items = p.body.items as Array<{ spec: { nodeName?: string }; status?: { phase?: string } }>;
      return items.length === NODES && items.every((i) => i.status?.phase === 'Running') && items;
    }, 60_000, 250);
    assert.equal(new Set(pods.map((p) => p.spec.nodeName)).size, NODES, 'one pod per node');
    const s = await sim!.stats();
    assert.equal(s.podsRunning, NODES);
    assert.equal(s.desiredRejected, 0, 'every desired state parsed by the contract');
  });

  test('agents stopped as by a power loss (connections cut, no goodbye) are judged not Ready', async () => {
    await sim!.stop();
    sim = undefined;
    await waitFor('every simulated node not Ready', async () => {
      const ns = await nodes();
      return ns.length === NODES && ns.every((n) => readyOf(n) !== 'True');
    }, 60_000, 250);
  });
});
