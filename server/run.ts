import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { agentClientId } from '../src/contract/topics.js';
import { createLogger, type Logger } from '../src/util/logger.js';
import { ApiServer } from './api/server.js';
import { NodeProxy } from './api/node-proxy.js';
import { DEFAULTS, NODE_LIFECYCLE, type ServerConfig } from './config.js';
import type { Store } from './store/types.js';
import { DesiredPublisher } from './desired/publisher.js';
import { EventRecorder } from './events/recorder.js';
import { startEmbeddedBroker, type EmbeddedBroker } from './mqtt/broker.js';
import { ServerLink } from './mqtt/link.js';
import { MetricsCache } from './metrics/cache.js';
import { NodeLiveness } from './nodes/liveness.js';
import { NodeRegistry } from './nodes/registry.js';
import { Scheduler } from './scheduler/scheduler.js';
import { LevelStore } from './store/level.js';
import { withAdmission } from './admission/store.js';
import { allControllers } from './controllers/index.js';
import { nodeLifecycleController } from './controllers/node-lifecycle.js';
import { ControllerRunner } from './controllers/runner.js';
import { loadOrCreateToken } from './tokens.js';

export interface RunningServer {
  apiUrl: string;
  /** Where local clients reach the broker. */
  mqttUrl: string;
  adminToken: string;
  joinToken: string;
  dataDir: string;
  logger: Logger;
  close(): Promise<void>;
}

const SERVER_CLIENT = 'drover-server';

async function ensureDefaultNamespace(store: Store): Promise<void> {
  if (await store.get('Namespace', '', 'default')) return;
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
}

/**
 * Wires the control plane: store → API, broker/link → node registry, scheduler, desired publisher.
 * The only place in server/ that builds dependencies.
 */
export async function startServer(cfg: ServerConfig, logger: Logger = createLogger({ name: 'drover-server', level: cfg.logLevel })): Promise<RunningServer> {
  await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 });
  const adminToken = await loadOrCreateToken(cfg.dataDir, 'admin-token');
  const joinToken = await loadOrCreateToken(cfg.dataDir, 'join-token');
  const level = await LevelStore.open({ path: join(cfg.dataDir, 'store'), logger });
  // Every writer goes through admission (namespace checks, quotas, Secret normalisation).
  const store = withAdmission(level);
  const closers: Array<() => Promise<void> | void> = [() => level.close()];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'error during shutdown');
      }
    }
  };
  try {
    await ensureDefaultNamespace(store);
    const events = new EventRecorder(store, logger);

    let broker: EmbeddedBroker | undefined;
    let linkUrl: string;
    let linkAuth: { username?: string; password?: string };
    if (cfg.mqtt.mode === 'embedded') {
      broker = await startEmbeddedBroker({
        host: cfg.mqtt.host,
        port: cfg.mqtt.port,
        logger,
        // Agents present the join token as node <username>, with the client id of that node; the server's
        // own client the admin token. Everything else is refused.
        authenticate: (clientId, username, password) => {
          if (clientId === SERVER_CLIENT) return password === adminToken ? { role: 'server' } : undefined;
          if (password !== joinToken || !username || clientId !== agentClientId(username)) return undefined;
          return { role: 'agent', node: username };
        },
      });
      closers.push(() => broker!.close());
      linkUrl = broker.url;
      linkAuth = { username: SERVER_CLIENT, password: adminToken };
    } else {
      linkUrl = cfg.mqtt.url;
      linkAuth = { username: cfg.mqtt.username, password: cfg.mqtt.password };
    }

    const link = await ServerLink.connect({ url: linkUrl, clientId: SERVER_CLIENT, ...linkAuth, logger });
    closers.push(() => link.close());

    const metrics = new MetricsCache();
    const flapWindowMs = cfg.flapWindowMs ?? DEFAULTS.flapWindowMs;
    const liveness = new NodeLiveness({ flapThreshold: cfg.flapThreshold ?? DEFAULTS.flapThreshold, flapWindowMs });
    const registry = new NodeRegistry({ store, events, logger, metrics, liveness, maxPodsPerNode: cfg.maxPodsPerNode ?? DEFAULTS.maxPodsPerNode, lastHeardWriteMs: NODE_LIFECYCLE.lastHeardWriteMs });
    link.onReport((t, payload) => registry.handle(t, payload));
    closers.push(() => registry.close());

    const publisher = new DesiredPublisher({ store, sink: link, logger });
    await publisher.start();
    closers.push(() => publisher.stop());

    const scheduler = new Scheduler({ store, events, logger, resyncMs: cfg.resyncMs });
    await scheduler.start();
    closers.push(() => scheduler.stop());

    const lifecycle = nodeLifecycleController({
      store,
      events,
      logger,
      liveness,
      metrics,
      policy: { missedHeartbeats: cfg.missedHeartbeats ?? DEFAULTS.missedHeartbeats, lateFactor: NODE_LIFECYCLE.lateFactor, flapWindowMs },
      assumedHeartbeatMs: NODE_LIFECYCLE.assumedHeartbeatMs,
      maxRequeueMs: cfg.nodeMonitorMs ?? DEFAULTS.nodeMonitorMs,
      now: Date.now,
    });
    const controllers = new ControllerRunner({
      store,
      logger,
      controllers: [...allControllers({ store, events, logger, now: Date.now, jobBackoffBaseMs: cfg.jobBackoffBaseMs }), lifecycle],
      resyncMs: cfg.controllerResyncMs,
    });
    await controllers.start();
    closers.push(() => controllers.stop());

    const proxy = new NodeProxy({ store, link, requestTimeoutMs: cfg.nodeRequestTimeoutMs ?? DEFAULTS.nodeRequestTimeoutMs });
    const api = new ApiServer({ store, logger, adminToken, logs: (q) => proxy.logs(q), exec: (q) => proxy.exec(q), metrics, ready: () => link.connected() });
    const { url: apiUrl } = await api.listen(cfg.apiHost, cfg.apiPort);
    closers.push(() => api.close());
    const nodes = (await store.list('Node')).items;
    logger.info({ apiUrl, mqtt: linkUrl, nodes: nodes.length }, 'drover server started');
    return { apiUrl, mqttUrl: linkUrl, adminToken, joinToken, dataDir: cfg.dataDir, logger, close };
  } catch (err) {
    await close();
    throw err;
  }
}
