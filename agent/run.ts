import { join } from 'node:path';
import { createLogger, type Logger } from '../src/util/logger.js';
import { AGENT_DEFAULTS, type AgentConfig } from './config.js';
import { AgentLink } from './connection.js';
import { readBootId, readHardware } from './hardware.js';
import { EventJournal, JOURNAL_FILE } from './journal.js';
import { RestartTracker } from './engine/restart-tracker.js';
import { ProbeManager } from './probes/manager.js';
import { Reconciler } from './reconciler.js';
import { Reporter } from './reporter.js';
import { RequestHandler } from './requests.js';
import { detectRuntime } from './runtime/detect.js';
import type { ContainerRuntime } from './runtime/types.js';
import { TargetState } from './target.js';
import { systemMeter, UsageSampler } from './usage.js';
import { VolumeManager } from './volume-manager.js';

export interface RunningAgent {
  reconciler: Reconciler;
  close(): Promise<void>;
}

/**
 * Builds the agent's parts (runtime, link, cache, journal; reconciler, reporter, request handler),
 * wires them and starts them: reconciling from the cache first, so workloads run with no link.
 */
export async function startAgent(cfg: AgentConfig, opts: { logger?: Logger; runtime?: ContainerRuntime } = {}): Promise<RunningAgent> {
  const logger = (opts.logger ?? createLogger({ name: 'drover-agent', level: cfg.logLevel })).child({ node: cfg.node });
  const runtime =
    opts.runtime ??
    (await detectRuntime({
      podman: { root: cfg.runtime.podmanRoot, runroot: cfg.runtime.podmanRunroot, env: cfg.runtime.env, logger },
      logger,
    }));
  const now = Date.now;
  const bootId = await readBootId();
  const hardware = await readHardware();
  const target = new TargetState(cfg.stateDir, logger);
  const journal = new EventJournal({ path: join(cfg.stateDir, JOURNAL_FILE), logger });
  const requests = new RequestHandler(runtime);
  // The link calls into the reporter and the reconciler, built below: it starts after them.
  const link = new AgentLink(
    {
      url: cfg.serverUrl,
      node: cfg.node,
      token: cfg.token,
      bootId,
      keepaliveSeconds: cfg.keepaliveSeconds,
      reconnectMaxMs: (cfg.reconnectMaxSeconds ?? AGENT_DEFAULTS.reconnectMaxSeconds) * 1000,
      connectTimeoutMs: (cfg.connectTimeoutSeconds ?? AGENT_DEFAULTS.connectTimeoutSeconds) * 1000,
      logger,
    },
    {
      onConnect: () => reporter.onConnect(),
      onDesired: (d) => reconciler.onDesired(d),
      onRequest: (_id, req) => requests.handle(req),
    },
  );
  // The address the server and the other nodes reach this one at: where its link to the server leaves
  // from, not the first interface listed (podman's bridge, 10.88.0.1, may come first).
  const nodeIP = () => cfg.nodeIP ?? link.localAddress ?? hardware.addresses[0];
  const usage = new UsageSampler(runtime, systemMeter(hardware.cpu.cores), logger);
  const reporter = new Reporter({ cfg, link, runtime, hardware, bootId, logger, journal, usage, now, nodeIP, runtimeVersion: () => reconciler.runtimeVersion });
  const probes = new ProbeManager({
    runtime,
    logger,
    clock: now,
    onReadiness: () => reconciler.onProbeReadiness(),
    onFailure: (e) => reconciler.onProbeFailure(e),
    onKill: (e) => void reconciler.onProbeKill(e),
  });
  const reconciler = new Reconciler({
    cfg,
    runtime,
    target,
    restarts: new RestartTracker({ clock: now }),
    volumes: new VolumeManager(cfg.stateDir, logger),
    probes,
    logger,
    now,
    hostIP: nodeIP,
    emit: (e) => reporter.emit(e),
    report: (s) => reporter.update(s),
  });

  // Events of an earlier run that never reached the server are sent first, oldest first.
  await reporter.start();
  // Reconciles from the cache first (works with no link), then connects.
  await reconciler.start();
  link.start();
  reporter.startHeartbeat();
  return {
    reconciler,
    async close() {
      reporter.stop();
      await reconciler.stop();
      await link.stop();
      await reporter.close();
    },
  };
}
