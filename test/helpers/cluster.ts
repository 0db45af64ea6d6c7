import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { rootCertificates } from 'node:tls';
import mqtt from 'mqtt';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../server/run.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import type { ContainerRuntime } from '../../agent/runtime/types.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { joinCluster } from '../../agent/join.js';
import { agentClientId } from '../../src/contract/topics.js';
import { createLogger } from '../../src/util/logger.js';

import { apiClient, freePort, type ApiCall } from './http.js';

export { apiClient, freePort, type ApiCall };

const logger = () => (process.env.DROVER_TEST_LOG ? createLogger({ name: 'test', level: process.env.DROVER_TEST_LOG }) : silentLogger);

const trustedCas: string[] = [];
let caBundle: string | undefined;

/**
 * Makes this test process (its fetch) and the `drover` CLI processes it spawns (DROVER_CA_FILE)
 * trust a test server's CA, as a user does by pointing DROVER_CA_FILE at DATA/tls/ca.crt. fetch has
 * no per-call CA option: its global dispatcher is replaced by one that trusts the system roots and
 * every CA of the servers this process started.
 */
export async function trustCa(ca: string): Promise<void> {
  if (trustedCas.includes(ca)) return;
  trustedCas.push(ca);
  const sym = Symbol.for('undici.globalDispatcher.1');
  const g = globalThis as unknown as Record<symbol, { constructor: new (o: unknown) => unknown } | undefined>;
  // node creates its fetch dispatcher on first use; a refused connection to port 1 makes it exist.
  if (!g[sym]) await fetch('http://127.0.0.1:1/').catch(() => undefined);
  const Agent = g[sym]!.constructor;
  g[sym] = new Agent({ connect: { ca: [...rootCertificates, ...trustedCas] } }) as never;
  if (!caBundle) {
    const dir = await mkdtemp(join(tmpdir(), 'drover-test-ca-'));
    caBundle = join(dir, 'ca-bundle.crt');
    // One per test process: gone with it (190 were left in /tmp after a day of runs).
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  await writeFile(caBundle, trustedCas.join('\n'));
  process.env.DROVER_CA_FILE = caBundle;
}

export interface TestServer {
  apiUrl: string;
  token: string;
  mqttUrl: string;
  /** The default join token (K10 form). */
  joinToken: string;
  /** The cluster CA (PEM), and its file. */
  ca: string;
  caFile: string;
  dataDir: string;
  server: RunningServer;
  agents: RunningAgent[];
  /** Starts an agent joined to this server, on the given runtime. */
  addAgent(opts: { node: string; runtime: ContainerRuntime; stateDir?: string; heartbeatSeconds?: number; resyncSeconds?: number; reconnectMaxSeconds?: number; token?: string; compressDesired?: boolean }): Promise<RunningAgent>;
  /** Joins `node` as a device would (key made here, CSR, join token) and returns MQTT options that connect as it. */
  joinNode(node: string): Promise<NodeMqttOptions>;
  /** Authenticated JSON request against the API. */
  api: ApiCall;
  stop(): Promise<void>;
}

/**
 * A real drover server on free ports with a private data dir (embedded aedes broker unless an
 * external broker URL is given). Agents join through the real broker.
 */
export async function startTestServer(
  opts: { withAgent?: boolean; runtime?: ContainerRuntime; brokerUrl?: string; dataDir?: string; apiPort?: number; mqttPort?: number; insecure?: boolean; requireApproval?: boolean; now?: () => number; logger?: Logger } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'drover-server-')));
  const server = await startServer(
    {
      dataDir,
      apiHost: '127.0.0.1',
      apiPort: opts.apiPort ?? 0,
      mqtt: opts.brokerUrl ? { mode: 'external', url: opts.brokerUrl } : { mode: 'embedded', host: '127.0.0.1', port: opts.mqttPort ?? (await freePort()) },
      insecure: opts.insecure,
      requireApproval: opts.requireApproval,
      now: opts.now,
      resyncMs: 1000,
      nodeMonitorMs: 1000,
      jobBackoffBaseMs: 1000,
    },
    opts.logger ?? logger(),
  );
  await trustCa(server.caCert);
  const agents: RunningAgent[] = [];
  const t: TestServer = {
    apiUrl: server.apiUrl,
    token: server.adminToken,
    mqttUrl: server.mqttUrl,
    joinToken: server.joinToken,
    ca: server.caCert,
    caFile: server.caFile,
    dataDir,
    server,
    agents,
    joinNode: (node) => joinNode(server.apiUrl, server.joinToken, node, server.advertisedMqttUrl),
    async addAgent(a) {
      const stateDir = a.stateDir ?? (await mkdtemp(join(tmpdir(), `drover-agent-${a.node}-`)));
      const agent = await startAgent(
        {
          node: a.node,
          serverUrl: server.apiUrl,
          token: a.token ?? server.joinToken,
          stateDir,
          reconnectMaxSeconds: a.reconnectMaxSeconds,
          labels: {},
          runtime: {},
          heartbeatSeconds: a.heartbeatSeconds ?? 5,
          resyncSeconds: a.resyncSeconds ?? 2,
          keepaliveSeconds: 5,
          ...(a.compressDesired ? { compressDesired: true } : {}),
        },
        { logger: opts.logger ?? logger(), runtime: a.runtime },
      );
      agents.push(agent);
      return agent;
    },
    api: apiClient(server.apiUrl, server.adminToken),
    async stop() {
      for (const a of agents) await a.close().catch(() => {});
      await server.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
  if (opts.withAgent && opts.runtime) await t.addAgent({ node: 'local', runtime: opts.runtime });
  return t;
}

export interface NodeMqttOptions {
  url: string;
  clientId: string;
  key: string;
  cert: string;
  ca: string;
  /** The node's password for a plain (--insecure) broker. */
  username: string;
  password?: string;
  protocolVersion: 4;
  reconnectPeriod: 0;
}

/**
 * Tries an MQTT connection that should be refused: resolves with the CONNACK return code ('4' bad
 * credentials, '5' not authorized), a TLS error's code, or 'closed' when the connection ended without
 * an answer (a TLS alert after the handshake); rejects if the broker let it in.
 */
export function connectRefusal(url: string, opts: mqtt.IClientOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...opts });
    c.once('connect', () => {
      c.end(true);
      reject(new Error(`the broker at ${url} let ${opts.clientId} in`));
    });
    c.once('error', (err: Error & { code?: unknown }) => {
      c.end(true);
      resolve(String(err.code ?? err.message));
    });
    c.once('close', () => resolve('closed'));
  });
}

/** Joins like an agent (the real HTTPS join) and returns the mqtt.js options of that node. */
export async function joinNode(apiUrl: string, joinToken: string, node: string, mqttUrl?: string): Promise<NodeMqttOptions> {
  const c = await joinCluster({ apiUrl, token: joinToken, node, logger: silentLogger });
  return { url: mqttUrl ?? c.mqttUrl, clientId: agentClientId(node), key: c.key, cert: c.cert, ca: c.ca, username: node, password: c.mqttPassword, protocolVersion: 4, reconnectPeriod: 0 };
}

/** Polls until `fn` returns a truthy value; fails with the last value seen after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}
