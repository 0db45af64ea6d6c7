import { RuntimeError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { PodmanRuntime, type PodmanOptions } from './podman.js';
import type { ContainerRuntime } from './types.js';

/**
 * The node's container runtime (podman, the only adapter so far), checked to answer, so a broken
 * install fails at agent start with the runtime's own error rather than at the first pod.
 */
export async function detectRuntime(opts: { podman?: PodmanOptions; logger?: Logger } = {}): Promise<ContainerRuntime> {
  const logger = opts.logger ?? silentLogger;
  const podman = new PodmanRuntime({ ...opts.podman, logger: opts.podman?.logger ?? logger });
  try {
    const version = await podman.version();
    logger.info({ runtime: podman.name, version }, 'container runtime detected');
    return podman;
  } catch (err) {
    throw new RuntimeError(
      `no usable container runtime: tried podman ("${opts.podman?.bin ?? 'podman'} version"): ${errorMessage(err)}`,
      err,
    );
  }
}
