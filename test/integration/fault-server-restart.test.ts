/**
 * The server (API, store, embedded broker) as a real `drover server` process, with two agents in
 * their own network namespaces and podman stores. Each test builds its own server (own data dir and
 * ports), devices and Deployment, so either runs alone or after the other:
 * - kill -9 of the server in the middle of a rolling update, restart on the same data dir: the
 *   rollout finishes and no write the API acknowledged is lost;
 * - a graceful restart (SIGTERM, start again on the same ports): the embedded broker comes back
 *   empty, every agent reconnects and the fleet converges again.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { waitFor } from '../helpers/cluster.js';
import {
  AGENT_START_MS,
  Cleanup,
  createDevice,
  DEPLOY,
  editDeployment,
  IMG1,
  IMG2,
  podReady,
  podsOf,
  rolledOut as rolledOutOn,
  SERVE,
  secs,
  serverProcess,
  waitHeardSince,
  waitReady,
  type ApiPod,
  type Device,
  type ServerProcess,
} from '../helpers/fault.js';

const REPLICAS = 4;

/** A Deployment spread over both devices (no pinning), maxSurge 1, maxUnavailable 1. */
function manifest(image: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'fleet' },
    spec: {
      replicas: REPLICAS,
      selector: { matchLabels: { app: 'fleet' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } },
      template: {
        metadata: { labels: { app: 'fleet' } },
        spec: {
          hostNetwork: true,
          terminationGracePeriodSeconds: 2,
          containers: [{ name: 'main', image, command: ['sh', '-c', SERVE], resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
        },
      },
    },
  };
}

interface Fleet {
  server: ServerProcess;
  nodes: string[];
  devices: Device[];
  /** Complete on `image`: Deployment status, every pod Ready, exactly one running container per pod across the devices. */
  rolledOut(image: string): Promise<{ pods: ApiPod[]; containers: RuntimeContainer[] } | undefined>;
  fleetContainers(): Promise<RuntimeContainer[]>;
}

/** A server process of its own (fresh data dir and ports), two Ready devices, and 'fleet' rolled out on :1. */
async function startFleet(cleanup: Cleanup, nodes: string[], seen: Device[]): Promise<Fleet> {
  const server = await serverProcess(cleanup);
  await server.start();
  const devices = await Promise.all(nodes.map((n) => createDevice(cleanup, n, () => server, [IMG1, IMG2])));
  seen.push(...devices);
  for (const d of devices) d.startAgent();
  await Promise.all(nodes.map((n) => waitReady(server.api, n, 'True', AGENT_START_MS)));

  const fleetContainers = async () => (await Promise.all(devices.map((d) => d.containers()))).flat().filter((c) => c.labels[LABELS.pod]?.startsWith('fleet-'));
  const rolledOut = (image: string) => rolledOutOn(server.api, devices, 'fleet', image, REPLICAS);

  assert.equal((await server.api('POST', DEPLOY, manifest(IMG1))).status, 201);
  await waitFor('fleet on :1', () => rolledOut(IMG1), 90_000, 200);
  const spread = new Set((await podsOf(server.api, 'fleet')).map((p) => p.spec.nodeName));
  assert.equal(spread.size, 2, 'the pods run on both devices');
  return { server, nodes, devices, rolledOut, fleetContainers };
}

/** Runs `body` with its own Cleanup; a failure carries the tail of every agent's output. */
async function isolated(body: (cleanup: Cleanup, devices: Device[]) => Promise<void>): Promise<void> {
  const cleanup = new Cleanup();
  const devices: Device[] = [];
  try {
    await body(cleanup, devices);
  } catch (err) {
    const tails = devices.map((d) => `agent ${d.name} output (tail):\n${d.agent?.output().slice(-4000) ?? '(not started)'}`);
    throw new Error(`${(err as Error)?.stack ?? String(err)}\n\n${tails.join('\n\n')}`, { cause: err });
  } finally {
    await cleanup.run();
  }
}

