/**
 * The agent's files that must survive a power cut (desired-state cache, event journal): written
 * whole or not at all, and a damaged one moved aside for inspection rather than trusted or deleted.
 */
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { writePrivateFileAtomic } from '../src/util/private-fs.js';
import { hasErrno } from './fs-errors.js';

/**
 * Replaces `path` with `body` atomically (temp file, fsync, rename, fsync of the directory) and
 * privately (0600 file in a 0700 directory): a power cut leaves the old content or the new, never a
 * mix, and other users of the device never read it.
 */
export function writeFileAtomic(path: string, body: string, logger?: Logger): Promise<void> {
  return writePrivateFileAtomic(path, body, logger);
}

/**
 * Removes temp files that an interrupted write of `path` left behind (any process id). Nothing to do
 * when the directory does not exist yet; a temp file that cannot be removed is logged and left.
 */
async function removeStaleTemps(path: string, logger: Logger): Promise<void> {
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = await readdir(dirname(path));
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return;
    throw err;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const temp = join(dirname(path), name);
    await rm(temp, { force: true }).catch((err: unknown) => logger.warn({ path: temp, err: errorMessage(err) }, 'cannot remove a temp file of an interrupted write'));
  }
}

/**
 * Reads `path` after removing what interrupted writes left. `text` is undefined when there is no
 * file; `unreadable` says why a file that is there could not be read.
 */
export async function readStateFile(path: string, logger: Logger): Promise<{ text?: string; unreadable?: string }> {
  try {
    await removeStaleTemps(path, logger);
    return { text: await readFile(path, 'utf8') };
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return {};
    return { unreadable: `cannot read it: ${errorMessage(err)}` };
  }
}

/**
 * Moves a damaged `path` (the agent's `what`) to `<path>.corrupt-<ms>` for inspection, logs it and
 * returns the message to report.
 */
export async function moveAside(path: string, what: string, reason: string, logger: Logger): Promise<{ corrupt: string }> {
  const aside = `${path}.corrupt-${Date.now()}`;
  let message = `${what} ${path} is corrupt (${reason}); moved to ${aside}`;
  try {
    await rename(path, aside);
  } catch (err) {
    // Left in place, it is read (and reported) again at the next start.
    message = `${what} ${path} is corrupt (${reason}); it could not be moved aside: ${errorMessage(err)}`;
  }
  logger.error(message);
  return { corrupt: message };
}
