import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../server/run.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import type { ContainerRuntime } from '../../agent/runtime/types.js';
import { silentLogger } from '../../src/util/logger.js';
import { createLogger } from '../../src/util/logger.js';

import { apiClient, freePort, type ApiCall } from './http.js';

export { apiClient, freePort, type ApiCall };

const logger = () => (process.env.DROVER_TEST_LOG ? createLogger({ name: 'test', level: process.env.DROVER_TEST_LOG }) : silentLogger);

export interface TestServer {
  apiUrl: string;
  token: string;
  mqttUrl: string;
  joinToken: string;
  dataDir: string;
  server: RunningServer;
  agents: RunningAgent[];
  /** Starts an agent joined to this server, on the given runtime. */
  addAgent(opts: { node: string; runtime: ContainerRuntime; stateDir?: string; heartbeatSeconds?: number; resyncSeconds?: number }): Promise<RunningAgent>;
  /** Authenticated JSON request against the API. */
  api: ApiCall;
  stop(): Promise<void>;
}

/**
 * A real drover server on free ports with a private data dir (embedded aedes broker unless an
 * external broker URL is given). Agents join through the real broker.
 */
export async function startTestServer(opts: { withAgent?: boolean; runtime?: ContainerRuntime; brokerUrl?: string; dataDir?: string; apiPort?: number; mqttPort?: number } = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'drover-server-')));
  const server = await startServer(
    {
      dataDir,
      apiHost: '127.0.0.1',
      apiPort: opts.apiPort ?? 0,
      mqtt: opts.brokerUrl ? { mode: 'external', url: opts.brokerUrl } : { mode: 'embedded', host: '127.0.0.1', port: opts.mqttPort ?? (await freePort()) },
      resyncMs: 1000,
      nodeMonitorMs: 1000,
      jobBackoffBaseMs: 1000,
    },
    logger(),
  );
  const agents: RunningAgent[] = [];
  const t: TestServer = {
    apiUrl: server.apiUrl,
    token: server.adminToken,
    mqttUrl: server.mqttUrl,
    joinToken: server.joinToken,
    dataDir,
    server,
    agents,
    async addAgent(a) {
      const stateDir = a.stateDir ?? (await mkdtemp(join(tmpdir(), `drover-agent-${a.node}-`)));
      const agent = await startAgent(
        {
          node: a.node,
          serverUrl: server.mqttUrl,
          token: server.joinToken,
          stateDir,
          labels: {},
          runtime: {},
          heartbeatSeconds: a.heartbeatSeconds ?? 5,
          resyncSeconds: a.resyncSeconds ?? 2,
          keepaliveSeconds: 5,
        },
        { logger: logger(), runtime: a.runtime },
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
