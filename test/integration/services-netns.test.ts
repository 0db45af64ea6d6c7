/**
 * Services at the edge, for real: two devices (agent processes in their own network namespaces, each
 * with its own podman store and bridge), a NodePort Service whose pods run on both, a client pod on A.
 * - the client reaches the Service's cluster IP and gets answers from the pod on A and the one on B
 *   (B's through B's address and the nodePort); each node's nodePort answers from its own pod;
 * - the pod on B stops serving (its readiness probe fails): its endpoint turns not ready and A stops
 *   sending it traffic (time printed, not asserted);
 * - B goes offline (its link down): B NotReady/Unknown, its endpoint not ready, A keeps serving;
 * - an agent that stops removes its rules.
 */
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { waitFor } from '../helpers/cluster.js';
import { AGENT_START_MS, Cleanup, createDevice, IMG1, startInProcessServer, waitReady, type Device, type FaultServer } from '../helpers/fault.js';

const CLUSTER_IP = '10.43.7.7';
const NODE_PORT = 30780;

interface SliceView {
  endpoints: Array<{ addresses: string[]; nodeName?: string; conditions: { ready?: boolean }; targetRef?: { name?: string } }>;
}

function backend(name: string, node: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'web' } },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': node },
      terminationGracePeriodSeconds: 2,
      containers: [{
        name: 'web',
        image: IMG1,
        // httpd in the background, so the test can stop it (and start it again) without ending the container.
        command: ['sh', '-c', `mkdir -p /www; echo ${name} > /www/index.html; httpd -f -p 8080 -h /www & echo $! > /www/httpd.pid; trap 'exit 0' TERM; while true; do sleep 1; done`],
        ports: [{ name: 'http', containerPort: 8080 }],
        readinessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 1, failureThreshold: 1 },
        resources: { requests: { cpu: '10m', memory: '8Mi' } },
      }],
    },
  };
}

