/**
 * install.sh run for real (dash) in a throwaway root against a real drover server: the binary (a small
 * stand-in script) comes from the server's /download routes, trusted by the join token's CA hash.
 * systemctl / rc-update / apt-get / podman are stand-ins on PATH that record their calls.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestServer, type TestServer } from '../helpers/cluster.js';
import { INSTALL_SH, errorLines, exists, filesOf, makeFakeRoot, recorder, standInBinary, type FakeRoot, type TreeEntry } from '../helpers/fakeroot.js';

const run = promisify(execFile);
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let t: TestServer;
let downloads: string;

before(async () => {
  t = await startTestServer();
  downloads = join(t.dataDir, 'downloads');
  await mkdir(downloads, { recursive: true });
  await serve('amd64', standInBinary('0.1.0-v1'));
  await serve('arm64', standInBinary('0.1.0-arm64'));
});
after(async () => {
  await t?.stop();
});

async function serve(arch: string, content: string): Promise<void> {
  await writeFile(join(downloads, `drover-linux-${arch}`), content, { mode: 0o755 });
}

/** A fake root whose PATH has a recording systemctl and podman (so the runtime check passes). */
async function systemdRoot(extra: Parameters<typeof makeFakeRoot>[0] = {}): Promise<FakeRoot> {
  const fr = await makeFakeRoot(extra);
  await fr.tool('systemctl', recorder('systemctl', '[ "$1" = is-active ] && exit 3\nexit 0'));
  await fr.tool('podman', recorder('podman', 'if [ "$1" = ps ]; then echo c0ffee1; echo c0ffee2; fi\nexit 0'));
  return fr;
}

/** False (and the test skipped, with the reason) where busybox is missing. */
async function haveBusybox(ctx: TestContext): Promise<boolean> {
  try {
    await run('busybox', ['true']);
    return true;
  } catch (err) {
    ctx.skip(`busybox is not installed (${(err as Error).message})`);
    return false;
  }
}

const secretOf = (token: string) => token.split('.').pop()!;

/** Every file under root that holds `needle`. */
async function filesHolding(fr: FakeRoot, tree: Map<string, TreeEntry>, needle: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of filesOf(tree)) if ((await readFile(join(fr.root, p), 'utf8')).includes(needle)) out.push(p);
  return out;
}

test('install.sh is POSIX sh and shellcheck clean, and so is the uninstall script it writes', async (ctx) => {
  try {
    await run('shellcheck', ['--version']);
  } catch (err) {
    ctx.skip(`shellcheck is not installed (${(err as Error).message}); apt-get install shellcheck`);
    return;
  }
  await run('shellcheck', ['-s', 'sh', INSTALL_SH]);
  const fr = await systemdRoot();
  try {
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    await run('shellcheck', ['-s', 'sh', join(fr.root, 'usr/local/bin/drover-uninstall.sh')]);
  } finally {
    await fr.cleanup();
  }
});

