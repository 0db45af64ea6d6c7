/**
 * Server + agent + real podman: the downward API reaches the container's environment (fieldRef and
 * resourceFieldRef, status.podIP of host-network and bridge pods included, limits without a limit as
 * the node's allocatable), and a fieldPath drover cannot fill is refused by the API at once instead of
 * leaving the pod in CreateContainerConfigError.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';
const NODE = 'edge-downward';

describe('downward API env against real podman', { timeout: 180_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    cluster = await startTestServer();
    const stateDir = await mkdtemp(join(tmpdir(), 'drover-downward-'));
    await cluster.addAgent({ node: NODE, runtime: sb.runtime, stateDir, resyncSeconds: 2, heartbeatSeconds: 2 });
    // hostNetwork needs a namespace that allows it (pod security).
    const ns = await cluster.api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'hostnet', labels: { 'drover.io/privileged': 'true' } } });
    assert.equal(ns.status, 201, ns.text);
    await waitFor('node Ready', async () => {
      const r = await cluster.api('GET', `/api/v1/nodes/${NODE}`);
      return r.body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
    });
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
  });

  test('hostNetwork pod: name, namespace, uid, labels, annotations, node, hostIP, podIP and its memory/cpu limits in env', async () => {
    const ref = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
    const res = (resource: string, divisor?: string) => ({ valueFrom: { resourceFieldRef: { resource, ...(divisor ? { divisor } : {}) } } });
    const created = await cluster.api('POST', '/api/v1/namespaces/hostnet/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'dw', labels: { app: 'probe-me' }, annotations: { 'example.com/zone': 'north' } },
      spec: {
        hostNetwork: true,
        restartPolicy: 'Never',
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'main',
            image: IMAGE,
            command: ['sh', '-c', 'echo "name=$N ns=$NS uid=$U node=$NODE host=$HIP pod=$PIP mem=$MEM cpu=$CPU app=$APP zone=$ZONE"'],
            resources: { limits: { memory: '48Mi', cpu: '500m' } },
            env: [
              { name: 'N', ...ref('metadata.name') },
              { name: 'NS', ...ref('metadata.namespace') },
              { name: 'U', ...ref('metadata.uid') },
              { name: 'NODE', ...ref('spec.nodeName') },
              { name: 'HIP', ...ref('status.hostIP') },
              { name: 'PIP', ...ref('status.podIP') },
              { name: 'MEM', ...res('limits.memory', '1Mi') },
              { name: 'CPU', ...res('limits.cpu', '1m') },
              { name: 'APP', ...ref("metadata.labels['app']") },
              { name: 'ZONE', ...ref("metadata.annotations['example.com/zone']") },
            ],
          },
        ],
      },
    });
    assert.equal(created.status, 201, created.text);
    const done = await waitFor('pod dw Succeeded', async () => {
      const p = (await cluster.api('GET', '/api/v1/namespaces/hostnet/pods/dw')).body;
      return p?.status?.phase === 'Succeeded' ? p : undefined;
    }, 90_000);
    const logs = await waitFor('logs of dw', async () => {
      const r = await cluster.api('GET', '/api/v1/namespaces/hostnet/pods/dw/log');
      return r.status === 200 && r.text.includes('name=') ? r.text : undefined;
    });
    const hostIP = done.status.hostIP as string;
    assert.ok(hostIP, 'the pod reports its hostIP');
    assert.equal(logs.trim(), `name=dw ns=hostnet uid=${done.metadata.uid} node=${NODE} host=${hostIP} pod=${hostIP} mem=48 cpu=500 app=probe-me zone=north`);
  });

  test('bridge pod: $POD_IP, known before start, is the pod\'s reported status.podIP and podman\'s address of its first container; limits.* without a limit is the node\'s allocatable', async () => {
    const ref = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
    const res = (resource: string) => ({ valueFrom: { resourceFieldRef: { resource } } });
    const env = [
      { name: 'PIP', ...ref('status.podIP') },
      { name: 'MEM', ...res('limits.memory') },
      { name: 'CPU', ...res('limits.cpu') },
    ];
    const print = (who: string) => ['sh', '-c', `echo "${who} pod=$PIP mem=$MEM cpu=$CPU"; trap "exit 0" TERM; while true; do sleep 1; done`];
    const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'dw-bridge' },
      spec: {
        restartPolicy: 'Always',
        terminationGracePeriodSeconds: 1,
        containers: [
          { name: 'main', image: IMAGE, command: print('main'), env },
          { name: 'side', image: IMAGE, command: print('side'), env },
        ],
      },
    });
    assert.equal(created.status, 201, created.text);
    const running = await waitFor('pod dw-bridge Running with a podIP', async () => {
      const p = (await cluster.api('GET', '/api/v1/namespaces/default/pods/dw-bridge')).body;
      return p?.status?.phase === 'Running' && p.status.podIP ? p : undefined;
    }, 90_000);
    const podIP = running.status.podIP as string;
    assert.match(podIP, /^10\.88\.\d+\.\d+$/, 'an address on podman\'s bridge, not the host\'s');
    assert.notEqual(podIP, running.status.hostIP);
    const node = (await cluster.api('GET', `/api/v1/nodes/${NODE}`)).body;
    const { memory, cpu } = node.status.allocatable as { memory: string; cpu: string };
    const log = async (c: string) =>
      waitFor(`logs of ${c}`, async () => {
        const r = await cluster.api('GET', `/api/v1/namespaces/default/pods/dw-bridge/log?container=${c}`);
        return r.status === 200 && r.text.includes('pod=') ? r.text.trim() : undefined;
      });
    assert.equal(await log('main'), `main pod=${podIP} mem=${memory} cpu=${cpu}`);
    assert.equal(await log('side'), `side pod=${podIP} mem=${memory} cpu=${cpu}`);
    // What podman itself says: the first container holds the pod's address, the other has its own.
    const containers = await sb.runtime.list({ 'drover.io/pod': 'dw-bridge' });
    const ipOf = async (c: string) => (await sb.runtime.inspect(containers.find((x) => x.labels['drover.io/container'] === c)!.id))?.ip;
    assert.equal(await ipOf('main'), podIP);
    const side = await ipOf('side');
    assert.ok(side && side !== podIP, `side has its own address (${side})`);
    console.log(`[downward] bridge pod dw-bridge: podIP ${podIP} in env before start; side container ${side}; allocatable memory ${memory}, cpu ${cpu}`);
    assert.equal((await cluster.api('DELETE', '/api/v1/namespaces/default/pods/dw-bridge')).status, 200);
  });

  test('Indexed Job: each pod sees its JOB_COMPLETION_INDEX and the hostname JOB-INDEX; the Job completes with completedIndexes 0-1', async () => {
    const created = await cluster.api('POST', '/apis/batch/v1/namespaces/default/jobs', {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'idx' },
      spec: { completionMode: 'Indexed', completions: 2, parallelism: 2, template: { spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: IMAGE, command: ['sh', '-c', 'echo "index=$JOB_COMPLETION_INDEX host=$(hostname)"'] }] } } },
    });
    assert.equal(created.status, 201, created.text);
    const job = await waitFor('Job idx Complete', async () => {
      const j = (await cluster.api('GET', '/apis/batch/v1/namespaces/default/jobs/idx')).body;
      return j?.status?.conditions?.some((c: any) => c.type === 'Complete' && c.status === 'True') ? j : undefined;
    }, 90_000);
    assert.equal(job.status.completedIndexes, '0-1');
    const pods = (await cluster.api('GET', '/api/v1/namespaces/default/pods?labelSelector=job-name%3Didx')).body.items;
    const seen: string[] = [];
    for (const p of pods) {
      const logs = await cluster.api('GET', `/api/v1/namespaces/default/pods/${p.metadata.name}/log`);
      seen.push(logs.text.trim());
    }
    assert.deepEqual(seen.sort(), ['index=0 host=idx-0', 'index=1 host=idx-1']);
  });

  test('a fieldPath drover does not fill is a 422 naming the field, and nothing is stored', async () => {
    const bad = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'dw-bad' },
      spec: { containers: [{ name: 'main', image: IMAGE, env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'status.podIPs' } } }] }] },
    });
    assert.equal(bad.status, 422, bad.text);
    assert.match(bad.body.message, /spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath: Unsupported value: "status\.podIPs"/);
    assert.equal((await cluster.api('GET', '/api/v1/namespaces/default/pods/dw-bad')).status, 404);
  });
});
