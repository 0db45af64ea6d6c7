/**
 * install.sh at the REAL paths, with no INSTALL_DROVER_ROOT: run inside a throwaway device root (a
 * private mount namespace: tmpfs for everything writable, this machine's /usr bound read-only, Node
 * hidden, a recording systemctl) exactly as the README tells a user, with the real amd64 binary from a
 * real server. A prefix cannot notice a write that escapes it; here the whole writable device is listed
 * before and after, and every attempt to write the read-only /usr is caught by tracing the run.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { binaryPath } from '../helpers/binary.js';
import { diff, makeChroot, sha256File, type Chroot, type ChrootRun, type Entry } from '../helpers/chroot.js';
import { startTestServer, type TestServer } from '../helpers/cluster.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

let t: TestServer | undefined;
let ch: Chroot | undefined;
let real: string;
let version: string;
/** The device before anything of drover, and after the first install. */
let pristine: Map<string, Entry>;
let installed: Map<string, Entry>;

/** What install.sh makes, with the mode each must have. */
const INSTALLED: Record<string, { type: Entry['type']; mode: number }> = {
  '/etc/drover': { type: 'dir', mode: 0o700 },
  '/etc/drover/agent-token': { type: 'file', mode: 0o600 },
  '/etc/drover/drover-agent.env': { type: 'file', mode: 0o600 },
  '/etc/systemd/system/drover-agent.service': { type: 'file', mode: 0o644 },
  '/usr/local/bin/drover': { type: 'file', mode: 0o755 },
  '/usr/local/bin/drover-uninstall.sh': { type: 'file', mode: 0o755 },
};

/**
 * The README's verified one-liner (section "Using it"), as a user copies it, plus --no-start: systemd
 * does not run here. Read from the README so that what is tested is what users are told.
 */
async function readmeOneLiner(): Promise<string> {
  const lines = (await readFile(join(REPO, 'README.md'), 'utf8')).split('\n');
  const start = lines.findIndex((l) => l.startsWith('ca=$(mktemp) && curl'));
  const end = lines.findIndex((l, i) => i > start && /\bfi$/.test(l));
  assert.ok(start >= 0 && end > start, 'README.md no longer has the verified one-liner (ca=$(mktemp) && curl ... fi)');
  const block = lines.slice(start, end + 1).join('\n');
  const withNoStart = block.replace('sh -s - agent --server "$SERVER" --node-name edge-2', 'sh -s - agent --server "$SERVER" --node-name edge-2 --no-start');
  assert.notEqual(withNoStart, block, `the README's one-liner changed its install.sh arguments:\n${block}`);
  return withNoStart;
}

/** The trusted-LAN form from the README, in which install.sh itself has to check the CA against the token. */
const SHORT_FORM = 'curl -sfLk "$SERVER/install.sh" | DROVER_TOKEN="$TOKEN" sh -s - agent --server "$SERVER" --no-start';

/** The join token of another cluster: right shape and secret, a CA hash that is not this server's. */
function otherClustersToken(token: string): string {
  const hash = token.slice(3, 67);
  const other = [...hash].map((c) => '0123456789abcdef'[(parseInt(c, 16) + 1) % 16]).join('');
  return `K10${other}${token.slice(67)}`;
}

function errorLines(r: ChrootRun): string[] {
  return r.stderr.split('\n').filter((l) => l.startsWith('[ERROR]'));
}

/** A run that must have touched nothing of /usr: no system call of it met the read-only mount. */
function assertNoWriteToUsr(r: { readOnly?: string[] }): void {
  assert.deepEqual(r.readOnly ?? [], [], 'something tried to write the read-only /usr');
}

/** The ExecStart command line of a unit, its continuation lines joined. */
function execStart(unit: string): string {
  const m = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit);
  assert.ok(m, `no ExecStart in the unit:\n${unit}`);
  return m[1]!.replace(/\s*\\\n\s*/g, ' ');
}

/** install.sh (the trusted-LAN form: it alone checks the CA) with another cluster's token: refused, the device left as `device`. */
async function refusesOtherClustersToken(device: Map<string, Entry>): Promise<void> {
  const c = ch!;
  await c.clearCalls();
  const r = await c.runTraced(SHORT_FORM, { SERVER: t!.apiUrl, TOKEN: otherClustersToken(t!.joinToken) });
  assert.notEqual(r.code, 0);
  assert.equal(errorLines(r).length, 1, r.stderr);
  assert.match(errorLines(r)[0]!, /presents CA sha256 [0-9a-f]{64}, but the join token expects [0-9a-f]{64}.*nothing was downloaded/);
  assertNoWriteToUsr(r);
  assert.deepEqual(diff(device, await c.listing()), { added: [], removed: [], changed: [] });
  assert.deepEqual(await c.calls(), [], 'systemctl was called');
}

