/**
 * A two-wave DaemonSet rollout on real podman over two agents — one a separate process in its own
 * network namespace (a device behind a veth link), one in this process on its own podman store —
 * with an automatic rollback: the new revision's container exits 1 on the wave-1 node, the gate
 * fails, the stable template is written back, and the other node never runs the bad revision.
 * Asserted from the DaemonSet's status.drover.rollout, its Events, the pods' revision labels, each
 * node's podman event log, and `drover rollout status` (exit 1 naming the rollback).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { LABELS } from '../../agent/engine/naming.js';
import { startAgent } from '../../agent/run.js';
import type { Node } from '../../src/api/node.js';
import { podTemplateHash } from '../../src/api/revisions.js';
import { daemonSet, type DaemonSet, type WavedRolloutStatus } from '../../src/api/workloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { REVISION_LABEL } from '../../server/controllers/daemonset.js';
import { waveSets } from '../../server/controllers/waves.js';
import { drover } from '../helpers/cli.js';
import { waitFor } from '../helpers/cluster.js';
import { AGENT_START_MS, Cleanup, containersCreated, createDevice, IMG1, podReady, SERVE, secs, startInProcessServer, waitReady, type ApiPod, type Device, type FaultServer } from '../helpers/fault.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const DS = '/apis/apps/v1/namespaces/default/daemonsets';
const NS_NODE = 'wave-ns';
const HOST_NODE = 'wave-host';
const BAD = 'echo starting; exit 1';

function manifest(command: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'probe' },
    spec: {
      selector: { matchLabels: { app: 'probe' } },
      template: {
        metadata: { labels: { app: 'probe' } },
        spec: {
          hostNetwork: true,
          terminationGracePeriodSeconds: 2,
          containers: [{ name: 'main', image: IMG1, command: ['sh', '-c', command], resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
        },
      },
      // Wave 1: one node; wave 2 (implicit): all. Ready for 3 s to pass.
      drover: { rollout: { waves: [{ nodes: 1 }], gate: { readySeconds: 3, timeoutSeconds: 90 } } },
    },
  };
}
const hashOf = (command: string) => podTemplateHash(daemonSet.parse(manifest(command)).spec.template);

describe('waved rollout on real podman: two agents, one in a network namespace, automatic rollback', () => {
  const cleanup = new Cleanup();
  let server: FaultServer & { server: { apiUrl: string; adminToken: string } };
  let dev: Device;
  let sb: PodmanSandbox;

  const getDs = async (): Promise<DaemonSet> => (await server.api('GET', `${DS}/probe`)).body;
  const pods = async (): Promise<ApiPod[]> => (await server.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dprobe')).body.items;

  /** Containers podman created in the in-process agent's store since `sinceMs` (its own event log). */
  async function hostContainersCreated(sinceMs: number): Promise<Array<{ pod: string }>> {
    const r = await execa('podman', ['--root', sb.root, '--runroot', sb.runroot, 'events', '--stream=false', '--since', new Date(sinceMs).toISOString(), '--filter', `label=${LABELS.node}=${HOST_NODE}`, '--format', 'json'], { env: sb.env, stdin: 'ignore' });
    return r.stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { Type: string; Status: string; Attributes?: Record<string, string> })
      .filter((e) => e.Type === 'container' && e.Status === 'create')
      .map((e) => ({ pod: e.Attributes?.[LABELS.pod] ?? '' }));
  }

  before(async () => {
    server = await startInProcessServer(cleanup);
    dev = await createDevice(cleanup, NS_NODE, () => server, [IMG1]);
    dev.startAgent();
    sb = await podmanSandbox();
    cleanup.add('host podman sandbox', () => sb.cleanup());
    cleanup.add('host containers', () => execa('podman', ['--root', sb.root, '--runroot', sb.runroot, 'rm', '--all', '--force', '--time', '0'], { env: sb.env }).catch(() => {}));
    await buildTestImage(sb, IMG1);
    const stateDir = await mkdtemp(join(tmpdir(), `drover-${HOST_NODE}-`));
    cleanup.add('host agent state', () => rm(stateDir, { recursive: true, force: true }));
    const agent = await startAgent(
      {
        node: HOST_NODE,
        serverUrl: `https://127.0.0.1:${server.apiPort}`,
        mqttUrl: `mqtts://127.0.0.1:${server.mqttPort}`,
        token: server.joinToken,
        stateDir,
        labels: {},
        runtime: {},
        heartbeatSeconds: 5,
        resyncSeconds: 2,
        keepaliveSeconds: 5,
      },
      { logger: silentLogger, runtime: sb.runtime },
    );
    cleanup.add('host agent', () => agent.close());
    await waitReady(server.api, HOST_NODE, 'True', 60_000);
    await waitReady(server.api, NS_NODE, 'True', AGENT_START_MS);
  });
  after(() => cleanup.run());

  test('wave 1 fails its gate (exit 1), the fleet is rolled back, the wave-2 node never ran the bad revision', async () => {
    const good = hashOf(SERVE);
    const bad = hashOf(BAD);
    const created = await server.api('POST', DS, manifest(SERVE));
    assert.equal(created.status, 201, created.text);
    const allGood = () =>
      waitFor(
        'both nodes run a Ready pod of the good revision',
        async () => {
          const ps = await pods();
          return ps.length === 2 && ps.every((p) => podReady(p) && p.metadata.labels?.[REVISION_LABEL] === good) ? ps : undefined;
        },
        90_000,
        250,
      );
    await allGood();
    await waitFor('first revision stable', async () => (await getDs()).status?.drover?.rollout?.phase === 'Complete');

    const ds = await getDs();
    const nodes: Node[] = (await server.api('GET', '/api/v1/nodes')).body.items;
    const [wave1, all] = waveSets(ds, ds.spec.drover!.rollout!, nodes);
    assert.equal(wave1!.length, 1);
    assert.equal(all!.length, 2);
    const first = wave1![0]!;
    const other = all!.find((n) => n !== first)!;
    console.log(`wave 1: ${first}, wave 2: ${other}`);

    const t0 = Date.now();
    for (let i = 0; ; i++) {
      const cur = await getDs();
      cur.spec.template.spec.containers[0]!.command = ['sh', '-c', BAD];
      const r = await server.api('PUT', `${DS}/probe`, cur);
      if (r.status === 200) break;
      assert.ok(r.status === 409 && i < 10, r.text);
    }

    // Until the rollback: the bad revision only ever on the wave-1 node.
    let rolledBack: WavedRolloutStatus | undefined;
    await waitFor(
      'RolledBack',
      async () => {
        for (const p of await pods()) {
          if (p.metadata.labels?.[REVISION_LABEL] === bad) assert.equal(p.spec.nodeName, first, `the bad revision reached ${p.spec.nodeName}`);
        }
        const r = (await getDs()).status?.drover?.rollout;
        if (r?.phase === 'RolledBack') rolledBack = r;
        return rolledBack;
      },
      120_000,
      200,
    );
    const tRolledBack = Date.now();
    assert.equal(rolledBack!.targetRevision, bad);
    assert.equal(rolledBack!.stableRevision, good);
    assert.match(rolledBack!.message, /^rolled back: wave 1\/2 \(1 node\) failed its gate: 1 of 1 pods failed/);

    // The Events are recorded right after the status that they explain.
    const events = await waitFor('RolloutWaveFailed and RolledBack events', async () => {
      const l: Array<{ type: string; reason: string; message: string }> = (await server.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=probe')).body.items;
      return l.some((e) => e.reason === 'RolloutWaveFailed') && l.some((e) => e.reason === 'RolledBack') ? l : undefined;
    });
    const failed = events.find((e) => e.reason === 'RolloutWaveFailed')!;
    assert.equal(failed.type, 'Warning');
    assert.ok(failed.message.includes(first), failed.message);
    assert.match(failed.message, /CrashLoopBackOff|Failed|not Ready/);
    assert.ok(events.some((e) => e.reason === 'RolledBack' && e.type === 'Warning'));
    assert.deepEqual((await getDs()).spec.template.spec.containers[0]!.command, ['sh', '-c', SERVE], 'the stable template is back in the spec');

    await allGood();
    console.log(`bad revision → RolledBack ${secs(tRolledBack - t0)}; RolledBack → both nodes Ready on the stable revision ${secs(Date.now() - tRolledBack)}`);

    // The node of wave 2 made no container at all since the bad template was applied.
    const createdOnOther = other === NS_NODE ? await containersCreated(dev, t0) : await hostContainersCreated(t0);
    assert.deepEqual(createdOnOther, [], `${other} created containers during the failed rollout`);
    const createdOnFirst = first === NS_NODE ? await containersCreated(dev, t0) : await hostContainersCreated(t0);
    assert.ok(createdOnFirst.length >= 2, `${first} ran the bad revision then the stable one again: ${JSON.stringify(createdOnFirst)}`);

    // `drover rollout status` says so and fails.
    const st = await drover({ DROVER_SERVER: server.server.apiUrl, DROVER_TOKEN: server.server.adminToken }, ['rollout', 'status', 'daemonset/probe']);
    assert.equal(st.code, 1, st.stdout + st.stderr);
    assert.match(st.stderr, /daemon set "probe" rolled back: wave 1\/2 \(1 node\) failed its gate/);
  });
});
