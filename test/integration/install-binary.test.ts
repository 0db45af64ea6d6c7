/**
 * The whole door with the real single binary: install.sh downloads dist/bin/drover-linux-amd64 from a
 * running server (CA pinned by the join token, sha256 from SHA256SUMS) into a throwaway root; the
 * installed binary, started as its unit says (ExecStart, EnvironmentFile, a service's PATH without
 * Node), joins that server and turns Ready. A re-run that brings a new build keeps the node's identity.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { appendFile, copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { binaryPath, deviceEnv, startDevice, type DeviceProcess } from '../helpers/binary.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { makeFakeRoot, recorder, type FakeRoot } from '../helpers/fakeroot.js';

let t: TestServer | undefined;
let fr: FakeRoot | undefined;
let home: string | undefined;
const agents: DeviceProcess[] = [];

async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(p), h);
  return h.digest('hex');
}

/** The arguments of a unit's ExecStart, unquoted as systemd does for the quoting install.sh writes. */
function execStart(unit: string): { bin: string; args: string[] } {
  const exec = unit.slice(unit.indexOf('ExecStart='));
  const head = /^ExecStart=(\S+) (\S+)/.exec(exec)!;
  const words = [...exec.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1').replace(/%%/g, '%').replace(/\$\$/g, '$'));
  return { bin: head[1]!, args: [head[2]!, ...words] };
}

/** KEY="VALUE" lines of an EnvironmentFile as install.sh writes them. */
function environmentFile(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"$/gm)].map((m) => [m[1]!, m[2]!]));
}

before(async () => {
  t = await startTestServer();
  fr = await makeFakeRoot({ show: ['podman'] });
  home = await mkdtemp(join(tmpdir(), 'drover-installed-home-'));
  await fr.tool('systemctl', recorder('systemctl', '[ "$1" = is-active ] && exit 3\nexit 0'));
});
after(async () => {
  for (const a of agents) await a.stop();
  await fr?.cleanup();
  await t?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

/** Starts the installed agent as systemd would from its unit; its state dir moved into the throwaway root (the default is this machine's own). */
async function startInstalled(root: string): Promise<DeviceProcess> {
  const unit = await readFile(join(root, 'etc/systemd/system/drover-agent.service'), 'utf8');
  const { bin, args } = execStart(unit);
  assert.equal(bin, '/usr/local/bin/drover');
  const envFile = /^EnvironmentFile=-(\/etc\/drover\/\S+)$/m.exec(unit)![1]!;
  const env = environmentFile(await readFile(join(root, envFile), 'utf8'));
  const rooted = args.map((a) => (a.startsWith('/etc/drover/') ? join(root, a) : a));
  const agent = startDevice('amd64', join(root, bin), [...rooted, '--state-dir', join(root, 'var/lib/drover/agent')], { cwd: home!, env: deviceEnv(home!, env) });
  agents.push(agent);
  return agent;
}

async function readyNode(name: string, agent: DeviceProcess): Promise<any> {
  return waitFor(
    `${name} Ready`,
    async () => {
      if (agent.child.exitCode !== null) throw new Error(`the installed agent exited (${agent.child.exitCode}):\n${agent.output()}`);
      const n = (await t!.api('GET', `/api/v1/nodes/${name}`)).body;
      return n?.status?.conditions?.find((c: { type: string; status: string }) => c.type === 'Ready')?.status === 'True' ? n : undefined;
    },
    60_000,
    250,
  );
}

test('install.sh installs the real binary from a server; started as its unit says, it joins; an upgrade keeps its identity', async (ctx) => {
  if (process.arch !== 'x64') return ctx.skip(`the host is ${process.arch}: this test runs the amd64 binary natively`);
  const real = await binaryPath('amd64');
  const { apiUrl, joinToken } = t!;
  const root = fr!.root;
  const downloads = join(t!.dataDir, 'downloads');
  await mkdir(downloads);
  await symlink(real, join(downloads, 'drover-linux-amd64'));

  const r = await fr!.run(['agent', '--server', apiUrl, '--node-name', 'installed-edge', '--label', 'site=lab', '--no-start'], { DROVER_TOKEN: joinToken });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /drover 0\.\d+\.\d+/);
  const installed = join(root, 'usr/local/bin/drover');
  assert.equal(await sha256File(installed), await sha256File(real));

  const agent = await startInstalled(root);
  // The token reached the agent through its file only: not on its command line.
  const cmdline = await readFile(`/proc/${agent.child.pid}/cmdline`, 'utf8');
  assert.ok(!cmdline.includes(joinToken.split('.').pop()!), "the join token is on the agent's command line");
  const node = await readyNode('installed-edge', agent);
  assert.equal(node.metadata.labels['site'], 'lab');
  assert.equal(node.metadata.labels['kubernetes.io/arch'], 'amd64');
  const creds = join(root, 'var/lib/drover/agent/credentials');
  const identity = { crt: await readFile(join(creds, 'node.crt'), 'utf8'), key: await sha256File(join(creds, 'node.key')) };
  const serial = (await t!.api('GET', '/drover/v1/nodes/installed-edge')).body.serial;
  assert.ok(serial);

  // A new build on the server (the same binary with bytes appended: another sha256): the re-run
  // replaces the binary in place and keeps the node's state.
  assert.match(agent.output(), /joined the cluster/);
  await agent.stop();
  await rm(join(downloads, 'drover-linux-amd64'));
  await copyFile(real, join(downloads, 'drover-linux-amd64'));
  await appendFile(join(downloads, 'drover-linux-amd64'), '\n# test build 2\n');
  const up = await fr!.run(['agent', '--server', apiUrl, '--node-name', 'installed-edge', '--label', 'site=lab', '--no-start']);
  assert.equal(up.code, 0, up.stderr);
  assert.equal(await sha256File(installed), await sha256File(join(downloads, 'drover-linux-amd64')));
  assert.equal(await readFile(join(creds, 'node.crt'), 'utf8'), identity.crt);
  assert.equal(await sha256File(join(creds, 'node.key')), identity.key);

  const again = await startInstalled(root);
  // This process's own connection (the Node may still read Ready from the first one).
  await again.waitForOutput(/connected to server/);
  await readyNode('installed-edge', again);
  assert.doesNotMatch(again.output(), /joined the cluster/);
  // No second join: the server still knows it by the same certificate.
  assert.equal((await t!.api('GET', '/drover/v1/nodes/installed-edge')).body.serial, serial);
  assert.equal(await readFile(join(creds, 'node.crt'), 'utf8'), identity.crt);
});
