/**
 * The server's default join token, kept in its K10 form in DATA_DIR/join-token (0600): made once at
 * first start through the token store (reusable, no expiry), kept across restarts, and rewritten
 * only when the CA it names changed or the token was revoked.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../src/util/logger.js';
import { writePrivateFileAtomic } from '../../src/util/private-fs.js';
import type { TokenStore } from '../auth/tokens.js';
import { formatJoinToken, parseJoinToken } from './join-token.js';

export const JOIN_TOKEN_FILE = 'join-token';

export async function loadOrCreateJoinToken(o: { dataDir: string; tokens: TokenStore; caHash: string; logger: Logger }): Promise<string> {
  const path = join(o.dataDir, JOIN_TOKEN_FILE);
  let text: string | undefined;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text?.startsWith('K10')) {
    const t = parseJoinToken(text);
    const id = t.credential.split('.')[0];
    const stored = o.tokens.list().find((x) => x.id === id && x.type === 'join');
    if (stored && !stored.revoked) {
      const current = formatJoinToken(o.caHash, t.credential);
      if (current !== text) {
        await writePrivateFileAtomic(path, `${current}\n`, o.logger);
        o.logger.warn({ path }, 'the CA changed: the join token now names the new CA hash');
      }
      return current;
    }
    o.logger.warn({ path }, 'the default join token was revoked or is unknown: making a new one');
  }
  // Absent, revoked, or the plain token of an older version (which the broker no longer accepts).
  const { token } = await o.tokens.createJoin({ description: `default join token (${path})` });
  const k10 = formatJoinToken(o.caHash, token);
  await writePrivateFileAtomic(path, `${k10}\n`, o.logger);
  return k10;
}
