/**
 * A second way for an ordinary pod in namespace `default` (no hostPath, no subPath, no privilege) to reach the
 * host: two volumes with the same name, an emptyDir and a configMap. The agent keeps both in one directory
 * (VOLUME_DIR/<name>), mounts the first (the emptyDir, writable) into the container and writes the ConfigMap's
 * files into that same directory as root. The container replaces the ConfigMap's sub-directory with a symlink to
 * a host directory; at its next sync the agent writes the ConfigMap's content through the link: any file on the
 * host (a line in /etc/cron.d is root on the device). Real server, agent and podman; the host directory here is
 * a temporary one.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';
const NODE = 'edge-shared-dir';

describe('attack: an emptyDir and a configMap volume of the same name, namespace default', { timeout: 240_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;
  let hostDir: string;

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    hostDir = await mkdtemp(join(tmpdir(), 'drover-host-target-'));
    cluster = await startTestServer();
    await cluster.addAgent({ node: NODE, runtime: sb.runtime, resyncSeconds: 2, heartbeatSeconds: 2 });
    await waitFor('node Ready', async () => (await cluster.api('GET', `/api/v1/nodes/${NODE}`)).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True');
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
    await rm(hostDir, { recursive: true, force: true });
  });

  test('the agent never writes a ConfigMap file outside the pod\'s volume directory', async () => {
    const cm = await cluster.api('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'payload' }, data: { k: '* * * * * root echo pwned\n' } });
    assert.equal(cm.status, 201, cm.text);
    const r = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'shared-dir' },
      spec: {
        nodeName: NODE,
        terminationGracePeriodSeconds: 1,
        volumes: [
          { name: 'work', emptyDir: {} },
          { name: 'work', configMap: { name: 'payload', items: [{ key: 'k', path: 'sub/evil' }] } },
        ],
        containers: [
          {
            name: 'linker',
            image: IMAGE,
            // Keeps `sub` a link to the host directory whenever the agent puts a real directory back.
            command: ['sh', '-c', `while true; do if [ ! -L /work/sub ]; then rm -rf /work/sub; ln -sfn ${hostDir} /work/sub; fi; sleep 0.1; done`],
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
      },
    });
    // Refused at the API (a volume name given twice, as Kubernetes refuses it): the attack stops here.
    if (r.status === 422 || r.status === 400) {
      assert.match(r.text, /volumes/, r.text);
      return;
    }
    assert.equal(r.status, 201, r.text);
    // The agent resyncs every 2 s: with the hole the file shows up within a few syncs of the container starting.
    const written = await waitFor('a file in the host directory', async () => ((await readdir(hostDir)).length > 0 ? readdir(hostDir) : undefined), 45_000, 250).catch(() => undefined);
    assert.equal(written, undefined, `the agent wrote ${JSON.stringify(written)} into the host directory ${hostDir} through the container's symlink`);
  });
});
