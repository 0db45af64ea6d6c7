import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { LABELS } from '../../agent/engine/naming.js';

const podManifest = (name: string, cmd: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels: { app: name } },
  spec: {
    containers: [
      {
        name: 'main',
        image: 'localhost/drover-test:1',
        command: ['sh', '-c', cmd],
        resources: { requests: { cpu: '100m', memory: '16Mi' } },
        imagePullPolicy: 'IfNotPresent',
      },
    ],
  },
});

/** One scenario, run against the embedded aedes broker and against a real Mosquitto. */
function scenario(name: string, brokerUrl: () => string | undefined): void {
  describe(`server + agent + podman (${name})`, () => {
    let sb: PodmanSandbox;
    let cluster: TestServer;

    before(async () => {
      sb = await podmanSandbox();
      await buildTestImage(sb);
      cluster = await startTestServer({ brokerUrl: brokerUrl() });
      await cluster.addAgent({ node: 'edge-1', runtime: sb.runtime });
    });
    after(async () => {
      await cluster?.stop();
      await sb?.cleanup();
    });

    test('the agent registers its node as Ready with hardware facts', async () => {
      const node = await waitFor('node edge-1 Ready', async () => {
        const r = await cluster.api('GET', '/api/v1/nodes/edge-1');
        return r.status === 200 && r.body.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True' ? r.body : undefined;
      });
      assert.equal(node.metadata.labels['kubernetes.io/arch'], process.arch === 'x64' ? 'amd64' : process.arch);
      assert.equal(node.metadata.labels['kubernetes.io/os'], 'linux');
      assert.ok(Number(node.status.capacity.cpu) >= 1);
      assert.ok(Number(node.status.capacity.memory) > 100 * 2 ** 20);
      assert.match(node.status.nodeInfo.containerRuntimeVersion, /^podman:\/\/\d+\.\d+/);
    });

    test('apply a pod: it is scheduled, its container runs, logs come back; delete removes the container', async () => {
      const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', podManifest('web', "echo hello-from-web; trap 'exit 0' TERM; while true; do sleep 1; done"));
      assert.equal(created.status, 201, created.text);
      const running = await waitFor('pod web Running', async () => {
        const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/web');
        return r.body.status?.phase === 'Running' ? r.body : undefined;
      });
      assert.equal(running.spec.nodeName, 'edge-1');
      assert.equal(running.status.containerStatuses[0].ready, true);
      const containers = await sb.runtime.list({ [LABELS.pod]: 'web' });
      assert.equal(containers.length, 1);
      assert.equal(containers[0]!.state, 'running');

      const logs = await waitFor('logs', async () => {
        const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/web/log');
        return r.status === 200 && r.text.includes('hello-from-web') ? r.text : undefined;
      });
      assert.match(logs, /hello-from-web/);

      const events = await cluster.api('GET', '/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=web');
      const reasons = events.body.items.map((e: any) => e.reason);
      assert.ok(reasons.includes('Scheduled'), `events: ${reasons}`);

      const del = await cluster.api('DELETE', '/api/v1/namespaces/default/pods/web');
      assert.equal(del.status, 200);
      await waitFor('container removed', async () => (await sb.runtime.list({ [LABELS.pod]: 'web' })).length === 0, 20_000);
    });

    test('a pod that fits no node stays Pending with the reason', async () => {
      const m = podManifest('huge', 'sleep 1');
      m.spec.containers[0]!.resources.requests.memory = '64Ti';
      assert.equal((await cluster.api('POST', '/api/v1/namespaces/default/pods', m)).status, 201);
      const pod = await waitFor('FailedScheduling', async () => {
        const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/huge');
        return r.body.status?.conditions?.find((c: any) => c.type === 'PodScheduled' && c.status === 'False') ? r.body : undefined;
      });
      assert.equal(pod.status.phase, 'Pending');
      assert.match(pod.status.conditions.find((c: any) => c.type === 'PodScheduled').message, /^0\/1 nodes are available: 1 Insufficient memory\.$/);
      await cluster.api('DELETE', '/api/v1/namespaces/default/pods/huge');
    });
  });
}

let mosq: Mosquitto | undefined;
scenario('embedded aedes', () => undefined);
describe('external broker', () => {
  before(async () => {
    mosq = await startMosquitto();
  });
  after(async () => {
    await mosq?.stop();
  });
  scenario('external Mosquitto', () => mosq!.url);
});
