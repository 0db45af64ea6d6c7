import { createLogger, type Logger } from '../src/util/logger.js';
import { Agent } from './agent.js';
import type { AgentConfig } from './config.js';
import { AgentLink } from './connection.js';
import { readBootId, readHardware } from './hardware.js';
import { detectRuntime } from './runtime/detect.js';
import type { ContainerRuntime } from './runtime/types.js';
import { TargetState } from './target.js';
import { systemMeter, UsageSampler } from './usage.js';

export interface RunningAgent {
  agent: Agent;
  close(): Promise<void>;
}

/** Builds the agent's dependencies (runtime, link, cache) and starts it. */
export async function startAgent(cfg: AgentConfig, opts: { logger?: Logger; runtime?: ContainerRuntime } = {}): Promise<RunningAgent> {
  const logger = (opts.logger ?? createLogger({ name: 'drover-agent', level: cfg.logLevel })).child({ node: cfg.node });
  const runtime =
    opts.runtime ??
    (await detectRuntime({
      prefer: cfg.runtime.prefer,
      podman: { root: cfg.runtime.podmanRoot, runroot: cfg.runtime.podmanRunroot, env: cfg.runtime.env, logger },
      logger,
    }));
  const bootId = await readBootId();
  const hardware = await readHardware();
  const target = new TargetState(cfg.stateDir, logger);
  let agent: Agent | undefined;
  const link = new AgentLink(
    { url: cfg.serverUrl, node: cfg.node, token: cfg.token, bootId, keepaliveSeconds: cfg.keepaliveSeconds, logger },
    {
      onConnect: () => agent?.onConnect(),
      onDesired: (d) => agent?.onDesired(d),
      onRequest: (_id, req) => agent!.onRequest(req),
    },
  );
  const usage = new UsageSampler(runtime, systemMeter(hardware.cpu.cores), logger);
  agent = new Agent({ cfg, runtime, link, target, hardware, bootId, logger, usage });
  await agent.start();
  return { agent, close: () => agent!.stop() };
}