before(async () => {
  real = await binaryPath('amd64');
  version = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')).version;
  t = await startTestServer();
  const downloads = join(t.dataDir, 'downloads');
  await mkdir(downloads);
  await symlink(real, join(downloads, 'drover-linux-amd64'));
  ch = await makeChroot();
});
after(async () => {
  await ch?.close();
  await t?.stop();
});

test('the device root: /usr read-only and caught when written, no Node, nothing of drover', async (ctx) => {
  const c = ch!;
  // The trace sees a write into /usr even when the writer ignores its failure.
  // (Only once /usr is seen mounted read-only: the probe must never reach this machine's /usr.)
  const probe = await c.runTraced("findmnt -rn -o OPTIONS --target /usr | grep -q '^ro,' || exit 9; touch /usr/bin/drover-probe 2>/dev/null || true");
  assert.equal(probe.code, 0, `/usr is not mounted read-only in the device root: ${probe.stderr}`);
  if (probe.readOnly) assert.ok(probe.readOnly.some((l) => l.includes('/usr/bin/drover-probe')), `the trace missed a write into /usr:\n${probe.readOnly.join('\n')}`);
  else ctx.diagnostic('strace is not installed: attempts to write /usr are refused (read-only) but not traced');
  const node = await c.run('command -v node || command -v nodejs');
  assert.notEqual(node.code, 0, `Node is reachable in the device root: ${node.stdout}`);
  pristine = await c.listing();
  for (const p of Object.keys(INSTALLED)) assert.ok(!pristine.has(p), `${p} exists before the install`);
});

test("the README's one-liner installs the real binary at the real paths, and writes nothing else", async () => {
  const c = ch!;
  const { apiUrl, joinToken } = t!;
  const r = await c.runTraced(await readmeOneLiner(), { SERVER: apiUrl, TOKEN: joinToken });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual(errorLines(r), []);
  assert.match(r.stdout, /drover agent installed \(not started\)/);
  assertNoWriteToUsr(r);

  installed = await c.listing();
  const d = diff(pristine, installed);
  assert.deepEqual(d.removed, []);
  assert.deepEqual(d.changed, [], 'an existing file or directory was changed');
  // The one-liner's own copy of the CA (its mktemp in /tmp: a public certificate, the README's, not install.sh's).
  const caCopy = d.added.filter((p) => /^\/tmp\/tmp\.[A-Za-z0-9]+$/.test(p));
  assert.ok(caCopy.length <= 1, `more than the one-liner's CA copy in /tmp: ${caCopy.join(', ')}`);
  for (const p of caCopy) {
    assert.match(await readFile(join(c.root, p), 'utf8'), /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$/);
    assert.equal((await c.run(`rm ${p}`)).code, 0);
    installed.delete(p);
  }
  assert.deepEqual(d.added.filter((p) => !caCopy.includes(p)).sort(), Object.keys(INSTALLED).sort(), 'install.sh wrote outside its files');

  for (const [p, want] of Object.entries(INSTALLED)) {
    const e = installed.get(p)!;
    assert.equal(e.type, want.type, p);
    assert.equal(e.mode.toString(8), want.mode.toString(8), `mode of ${p}`);
    assert.equal(e.uid, 0, `owner of ${p}`);
  }
  assert.equal(installed.get('/usr/local/bin/drover')!.content, await sha256File(real), 'the installed binary is not the one the server serves');
  assert.equal(await readFile(join(c.root, 'etc/drover/agent-token'), 'utf8'), `${joinToken}\n`);
  const unit = await readFile(join(c.root, 'etc/systemd/system/drover-agent.service'), 'utf8');
  assert.equal(execStart(unit), `/usr/local/bin/drover agent "--node-name" "edge-2" "--server" "${apiUrl}" "--token-file" "/etc/drover/agent-token"`);
  const secret = joinToken.split('.').pop()!;
  for (const p of ['etc/systemd/system/drover-agent.service', 'etc/drover/drover-agent.env', 'usr/local/bin/drover-uninstall.sh']) {
    assert.ok(!(await readFile(join(c.root, p), 'utf8')).includes(secret), `the join token's secret is in /${p}`);
  }
  // Enabled for the next boot, not started (--no-start).
  assert.deepEqual(await c.calls(), ['systemctl daemon-reload', 'systemctl enable drover-agent.service']);
});

test('the installed binary runs in the device root, which has no Node', async () => {
  const c = ch!;
  const r = await c.run('if command -v node; then exit 3; fi; /usr/local/bin/drover --version');
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.equal(r.stdout.trim(), version);
  // `drover --version` unpacks nothing (the LevelDB addon is for the server only).
  assert.deepEqual(diff(installed, await c.listing()), { added: [], removed: [], changed: [] });
});

