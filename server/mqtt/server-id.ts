import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { isServerId } from '../../src/contract/topics.js';
import { ValidationError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { writePrivateFileAtomic } from '../../src/util/private-fs.js';

/**
 * A server's id among several on one broker (its MQTT client id is `drover-server-{id}`): kept in
 * DATA_DIR/server-id, so it stays the same across restarts (a broker keeps nothing under an old id) and
 * differs between servers even on one machine (each has its own data dir). The host name makes it
 * readable in the broker's logs; the random part makes two data dirs on one host differ.
 */
export async function loadOrCreateServerId(dataDir: string, logger: Logger): Promise<string> {
  const file = join(dataDir, 'server-id');
  let text: string | undefined;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    if (!isServerId(text)) throw new ValidationError([{ field: 'server-id', message: `${file} holds "${text.slice(0, 64)}": 1-48 of A-Za-z0-9_.- (delete the file for a new id, or give --server-id)` }], 'invalid server id');
    return text;
  }
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 32) || 'server';
  const id = `${host}-${randomBytes(3).toString('hex')}`;
  try {
    await writePrivateFileAtomic(file, `${id}\n`, logger);
  } catch (err) {
    // Read-only data dir: this run still has an id; the next start makes another (the broker forgets the old session: it ends with its connection).
    logger.warn({ file, err: errorMessage(err) }, 'cannot keep the server id: a new one at each start');
  }
  return id;
}
