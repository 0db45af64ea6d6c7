/**
 * The server (API, store, embedded broker) as a real `drover server` process, with two agents in
 * their own network namespaces and podman stores:
 * - kill -9 of the server in the middle of a rolling update, restart on the same data dir: the
 *   rollout finishes and no write the API acknowledged is lost;
 * - a graceful restart (SIGTERM, start again on the same ports): the embedded broker comes back
 *   empty, every agent reconnects and the fleet converges again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { waitFor } from '../helpers/cluster.js';
import {
  Cleanup,
  createDevice,
  DEPLOY,
  editDeployment,
  IMG1,
  IMG2,
  podReady,
  podsOf,
  SERVE,
  secs,
  serverProcess,
  waitReady,
  type ApiPod,
  type Device,
  type ServerProcess,
} from '../helpers/fault.js';

const NODES = ['edge-s1', 'edge-s2'];
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

describe('edge autonomy: server kill -9 and graceful restart (server process, netns agents, real podman)', () => {
  const cleanup = new Cleanup();
  let server: ServerProcess;
  let devices: Device[];

  before(async () => {
    server = await serverProcess(cleanup);
    await server.start();
    devices = await Promise.all(NODES.map((n) => createDevice(cleanup, n, () => server, [IMG1, IMG2])));
    for (const d of devices) d.startAgent();
    await Promise.all(NODES.map((n) => waitReady(server.api, n, 'True', 60_000)));
  });
  after(() => cleanup.run());

  const allContainers = async (): Promise<RuntimeContainer[]> => (await Promise.all(devices.map((d) => d.containers()))).flat();

  /** Complete on `image`: Deployment status, every pod Ready, exactly one running container per pod across the devices. */
  async function rolledOut(image: string): Promise<{ pods: ApiPod[]; containers: RuntimeContainer[] } | undefined> {
    const d = (await server.api('GET', `${DEPLOY}/fleet`)).body;
    const pods = await podsOf(server.api, 'fleet');
    const statusDone =
      pods.length === REPLICAS &&
      pods.every((p) => podReady(p) && p.spec.containers[0]!.image === image) &&
      d.status?.observedGeneration === d.metadata.generation &&
      d.status?.updatedReplicas === REPLICAS &&
      d.status?.availableReplicas === REPLICAS &&
      d.status?.replicas === REPLICAS &&
      d.status?.conditions?.find((c: { type: string }) => c.type === 'Progressing')?.reason === 'NewReplicaSetAvailable';
    if (!statusDone) return undefined;
    const containers = (await allContainers()).filter((c) => c.labels[LABELS.pod]?.startsWith('fleet-'));
    const uids = new Set(pods.map((p) => p.metadata.uid));
    const ok = containers.length === REPLICAS && containers.every((c) => c.state === 'running' && c.image === image && uids.has(c.labels[LABELS.podUid]!));
    return ok ? { pods, containers } : undefined;
  }

  test('kill -9 of the server during a rollout: after a restart on the same data dir the rollout finishes, no acknowledged write is lost', { timeout: 200_000 }, async () => {
    const { api } = server;
    assert.equal((await api('POST', DEPLOY, manifest(IMG1))).status, 201);
    await waitFor('fleet on :1', () => rolledOut(IMG1), 90_000, 200);
    const spread = new Set((await podsOf(api, 'fleet')).map((p) => p.spec.nodeName));
    assert.equal(spread.size, 2, 'the pods run on both devices');

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
    await waitFor('the rollout under way', async () => (await podsOf(api, 'fleet')).some((p) => p.spec.containers[0]!.image === IMG2 && podReady(p)), 60_000, 50);
    const killedAt = Date.now();
    await server.proc.kill9();
    writing = false;
    await writer;
    const midway = (await allContainers()).filter((c) => c.labels[LABELS.pod]?.startsWith('fleet-'));
    console.log(`[server kill -9] killed mid-rollout: ${midway.filter((c) => c.image === IMG2).length} of ${REPLICAS} containers on :2, ${acked.length} writes acknowledged`);

    await server.start();
    const upMs = Date.now() - killedAt;
    const missing = [];
    for (const name of acked) if ((await api('GET', `/api/v1/namespaces/default/configmaps/${name}`)).status !== 200) missing.push(name);
    assert.deepEqual(missing, [], 'every acknowledged write survived the kill');
    await Promise.all(NODES.map((node) => waitReady(api, node, 'True', 60_000)));
    const done = await waitFor('fleet rolled out to :2 after the restart', () => rolledOut(IMG2), 120_000, 200);
    const doneMs = Date.now() - killedAt;
    const reconnects = devices.map((d) => d.agent!.logs().find((l) => l.msg === 'reconnected to server' && l.time >= killedAt));
    console.log(
      `[server kill -9] server healthy again ${secs(upMs)} after the kill; agents reconnected after ${reconnects.map((l) => (l ? secs(l.time - killedAt) : '?')).join(', ')}; ` +
        `rollout complete ${secs(doneMs)} after the kill; ${acked.length} acknowledged writes all present`,
    );
    assert.ok(reconnects.every(Boolean), 'every agent reconnected');
    assert.equal(done.containers.length, REPLICAS);
  });

  test('graceful restart of the server and its embedded broker: every agent reconnects, the fleet converges', { timeout: 120_000 }, async () => {
    const { api } = server;
    const before = await waitFor('fleet steady on :2', () => rolledOut(IMG2), 60_000, 200);
    const stoppedAt = Date.now();
    await server.proc.stop(10_000);
    await server.start();
    const startedAt = Date.now();
    // Converged: every agent reconnected to the new broker and said hello again (lastHeard after the
    // restart), every node Ready, every pod Running and Ready.
    await waitFor(
      'all nodes re-registered and Ready, all pods Running',
      async () => {
        for (const node of NODES) {
          const n = (await api('GET', `/api/v1/nodes/${node}`)).body;
          if (n?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready')?.status !== 'True') return false;
          if (!(Date.parse(n.status.lastHeard) >= startedAt - 1000)) return false;
        }
        const pods = await podsOf(api, 'fleet');
        return pods.length === REPLICAS && pods.every((p) => p.status?.phase === 'Running' && podReady(p));
      },
      90_000,
      100,
    );
    const convergedMs = Date.now() - stoppedAt;
    const reconnects = devices.map((d) => d.agent!.logs().find((l) => l.msg === 'reconnected to server' && l.time >= stoppedAt));
    console.log(
      `[broker restart] server down and up again in ${secs(startedAt - stoppedAt)}; agents reconnected ${reconnects.map((l) => (l ? secs(l.time - stoppedAt) : '?')).join(', ')} after the stop; ` +
        `full convergence (all nodes Ready, all pods Running) ${secs(convergedMs)} after the stop`,
    );
    assert.ok(reconnects.every(Boolean), 'every agent reconnected');
    // Nothing was restarted by the server going away and coming back.
    const now = (await allContainers()).filter((c) => c.labels[LABELS.pod]?.startsWith('fleet-'));
    assert.deepEqual(now.map((c) => [c.id, c.startedAt]).sort(), before.containers.map((c) => [c.id, c.startedAt]).sort());
  });
});
