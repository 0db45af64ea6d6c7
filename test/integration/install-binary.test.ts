/**
 * The whole door with the real single binary: install.sh downloads dist/bin/drover-linux-amd64 from a
 * running server (CA pinned by the join token, sha256 from SHA256SUMS) into a throwaway root, and the
 * installed binary, started with the unit's own ExecStart arguments, joins that server and turns Ready.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, symlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { exists, makeFakeRoot, recorder, type FakeRoot } from '../helpers/fakeroot.js';

const BINARY = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'bin', 'drover-linux-amd64');

let t: TestServer | undefined;
let fr: FakeRoot | undefined;
let agent: ChildProcess | undefined;

async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(p), h);
  return h.digest('hex');
}

/** The arguments of a unit's ExecStart, unquoted as systemd does for the quoting install.sh writes. */
function execStartArgs(unit: string): string[] {
  const exec = unit.slice(unit.indexOf('ExecStart='));
  const words = [...exec.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1').replace(/%%/g, '%').replace(/\$\$/g, '$'));
  const head = /^ExecStart=(\S+) (\S+)/.exec(exec)!;
  return [head[1]!, head[2]!, ...words];
}

before(async () => {
  if (process.arch !== 'x64' || !(await exists(BINARY))) return;
  t = await startTestServer();
  await mkdir(join(t.dataDir, 'downloads'));
  await symlink(BINARY, join(t.dataDir, 'downloads', 'drover-linux-amd64'));
  fr = await makeFakeRoot({ show: ['podman'] });
  await fr.tool('systemctl', recorder('systemctl', '[ "$1" = is-active ] && exit 3\nexit 0'));
});
after(async () => {
  if (agent && agent.exitCode === null) {
    const exited = new Promise((r) => agent!.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
  }
  await fr?.cleanup();
  await t?.stop();
});

test('install.sh installs the real binary from a server, and the installed service command joins it', async (ctx) => {
  if (!t || !fr) return ctx.skip(`no ${BINARY} for this machine (npm run build:binary makes it)`);
  const r = await fr.run(['agent', '--server', t.apiUrl, '--node-name', 'installed-edge', '--label', 'site=lab', '--no-start'], { DROVER_TOKEN: t.joinToken });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /drover 0\.\d+\.\d+/);
  const installed = join(fr.root, 'usr/local/bin/drover');
  assert.equal(await sha256File(installed), await sha256File(BINARY));

  // The service's command line, as written in the unit; paths moved into the throwaway root, and the
  // state dir too (the default, /var/lib/drover/agent, is this machine's own).
  const unit = await readFile(join(fr.root, 'etc/systemd/system/drover-agent.service'), 'utf8');
  const [bin, ...args] = execStartArgs(unit);
  assert.equal(bin, '/usr/local/bin/drover');
  const rooted = args.map((a) => (a.startsWith('/etc/drover/') ? join(fr!.root, a) : a));
  agent = spawn(installed, [...rooted, '--state-dir', join(fr.root, 'var/lib/drover/agent')], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  let log = '';
  agent.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  agent.stderr!.on('data', (d: Buffer) => (log += d.toString()));

  // The token reached the agent through the file only: not on its command line.
  const cmdline = await readFile(`/proc/${agent.pid}/cmdline`, 'utf8');
  assert.ok(!cmdline.includes(t.joinToken.split('.').pop()!), 'the join token is on the agent\'s command line');

  const node = await waitFor(
    `installed-edge Ready (agent log: ${log.slice(-400)})`,
    async () => {
      const n = (await t!.api('GET', '/api/v1/nodes/installed-edge')).body;
      return n?.status?.conditions?.find((c: { type: string; status: string }) => c.type === 'Ready')?.status === 'True' ? n : undefined;
    },
    60_000,
    250,
  );
  assert.equal(node.metadata.labels['site'], 'lab');
  assert.equal(node.metadata.labels['kubernetes.io/arch'], 'amd64');
  // It keeps its own identity in the state dir: the token is not needed again.
  assert.ok(await exists(join(fr.root, 'var/lib/drover/agent/credentials/node.crt')));
});