test('agent install: binary from the server, token 0600 and never in the unit, systemd unit, uninstall script', async () => {
  const fr = await systemdRoot();
  try {
    const r = await fr.run(['agent', '--server', t.apiUrl, '--node-name', 'edge-1', '--label', 'site=north', '--runtime', 'podman', '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\[INFO\] +The server's CA matches the join token/);
    assert.match(r.stdout, /\[INFO\] +Verified sha256/);
    const tree = await fr.tree();
    assert.deepEqual(filesOf(tree).sort(), ['/etc/drover/agent-token', '/etc/drover/drover-agent.env', '/etc/systemd/system/drover-agent.service', '/usr/local/bin/drover', '/usr/local/bin/drover-uninstall.sh']);
    assert.equal(tree.get('/usr/local/bin/drover')!.mode, 0o755);
    assert.equal(tree.get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.1.0-v1')));
    assert.equal(tree.get('/usr/local/bin/drover-uninstall.sh')!.mode, 0o755);
    assert.equal(tree.get('/etc/drover/agent-token')!.mode, 0o600);
    assert.equal(tree.get('/etc/drover/drover-agent.env')!.mode, 0o600);
    assert.equal(tree.get('/etc/drover')!.mode, 0o700);
    assert.equal(tree.get('/etc/systemd/system/drover-agent.service')!.mode, 0o644);
    assert.equal((await readFile(join(fr.root, 'etc/drover/agent-token'), 'utf8')).trim(), t.joinToken);
    // The token's secret is in the token file and nowhere else (not in the unit, not in the env file).
    assert.deepEqual(await filesHolding(fr, tree, secretOf(t.joinToken)), ['/etc/drover/agent-token']);
    assert.ok(!(await fr.calls()).some((c) => c.includes(secretOf(t.joinToken))));

    const unit = await readFile(join(fr.root, 'etc/systemd/system/drover-agent.service'), 'utf8');
    for (const line of ['Restart=always', 'RestartSec=5s', 'KillMode=process', 'Delegate=yes', 'LimitNOFILE=1048576', 'EnvironmentFile=-/etc/drover/drover-agent.env', 'WantedBy=multi-user.target']) {
      assert.ok(unit.split('\n').includes(line), `unit lacks ${line}`);
    }
    const exec = unit.slice(unit.indexOf('ExecStart=')).replace(/ \\\n\s*/g, ' ').trim();
    assert.equal(exec, `ExecStart=/usr/local/bin/drover agent "--node-name" "edge-1" "--label" "site=north" "--runtime" "podman" "--server" "${t.apiUrl}" "--token-file" "/etc/drover/agent-token"`);
    assert.ok(!unit.includes('NODE_OPTIONS'), 'the agent keeps its own V8 flags (lite mode), no NODE_OPTIONS of the server');
    // Enabled, not started (--no-start).
    assert.deepEqual(await fr.calls(), ['systemctl daemon-reload', 'systemctl enable drover-agent.service']);
    assert.deepEqual(await fr.tmpLeft(), [], 'the temp dir is removed');
  } finally {
    await fr.cleanup();
  }
});

test('re-running is idempotent and keeps the node state; an upgrade replaces the binary and restarts, state untouched', async () => {
  const fr = await systemdRoot();
  try {
    const args = ['agent', '--server', t.apiUrl, '--node-name', 'edge-2', '--no-start'];
    assert.equal((await fr.run(args, { DROVER_TOKEN: t.joinToken })).code, 0);
    // What the agent keeps: its identity and desired-state cache.
    const state = join(fr.root, 'var/lib/drover/agent');
    await mkdir(join(state, 'credentials'), { recursive: true, mode: 0o700 });
    await writeFile(join(state, 'credentials', 'node.crt'), 'node certificate', { mode: 0o600 });
    await writeFile(join(state, 'desired.json'), '{"cached":true}', { mode: 0o600 });
    const first = await fr.tree();

    // Same again: the same files, modes and contents (the token comes from the file it wrote).
    const again = await fr.run(args);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already this version/);
    assert.deepEqual(await fr.tree(), first);

    // A new binary on the server: it replaces the old one, in place; the service is restarted.
    await serve('amd64', standInBinary('0.2.0-v2'));
    await fr.clearCalls();
    const up = await fr.run(['agent', '--server', t.apiUrl, '--node-name', 'edge-2']);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /drover 0\.2\.0-v2/);
    const after = await fr.tree();
    assert.equal(after.get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.2.0-v2')));
    for (const p of ['/var/lib/drover/agent/credentials/node.crt', '/var/lib/drover/agent/desired.json', '/etc/drover/agent-token']) {
      assert.deepEqual(after.get(p), first.get(p), `${p} changed`);
    }
    assert.deepEqual(await fr.calls(), ['systemctl daemon-reload', 'systemctl enable drover-agent.service', 'systemctl restart drover-agent']);
    assert.deepEqual(await fr.tmpLeft(), []);
  } finally {
    await serve('amd64', standInBinary('0.1.0-v1'));
    await fr.cleanup();
  }
});

test('a joined node upgrades without a token, trusting the CA it joined with', async () => {
  const fr = await systemdRoot();
  try {
    const creds = join(fr.root, 'var/lib/drover/agent/credentials');
    await mkdir(creds, { recursive: true });
    await writeFile(join(creds, 'ca.crt'), t.ca);
    await writeFile(join(creds, 'node.crt'), 'node certificate');
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Trusting the CA this node joined with/);
    assert.equal((await fr.tree()).get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.1.0-v1')));
    assert.equal(await exists(join(fr.root, 'etc/drover/agent-token')), false, 'no token to write');
    // ... and none to read: the agent refuses a --token-file that is not there.
    const unit = await readFile(join(fr.root, 'etc/systemd/system/drover-agent.service'), 'utf8');
    assert.ok(!unit.includes('--token-file'), unit);
  } finally {
    await fr.cleanup();
  }
});

test('drover-uninstall.sh removes everything install.sh made and keeps the state; --purge removes state and drover containers', async () => {
  const fr = await systemdRoot();
  try {
    assert.equal((await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken })).code, 0);
    const state = join(fr.root, 'var/lib/drover/agent');
    await mkdir(state, { recursive: true });
    await writeFile(join(state, 'desired.json'), '{}');
    await fr.clearCalls();
    const uninstall = join(fr.root, 'usr/local/bin/drover-uninstall.sh');
    const u = await fr.run([], {}, uninstall);
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(filesOf(await fr.tree()), ['/var/lib/drover/agent/desired.json']);
    assert.deepEqual(await fr.calls(), ['systemctl stop drover-agent', 'systemctl disable drover-agent', 'systemctl reset-failed drover-agent', 'systemctl daemon-reload']);

    // Installed again, then purged: nothing of drover is left, and its containers are removed.
    assert.equal((await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken })).code, 0);
    await fr.clearCalls();
    const p = await fr.run(['--purge'], {}, uninstall);
    assert.equal(p.code, 0, p.stderr);
    assert.deepEqual(filesOf(await fr.tree()), []);
    assert.equal(await exists(join(fr.root, 'var/lib/drover')), false);
    assert.equal(await exists(join(fr.root, 'etc/drover')), false);
    const calls = await fr.calls();
    assert.ok(calls.includes('podman ps -a -q --filter label=drover.io/managed=true'), calls.join('\n'));
    assert.ok(calls.includes('podman rm -f c0ffee1') && calls.includes('podman rm -f c0ffee2'), calls.join('\n'));
  } finally {
    await fr.cleanup();
  }
});

