/**
 * The amd64 single binary as a device runs it: copied alone into an empty directory, started with a
 * service manager's environment and PATH minus Node, no node_modules anywhere near it. One file must be the server (store, broker, API), its local agent (podman) and the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { join } from 'node:path';
import { binaryPath, deviceEnv, runDevice, startDevice } from '../helpers/binary.js';
import { freePort } from '../helpers/cluster.js';
import { buildTestImage, podmanSandbox } from '../helpers/podman.js';

test('the amd64 binary alone runs server, local agent and CLI with no Node and no node_modules', async (t) => {
  const bin = await binaryPath('amd64');
  const sandbox = await podmanSandbox();
  t.after(() => sandbox.cleanup());
  const image = await buildTestImage(sandbox);
  const dir = await mkdtemp(join(tmpdir(), 'drover-binary-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await copyFile(bin, join(dir, 'drover'));
  const drover = join(dir, 'drover');
  const env = deviceEnv(dir, { CONTAINERS_CONF: sandbox.confPath, DROVER_NATIVE_DIR: join(dir, 'native') });
  const [apiPort, mqttPort] = [await freePort(), await freePort()];

  const noNode = await execa('sh', ['-c', 'command -v node || command -v npm || echo none'], { env, reject: false });
  assert.equal(noNode.stdout.trim(), 'none', 'the device PATH has no Node');
  const version = await runDevice('amd64', drover, ['--version'], { cwd: dir, env });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/, 'the version is embedded at build time (there is no package.json to read)');

  const server = startDevice(
    'amd64',
    drover,
    ['server', '--data-dir', join(dir, 'data'), '--api-port', String(apiPort), '--mqtt-port', String(mqttPort), '--node-name', 'bin1', '--state-dir', join(dir, 'agent'), '--podman-root', sandbox.root, '--podman-runroot', sandbox.runroot, '--log-level', 'warn'],
    { cwd: dir, env },
  );
  t.after(() => server.stop());
  await server.waitForOutput(/drover server is running/, 60_000);
  assert.doesNotMatch(server.output(), /Warning|ExperimentalWarning|Cannot find module/, 'the binary starts without warnings');

  const cli = (args: string[], input?: string) => runDevice('amd64', drover, args, { cwd: dir, env, input });
  // The server wrote the CLI config for this user ($HOME/.drover/config): the CLI needs nothing else.
  let nodes = '';
  for (let i = 0; i < 100 && !/bin1\s+Ready/.test(nodes); i++) {
    nodes = (await cli(['get', 'nodes'])).stdout;
    if (!/bin1\s+Ready/.test(nodes)) await new Promise((r) => setTimeout(r, 300));
  }
  assert.match(nodes, /bin1\s+Ready\s.*amd64\s+linux\s.*podman:\/\//, nodes);

  const pod = `apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: ${image}
    command: ["sh", "-c", "echo hello from the binary"]
`;
  const applied = await cli(['apply', '-f', '-'], pod);
  assert.equal(applied.code, 0, applied.stderr);
  let phase = '';
  for (let i = 0; i < 200 && phase !== 'Succeeded'; i++) {
    const r = await cli(['get', 'pod', 'hello', '-o', 'json']);
    if (r.code === 0) phase = (JSON.parse(r.stdout) as { status?: { phase?: string } }).status?.phase ?? '';
    if (phase === 'Failed') assert.fail(`pod failed: ${r.stdout}`);
    if (phase !== 'Succeeded') await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(phase, 'Succeeded');
  const logs = await cli(['logs', 'hello']);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /hello from the binary/);

  const ver = await cli(['version']);
  assert.equal(ver.code, 0, ver.stderr);
  assert.match(ver.stdout, /Server Version: v\d+\.\d+\.\d+/);

  // The LevelDB addon was unpacked into a private directory, once; nothing else appeared beside the binary.
  const native = await readdir(join(dir, 'native'));
  assert.equal(native.filter((f) => f.endsWith('.node')).length, 1, native.join(', '));
  assert.equal((await stat(join(dir, 'native'))).mode & 0o077, 0, 'the addon directory is private (0700)');
  const beside = (await readdir(dir)).sort();
  assert.ok(!beside.includes('node_modules'), beside.join(', '));

  assert.equal(await server.stop(), 0, `SIGTERM stops the server cleanly:\n${server.output()}`);
});
