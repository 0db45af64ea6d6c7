/**
 * A real drover on one machine for the podman benchmarks: a server (embedded broker, LevelDB in a
 * temp dir) and a local agent joined with the product defaults (HTTPS join with the K10 token, MQTT
 * over TLS with the node's client certificate; `insecure` for plain HTTP/MQTT), running pods in a
 * private podman store with the small busybox test image built in it. Also the API calls the
 * benchmarks make, and API watches that say when pods reach a state (a watch, not polling: polling
 * every few ms would load the machine the runs share).
 */
import { execa } from 'execa';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '../../agent/config.js';
import { startAgent } from '../../agent/run.js';
import { startServer } from '../../server/run.js';
import type { Logger } from '../../src/util/logger.js';
import { trustCa } from '../../test/helpers/cluster.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../../test/helpers/podman.js';
import { freePort, sleep } from './common.js';

export interface LocalClusterOptions {
  node: string;
  insecure?: boolean;
  /** Gets the server's and the agent's log lines (the deploy bench reads hop marks from them). */
  logger: Logger;
  resyncSeconds?: number;
  /**
   * Run the agent as its own process (`drover agent`, as on a device) instead of inside this one: a
   * process holding the server and the bench forks slowly (every podman call is a fork of it), which
   * would be charged to the agent. Its log lines then do not reach `logger`.
   */
  agentProcess?: boolean;
}

export type ApiAnswer = { status: number; body: any };

export interface LocalCluster {
  sb: PodmanSandbox;
  /** The test image's reference in the sandbox store. */
  image: string;
  apiUrl: string;
  mqttUrl: string;
  /** From starting the agent (join included) to its Node Ready in the API. */
  joinToReadyMs: number;
  /** A podman call on the sandbox store (the raw side of the comparisons). */
  podman(args: string[]): Promise<{ stdout: string }>;
  api(method: string, path: string, body?: unknown, contentType?: string): Promise<ApiAnswer>;
  /** Polls `fn` every 10 ms until true (for set-up steps, not for what is timed). */
  until(what: string, fn: () => Promise<boolean>, ms?: number): Promise<void>;
  /** Resolves (performance.now()) when the pod `name` first satisfies `pred`; the watch is open when this returns. */
  watchPod(name: string, pred: (pod: any) => boolean, ms?: number): Promise<{ seen: Promise<number> }>;
  /**
   * Watches the pods matching `labelSelector` in default; `when(pred)` resolves (performance.now())
   * the first time the set of pods it knows satisfies `pred` (checked at every event).
   */
  watchPods(labelSelector: string, onEvent?: (type: string, pod: any, at: number) => void): Promise<PodSetWatch>;
  close(): Promise<void>;
}

export interface PodSetWatch {
  /** The pods seen, by name (deleted ones dropped). */
  pods: Map<string, any>;
  when(pred: (pods: any[]) => boolean, ms?: number): Promise<number>;
  close(): void;
}

/** Reads a watch response's newline-delimited events, calling `onEvent` for each until it ends or is aborted. */
async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (ev: { type: string; object: any }) => boolean | void): Promise<void> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      if (onEvent(JSON.parse(line) as { type: string; object: any }) === true) return;
    }
  }
}

/** `drover agent` in a process of its own, joined with the token (given in its environment, never argv). */
function agentProcess(apiUrl: string, token: string, node: string, stateDir: string, sb: PodmanSandbox, resyncSeconds: number): { close(): Promise<void> } {
  const main = new URL('../../src/main.ts', import.meta.url).pathname;
  const child = execa(
    process.execPath,
    ['--import', 'tsx', main, 'agent', '--server', apiUrl, '--node-name', node, '--state-dir', stateDir, '--runtime', 'podman', '--podman-root', sb.root, '--podman-runroot', sb.runroot, '--heartbeat', '30', '--resync', String(resyncSeconds), '--keepalive', '15', '--log-level', process.env.BENCH_AGENT_LOG ?? 'warn'],
    // V8's default flags: the agent's lite mode (agent/v8-flags.ts), set from inside after tsx has
    // compiled code, crashes node (SIGSEGV); the compiled binary applies it before any code runs.
    { env: { ...sb.env, DROVER_TOKEN: token, DROVER_AGENT_V8_FLAGS: '' }, stdin: 'ignore', stdout: process.env.BENCH_AGENT_LOG ? 'inherit' : 'ignore', stderr: 'inherit', reject: false },
  );
  return {
    close: async () => {
      child.kill('SIGTERM');
      await child;
    },
  };
}

