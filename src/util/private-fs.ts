/**
 * Files that hold secrets (keys, tokens, caches with Secret data, stores) and their directories:
 * owner-only from the moment they exist (0600 files, 0700 dirs), written whole or not at all.
 */
import { chmod, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/**
 * Creates `dir` (and missing parents) as 0700. An existing one that others can read or enter (made by
 * an older version, or by hand) is tightened, with a warning naming what it was.
 */
export async function ensurePrivateDir(dir: string, logger?: Logger): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const st = await stat(dir);
  if ((st.mode & 0o077) !== 0) {
    await chmod(dir, PRIVATE_DIR_MODE);
    logger?.warn({ path: dir, was: octal(st.mode), now: octal(PRIVATE_DIR_MODE) }, 'directory was readable by other users; tightened');
  }
}

/**
 * Tightens an existing file others can read to 0600 (warned unless `quiet`, for files another
 * library creates loosely by design, e.g. LevelDB's). Nothing to do when it does not exist.
 */
export async function tightenFile(path: string, logger?: Logger, quiet = false): Promise<boolean> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if ((mode & 0o077) === 0) return false;
  await chmod(path, PRIVATE_FILE_MODE);
  if (!quiet) logger?.warn({ path, was: octal(mode), now: octal(PRIVATE_FILE_MODE) }, 'file was readable by other users; tightened');
  return true;
}

/** Every regular file directly in `dir` made 0600; returns how many were looser. */
export async function tightenFilesIn(dir: string, logger?: Logger, quiet = false): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isFile() && (await tightenFile(join(dir, e.name), logger, quiet))) n += 1;
  }
  return n;
}

/** The temp file a write of `path` goes through (one per process, so two writers never share one). */
export function tempPathOf(path: string): string {
  return `${path}.tmp-${process.pid}`;
}

/**
 * Replaces `path` with `body` atomically and privately: temp file created 0600, fsync, rename, fsync
 * of the directory. A power cut leaves the old content or the new, never a mix, and the content is
 * never readable by others, not even for a moment. The temp file is removed when the write fails (a
 * full disk must not be made fuller). The directory is made private (0700) first.
 */
export async function writePrivateFileAtomic(path: string, body: string | Buffer, logger?: Logger): Promise<void> {
  await ensurePrivateDir(dirname(path), logger);
  const tmp = tempPathOf(path);
  try {
    const fh = await open(tmp, 'w', PRIVATE_FILE_MODE);
    try {
      // A temp file left by a crashed write of an older version may be looser than `open` asks for.
      await fh.chmod(PRIVATE_FILE_MODE);
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    // The write's own error is the one to report.
    await rm(tmp, { force: true }).catch((rmErr: unknown) => {
      throw new Error(`${errorMessage(err)} (and its temp file ${tmp} could not be removed: ${errorMessage(rmErr)})`, { cause: err });
    });
    throw err;
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
