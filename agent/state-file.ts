/**
 * The agent's files that must survive a power cut (desired-state cache, event journal): written
 * whole or not at all, and a damaged one moved aside for inspection rather than trusted or deleted.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';

/** The temp file a write of `path` goes through (one per process, so two agents never share one). */
function tempPathOf(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

/**
 * Replaces `path` with `body` atomically: temp file, fsync, rename, fsync of the directory. A power
 * cut leaves the old content or the new, never a mix. The temp file is removed when the write fails
 * (a full disk must not be made fuller).
 */
export async function writeFileAtomic(path: string, body: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathOf(path);
  try {
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Removes temp files that an interrupted write of `path` left behind (any process id). */
async function removeStaleTemps(path: string): Promise<void> {
  const prefix = `${basename(path)}.tmp-`;
  for (const name of await readdir(dirname(path)).catch(() => [] as string[])) {
    if (name.startsWith(prefix)) await rm(join(dirname(path), name), { force: true }).catch(() => {});
  }
}

/**
 * Reads `path` after removing what interrupted writes left. `text` is undefined when there is no
 * file; `unreadable` says why a file that is there could not be read.
 */
export async function readStateFile(path: string): Promise<{ text?: string; unreadable?: string }> {
  await removeStaleTemps(path);
  try {
    return { text: await readFile(path, 'utf8') };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    return { unreadable: `cannot read it: ${errorMessage(err)}` };
  }
}

/**
 * Moves a damaged `path` (the agent's `what`) to `<path>.corrupt-<ms>` for inspection, logs it and
 * returns the message to report.
 */
export async function moveAside(path: string, what: string, reason: string, logger: Logger): Promise<{ corrupt: string }> {
  const aside = `${path}.corrupt-${Date.now()}`;
  await rename(path, aside).catch(() => {});
  const message = `${what} ${path} is corrupt (${reason}); moved to ${aside}`;
  logger.error(message);
  return { corrupt: message };
}
