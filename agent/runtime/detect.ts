import { RuntimeError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { RuntimeKind } from '../config.js';
import { NerdctlRuntime, type NerdctlOptions } from './nerdctl.js';
import { PodmanRuntime, type PodmanOptions } from './podman.js';
import type { ContainerRuntime } from './types.js';

export interface DetectOptions {
  /** 'auto' (default): podman if it answers, else nerdctl. */
  kind?: RuntimeKind;
  podman?: PodmanOptions;
  nerdctl?: NerdctlOptions;
  logger?: Logger;
}

/** What to tell someone whose device has neither runtime. */
export const INSTALL_HINT =
  'install one: podman (Debian/Ubuntu: apt-get install podman), or containerd (apt-get install containerd) with nerdctl from its release tarball (see firmware-notes/nerdctl.md)';

/**
 * The node's container runtime, checked to answer (`version`; for nerdctl that includes reaching
 * containerd), so a broken install fails at agent start with the runtime's own error rather than
 * at the first pod. An explicit kind is the only one tried.
 */
export async function detectRuntime(opts: DetectOptions = {}): Promise<ContainerRuntime> {
  const logger = opts.logger ?? silentLogger;
  const kind = opts.kind ?? 'auto';
  const candidates: { runtime: ContainerRuntime; bin: string }[] = [];
  if (kind === 'auto' || kind === 'podman') {
    candidates.push({ runtime: new PodmanRuntime({ ...opts.podman, logger: opts.podman?.logger ?? logger }), bin: opts.podman?.bin ?? 'podman' });
  }
  if (kind === 'auto' || kind === 'nerdctl') {
    candidates.push({ runtime: new NerdctlRuntime({ ...opts.nerdctl, logger: opts.nerdctl?.logger ?? logger }), bin: opts.nerdctl?.bin ?? 'nerdctl' });
  }
  const failures: { tried: string; err: unknown }[] = [];
  for (const { runtime, bin } of candidates) {
    try {
      const version = await runtime.version();
      logger.info({ runtime: runtime.name, version, asked: kind }, 'container runtime detected');
      return runtime;
    } catch (err) {
      failures.push({ tried: `${runtime.name} ("${bin} version")`, err });
      if (kind === 'auto') logger.info({ runtime: runtime.name, err: errorMessage(err) }, 'container runtime not usable; trying the next');
    }
  }
  const tried = failures.map((f) => `tried ${f.tried}: ${errorMessage(f.err)}`).join('; ');
  if (kind === 'auto') throw new RuntimeError(`no usable container runtime: ${tried}; ${INSTALL_HINT}`, failures.at(-1)?.err);
  throw new RuntimeError(`container runtime ${kind} (--runtime ${kind}) is not usable: ${tried}`, failures[0]?.err);
}
