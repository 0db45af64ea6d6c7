import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { fakeNerdctlSandbox, type FakeNerdctlSandbox } from '../helpers/fake-nerdctl.js';

// The agent itself on the nerdctl adapter (over the stand-in nerdctl): what a user of
// `drover agent --runtime nerdctl` sees through the API.
const pod = (name: string, cmd: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name },
  spec: { containers: [{ name: 'main', image: 'localhost/drover-test:1', command: ['sh', '-c', cmd], resources: { requests: { cpu: '100m', memory: '16Mi' } } }] },
});

describe('server + agent on nerdctl (stand-in)', { timeout: 300_000 }, () => {
  let sb: FakeNerdctlSandbox;
  let cluster: TestServer;

  before(async () => {
    sb = await fakeNerdctlSandbox('drover');
    await sb.addImage('localhost/drover-test:1', { Cmd: ['sh', '-c', 'echo default-cmd; sleep 3600'] });
    cluster = await startTestServer({});
    await cluster.addAgent({ node: 'edge-n', runtime: sb.runtime });
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
  });

  test('the node reports nerdctl and containerd as its runtime', async () => {
    const node = await waitFor('node edge-n Ready', async () => {
      const r = await cluster.api('GET', '/api/v1/nodes/edge-n');
      return r.status === 200 && r.body.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True' ? r.body : undefined;
    });
    assert.equal(node.status.nodeInfo.containerRuntimeVersion, 'nerdctl://2.3.5+containerd-1.6.20~ds1');
  });

  test('a pod runs, its logs come back, delete removes its container', async () => {
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/default/pods', pod('web', "echo hello-from-nerdctl; trap 'exit 0' TERM; while true; do sleep 1; done"))).status, 201);
    await waitFor('pod web Running', async () => {
      const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/web');
      return r.body.status?.phase === 'Running' ? r.body : undefined;
    });
    const [c] = await sb.runtime.list({ [LABELS.pod]: 'web' });
    assert.equal(c?.state, 'running');
    const logs = await waitFor('logs', async () => {
      const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/web/log');
      return r.status === 200 && r.text.includes('hello-from-nerdctl') ? r.text : undefined;
    });
    assert.match(logs, /^hello-from-nerdctl$/m);
    assert.equal((await cluster.api('DELETE', '/api/v1/namespaces/default/pods/web')).status, 200);
    await waitFor('container removed', async () => (await sb.runtime.list({ [LABELS.pod]: 'web' })).length === 0, 30_000);
  });

  test('a container that exits is restarted and the restart counted', async () => {
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/default/pods', pod('crash', 'echo crashing; exit 1'))).status, 201);
    const status = await waitFor(
      'a restart',
      async () => {
        const r = await cluster.api('GET', '/api/v1/namespaces/default/pods/crash');
        const cs = r.body.status?.containerStatuses?.[0];
        // Not while the restarted container is in its moment of running (ci: seen running, restartCount 1, no exit code yet).
        return cs && cs.restartCount >= 1 && cs.state !== 'running' ? cs : undefined;
      },
      60_000,
    );
    assert.equal(status.exitCode, 1, JSON.stringify(status));
    assert.match(status.reason ?? '', /CrashLoopBackOff|Error/, JSON.stringify(status));
    await cluster.api('DELETE', '/api/v1/namespaces/default/pods/crash');
  });
});