export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const sb = await podmanSandbox();
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-bench-'));
  const stateDir = await mkdtemp(join(tmpdir(), 'drover-bench-agent-'));
  const cleanup = async () => {
    await sb.cleanup();
    await rm(dataDir, { recursive: true, force: true });
    await rm(stateDir, { recursive: true, force: true });
  };
  try {
    const image = await buildTestImage(sb);
    const podman = (a: string[]) => execa('podman', ['--root', sb.root, '--runroot', sb.runroot, ...a], { env: sb.env, stdin: 'ignore' });
    const server = await startServer(
      { dataDir, apiHost: '127.0.0.1', apiPort: 0, mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() }, insecure: opts.insecure ?? false },
      opts.logger,
    );
    // The API is HTTPS with the cluster's own CA: this process's fetch must trust it (the agent checks it against the token).
    if (!opts.insecure) await trustCa(server.caCert);
    const tJoin = performance.now();
    const agent = opts.agentProcess
      ? agentProcess(server.apiUrl, server.joinToken, opts.node, stateDir, sb, opts.resyncSeconds ?? 10)
      : await startAgent(
      {
        node: opts.node,
        serverUrl: server.apiUrl,
        token: server.joinToken,
        stateDir,
        labels: {},
        heartbeatSeconds: 30,
        resyncSeconds: opts.resyncSeconds ?? 10,
        keepaliveSeconds: 15,
        logLevel: 'silent',
        runtime: { podmanRoot: sb.root, podmanRunroot: sb.runroot, env: sb.env },
      } satisfies AgentConfig,
      { logger: opts.logger, runtime: sb.runtime },
    );
    const auth = { authorization: `Bearer ${server.adminToken}` };
    const api = async (method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiAnswer> => {
      const r = await fetch(server.apiUrl + path, { method, headers: { ...auth, 'content-type': contentType }, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, body: (await r.json().catch(() => undefined)) as any };
    };
    const until = async (what: string, fn: () => Promise<boolean>, ms = 60_000) => {
      const deadline = Date.now() + ms;
      while (!(await fn())) {
        if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
        await sleep(10);
      }
    };
    const openWatch = async (query: string, ac: AbortController) => {
      const r = await fetch(`${server.apiUrl}/api/v1/namespaces/default/pods?watch=true&${query}`, { headers: auth, signal: ac.signal });
      if (r.status !== 200 || !r.body) throw new Error(`watch pods ${query}: ${r.status}`);
      return r.body;
    };
    const watchPod = async (name: string, pred: (pod: any) => boolean, ms = 60_000) => {
      const ac = new AbortController();
      const body = await openWatch(`fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`, ac);
      const timer = setTimeout(() => ac.abort(), ms);
      const seen = (async () => {
        let at: number | undefined;
        try {
          await readEvents(body, (ev) => {
            if (ev.type !== 'BOOKMARK' && ev.type !== 'ERROR' && pred(ev.object)) {
              at = performance.now();
              return true;
            }
          });
        } finally {
          clearTimeout(timer);
          ac.abort();
        }
        if (at === undefined) throw new Error(`watch of ${name} ended before the pod got there`);
        return at;
      })();
      return { seen };
    };
    const watchPods = async (labelSelector: string, onEvent?: (type: string, pod: any, at: number) => void): Promise<PodSetWatch> => {
      const ac = new AbortController();
      const body = await openWatch(`labelSelector=${encodeURIComponent(labelSelector)}`, ac);
      const pods = new Map<string, any>();
      const waiters: Array<{ pred: (pods: any[]) => boolean; resolve: (t: number) => void }> = [];
      const check = () => {
        const list = [...pods.values()];
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.pred(list)) {
            waiters[i]!.resolve(performance.now());
            waiters.splice(i, 1);
          }
        }
      };
      let ended: Error | undefined;
      void readEvents(body, (ev) => {
        if (ev.type === 'BOOKMARK' || ev.type === 'ERROR') return;
        onEvent?.(ev.type, ev.object, performance.now());
        if (ev.type === 'DELETED') pods.delete(ev.object.metadata.name);
        else pods.set(ev.object.metadata.name, ev.object);
        check();
      }).catch((err: unknown) => {
        ended = err instanceof Error ? err : new Error(String(err));
      });
      return {
        pods,
        when: (pred, ms = 900_000) =>
          new Promise<number>((resolve, reject) => {
            if (ended && !ac.signal.aborted) return reject(ended);
            if (pred([...pods.values()])) return resolve(performance.now());
            const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting on pods ${labelSelector} (${pods.size} seen)`)), ms);
            waiters.push({ pred, resolve: (t) => (clearTimeout(timer), resolve(t)) });
          }),
        close: () => ac.abort(),
      };
    };
    // Generous: an agent process compiles its sources (tsx) and joins first, slow on a loaded machine.
    await until('node Ready', async () => (await api('GET', `/api/v1/nodes/${opts.node}`)).body?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'), 300_000);
    const joinToReadyMs = performance.now() - tJoin;
    return {
      sb,
      image,
      apiUrl: server.apiUrl,
      mqttUrl: server.mqttUrl,
      joinToReadyMs,
      podman,
      api,
      until,
      watchPod,
      watchPods,
      close: async () => {
        await agent.close();
        await server.close();
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Runs `jobs` with at most `parallel` at once, in order of start. */
export async function inParallel<T>(jobs: Array<() => Promise<T>>, parallel: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, worker));
  return out;
}