test('OpenRC where there is no systemd: an init script whose arguments come back exactly, and rc-update', async () => {
  const fr = await makeFakeRoot();
  try {
    await fr.tool('openrc-run', recorder('openrc-run'));
    await fr.tool('rc-update', recorder('rc-update'));
    await fr.tool('rc-service', recorder('rc-service'));
    await fr.tool('podman', recorder('podman'));
    const tricky = `it's "quoted" $HOME \`x\` 100% \\ end`;
    const r = await fr.run(['agent', '--server', t.apiUrl, '--node-name', 'edge-3', '--label', `note=${tricky}`, '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    const tree = await fr.tree();
    assert.deepEqual(filesOf(tree).sort(), ['/etc/drover/agent-token', '/etc/drover/drover-agent.env', '/etc/init.d/drover-agent', '/etc/logrotate.d/drover-agent', '/usr/local/bin/drover', '/usr/local/bin/drover-uninstall.sh']);
    assert.equal(tree.get('/etc/init.d/drover-agent')!.mode, 0o755);
    const script = join(fr.root, 'etc/init.d/drover-agent');
    const text = await readFile(script, 'utf8');
    assert.match(text, /^#!\/sbin\/openrc-run\n/);
    assert.match(text, /^supervisor=supervise-daemon$/m);
    assert.match(text, /^respawn_delay=5$/m);
    // openrc-run evaluates command_args as sh words: they must come back as given.
    const { stdout } = await run('/bin/sh', ['-c', '. "$1"; eval "set -- $command_args"; printf "%s\\n" "$@"', 'sh', script]);
    assert.deepEqual(stdout.split('\n').slice(0, -1), ['agent', '--node-name', 'edge-3', '--label', `note=${tricky}`, '--server', t.apiUrl, '--token-file', '/etc/drover/agent-token']);
    assert.deepEqual(await fr.calls(), ['rc-update add drover-agent default']);

    const u = await fr.run([], {}, join(fr.root, 'usr/local/bin/drover-uninstall.sh'));
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(filesOf(await fr.tree()), []);
    assert.ok((await fr.calls()).includes('rc-update delete drover-agent default'));
  } finally {
    await fr.cleanup();
  }
});

test('server install: offline binary checked against the SHA256SUMS beside it, flags quoted for systemd', async () => {
  const fr = await systemdRoot();
  const dist = join(fr.tmp, '..', 'dist');
  try {
    await mkdir(dist);
    await writeFile(join(dist, 'drover-linux-amd64'), standInBinary('0.3.0-offline'));
    await writeFile(join(dist, 'SHA256SUMS'), `${sha256(standInBinary('0.3.0-offline'))}  drover-linux-amd64\n`);
    const r = await fr.run(['server', '--tls-san', 'edge.example', '--broker-password', 'p$a"ss%w\\d', '--no-start'], { INSTALL_DROVER_BINARY: join(dist, 'drover-linux-amd64') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Verified sha256/);
    const tree = await fr.tree();
    assert.deepEqual(filesOf(tree).sort(), ['/etc/drover/drover-server.env', '/etc/systemd/system/drover-server.service', '/usr/local/bin/drover', '/usr/local/bin/drover-uninstall.sh']);
    const unit = await readFile(join(fr.root, 'etc/systemd/system/drover-server.service'), 'utf8');
    const exec = unit.slice(unit.indexOf('ExecStart=')).replace(/ \\\n\s*/g, ' ').trim();
    // systemd: $ and % doubled (variables, specifiers), " and \ escaped.
    assert.equal(exec, 'ExecStart=/usr/local/bin/drover server "--tls-san" "edge.example" "--broker-password" "p$$a\\"ss%%w\\\\d"');
    // The server's young generation capped (memory at rest), before the EnvironmentFiles that may override it.
    const lines = unit.split('\n');
    assert.ok(lines.includes('Environment=NODE_OPTIONS=--max-semi-space-size=8'), unit);
    assert.ok(lines.indexOf('Environment=NODE_OPTIONS=--max-semi-space-size=8') < lines.indexOf('EnvironmentFile=-/etc/drover/drover-server.env'));
    // Likewise glibc's malloc told to give freed memory back (RSS at fleet scale).
    const tunables = 'Environment=GLIBC_TUNABLES=glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0';
    assert.ok(lines.includes(tunables), unit);
    assert.ok(lines.indexOf(tunables) < lines.indexOf('EnvironmentFile=-/etc/drover/drover-server.env'));
    assert.deepEqual(await fr.calls(), ['systemctl daemon-reload', 'systemctl enable drover-server.service']);
  } finally {
    await fr.cleanup();
  }
});

test('--install-runtime installs podman with the package manager when no runtime is present', async () => {
  const fr = await systemdRoot({});
  try {
    await fr.hide('podman');
    // apt-get stand-in: "installs" podman onto PATH.
    await fr.tool('apt-get', recorder('apt-get', `if [ "$1" = install ]; then printf '#!/bin/sh\\nexit 0\\n' > "${fr.bin}/podman"; chmod 755 "${fr.bin}/podman"; fi`));
    const r = await fr.run(['agent', '--server', t.apiUrl, '--install-runtime', '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Installing podman with apt-get/);
    const calls = await fr.calls();
    assert.deepEqual(calls.filter((c) => c.startsWith('apt-get')), ['apt-get update -q', 'apt-get install -y -q podman']);
  } finally {
    await fr.cleanup();
  }
});

/** A failed run: non-zero, exactly one [ERROR] line matching `why`, nothing written, no temp dir left. */
async function assertCleanFailure(fr: FakeRoot, args: string[], env: Record<string, string>, why: RegExp): Promise<void> {
  const before = await fr.tree();
  const r = await fr.run(args, env);
  assert.notEqual(r.code, 0, `exit code 0:\n${r.stdout}\n${r.stderr}`);
  const errors = errorLines(r);
  assert.equal(errors.length, 1, r.stderr);
  assert.match(errors[0]!, why);
  assert.deepEqual(await fr.tree(), before, 'the failed run changed files');
  assert.deepEqual(await fr.tmpLeft(), [], 'the failed run left its temp dir');
}

test('failures exit non-zero with one [ERROR] line and leave nothing behind', async (ctx) => {
  const fr = await systemdRoot();
  try {
    const base = ['agent', '--server', t.apiUrl, '--no-start'];
    await ctx.test('a token for another cluster (CA hash mismatch): nothing downloaded', async () => {
      const other = `K10${'ab'.repeat(32)}::${t.joinToken.split('::')[1]}`;
      await assertCleanFailure(fr, base, { DROVER_TOKEN: other }, /presents CA sha256 [0-9a-f]{64}, but the join token expects (ab){32}: wrong server or someone in between; nothing was downloaded/);
    });
    await ctx.test('a malformed token', async () => {
      await assertCleanFailure(fr, base, { DROVER_TOKEN: 'not-a-token' }, /the join token is not valid: expected K10/);
    });
    await ctx.test('no token at all on a node that never joined', async () => {
      await assertCleanFailure(fr, base, {}, /a join token is needed/);
    });
    await ctx.test('a binary that does not match the SHA256SUMS the server serves (changed in place behind its cache)', async () => {
      const p = join(downloads, 'drover-linux-amd64');
      const sums = await (await fetch(`${t.apiUrl}/download/SHA256SUMS`)).text();
      assert.match(sums, new RegExp(sha256(standInBinary('0.1.0-v1'))));
      // Same size, same inode, same mtime (to the nanosecond, by touch -r): the server's cached hash no longer describes the file.
      await run('cp', ['-p', p, `${p}.ref`]);
      await writeFile(p, standInBinary('0.1.0-v9'));
      await run('touch', ['-r', `${p}.ref`, p]);
      await rm(`${p}.ref`);
      try {
        await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken }, /drover-linux-amd64: sha256 [0-9a-f]{64} does not match [0-9a-f]{64} in https:\/\/.*\/download\/SHA256SUMS; nothing was installed/);
      } finally {
        await serve('amd64', standInBinary('0.1.0-v1'));
      }
    });
    await ctx.test('an offline binary that does not match the SHA256SUMS beside it', async () => {
      const dist = join(fr.tmp, '..', 'dist-bad');
      await mkdir(dist, { recursive: true });
      await writeFile(join(dist, 'drover-linux-amd64'), standInBinary('tampered'));
      await writeFile(join(dist, 'SHA256SUMS'), `${sha256('the real one')}  drover-linux-amd64\n`);
      await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_BINARY: join(dist, 'drover-linux-amd64') }, /sha256 [0-9a-f]{64} does not match/);
      await rm(dist, { recursive: true });
    });
    await ctx.test('a binary that cannot run here (its loader is missing, as a glibc build on a musl system)', async () => {
      const dist = join(fr.tmp, '..', 'dist-foreign');
      await mkdir(dist, { recursive: true });
      const foreign = '#!/lib/ld-nowhere-x86_64.so.1\n';
      await writeFile(join(dist, 'drover-linux-amd64'), foreign);
      await writeFile(join(dist, 'SHA256SUMS'), `${sha256(foreign)}  drover-linux-amd64\n`);
      await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_BINARY: join(dist, 'drover-linux-amd64') }, /the drover-linux-amd64 binary does not run on this machine: .*not found.*needs glibc/);
      await rm(dist, { recursive: true });
    });
    await ctx.test('no container runtime and no --install-runtime', async () => {
      await fr.hide('podman');
      try {
        await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken }, /no container runtime: neither podman nor nerdctl is on PATH; install podman .* or re-run with --install-runtime/);
      } finally {
        await fr.tool('podman', recorder('podman'));
      }
    });
    await ctx.test('--runtime nerdctl where there is none', async () => {
      await assertCleanFailure(fr, [...base, '--runtime', 'nerdctl'], { DROVER_TOKEN: t.joinToken }, /nerdctl is not on PATH/);
    });
    await ctx.test('an unsupported architecture', async () => {
      await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_ARCH: 'mips' }, /unsupported architecture mips: drover runs on amd64 \(x86_64\), arm64 \(aarch64\) and arm \(armv7l\)/);
    });
    await ctx.test('an architecture the server has no binary for', async () => {
      await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_ARCH: 'armv7l' }, /the server has no drover-linux-arm .*--downloads-dir/);
    });
    await ctx.test('a plain-http server URL for a download', async () => {
      await assertCleanFailure(fr, ['agent', '--server', t.apiUrl.replace('https:', 'http:'), '--no-start'], { DROVER_TOKEN: t.joinToken }, /is plain http: a download from it cannot be checked/);
    });
    await ctx.test('an address the server certificate does not name', async (sub) => {
      // A name /etc/hosts gives 127.0.0.1 that the server certificate does not carry (not localhost, not the hostname).
      const hosts = await readFile('/etc/hosts', 'utf8');
      const name = hosts.split('\n').map((l) => l.split('#')[0]!.trim().split(/\s+/)).filter((w) => w[0] === '127.0.0.1').flatMap((w) => w.slice(1)).find((n) => n !== 'localhost' && n !== hostname() && !n.startsWith('localhost.'));
      if (!name) return sub.skip('no other name for 127.0.0.1 in /etc/hosts');
      const url = t.apiUrl.replace('127.0.0.1', name);
      await assertCleanFailure(fr, ['agent', '--server', url, '--no-start'], { DROVER_TOKEN: t.joinToken }, /certificate does not match its address or its CA.*--tls-server-name NAME/);
      // With a name the certificate does hold, as the agent is told too, the same address works.
      const ok = await fr.run(['agent', '--server', url, '--tls-server-name', 'localhost', '--no-start'], { DROVER_TOKEN: t.joinToken });
      assert.equal(ok.code, 0, ok.stderr);
      const unit = await readFile(join(fr.root, 'etc/systemd/system/drover-agent.service'), 'utf8');
      assert.match(unit, /"--tls-server-name" \\\n\s+"localhost"/);
      const u = await fr.run([], {}, join(fr.root, 'usr/local/bin/drover-uninstall.sh'));
      assert.equal(u.code, 0, u.stderr);
    });
    await ctx.test('no init system', async () => {
      await fr.hide('systemctl');
      try {
        await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken }, /neither systemd \(systemctl\) nor OpenRC \(openrc-run\) found/);
      } finally {
        await fr.tool('systemctl', recorder('systemctl'));
      }
    });
    await ctx.test('a fresh install that fails half-way (systemctl enable refuses) takes back what it wrote', async () => {
      await fr.tool('systemctl', recorder('systemctl', '[ "$1" = enable ] && { echo "Failed to enable unit" >&2; exit 1; }\nexit 0'));
      try {
        await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken }, /systemctl enable drover-agent failed/);
      } finally {
        await fr.tool('systemctl', recorder('systemctl'));
      }
    });
    await ctx.test('a fresh install that cannot write its unit (its directory is a file) takes back what it wrote', async () => {
      // (Earlier subtests' uninstalls leave empty directories: start this one from none.)
      await rm(join(fr.root, 'etc'), { recursive: true, force: true });
      await rm(join(fr.root, 'usr'), { recursive: true, force: true });
      await mkdir(join(fr.root, 'etc/systemd'), { recursive: true });
      await writeFile(join(fr.root, 'etc/systemd/system'), 'not a directory');
      try {
        await assertCleanFailure(fr, base, { DROVER_TOKEN: t.joinToken }, /cannot create the directory \/etc\/systemd\/system/);
      } finally {
        await rm(join(fr.root, 'etc'), { recursive: true });
      }
    });
    assert.deepEqual(filesOf(await fr.tree()), []);
  } finally {
    await fr.cleanup();
  }
});

