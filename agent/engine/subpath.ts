/**
 * subPath mounts, the I/O half: a container of the pod can turn any path inside a writable volume into a
 * symlink, and the runtime's bind mount would follow it on the host (Kubernetes' CVE-2017-1002101: a
 * pod mounts the host's `/` through `subPath: evil` after `ln -s / evil` in an emptyDir). Right before
 * the container is created, each subPath source is resolved on the host and must still lie inside its
 * volume; the resolved path, not the one with the link, is what gets mounted.
 */
import { realpath } from 'node:fs/promises';
import { sep } from 'node:path';
import { hasErrno } from '../fs-errors.js';
import type { Mount, RunSpec } from '../runtime/types.js';
import { ConfigError } from './env.js';

async function confine(m: Mount): Promise<Mount> {
  if (!m.beneath) return m;
  const base = await realpath(m.beneath);
  let real: string;
  try {
    real = await realpath(m.source);
  } catch (err) {
    // Not there (yet): the runtime refuses a missing source as before, and nothing was followed.
    if (hasErrno(err, 'ENOENT')) return m;
    throw err;
  }
  if (real !== base && !real.startsWith(base.endsWith(sep) ? base : base + sep)) {
    throw new ConfigError(`subPath mount on ${m.target} resolves outside its volume (a symbolic link to ${real}): refused`);
  }
  return { ...m, source: real };
}

/** The spec with every subPath mount resolved inside its volume; throws ConfigError for one that leaves it. */
export async function confineSubPaths(spec: RunSpec): Promise<RunSpec> {
  if (!spec.mounts?.some((m) => m.beneath)) return spec;
  return { ...spec, mounts: await Promise.all(spec.mounts.map(confine)) };
}