describe('edge autonomy: server kill -9 and graceful restart (server process, netns agents, real podman)', () => {
  test('kill -9 of the server during a rollout: after a restart on the same data dir the rollout finishes, no acknowledged write is lost', { timeout: 300_000 }, () =>
    isolated(async (cleanup, seen) => {
      const { server, nodes, rolledOut, fleetContainers } = await startFleet(cleanup, ['edge-k1', 'edge-k2'], seen);
      const { api } = server;

      // The rollout starts, with a stream of writes alongside; the server dies mid-way.
      await editDeployment(api, 'fleet', (d) => (d.spec.template.spec.containers[0].image = IMG2));
      const acked: string[] = [];
      let writing = true;
      let n = 0;
      const writer = (async () => {
        while (writing) {
          const name = `w-${n++}`;
          const r = await api('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { n: String(n) } }).catch(() => undefined);
          if (r?.status === 201) acked.push(name);
          else if (!r) await new Promise((res) => setTimeout(res, 50));
        }
      })();
      // Killed once the rollout is under way and the API has acknowledged writes, so the check
      // below has something to lose.
      await waitFor('the rollout under way and writes acknowledged', async () => acked.length > 0 && (await podsOf(api, 'fleet')).some((p) => p.spec.containers[0]!.image === IMG2 && podReady(p)), 60_000, 50);
      const killedAt = Date.now();
      await server.proc.kill9();
      writing = false;
      await writer;
      const midway = await fleetContainers();
      console.log(`[server kill -9] killed mid-rollout: ${midway.filter((c) => c.image === IMG2).length} of ${REPLICAS} containers on :2, ${acked.length} writes acknowledged`);
      assert.ok(acked.length > 0, 'the API acknowledged writes before the kill');

      await server.start();
      const upMs = Date.now() - killedAt;
      const missing = [];
      for (const name of acked) if ((await api('GET', `/api/v1/namespaces/default/configmaps/${name}`)).status !== 200) missing.push(name);
      assert.deepEqual(missing, [], `every acknowledged write survived the kill (${acked.length} acknowledged)`);
      // Reconnected: each agent said hello to the restarted server (its Node heard from after the kill).
      const heardMs = await Promise.all(nodes.map((node) => waitHeardSince(api, node, killedAt, 90_000).then(() => Date.now() - killedAt)));
      await Promise.all(nodes.map((node) => waitReady(api, node, 'True', 120_000)));
      const done = await waitFor('fleet rolled out to :2 after the restart', () => rolledOut(IMG2), 120_000, 200);
      const doneMs = Date.now() - killedAt;
      console.log(
        `[server kill -9] server healthy again ${secs(upMs)} after the kill; agents heard from again after ${heardMs.map(secs).join(', ')}; ` +
          `rollout complete ${secs(doneMs)} after the kill; ${acked.length} acknowledged writes all present`,
      );
      assert.equal(done.containers.length, REPLICAS);
    }));

  test('graceful restart of the server and its embedded broker: every agent reconnects, the fleet converges', { timeout: 300_000 }, () =>
    isolated(async (cleanup, seen) => {
      const { server, nodes, rolledOut, fleetContainers } = await startFleet(cleanup, ['edge-g1', 'edge-g2'], seen);
      const { api } = server;
      const before = await waitFor('fleet steady on :1', () => rolledOut(IMG1), 60_000, 200);
      const stoppedAt = Date.now();
      await server.proc.stop(10_000);
      await server.start();
      const startedAt = Date.now();
      // Converged: every agent reconnected to the new broker and said hello again (heard from after
      // the restart), every node Ready, every pod Running and Ready.
      const heardMs = await Promise.all(nodes.map((node) => waitHeardSince(api, node, startedAt, 90_000).then(() => Date.now() - stoppedAt)));
      await waitFor(
        'all nodes Ready, all pods Running',
        async () => {
          for (const node of nodes) {
            const n = (await api('GET', `/api/v1/nodes/${node}`)).body;
            if (n?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready')?.status !== 'True') return false;
          }
          const pods = await podsOf(api, 'fleet');
          return pods.length === REPLICAS && pods.every((p) => p.status?.phase === 'Running' && podReady(p));
        },
        90_000,
        100,
      );
      const convergedMs = Date.now() - stoppedAt;
      console.log(
        `[broker restart] server down and up again in ${secs(startedAt - stoppedAt)}; agents heard from again ${heardMs.map(secs).join(', ')} after the stop; ` +
          `full convergence (all nodes Ready, all pods Running) ${secs(convergedMs)} after the stop`,
      );
      // Nothing was restarted by the server going away and coming back.
      const now = await fleetContainers();
      assert.equal(now.length, REPLICAS);
      assert.deepEqual(now.map((c) => [c.id, c.startedAt]).sort(), before.containers.map((c) => [c.id, c.startedAt]).sort());
    }));
});