test('arm64: the arm64 binary is the one downloaded when the device says aarch64', async () => {
  const fr = await systemdRoot();
  try {
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_ARCH: 'aarch64' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /on arm64/);
    assert.equal((await fr.tree()).get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.1.0-arm64')));
  } finally {
    await fr.cleanup();
  }
});

/** The README's verified install: the CA checked against the token before the script is fetched (kept in step with README.md). */
const VERIFIED_ONE_LINER = `ca=$(mktemp) && curl -sfk "$SERVER/cacerts" -o "$ca" &&
  if [ "$(sed '/-----/d' "$ca" | tr -d '\\r' | base64 -d | sha256sum | cut -c1-64)" = "$(printf %s "$TOKEN" | cut -c4-67)" ]; then
    curl -sf --cacert "$ca" "$SERVER/install.sh" | DROVER_TOKEN="$TOKEN" sh -s - agent --server "$SERVER" --no-start
  else echo "[ERROR] $SERVER is not the server of this token (CA hash mismatch)" >&2; false; fi`;

for (const userland of ['coreutils', 'busybox'] as const) {
test(`the README's one-liners (${userland}): install.sh piped from the server into sh -s -, the verified one refusing another cluster's token`, async (ctx) => {
  if (userland === 'busybox' && !(await haveBusybox(ctx))) return;
  const fr = await systemdRoot(userland === 'busybox' ? { busybox: true, show: ['curl'] } : {});
  try {
    const script = join(fr.tmp, '..', 'one-liner.sh');
    const write = (server: string, token: string) => writeFile(script, `SERVER='${server}'\nTOKEN='${token}'\n${VERIFIED_ONE_LINER}\n`);
    await write(t.apiUrl, t.joinToken);
    const ok = await fr.run([], {}, script);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /drover agent installed \(not started\)/);
    const installed = filesOf(await fr.tree()).sort();
    assert.deepEqual(installed, ['/etc/drover/agent-token', '/etc/drover/drover-agent.env', '/etc/systemd/system/drover-agent.service', '/usr/local/bin/drover', '/usr/local/bin/drover-uninstall.sh']);
    assert.equal((await fr.run([], {}, join(fr.root, 'usr/local/bin/drover-uninstall.sh'))).code, 0);

    await write(t.apiUrl, `K10${'cd'.repeat(32)}::${t.joinToken.split('::')[1]}`);
    const refused = await fr.run([], {}, script);
    assert.notEqual(refused.code, 0);
    assert.deepEqual(errorLines(refused), [`[ERROR] ${t.apiUrl} is not the server of this token (CA hash mismatch)`]);
    assert.deepEqual(filesOf(await fr.tree()), []);

    // The short form, for a network one trusts: -k for the script only; install.sh still pins the binary's download.
    await writeFile(script, `curl -sfLk '${t.apiUrl}/install.sh' | DROVER_TOKEN='${t.joinToken}' sh -s - agent --server '${t.apiUrl}' --no-start\n`);
    const short = await fr.run([], {}, script);
    assert.equal(short.code, 0, short.stderr);
    assert.match(short.stdout, /The server's CA matches the join token/);
  } finally {
    await fr.cleanup();
  }
});
}

