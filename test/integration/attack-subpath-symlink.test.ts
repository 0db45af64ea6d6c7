/**
 * Kubernetes' CVE-2017-1002101, tried as an attacker would: one container makes a symlink to a host directory
 * inside a shared emptyDir, another mounts that emptyDir with `subPath` naming the link; resolved on the host, the
 * link hands the second container the host directory (the server's admin token, the host's `/`). Two lines of
 * defence: pod security refuses a subPath into a writable volume outside a drover.io/privileged namespace, and the
 * agent resolves every subPath on the host and refuses one that leaves its volume (where pod security lets the pod
 * in). Real server, agent and podman; the host directory holds a marker file only the host has. What is left
 * open: a container that swaps a checked directory for a link between the agent's check and the runtime's mount
 * (kubelet pins the checked directory with an open file descriptor for that; drover does not yet).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LABELS } from '../../agent/engine/naming.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';
const NODE = 'edge-confine';
const NS = 'devices';

describe('attack: subPath through a symlink in an emptyDir', { timeout: 240_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;
  let hostDir: string;
  /** A host directory two pods of the privileged namespace share (a hostPath: writable, like an emptyDir). */
  let shared: string;
  const marker = `host-only-${randomBytes(8).toString('hex')}`;

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    hostDir = await mkdtemp(join(tmpdir(), 'drover-host-secret-'));
    await writeFile(join(hostDir, 'marker'), marker);
    shared = await mkdtemp(join(tmpdir(), 'drover-shared-vol-'));
    cluster = await startTestServer();
    const ns = await cluster.api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS, labels: { 'drover.io/privileged': 'true' } } });
    assert.equal(ns.status, 201, ns.text);
    await cluster.addAgent({ node: NODE, runtime: sb.runtime, resyncSeconds: 1, heartbeatSeconds: 2 });
    await waitFor('node Ready', async () => (await cluster.api('GET', `/api/v1/nodes/${NODE}`)).body?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True');
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
    await rm(hostDir, { recursive: true, force: true });
    await rm(shared, { recursive: true, force: true });
  });

  const escapePod = (ns: string) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'escape', namespace: ns },
    spec: {
      nodeName: NODE,
      terminationGracePeriodSeconds: 1,
      volumes: [{ name: 'work', emptyDir: {} }],
      containers: [
        // The link is absolute: inside this container it points at its own root, on the host at the host's.
        { name: 'linker', image: IMAGE, command: ['sh', '-c', `mkdir -p /work/plain && echo in-volume > /work/plain/f; ln -sfn ${hostDir} /work/evil; while true; do sleep 1; done`], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
        // Exits until its mount shows something, so the agent re-creates it once the link exists.
        { name: 'reader', image: IMAGE, command: ['sh', '-c', 'test -e /host/marker || exit 1; while true; do sleep 1; done'], volumeMounts: [{ name: 'work', mountPath: '/host', subPath: 'evil', readOnly: true }] },
        { name: 'plain', image: IMAGE, command: ['sh', '-c', 'test -e /data/f || exit 1; while true; do sleep 1; done'], volumeMounts: [{ name: 'work', mountPath: '/data', subPath: 'plain' }] },
      ],
    },
  });

  test('in default, the pod is refused at admission, naming the subPath (admin token too)', async () => {
    const r = await cluster.api('POST', '/api/v1/namespaces/default/pods', escapePod('default'));
    assert.equal(r.status, 403, r.text);
    assert.match(r.text, /subPath/);
  });

  test('in a drover.io/privileged namespace, the agent refuses the subPath that leaves its volume, naming the link; a plain one mounts', async () => {
    // The link is made first, by one pod, in a volume a second pod then mounts through subPath: in one pod the
    // order of the link and the mount is a race (the agent makes a missing subPath a directory, see
    // test/unit/subpath-confine.test.ts), here the agent meets the link for certain.
    await mkdir(join(shared, 'plain'), { recursive: true });
    await writeFile(join(shared, 'plain', 'f'), 'in-volume');
    const linker = await cluster.api('POST', `/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'linker', namespace: NS },
      spec: {
        nodeName: NODE,
        terminationGracePeriodSeconds: 1,
        volumes: [{ name: 'work', hostPath: { path: shared } }],
        // Absolute: inside this container it points at its own root, on the host at the host's.
        containers: [{ name: 'linker', image: IMAGE, command: ['sh', '-c', `ln -sfn ${hostDir} /work/evil; while true; do sleep 1; done`], volumeMounts: [{ name: 'work', mountPath: '/work' }] }],
      },
    });
    assert.equal(linker.status, 201, linker.text);
    await waitFor('the link made in the shared volume', async () => (await lstat(join(shared, 'evil')).catch(() => undefined))?.isSymbolicLink(), 60_000);
    const r = await cluster.api('POST', `/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'escape', namespace: NS },
      spec: {
        nodeName: NODE,
        terminationGracePeriodSeconds: 1,
        volumes: [{ name: 'work', hostPath: { path: shared } }],
        containers: [
          { name: 'reader', image: IMAGE, command: ['sh', '-c', 'while true; do sleep 1; done'], volumeMounts: [{ name: 'work', mountPath: '/host', subPath: 'evil', readOnly: true }] },
          { name: 'plain', image: IMAGE, command: ['sh', '-c', 'test -e /data/f || exit 1; while true; do sleep 1; done'], volumeMounts: [{ name: 'work', mountPath: '/data', subPath: 'plain' }] },
        ],
      },
    });
    assert.equal(r.status, 201, r.text);
    const refused = await waitFor(
      'the reader to be refused (or to read the host file)',
      async () => {
        const [reader] = await sb.runtime.list({ [LABELS.pod]: 'escape', [LABELS.container]: 'reader' });
        if (reader?.state === 'running') {
          const out = await sb.runtime.exec(reader.id, ['sh', '-c', 'cat /host/marker 2>/dev/null || true'], 5_000);
          if (out.output.includes(marker)) assert.fail('the reader read the host marker file through subPath "evil"');
        }
        const events = (await cluster.api('GET', `/api/v1/namespaces/${NS}/events`)).body?.items ?? [];
        return events.find((e: any) => /resolves outside its volume/.test(e.message ?? '')) as { message: string } | undefined;
      },
      120_000,
    );
    assert.match(refused.message, new RegExp(`symbolic link to ${hostDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    const [reader] = await sb.runtime.list({ [LABELS.pod]: 'escape', [LABELS.container]: 'reader' });
    assert.notEqual(reader?.state, 'running', 'the reader must not run with the link mounted');
    // The same volume through a subPath that is a real directory still mounts.
    await waitFor('the plain subPath container running', async () => {
      const [plain] = await sb.runtime.list({ [LABELS.pod]: 'escape', [LABELS.container]: 'plain' });
      return plain?.state === 'running' ? true : undefined;
    }, 60_000);
  });
});
