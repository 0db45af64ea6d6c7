/**
 * The real `drover server` and `drover agent` processes, as a user and an attacker meet them: the
 * server prints the join command without the secret and writes a 0600 CLI config (HTTPS URL, token,
 * CA) that `drover get nodes` works with, and a 0600 DATA_DIR/kubeconfig.yaml the real kubectl works with; the agent refuses a token on argv and one naming another
 * CA; `--insecure` binds its plain listeners to 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { parseJoinToken, formatJoinToken } from '../../server/identity/join-token.js';
import { droverProcess, fails, ok, spawnDrover } from '../helpers/cli.js';
import { freePort, waitFor } from '../helpers/cluster.js';

interface Started {
  output(): string;
  stop(): Promise<void>;
}

async function startServerProcess(args: string[], env: Record<string, string>): Promise<Started> {
  const child = spawnDrover(env, ['server', '--disable-agent', '--log-level', 'warn', ...args]);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitFor('drover server is running', async () => {
    if (child.exitCode !== null) throw new Error(`server exited: ${out}`);
    return out.includes('drover server is running');
  }, 60_000, 100);
  return {
    output: () => out,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const primaryAddress = () => Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

describe('TLS and tokens through the real binary', () => {
  const dirs: string[] = [];
  const servers: Started[] = [];
  after(async () => {
    for (const s of servers) await s.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('the server prints no join secret, writes a private HTTPS config with the CA, and `drover get nodes` works with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-tls-cli-'));
    dirs.push(dir);
    const config = join(dir, 'client-config');
    const apiPort = await freePort();
    const s = await startServerProcess(['--data-dir', join(dir, 'data'), '--api-host', '127.0.0.1', '--api-port', String(apiPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(await freePort())], { DROVER_CONFIG: config });
    servers.push(s);
    const joinToken = (await readFile(join(dir, 'data', 'join-token'), 'utf8')).trim();
    const { credential } = parseJoinToken(joinToken);
    const secret = credential.split('.')[1]!;
    assert.ok(!s.output().includes(secret), 'the join secret is not in the output');
    assert.match(s.output(), /drover agent --server https:\/\/\S+ --token-file TOKEN_FILE --node-name <name>/);
    assert.equal((await stat(join(dir, 'data', 'join-token'))).mode & 0o777, 0o600);
    assert.equal((await stat(config)).mode & 0o777, 0o600);
    const cfg = JSON.parse(await readFile(config, 'utf8'));
    assert.equal(cfg.server, `https://127.0.0.1:${apiPort}`);
    assert.match(cfg.certificateAuthority, /BEGIN CERTIFICATE/);
    // The user's own environment (DROVER_CA_FILE of the test process) must not be what makes it work.
    const r = ok(await droverProcess({ DROVER_CONFIG: config, DROVER_CA_FILE: '', DROVER_SERVER: '', DROVER_TOKEN: '' }, ['get', 'nodes']), 'get nodes');
    assert.match(r.stderr + r.stdout, /No resources found|NAME/);
    // kubectl in one step, as k3s's k3s.yaml: the path is printed, the file is private, kubectl trusts the server.
    const kubeconfigPath = join(dir, 'data', 'kubeconfig.yaml');
    assert.ok(s.output().includes(`KUBECONFIG=${kubeconfigPath} kubectl get nodes`), s.output());
    assert.equal((await stat(kubeconfigPath)).mode & 0o777, 0o600);
    const kubectl = execFileSync('kubectl', ['get', 'namespaces', '-o', 'name'], { env: { PATH: process.env.PATH ?? '', HOME: dir, KUBECONFIG: kubeconfigPath }, encoding: 'utf8' });
    assert.match(kubectl, /^namespace\/default$/m);
    // Without the CA the same call is refused by TLS verification, not silently accepted.
    const noCa = JSON.stringify({ server: cfg.server, token: cfg.token });
    const bare = join(dir, 'config-no-ca');
    await writeFile(bare, noCa, { mode: 0o600 });
    fails(
      await droverProcess({ DROVER_CONFIG: bare, DROVER_CA_FILE: '', DROVER_SERVER: '', DROVER_TOKEN: '' }, ['get', 'nodes']),
      /^error: TLS verification of the drover server at https:\/\/127\.0\.0\.1:\d+ failed: .*wrong CA: set DROVER_CA_FILE/,
    );

    // An agent given the token on argv is refused before anything happens, saying why.
    fails(await droverProcess({}, ['agent', '--server', cfg.server, '--token', joinToken, '--state-dir', join(dir, 'agent')]), /--token is not accepted: a token on the command line is visible to every user in `ps`/);
    // A token that names another CA: the agent stops at the CA check and exits non-zero.
    const otherCa = formatJoinToken('0'.repeat(64), credential);
    fails(await droverProcess({ DROVER_TOKEN: otherCa }, ['agent', '--server', cfg.server, '--state-dir', join(dir, 'agent'), '--node-name', 'edge-x']), /but the join token expects 0{64}: wrong server or someone in between; nothing was sent/);
  });

  test('--insecure binds its plain listeners to 127.0.0.1 only', async (tc) => {
    const external = primaryAddress();
    if (!external) {
      tc.skip('no non-loopback IPv4 address to probe from');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'drover-insecure-'));
    dirs.push(dir);
    const apiPort = await freePort();
    const mqttPort = await freePort();
    const s = await startServerProcess(['--insecure', '--data-dir', join(dir, 'data'), '--api-port', String(apiPort), '--mqtt-port', String(mqttPort)], { DROVER_CONFIG: join(dir, 'cfg') });
    servers.push(s);
    assert.match(s.output(), /INSECURE: plain HTTP and MQTT/);
    assert.equal((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status, 200);
    assert.equal(await reachable('127.0.0.1', mqttPort), true);
    assert.equal(await reachable(external, apiPort), false, `API not reachable at ${external}`);
    assert.equal(await reachable(external, mqttPort), false, `MQTT not reachable at ${external}`);
  });
});
