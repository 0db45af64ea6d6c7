import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadOrCreatePki, serverSans } from '../../server/pki/pki.js';
import { SERVER_CLIENT_ID, mosquittoAcl, mosquittoOperatorAcl } from '../../src/contract/topics.js';
import { silentLogger } from '../../src/util/logger.js';
import { freePort, waitFor } from './cluster.js';

export interface Mosquitto {
  url: string;
  port: number;
  /** The operators' listener (TLS, password file), when asked for. */
  operatorPort?: number;
  stop(): Promise<void>;
}

/** The README's operators' listener: TLS without client certificates, a password file, `drover broker acl --operators`. */
export interface MosquittoOperators {
  passwordFile: string;
  aclFile: string;
}

export interface MosquittoTls {
  cafile: string;
  certfile: string;
  keyfile: string;
  /** ACL file (`drover broker acl`); the client certificate's CN is the username. */
  aclFile: string;
}

/**
 * A real Mosquitto on a free loopback port with its own config (the system one is not relied on).
 * With `tls`: the README's set-up, client certificates required, CN as username, the given ACL.
 */
export async function startMosquitto(opts: { tls?: MosquittoTls; operators?: MosquittoOperators } = {}): Promise<Mosquitto> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const t = opts.tls;
  const ops = t && opts.operators;
  const operatorPort = ops ? await freePort() : undefined;
  await writeFile(
    conf,
    [
      // Each listener its own password file and ACL: an operator's name never meets a node's %u patterns.
      ...(ops ? ['per_listener_settings true'] : []),
      `listener ${port} 127.0.0.1`,
      ...(t
        ? [
            // Started as root, mosquitto would switch to its own user and lose the 0600 key in the 0700 data dir.
            'user root',
            `cafile ${t.cafile}`,
            `certfile ${t.certfile}`,
            `keyfile ${t.keyfile}`,
            'require_certificate true',
            'use_identity_as_username true',
            `acl_file ${t.aclFile}`,
            'allow_anonymous false',
          ]
        : ['allow_anonymous true']),
      ...(ops && t
        ? [`listener ${operatorPort} 127.0.0.1`, `cafile ${t.cafile}`, `certfile ${t.certfile}`, `keyfile ${t.keyfile}`, `password_file ${ops.passwordFile}`, `acl_file ${ops.aclFile}`, 'allow_anonymous false']
        : []),
      // Small messages (command replies) go out at once, not after the peer's delayed ACK.
      'set_tcp_nodelay true',
      // As the README: drover's largest message is 4 MiB (a global option: every listener).
      'max_packet_size 4259840',
      'persistence false',
      // The default of 1000 drops QoS 1 messages to a slow subscriber.
      'max_queued_messages 100000',
      'log_dest stderr',
      'log_type error',
    ].join('\n') + '\n',
  );
  const proc: ChildProcess = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  await waitFor(`mosquitto on port ${port} (${stderr})`, () =>
    new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    }),
  5000);
  return {
    url: `${t ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    port,
    ...(operatorPort ? { operatorPort } : {}),
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * External broker mode as the README sets it up for operators too: drover's CA and server certificate
 * made in `dataDir/tls` (as `drover server` would at first start), the node listener with
 * `drover broker acl`, and the operators' listener with a password file of `operators` (user → password)
 * and `drover broker acl --operators`. Start the server with `dataDir` and the returned url.
 */
export async function startOperatorMosquitto(dataDir: string, operators: Record<string, string>): Promise<Mosquitto & { operatorPort: number }> {
  const tls = join(dataDir, 'tls');
  await loadOrCreatePki({ dir: tls, sans: serverSans(['127.0.0.1']), logger: silentLogger });
  const aclFile = join(dataDir, 'mosquitto-nodes.acl');
  const opsAcl = join(dataDir, 'mosquitto-operators.acl');
  const passwordFile = join(dataDir, 'mosquitto-operators.passwd');
  await writeFile(aclFile, mosquittoAcl(SERVER_CLIENT_ID));
  await writeFile(opsAcl, mosquittoOperatorAcl());
  await writeFile(passwordFile, '', { mode: 0o600 });
  // -b: the password on mosquitto_passwd's command line, acceptable for a test's throwaway users only.
  for (const [user, password] of Object.entries(operators)) await promisify(execFile)('mosquitto_passwd', ['-b', passwordFile, user, password]);
  const m = await startMosquitto({ tls: { cafile: join(tls, 'ca.crt'), certfile: join(tls, 'server.crt'), keyfile: join(tls, 'server.key'), aclFile }, operators: { passwordFile, aclFile: opsAcl } });
  return { ...m, operatorPort: m.operatorPort! };
}

/*
 * The README's MQTT command examples, run as a user runs them: the fenced ```bash blocks between the
 * mqtt-commands markers, by bash, with real mosquitto_pub/mosquitto_sub/mosquitto_rr processes. Only the
 * `export DROVER_...` lines are left out: the test gives those variables (its own ports, CA, tokens).
 */
const README = join(import.meta.dirname, '..', '..', 'README.md');

/** The ```bash block between the markers whose first line is `# <title>`, without its `export DROVER_...` lines. */
export async function readmeCommandBlock(title: string): Promise<{ script: string; exported: string[] }> {
  const text = await readFile(README, 'utf8');
  const section = text.slice(text.indexOf('<!-- mqtt-commands:begin -->'), text.indexOf('<!-- mqtt-commands:end -->'));
  const blocks = [...section.matchAll(/```bash\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const block = blocks.find((b) => b.split('\n')[0] === `# ${title}`);
  if (!block) throw new Error(`README: no \`\`\`bash block "# ${title}" between the mqtt-commands markers`);
  const exported: string[] = [];
  const lines = block.split('\n').filter((l) => {
    if (!l.startsWith('export DROVER_')) return true;
    for (const m of l.matchAll(/(DROVER_[A-Z_]+)=/g)) exported.push(m[1]!);
    return false;
  });
  return { script: lines.join('\n'), exported };
}

export interface ShellResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a script with bash -e in `cwd` with exactly `env` (plus PATH): HOME is the test's, so ~/.config is too. */
export function runBash(script: string, opts: { cwd: string; env: Record<string, string>; timeoutMs?: number }): Promise<ShellResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: opts.cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON replies among a script's output lines. */
export function replies(stdout: string): Array<{ transaction: string | null; ok: boolean; data?: any; error?: { code: number; reason: string; message: string; field?: string } }> {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}
