/**
 * Pod security refuses hostPath in a namespace without drover.io/privileged=true, even for admin. The classic
 * way around it (Kubernetes CVE-2017-1002101): one container makes a symlink in a shared emptyDir pointing at a
 * host path, and another container mounts that emptyDir with `subPath` naming the link. The agent builds the
 * bind-mount source as VOLUME_DIR/<subPath> on the host, where the link resolves against the host's root: the
 * second container gets the host directory. No hostPath, no privilege, namespace `default`. Real server, agent
 * and podman; the host directory holds a marker file only the host has.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';
const NODE = 'edge-subpath';

describe('attack: subPath through a symlink in an emptyDir, namespace default', { timeout: 240_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;
  let hostDir: string;
  const marker = `host-only-${randomBytes(8).toString('hex')}`;

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    hostDir = await mkdtemp(join(tmpdir(), 'drover-host-secret-'));
    await writeFile(join(hostDir, 'marker'), marker);
    cluster = await startTestServer();
    await cluster.addAgent({ node: NODE, runtime: sb.runtime, resyncSeconds: 2, heartbeatSeconds: 2 });
    await waitFor('node Ready', async () => (await cluster.api('GET', `/api/v1/nodes/${NODE}`)).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True');
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
    await rm(hostDir, { recursive: true, force: true });
  });

  test('a container never sees a host directory through a subPath that is a symlink made by its neighbour', async () => {
    const r = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'escape' },
      spec: {
        nodeName: NODE,
        terminationGracePeriodSeconds: 1,
        volumes: [{ name: 'work', emptyDir: {} }],
        containers: [
          // The link is absolute: inside this container it points at its own root, on the host at the host's.
          { name: 'linker', image: IMAGE, command: ['sh', '-c', `ln -sfn ${hostDir} /work/evil; while true; do sleep 1; done`], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
          // Exits until its mount shows the host file, so the agent re-creates it once the link exists.
          { name: 'reader', image: IMAGE, command: ['sh', '-c', 'test -e /host/marker || exit 1; while true; do sleep 1; done'], volumeMounts: [{ name: 'work', mountPath: '/host', subPath: 'evil', readOnly: true }] },
        ],
      },
    });
    // Refused at admission (a subPath into a writable volume outside a drover.io/privileged namespace): the attack
    // stops here, as long as the refusal names the subPath.
    if (r.status === 403 || r.status === 422) {
      assert.match(r.text, /subPath/, r.text);
      return;
    }
    assert.equal(r.status, 201, r.text);
    // Either the reader gets the host file (the hole), or the agent refuses the subPath / the reader keeps
    // failing to see it after being re-created with the link in place.
    const outcome = await waitFor(
      'the reader to read the host file or to be refused',
      async () => {
        const [reader] = await sb.runtime.list({ [LABELS.pod]: 'escape', [LABELS.container]: 'reader' });
        if (reader?.state === 'running') {
          const out = await sb.runtime.exec(reader.id, ['sh', '-c', 'cat /host/marker 2>/dev/null || true'], 5_000);
          if (out.output.includes(marker)) return { escaped: true, detail: 'reader read the host marker file through subPath "evil"' };
        }
        const status = (await cluster.api('GET', '/api/v1/namespaces/default/pods/escape')).body?.status?.containerStatuses?.find((c: any) => c.name === 'reader');
        if (status?.reason === 'CreateContainerConfigError' || (status?.restartCount ?? 0) >= 3) return { escaped: false, detail: JSON.stringify(status) };
        return undefined;
      },
      120_000,
      500,
    );
    assert.equal(outcome.escaped, false, outcome.detail);
  });
});
