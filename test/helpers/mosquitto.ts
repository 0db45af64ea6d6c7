import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './cluster.js';

export interface Mosquitto {
  url: string;
  port: number;
  stop(): Promise<void>;
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
export async function startMosquitto(opts: { tls?: MosquittoTls } = {}): Promise<Mosquitto> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  const t = opts.tls;
  await writeFile(
    conf,
    [
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
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
