/**
 * An ARM device joining an x86 server: the arm64 single binary, run under qemu-aarch64-static with no
 * Node on PATH, joins as an agent (K10 token from a file, its own key and certificate), reports
 * arch=arm64, and gets the workloads pinned to arm64 while the amd64-only ones stay on the x86 agent.
 * The emulated agent drives the host's (x86) podman: qemu-user hands its exec of /usr/bin/podman to the
 * host kernel, so its containers are x86 ones; what is under test is drover's ARM build and the
 * scheduling by arch, not an ARM container runtime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { binaryPath, deviceEnv, runDevice, startDevice } from '../helpers/binary.js';
import { startTestServer, waitFor } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox } from '../helpers/podman.js';

interface PodList {
  items: { metadata: { name: string; labels?: Record<string, string> }; spec: { nodeName?: string }; status?: { phase?: string } }[];
}

function deployment(name: string, arch: string, image: string): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default' },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          nodeSelector: { 'kubernetes.io/arch': arch },
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'c', image, command: ['sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"] }],
        },
      },
    },
  };
}

test('the arm64 binary under qemu joins an amd64 server as an arm64 node and runs only the arm64 workloads', async (t) => {
  const bin = await binaryPath('arm64');
  // Undone last made, first undone (node:test runs t.after hooks in the order they were added): the
  // agents stop before the podman stores they use are taken away under them.
  const undo: Array<() => Promise<unknown> | unknown> = [];
  t.after(async () => {
    for (const u of undo.reverse()) await u();
  });
  const x86 = await podmanSandbox();
  undo.push(() => x86.cleanup());
  const arm = await podmanSandbox();
  undo.push(() => arm.cleanup());
  const [image] = await Promise.all([buildTestImage(x86), buildTestImage(arm)]);

  const server = await startTestServer();
  undo.push(() => server.stop());
  await server.addAgent({ node: 'x86-1', runtime: x86.runtime });

  const dir = await mkdtemp(join(tmpdir(), 'drover-arm64-'));
  undo.push(() => rm(dir, { recursive: true, force: true }));
  await copyFile(bin, join(dir, 'drover'));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, server.joinToken + '\n', { mode: 0o600 });
  const env = deviceEnv(dir, { CONTAINERS_CONF: arm.confPath });

  const uname = await runDevice('arm64', join(dir, 'drover'), ['--version'], { cwd: dir, env });
  assert.equal(uname.code, 0, uname.stderr);

  const agent = startDevice(
    'arm64',
    join(dir, 'drover'),
    ['agent', '--server', server.apiUrl, '--token-file', tokenFile, '--node-name', 'arm-1', '--state-dir', join(dir, 'state'), '--podman-root', arm.root, '--podman-runroot', arm.runroot, '--heartbeat', '5', '--resync', '2', '--log-level', 'warn'],
    { cwd: dir, env },
  );
  undo.push(() => agent.stop());

  const node = await waitFor(
    'arm-1 Ready',
    async () => {
      const r = await server.api('GET', '/api/v1/nodes/arm-1');
      if (r.status !== 200) return undefined;
      const ready = r.body.status?.conditions?.find((c: { type: string }) => c.type === 'Ready');
      return ready?.status === 'True' ? r.body : undefined;
    },
    // Inside the runner's 240 s for the whole file (an emulated V8 on a busy machine is slow): a wait that
    // runs out fails with the agent's output instead of the file being cut off with none.
    90_000,
    500,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nagent output:\n${agent.output()}`);
  });
  assert.equal(node.metadata.labels['kubernetes.io/arch'], 'arm64');
  assert.equal(node.status.nodeInfo.architecture, 'arm64');
  assert.match(node.status.nodeInfo.containerRuntimeVersion, /^podman:\/\//);

  for (const [name, arch] of [['on-arm', 'arm64'], ['on-x86', 'amd64']] as const) {
    const r = await server.api('POST', '/apis/apps/v1/namespaces/default/deployments', deployment(name, arch, image));
    assert.equal(r.status, 201, r.text);
  }
  const pods = await waitFor(
    'both deployments Running',
    async () => {
      const list = (await server.api('GET', '/api/v1/namespaces/default/pods')).body as PodList;
      const running = list.items.filter((p) => p.status?.phase === 'Running');
      return running.length === 4 ? list.items : undefined;
    },
    90_000,
    500,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nagent output:\n${agent.output()}`);
  });
  const where = (app: string) => pods.filter((p) => p.metadata.labels?.app === app).map((p) => p.spec.nodeName);
  assert.deepEqual(where('on-arm'), ['arm-1', 'arm-1']);
  assert.deepEqual(where('on-x86'), ['x86-1', 'x86-1']);

  // The emulated agent really made the containers, in its own podman store, and only the arm64 ones.
  const ps = await execa('podman', ['--root', arm.root, '--runroot', arm.runroot, 'ps', '--format', '{{.Names}}'], { env: arm.env });
  const names = ps.stdout.split('\n').filter(Boolean);
  assert.equal(names.length, 2, ps.stdout);
  assert.ok(names.every((n) => n.includes('on-arm')), ps.stdout);

  assert.equal(await agent.stop(30_000), 0, `SIGTERM stops the emulated agent cleanly:\n${agent.output()}`);
});
