/**
 * The server's default join token, kept in its K10 form in DATA_DIR/join-token (0600): made once at
 * first start through the token store (reusable, no expiry), kept across restarts, and rewritten
 * only when the CA it names changed or the token was revoked. Several servers on one etcd share one:
 * its `<id>.<secret>` in a shared document (server/cluster/doc.ts, sealed in etcd), so every server's
 * DATA_DIR/join-token is the same token.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../src/util/logger.js';
import { writePrivateFileAtomic } from '../../src/util/private-fs.js';
import type { TokenStore } from '../auth/tokens.js';
import type { SharedDoc } from '../cluster/doc.js';
import { formatJoinToken, parseJoinToken } from './join-token.js';

export const JOIN_TOKEN_FILE = 'join-token';

/** Tries at agreeing on the shared join token with servers making theirs at the same moment. */
const SHARED_ATTEMPTS = 5;

export async function loadOrCreateJoinToken(o: { dataDir: string; tokens: TokenStore; caHash: string; logger: Logger; shared?: SharedDoc }): Promise<string> {
  const path = join(o.dataDir, JOIN_TOKEN_FILE);
  if (o.shared) return sharedJoinToken({ ...o, shared: o.shared, path });
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

/** The `<id>.<secret>` of DATA_DIR/join-token, if it holds a K10 token. */
async function localCredential(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return text.startsWith('K10') ? parseJoinToken(text).credential : undefined;
}

/** The usable join token `credential` (`<id>.<secret>`) names: known to the token store and not revoked. */
function usable(tokens: TokenStore, credential: string | undefined): boolean {
  const id = credential?.split('.')[0];
  return id !== undefined && tokens.list().some((x) => x.id === id && x.type === 'join' && !x.revoked);
}

/**
 * The shared default join token: the one in `shared` while usable; otherwise a new one, written there
 * only if no other server wrote one meanwhile (a server that loses the race revokes its own and takes
 * the winner's). DATA_DIR/join-token gets a copy in K10 form.
 */
async function sharedJoinToken(o: { tokens: TokenStore; caHash: string; logger: Logger; shared: SharedDoc; path: string }): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    let doc = await o.shared.read();
    if (doc.text === undefined && doc.version === 0) {
      // A server moved from its own files onto etcd: the join token its devices hold stays the default one.
      const mine = await localCredential(o.path);
      if (mine !== undefined && usable(o.tokens, mine)) {
        const r = await o.shared.replace(`${mine}\n`, 0);
        doc = r.ok ? { text: `${mine}\n`, version: r.version } : r;
      }
    }
    const credential = doc.text?.trim();
    // The document may name a token another server made a moment ago: the table is read again first.
    if (credential) await o.tokens.refresh();
    if (credential && usable(o.tokens, credential)) {
      const k10 = formatJoinToken(o.caHash, credential);
      await writePrivateFileAtomic(o.path, `${k10}\n`, o.logger);
      return k10;
    }
    if (credential) o.logger.warn({ where: o.shared.where }, 'the default join token was revoked: making a new one');
    const { id, token } = await o.tokens.createJoin({ description: 'default join token (every server\'s DATA_DIR/join-token)' });
    const r = await o.shared.replace(`${token}\n`, doc.version);
    if (r.ok) {
      const k10 = formatJoinToken(o.caHash, token);
      await writePrivateFileAtomic(o.path, `${k10}\n`, o.logger);
      return k10;
    }
    // Another server made the default join token at the same moment: its one stays, this one goes.
    await o.tokens.revoke(id);
    if (attempt >= SHARED_ATTEMPTS) throw new Error(`${o.shared.where}: the default join token keeps changing while this server starts; start it again`);
  }
}