test('running it again changes nothing: same files, same contents and modes, exit 0', async () => {
  const c = ch!;
  await c.clearCalls();
  const r = await c.runTraced(await readmeOneLiner(), { SERVER: t!.apiUrl, TOKEN: t!.joinToken });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /\/usr\/local\/bin\/drover is already this version/);
  assertNoWriteToUsr(r);
  await c.run('rm -f /tmp/tmp.*');
  assert.deepEqual(diff(installed, await c.listing()), { added: [], removed: [], changed: [] });
  assert.deepEqual(await c.calls(), ['systemctl daemon-reload', 'systemctl enable drover-agent.service']);
});

test("an upgrade from a server that is not the token's leaves the installed device as it was", async () => {
  await refusesOtherClustersToken(installed);
});

test('drover-uninstall.sh removes everything install.sh made: the device is as before', async () => {
  const c = ch!;
  await c.clearCalls();
  const r = await c.runTraced('/usr/local/bin/drover-uninstall.sh');
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assertNoWriteToUsr(r);
  assert.deepEqual(diff(pristine, await c.listing()), { added: [], removed: [], changed: [] });
  assert.deepEqual(await c.calls(), [
    'systemctl stop drover-agent',
    'systemctl disable drover-agent',
    'systemctl reset-failed drover-agent',
    'systemctl daemon-reload',
  ]);
});

test("a fresh install with another cluster's token: one [ERROR], non-zero exit, nothing written", async () => {
  await refusesOtherClustersToken(pristine);
});

test('a fresh install that cannot write its unit (a read-only /etc/systemd/system) removes what it had written', async () => {
  const c = ch!;
  await c.clearCalls();
  const writable = await c.readOnly('/etc/systemd/system');
  let r: Awaited<ReturnType<Chroot['runTraced']>>;
  try {
    r = await c.runTraced(await readmeOneLiner(), { SERVER: t!.apiUrl, TOKEN: t!.joinToken });
  } finally {
    await writable();
  }
  assert.notEqual(r.code, 0);
  assert.deepEqual(errorLines(r), ['[ERROR]  cannot write /etc/systemd/system/drover-agent.service'], r.stderr);
  // The binary and the token were in place before the unit failed; the only write refused was the unit's.
  assert.match(r.stdout, /Installing drover to \/usr\/local\/bin\/drover\n.*Writing the join token to \/etc\/drover\/agent-token/s);
  assert.match(r.stderr, /\[WARN\] {2}removing what this run had created/);
  assert.ok(r.readOnly === undefined || (r.readOnly.length > 0 && r.readOnly.every((l) => l.includes('/etc/systemd/system/'))), (r.readOnly ?? []).join('\n'));
  await c.run('rm -f /tmp/tmp.*');
  assert.deepEqual(diff(pristine, await c.listing()), { added: [], removed: [], changed: [] });
  assert.deepEqual(await c.calls(), []);
});

test('offline, as the README shows: install.sh server with the binary and SHA256SUMS beside it, then uninstalled', async () => {
  const c = ch!;
  await c.clearCalls();
  // What a user copies to the device from dist/bin/ (kept in the test's own dir, outside the listings).
  const offline = join(c.root, '.test/offline');
  await mkdir(offline);
  await copyFile(real, join(offline, 'drover-linux-amd64'));
  await chmod(join(offline, 'drover-linux-amd64'), 0o755);
  await writeFile(join(offline, 'SHA256SUMS'), `${await sha256File(real)}  drover-linux-amd64\n`);
  const fetched = await c.run('curl -sfk "$SERVER/install.sh" -o /.test/offline/install.sh', { SERVER: t!.apiUrl });
  assert.equal(fetched.code, 0, fetched.stderr);

  const r = await c.runTraced('cd /.test/offline && INSTALL_DROVER_BINARY=./drover-linux-amd64 sh install.sh server --tls-san drover.example --no-start');
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /Verified sha256 [0-9a-f]{64}/);
  assertNoWriteToUsr(r);
  const server = await c.listing();
  const d = diff(pristine, server);
  assert.deepEqual([d.removed, d.changed], [[], []]);
  assert.deepEqual(d.added.sort(), ['/etc/drover', '/etc/drover/drover-server.env', '/etc/systemd/system/drover-server.service', '/usr/local/bin/drover', '/usr/local/bin/drover-uninstall.sh']);
  assert.equal(server.get('/etc/drover')!.mode.toString(8), '700');
  assert.equal(server.get('/etc/drover/drover-server.env')!.mode.toString(8), '600');
  assert.equal(server.get('/usr/local/bin/drover')!.mode.toString(8), '755');
  const unit = await readFile(join(c.root, 'etc/systemd/system/drover-server.service'), 'utf8');
  assert.equal(execStart(unit), '/usr/local/bin/drover server "--tls-san" "drover.example"');
  assert.deepEqual(await c.calls(), ['systemctl daemon-reload', 'systemctl enable drover-server.service']);

  const u = await c.runTraced('/usr/local/bin/drover-uninstall.sh');
  assert.equal(u.code, 0, u.stderr);
  assertNoWriteToUsr(u);
  assert.deepEqual(diff(pristine, await c.listing()), { added: [], removed: [], changed: [] });
});