test('a busybox userland (ash, busybox awk/sed/grep/mktemp/sha256sum/base64, no openssl) with curl installs and uninstalls', async (ctx) => {
  if (!(await haveBusybox(ctx))) return;
  const fr = await systemdRoot({ busybox: true, show: ['curl'] });
  try {
    assert.equal(await exists(join(fr.bin, 'openssl')), false);
    const r = await fr.run(['agent', '--server', t.apiUrl, '--node-name', 'tiny', '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    // The CA hash came from base64 -d (no openssl here) and matched.
    assert.match(r.stdout, /The server's CA matches the join token/);
    const tree = await fr.tree();
    assert.equal(tree.get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.1.0-v1')));
    assert.equal(tree.get('/etc/drover/agent-token')!.mode, 0o600);
    await assertCleanFailure(fr, ['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: `K10${'ef'.repeat(32)}::${t.joinToken.split('::')[1]}` }, /presents CA sha256 [0-9a-f]{64}, but the join token expects/);
    const u = await fr.run([], {}, join(fr.root, 'usr/local/bin/drover-uninstall.sh'));
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(filesOf(await fr.tree()), []);
  } finally {
    await fr.cleanup();
  }
});

test('busybox wget alone cannot be told which CA to trust: refused, unless the binary is given (offline)', async (ctx) => {
  if (!(await haveBusybox(ctx))) return;
  const fr = await systemdRoot({ busybox: true });
  try {
    await assertCleanFailure(fr, ['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken }, /curl \(or GNU wget\) is needed to download drover; install curl, or install offline with INSTALL_DROVER_BINARY/);
    const dist = join(fr.tmp, '..', 'dist');
    await mkdir(dist);
    await writeFile(join(dist, 'drover-linux-arm64'), standInBinary('0.4.0-offline'));
    await writeFile(join(dist, 'SHA256SUMS'), `${sha256(standInBinary('0.4.0-offline'))}  drover-linux-arm64\n`);
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_ARCH: 'aarch64', INSTALL_DROVER_BINARY: join(dist, 'drover-linux-arm64') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Verified sha256/);
    assert.equal((await fr.tree()).get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.4.0-offline')));
  } finally {
    await fr.cleanup();
  }
});

test('GNU wget instead of curl: the same CA-pinned download', async () => {
  const fr = await systemdRoot({ hide: ['curl'] });
  try {
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /The server's CA matches the join token/);
    assert.equal((await fr.tree()).get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.1.0-v1')));
    assert.equal((await fr.run([], {}, join(fr.root, 'usr/local/bin/drover-uninstall.sh'))).code, 0);
    await assertCleanFailure(fr, ['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: `K10${'01'.repeat(32)}::${t.joinToken.split('::')[1]}` }, /but the join token expects (01){32}/);
    await assertCleanFailure(fr, ['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_ARCH: 'armv7l' }, /the server has no drover-linux-arm/);
  } finally {
    await fr.cleanup();
  }
});

test('server install downloading from another drover server (DROVER_URL + a join token to pin it); none given is refused', async () => {
  const fr = await systemdRoot();
  try {
    await assertCleanFailure(fr, ['server', '--no-start'], {}, /server: give the binary \(INSTALL_DROVER_BINARY=\.\/drover-linux-amd64\) or a drover server to download it from \(DROVER_URL and DROVER_TOKEN\)/);
    await assertCleanFailure(fr, ['server', '--no-start'], { DROVER_URL: t.apiUrl }, /a join token is needed to check the server the binary comes from/);
    const r = await fr.run(['server', '--disable-agent', '--no-start'], { DROVER_URL: t.apiUrl, DROVER_TOKEN: t.joinToken });
    assert.equal(r.code, 0, r.stderr);
    const tree = await fr.tree();
    assert.deepEqual(filesOf(tree).sort(), ['/etc/drover/drover-server.env', '/etc/systemd/system/drover-server.service', '/usr/local/bin/drover', '/usr/local/bin/drover-uninstall.sh']);
    // A server's unit carries no join token: the token only pinned the download.
    assert.deepEqual(await filesHolding(fr, tree, secretOf(t.joinToken)), []);
    assert.match(await readFile(join(fr.root, 'etc/systemd/system/drover-server.service'), 'utf8'), /ExecStart=\/usr\/local\/bin\/drover server \\\n\s+"--disable-agent"\n/);
  } finally {
    await fr.cleanup();
  }
});

test('a 64-bit kernel under a 32-bit (armhf) userland, as 32-bit Raspberry Pi OS on a Pi 4 boots: the arm build', async () => {
  const fr = await systemdRoot();
  try {
    await fr.tool('uname', '#!/bin/sh\nif [ "$1" = -m ]; then echo aarch64; else echo Linux; fi\n');
    await fr.tool('dpkg', '#!/bin/sh\n[ "$1" = --print-architecture ] && echo armhf\n');
    const dist = join(fr.tmp, '..', 'dist');
    await mkdir(dist);
    await writeFile(join(dist, 'drover-linux-arm'), standInBinary('0.5.0-armhf'));
    await writeFile(join(dist, 'drover-linux-arm64'), standInBinary('0.5.0-arm64'));
    await writeFile(join(dist, 'SHA256SUMS'), `${sha256(standInBinary('0.5.0-armhf'))}  drover-linux-arm\n${sha256(standInBinary('0.5.0-arm64'))}  drover-linux-arm64\n`);
    // The server has the arm64 build only: it must not land on an armhf userland, where it cannot run.
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken });
    assert.notEqual(r.code, 0, 'the server has no arm build: the arm64 one must not be installed instead');
    assert.deepEqual(errorLines(r).length, 1);
    assert.match(errorLines(r)[0]!, /the server has no drover-linux-arm /);
    assert.match(r.stdout, /32-bit \(armhf\) userland: installing the arm build/);
    const ok = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_BINARY: join(dist, 'drover-linux-arm') });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await fr.tree()).get('/usr/local/bin/drover')!.sha256, sha256(standInBinary('0.5.0-armhf')));
  } finally {
    await fr.cleanup();
  }
});

test('INSTALL_DROVER_BIN_DIR / INSTALL_DROVER_SYSTEMD_DIR move the files (and the unit and uninstall script follow); INSTALL_DROVER_SKIP_DOWNLOAD keeps the binary', async () => {
  const fr = await systemdRoot();
  try {
    const env = { DROVER_TOKEN: t.joinToken, INSTALL_DROVER_BIN_DIR: '/opt/bin', INSTALL_DROVER_SYSTEMD_DIR: '/usr/lib/systemd/system' };
    const r = await fr.run(['agent', '--server', t.apiUrl, '--no-start'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(filesOf(await fr.tree()).sort(), ['/etc/drover/agent-token', '/etc/drover/drover-agent.env', '/opt/bin/drover', '/opt/bin/drover-uninstall.sh', '/usr/lib/systemd/system/drover-agent.service']);
    assert.match(await readFile(join(fr.root, 'usr/lib/systemd/system/drover-agent.service'), 'utf8'), /^ExecStart=\/opt\/bin\/drover agent /m);

    // The server's binary changes, but SKIP_DOWNLOAD keeps the installed one (the unit is still rewritten).
    await serve('amd64', standInBinary('0.9.9-not-wanted'));
    try {
      const keep = await fr.run(['agent', '--server', t.apiUrl, '--node-name', 'kept', '--no-start'], { ...env, INSTALL_DROVER_SKIP_DOWNLOAD: 'true' });
      assert.equal(keep.code, 0, keep.stderr);
      assert.match(keep.stdout, /Keeping the installed \/opt\/bin\/drover/);
    } finally {
      await serve('amd64', standInBinary('0.1.0-v1'));
    }
    assert.equal((await fr.tree()).get('/opt/bin/drover')!.sha256, sha256(standInBinary('0.1.0-v1')));
    assert.match(await readFile(join(fr.root, 'usr/lib/systemd/system/drover-agent.service'), 'utf8'), /"--node-name" \\\n\s+"kept"/);

    const u = await fr.run([], {}, join(fr.root, 'opt/bin/drover-uninstall.sh'));
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(filesOf(await fr.tree()), []);
  } finally {
    await fr.cleanup();
  }
});

test('the token from --token (with a warning: visible in ps meanwhile) or from --token-file: the same 0600 file, the source file not referenced', async () => {
  const fr = await systemdRoot();
  try {
    const viaArgv = await fr.run(['agent', '--server', t.apiUrl, '--token', t.joinToken, '--no-start']);
    assert.equal(viaArgv.code, 0, viaArgv.stderr);
    assert.match(viaArgv.stderr, /\[WARN\] +--token: while this installer runs, its command line \(with the token\) is visible in ps/);
    const first = await fr.tree();
    assert.equal((await readFile(join(fr.root, 'etc/drover/agent-token'), 'utf8')).trim(), t.joinToken);

    const source = join(fr.tmp, '..', 'my-token');
    await writeFile(source, `  ${t.joinToken}\r\n`, { mode: 0o600 });
    const viaFile = await fr.run(['agent', '--server', t.apiUrl, '--token-file', source, '--no-start']);
    assert.equal(viaFile.code, 0, viaFile.stderr);
    assert.doesNotMatch(viaFile.stderr, /WARN.*--token/);
    // Blanks and CRLF of a pasted file are dropped: byte for byte the same install.
    assert.deepEqual(await fr.tree(), first);
    const unit = await readFile(join(fr.root, 'etc/systemd/system/drover-agent.service'), 'utf8');
    assert.ok(!unit.includes(source) && unit.includes('"/etc/drover/agent-token"'), unit);
  } finally {
    await fr.cleanup();
  }
});