describe('Services across two devices (netns, real podman, iptables)', () => {
  const cleanup = new Cleanup();
  let server: FaultServer;
  let a: Device;
  let b: Device;

  before(async () => {
    server = await startInProcessServer(cleanup);
    const s = () => server;
    [a, b] = await Promise.all([createDevice(cleanup, 'svc-a', s, [IMG1]), createDevice(cleanup, 'svc-b', s, [IMG1])]);
    a.startAgent();
    b.startAgent();
    await Promise.all(['svc-a', 'svc-b'].map((n) => waitReady(server.api, n, 'True', AGENT_START_MS)));
  });
  after(() => cleanup.run());

  async function containerOf(dev: Device, pod: string): Promise<string> {
    return waitFor(`container of ${pod}`, async () => (await dev.containers()).find((c) => c.state === 'running' && c.labels[LABELS.pod] === pod)?.id, 60_000);
  }

  async function slices(): Promise<SliceView['endpoints']> {
    const r = await server.api('GET', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices');
    return ((r.body?.items ?? []) as SliceView[]).flatMap((s) => s.endpoints);
  }

  const readyPods = async () => (await slices()).filter((e) => e.conditions.ready).map((e) => e.targetRef?.name).sort().join(',');

  /** One request from the client pod on A to the cluster IP: the name of the pod that answered, or the error. */
  async function ask(client: string): Promise<string> {
    try {
      // nc, not wget: the test image's static busybox crashes in wget's name lookup (no NSS in a scratch image).
      const reply = await a.podman(['exec', client, 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${CLUSTER_IP} 80`]);
      const body = reply.trim().split('\n').pop()?.trim() ?? '';
      return reply.startsWith('HTTP/1') ? body : `error: no HTTP answer (${JSON.stringify(reply.slice(0, 100))})`;
    } catch (err) {
      return `error: ${String((err as { stderr?: string }).stderr ?? err).trim().slice(0, 200)}`;
    }
  }

  let last = '';
  /** When A's agent got new desired states and applied rules since t0 (from its log), as "+ms what". */
  const agentSteps = (dev: Device, t0: number) =>
    (dev.agent?.output() ?? '')
      .split('\n')
      .flatMap((l) => {
        try {
          const j = JSON.parse(l) as { time: number; msg: string; generation?: number };
          return j.time >= t0 && /new desired state|forwarding rules applied|reconcile/.test(j.msg) ? [`+${j.time - t0} ${j.msg}${j.generation ? ` ${j.generation}` : ''}`] : [];
        } catch {
          // Not a log line of the agent (podman or Node noise): not a step.
          return [];
        }
      })
      .join('; ');
  const natRules = async (dev: Device) => (await execa('nsenter', [`--net=/run/netns/${dev.link.ns}`, 'iptables-save', '-t', 'nat'], { reject: false })).stdout;

  /** Waits until A's answers all come from web-a; says what it saw last when they do not. */
  async function onlyWebA(client: string): Promise<void> {
    let seen = new Map<string, number>();
    await waitFor('A sends nothing to web-b', async () => {
      seen = await answers(client, 6);
      return seen.size === 1 && seen.has('web-a');
    }, 60_000, 200).catch(async (err) => {
      throw new Error(`${(err as Error).message}; last answers ${JSON.stringify(Object.fromEntries(seen))}\nA's nat rules:\n${await natRules(a)}`);
    });
  }

  async function answers(client: string, n: number): Promise<Map<string, number>> {
    const seen = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const who = await ask(client);
      seen.set(who, (seen.get(who) ?? 0) + 1);
    }
    return seen;
  }

  test('the client on A reaches pods on A and B through the cluster IP; each nodePort answers from its own pod', async () => {
    const svc = await server.api('POST', '/api/v1/namespaces/default/services', {
      apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' },
      spec: { type: 'NodePort', clusterIP: CLUSTER_IP, selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', nodePort: NODE_PORT }] },
    });
    assert.equal(svc.status, 201, svc.text);
    for (const [name, node] of [['web-a', 'svc-a'], ['web-b', 'svc-b']]) {
      const r = await server.api('POST', '/api/v1/namespaces/default/pods', backend(name!, node!));
      assert.equal(r.status, 201, r.text);
    }
    const client = await server.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'client', labels: { app: 'client' } },
      spec: { nodeSelector: { 'kubernetes.io/hostname': 'svc-a' }, terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: IMG1, command: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"], resources: { requests: { cpu: '10m', memory: '8Mi' } } }] },
    });
    assert.equal(client.status, 201, client.text);
    await waitFor('both backends ready endpoints', async () => (await readyPods()) === 'web-a,web-b', 120_000);
    type PodView = { metadata: { name: string }; status?: { phase?: string; podIP?: string; hostIP?: string } };
    const pods = await waitFor('every pod Running', async () => {
      const items = (await server.api('GET', '/api/v1/namespaces/default/pods')).body.items as PodView[];
      return items.every((p) => p.status?.phase === 'Running') && items;
    }, 60_000);
    for (const p of pods) {
      assert.match(p.status?.podIP ?? '', /^10\.88\./, `${p.metadata.name} has its bridge address as podIP`);
      assert.notEqual(p.status?.podIP, p.status?.hostIP);
    }
    const clientId = await containerOf(a, 'client');
    // The Service existed when the client's container was created: its names are in the container's /etc/hosts.
    const hosts = await a.podman(['exec', clientId, 'cat', '/etc/hosts']);
    for (const name of ['web', 'web.default.svc', 'web.default.svc.cluster.local']) assert.match(hosts, new RegExp(`^${CLUSTER_IP.replaceAll('.', '\\.')}\\s+${name.replaceAll('.', '\\.')}$`, 'm'), hosts);
    // A's forwarding follows its desired state: wait until the Service answers at all, then count.
    await waitFor('the cluster IP answers from A', async () => !(last = await ask(clientId)).startsWith('error'), 60_000, 500).catch(async (err) => {
      throw new Error(`${(err as Error).message}; last answer ${last}\nA's nat rules:\n${await natRules(a)}\nA's agent:\n${a.agent?.output().slice(-3000)}`);
    });
    const seen = await answers(clientId, 24);
    console.log('answers through the cluster IP:', Object.fromEntries(seen));
    assert.deepEqual([...seen.keys()].sort(), ['web-a', 'web-b'], 'both pods answer, and nothing fails');
    // From this host, each device's nodePort leads to that device's own pod.
    for (const [dev, want] of [[a, 'web-a'], [b, 'web-b']] as const) {
      const r = await fetch(`http://${dev.link.deviceIp}:${NODE_PORT}/`, { signal: AbortSignal.timeout(5_000) });
      assert.equal((await r.text()).trim(), want);
    }
  });

  test('a backend that stops serving leaves the Service: every answer then comes from the live one', async () => {
    const clientId = await containerOf(a, 'client');
    const webB = await containerOf(b, 'web-b');
    const t0 = Date.now();
    await b.podman(['exec', webB, 'sh', '-c', 'kill $(cat /www/httpd.pid)']);
    await waitFor('web-b not ready', async () => (await readyPods()) === 'web-a', 60_000, 100);
    const notReadyMs = Date.now() - t0;
    await waitFor("B's address gone from A's rules", async () => !(await natRules(a)).includes(`${b.link.deviceIp}:${NODE_PORT}`), 60_000, 100);
    const rulesMs = Date.now() - t0;
    await onlyWebA(clientId);
    console.log(`web-b stopped serving: endpoint not ready after ${notReadyMs} ms, A's rules without it after ${rulesMs} ms, A's answers only from web-a after ${Date.now() - t0} ms (readiness probe period 1 s); A's agent since: ${agentSteps(a, t0)}`);
    const seen = await answers(clientId, 12);
    assert.deepEqual(Object.fromEntries(seen), { 'web-a': 12 });
    // Serving again: back in the Service.
    await b.podman(['exec', webB, 'sh', '-c', 'httpd -p 8080 -h /www']);
    await waitFor('web-b ready again', async () => (await readyPods()) === 'web-a,web-b', 60_000, 100);
    await waitFor('A sends to web-b again', async () => (await answers(clientId, 8)).has('web-b'), 60_000, 200);
  });

  test('a node offline: its endpoints turn not ready, the other node keeps serving', async () => {
    const clientId = await containerOf(a, 'client');
    const t0 = Date.now();
    await b.link.down();
    try {
      await waitReady(server.api, 'svc-b', 'not True', 90_000);
      await waitFor('web-b not ready (node lost)', async () => (await readyPods()) === 'web-a', 60_000, 200);
      const notReadyMs = Date.now() - t0;
      await waitFor("B's address gone from A's rules", async () => !(await natRules(a)).includes(`${b.link.deviceIp}:${NODE_PORT}`), 60_000, 100);
      console.log(`svc-b offline: its endpoint not ready after ${notReadyMs} ms, A's rules without it after ${Date.now() - t0} ms; A's agent since: ${agentSteps(a, t0)}`);
      await onlyWebA(clientId);
      const seen = await answers(clientId, 12);
      assert.deepEqual(Object.fromEntries(seen), { 'web-a': 12 });
      const endpointB = (await slices()).find((e) => e.targetRef?.name === 'web-b');
      assert.equal(endpointB?.conditions.ready, false, 'listed, not ready');
      assert.equal(endpointB?.nodeName, 'svc-b');
    } finally {
      await b.link.up();
    }
  });

  test('an agent that stops takes its forwarding rules with it', async () => {
    assert.match(await natRules(a), /DROVER-SERVICES/);
    await a.agent!.stop(10_000);
    const left = (await natRules(a)).split('\n').filter((l) => l.includes('DROVER'));
    assert.deepEqual(left, [], 'no drover chain or hook left in nat');
    const filter = (await execa('nsenter', [`--net=/run/netns/${a.link.ns}`, 'iptables-save', '-t', 'filter'], { reject: false })).stdout;
    assert.doesNotMatch(filter, /DROVER/);
  });
});
