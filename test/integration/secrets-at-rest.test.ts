/**
 * Secrets at rest, end to end with real parts (LevelDB, broker, agent, podman): after a Secret is
 * applied and used by a pod (env and a secret volume), its value is in no file under the server's
 * data dir (LevelDB .log/.ldb included) nor under the agent's state dir; files and dirs are private;
 * after a restart on the same dirs the encrypted store still delivers the Secret to a new pod.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { LABELS } from '../../agent/engine/naming.js';
import { grepDir } from '../helpers/disk-grep.js';
import { freePort, startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const VALUE = `pw-${randomBytes(8).toString('hex')}`;
const B64 = Buffer.from(VALUE).toString('base64');

const secretManifest = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: VALUE } };

const podManifest = (name: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name },
  spec: {
    containers: [
      {
        name: 'main',
        image: 'localhost/drover-test:1',
        imagePullPolicy: 'IfNotPresent',
        command: ['sh', '-c', `echo "env=$PW"; echo "file=$(cat /creds/password)"; trap 'exit 0' TERM; while true; do sleep 1; done`],
        env: [{ name: 'PW', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }],
        volumeMounts: [{ name: 'creds', mountPath: '/creds' }],
        resources: { requests: { cpu: '50m', memory: '16Mi' } },
      },
    ],
    volumes: [{ name: 'creds', secret: { secretName: 'db' } }],
  },
});

async function mode(path: string): Promise<string> {
  return `0${((await stat(path)).mode & 0o777).toString(8)}`;
}

/** Files and dirs below `dir` that a group or other users can access, with their modes. */
async function looseBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath ?? e.path, e.name);
    if ((await lstat(p)).mode & 0o077) out.push(p);
  }
  return out;
}

/** tmpfs mounts below `dir` (secret volumes), from the mount table. */
async function tmpfsBelow(dir: string): Promise<string[]> {
  return (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'tmpfs' && f[1]?.startsWith(`${dir}/`))
    .map((f) => f[1]!);
}

describe('Secrets at rest (server store, agent cache, secret volumes)', { timeout: 300_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer | undefined;
  let dataDir: string;
  let stateDir: string;

  let ports: { apiPort: number; mqttPort: number };
  const start = async () => {
    // The same ports after the restart: the agent's stored credential names the broker it joined.
    ports ??= { apiPort: await freePort(), mqttPort: await freePort() };
    cluster = await startTestServer({ dataDir, ...ports });
    await cluster.addAgent({ node: 'edge-1', runtime: sb.runtime, stateDir });
    return cluster;
  };

  const logsOf = (c: TestServer, pod: string) =>
    waitFor(`logs of ${pod} with the secret`, async () => {
      const r = await c.api('GET', `/api/v1/namespaces/default/pods/${pod}/log`);
      return r.status === 200 && r.text.includes('file=') ? r.text : undefined;
    }, 60_000);

  const scanDisk = async () => {
    const server = await grepDir(dataDir, [VALUE, B64]);
    const agent = await grepDir(stateDir, [VALUE, B64]);
    return { hits: [...server.hits, ...agent.hits], files: server.files + agent.files, skipped: agent.skipped };
  };

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    dataDir = await mkdtemp(join(tmpdir(), 'drover-secrets-data-'));
    stateDir = await mkdtemp(join(tmpdir(), 'drover-secrets-state-'));
  });
  after(async () => {
    await cluster?.stop().catch(() => {});
    // A secret volume still mounted (test failed before its pods were cleaned up) would block rm.
    for (const m of (await tmpfsBelow(stateDir)).reverse()) await execa('umount', ['-l', m]).catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
    await rm(stateDir, { recursive: true, force: true });
    await sb?.cleanup();
  });

  test('a Secret used by a pod is in no file of the server or the agent, and dirs and key files are private', async () => {
    const c = await start();
    assert.equal((await c.api('POST', '/api/v1/namespaces/default/secrets', secretManifest)).status, 201);
    const created = await c.api('POST', '/api/v1/namespaces/default/pods', podManifest('web'));
    assert.equal(created.status, 201, created.text);
    const logs = await logsOf(c, 'web');
    assert.match(logs, new RegExp(`env=${VALUE}`), 'delivered as env');
    assert.match(logs, new RegExp(`file=${VALUE}`), 'delivered as a volume file');

    const scan = await scanDisk();
    assert.ok(scan.files > 5, `scanned ${scan.files} files`);
    assert.deepEqual(scan.hits, []);
    // The one place the value is a file: the secret volume, a tmpfs (memory), skipped by the scan.
    assert.deepEqual(scan.skipped, await tmpfsBelow(stateDir));
    assert.equal(scan.skipped.length, 1);

    assert.equal(await mode(dataDir), '0700');
    assert.equal(await mode(join(dataDir, 'store')), '0700');
    assert.equal(await mode(join(dataDir, 'secrets')), '0700');
    assert.equal(await mode(join(dataDir, 'secrets', 'keys.json')), '0600');
    assert.equal(await mode(stateDir), '0700');
    assert.equal(await mode(join(stateDir, 'desired.json')), '0600');
    assert.equal(await mode(join(stateDir, 'cache.key')), '0600');
    // Nothing else is open to other users either: certificates are public, pod volumes are the pods'
    // (below the 0700 state dir), and LevelDB makes new table files 0644 inside its 0700 directory.
    const loose = [...(await looseBelow(dataDir)), ...(await looseBelow(stateDir))].filter(
      (p) => !p.endsWith('.crt') && !p.startsWith(join(stateDir, 'pods')) && !p.startsWith(`${join(dataDir, 'store')}/`),
    );
    assert.deepEqual(loose, []);
  });

  test('after a restart on the same dirs, the encrypted store still delivers the Secret to a new pod', async () => {
    await cluster!.stop();
    cluster = undefined;
    const c = await start();
    const got = await c.api('GET', '/api/v1/namespaces/default/secrets/db');
    assert.equal(got.status, 200, got.text);
    assert.equal(got.body.data.password, B64);
    assert.equal((await c.api('POST', '/api/v1/namespaces/default/pods', podManifest('web2'))).status, 201);
    const logs = await logsOf(c, 'web2');
    assert.match(logs, new RegExp(`env=${VALUE}`));
    assert.match(logs, new RegExp(`file=${VALUE}`));
    assert.deepEqual((await scanDisk()).hits, []);

    // Pods gone: their secret volumes are unmounted and removed with them.
    for (const p of ['web', 'web2']) await c.api('DELETE', `/api/v1/namespaces/default/pods/${p}`);
    await waitFor('containers removed', async () => (await sb.runtime.list({ [LABELS.namespace]: 'default' })).length === 0, 60_000);
    await waitFor('secret volumes unmounted', async () => (await tmpfsBelow(stateDir)).length === 0, 30_000);
  });
});
