/**
 * The real kubectl (/usr/bin/kubectl) against a drover test server over TLS, with the kubeconfig
 * `drover kubeconfig --out` writes (server, CA as certificate-authority-data, admin token). kubectl
 * sends a bearer token only over https and keeps a discovery cache in $HOME/.kube: each cluster gets
 * its own HOME.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { execa } from 'execa';
import { makeContext } from '../../src/cli/context.js';
import { registerKubeconfig } from '../../src/cli/kubeconfig.js';
import { startTestServer, waitFor, type TestServer } from './cluster.js';
import { FakeRuntime } from './fake-runtime.js';

export const KUBECTL = '/usr/bin/kubectl';

export interface KubectlRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  input?: string;
  env?: Record<string, string>;
}

export interface KubectlCluster {
  t: TestServer;
  /** Private temp dir (kubeconfig, HOME of kubectl); removed by stop(). */
  dir: string;
  /** The environment kubectl runs with (KUBECONFIG, HOME, PATH only). */
  env: Record<string, string>;
  /** The environment drover's CLI runs with against the same server (DROVER_SERVER/TOKEN/CA_FILE). */
  droverEnv: Record<string, string>;
  /** kubectl ARGS to the end, whatever its exit code (stdout and stderr as printed, final newline kept). */
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlRun>;
  /** kubectl ARGS that must exit 0; its stdout. */
  good(args: string[], opts?: KubectlOptions): Promise<string>;
  /** kubectl ARGS -o json, parsed. */
  json(args: string[], opts?: KubectlOptions): Promise<Record<string, any>>;
  /** Writes a kubeconfig for another token (a view token, say) to FILE in dir; returns its path. */
  kubeconfigFor(token: string, file: string): Promise<string>;
  stop(): Promise<void>;
}

/** `drover kubeconfig --out FILE` in this process, as src/cli/program.ts registers the verb. */
export async function droverKubeconfig(env: Record<string, string>, out: string): Promise<string> {
  let stdout = '';
  let stderr = '';
  const program = new Command().exitOverride();
  program.option('--config <file>');
  registerKubeconfig(program, makeContext({ stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s), env: { ...process.env, ...env } }));
  await program.parseAsync(['kubeconfig', '--out', out], { from: 'user' });
  assert.equal(stderr, '', 'drover kubeconfig warned');
  return stdout;
}

/** A test server with `nodes` agents on a fake runtime (Ready before this resolves), and kubectl set up for it. */
export async function startKubectlCluster(opts: { nodes?: string[] } = {}): Promise<KubectlCluster> {
  const t = await startTestServer();
  const nodes = opts.nodes ?? ['edge-a'];
  for (const node of nodes) await t.addAgent({ node, runtime: new FakeRuntime(), heartbeatSeconds: 1, resyncSeconds: 1 });
  const dir = await mkdtemp(join(tmpdir(), 'drover-kubectl-'));
  const droverEnv = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token, DROVER_CA_FILE: t.caFile };
  const kubeconfig = join(dir, 'kubeconfig');
  await droverKubeconfig(droverEnv, kubeconfig);
  const env = { KUBECONFIG: kubeconfig, HOME: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const node of nodes) {
    await waitFor(`node ${node} Ready`, async () => {
      const r = await t.api('GET', `/api/v1/nodes/${node}`);
      return r.body?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
    });
  }
  const kubectl = async (args: string[], o: KubectlOptions = {}): Promise<KubectlRun> => {
    const r = await execa(KUBECTL, args, { env: { ...env, ...o.env }, extendEnv: false, input: o.input ?? '', reject: false, stripFinalNewline: false, timeout: 60_000 });
    return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const good = async (args: string[], o: KubectlOptions = {}): Promise<string> => {
    const r = await kubectl(args, o);
    assert.equal(r.code, 0, `kubectl ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  };
  return {
    t,
    dir,
    env,
    droverEnv,
    kubectl,
    good,
    json: async (args, o) => JSON.parse(await good([...args, '-o', 'json'], o)) as Record<string, any>,
    kubeconfigFor: async (token, file) => {
      const path = join(dir, file);
      await droverKubeconfig({ ...droverEnv, DROVER_TOKEN: token }, path);
      return path;
    },
    stop: async () => {
      await t.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
