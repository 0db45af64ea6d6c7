/**
 * The amd64 single binary on an etcd datastore: etcd3 loads its gRPC protocol from .proto files beside its code,
 * which a single binary does not have (the build embeds them: scripts/binary/build.ts). Copied alone into an empty
 * directory, no Node on PATH, the server opens the store on a real etcd, takes the leader lease, and serves the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { binaryPath, deviceEnv, runDevice, startDevice } from '../helpers/binary.js';
import { freePort } from '../helpers/cluster.js';
import { startEtcd } from '../helpers/etcd.js';

test('the amd64 binary alone runs a server on etcd: store, leader lease, CLI', async (t) => {
  const bin = await binaryPath('amd64');
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const dir = await mkdtemp(join(tmpdir(), 'drover-binary-etcd-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const drover = join(dir, 'drover');
  await copyFile(bin, drover);
  const env = deviceEnv(dir, { DROVER_NATIVE_DIR: join(dir, 'native') });
  const [apiPort, mqttPort] = [await freePort(), await freePort()];
  const endpoint = etcd.endpoints[0]!;

  const server = startDevice(
    'amd64',
    drover,
    ['server', '--data-dir', join(dir, 'data'), '--api-port', String(apiPort), '--mqtt-port', String(mqttPort), '--disable-agent', '--datastore-endpoint', endpoint, '--log-level', 'warn'],
    { cwd: dir, env },
  );
  t.after(() => server.stop());
  await server.waitForOutput(/drover server is running/, 60_000).catch((err: Error) => {
    throw new Error(`${err.message}\nserver output:\n${server.output()}`);
  });
  assert.doesNotMatch(server.output(), /ENOENT|\.proto|Cannot find module/, server.output());

  const cli = (args: string[]) => runDevice('amd64', drover, args, { cwd: dir, env });
  const created = await cli(['create', 'namespace', 'from-binary']);
  assert.equal(created.code, 0, created.stderr);
  const got = await cli(['get', 'namespaces']);
  assert.match(got.stdout, /from-binary\s+Active/, got.stdout);

  // The objects are in etcd, and this server holds the leader key (its scheduler and controllers run).
  const keys = await execa('etcdctl', ['--endpoints', endpoint, 'get', '/drover/', '--prefix', '--keys-only'], { env: { ...process.env, ETCDCTL_API: '3' } });
  assert.match(keys.stdout, /\/drover\/registry\/Namespace\/\/from-binary/, keys.stdout);
  assert.match(keys.stdout, /^\/drover\/leader$/m, keys.stdout);
});
