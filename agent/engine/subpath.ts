/**
 * subPath mounts, the I/O half: a container of the pod can turn any path inside a writable volume into a
 * symlink, and the runtime's bind mount would follow it on the host (Kubernetes' CVE-2017-1002101: a
 * pod mounts the host's `/` through `subPath: evil` after `ln -s / evil` in an emptyDir). Right before
 * the container is created, each subPath source is resolved on the host and must still lie inside its
 * volume; the resolved path, not the one with the link, is what gets mounted.
 */
import { mkdir, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { hasErrno } from '../fs-errors.js';
import type { Mount, RunSpec } from '../runtime/types.js';
import { ConfigError } from './env.js';

function inside(real: string, base: string): boolean {
  return real === base || real.startsWith(base.endsWith(sep) ? base : base + sep);
}

function outside(m: Mount, real: string): ConfigError {
  return new ConfigError(`subPath mount on ${m.target} resolves outside its volume (a symbolic link to ${real}): refused`);
}

/**
 * A subPath that does not exist yet is made a directory, one component at a time, each checked to be in the
 * volume (as kubelet does). Handing the runtime the missing path instead would let a container create it as
 * a link between this check and the mount, which the runtime would then follow.
 */
async function createInside(m: Mount, base: string): Promise<void> {
  let dir = base;
  for (const part of relative(m.beneath!, m.source).split(sep).filter(Boolean)) {
    const next = join(dir, part);
    await mkdir(next).catch((err: unknown) => {
      if (!hasErrno(err, 'EEXIST')) throw err;
    });
    dir = await realpath(next);
    if (!inside(dir, base)) throw outside(m, dir);
  }
}

async function confine(m: Mount): Promise<Mount> {
  if (!m.beneath) return m;
  const base = await realpath(m.beneath);
  let real: string;
  try {
    real = await realpath(m.source);
  } catch (err) {
    if (!hasErrno(err, 'ENOENT')) throw err;
    await createInside(m, base);
    real = await realpath(m.source);
  }
  if (!inside(real, base)) throw outside(m, real);
  return { ...m, source: real };
}

/** The spec with every subPath mount resolved inside its volume; throws ConfigError for one that leaves it. */
export async function confineSubPaths(spec: RunSpec): Promise<RunSpec> {
  if (!spec.mounts?.some((m) => m.beneath)) return spec;
  return { ...spec, mounts: await Promise.all(spec.mounts.map(confine)) };
}
