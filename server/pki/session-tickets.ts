/**
 * The key the embedded broker seals TLS session tickets with, kept in DATA_DIR/tls so that a restarted server
 * can resume the TLS sessions of the devices reconnecting to it. A resumed TLS 1.3 handshake (PSK with a fresh
 * (EC)DHE exchange, so traffic keeps forward secrecy) skips the server's RSA signature and the client's certificate
 * chain: 1.5 → 0.76 ms of the server's CPU per handshake measured here, which is what a whole fleet reconnecting
 * after a restart waits on. With a key that changed at every start, every device would do a full handshake then.
 *
 * Anyone holding this key can open the tickets devices present, i.e. resume their sessions: it is kept as the CA
 * key beside it is (0600), and replaced once it is TICKET_KEY_MAX_AGE_MS old (tickets sealed with the old key then
 * fall back to a full handshake, once).
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../src/util/logger.js';
import { readOptional, writeFileAtomic } from './pki.js';

/** node:tls takes 48 bytes: a 16-byte key name, a 16-byte HMAC secret and a 16-byte AES key. */
const TICKET_KEY_BYTES = 48;
/** How long a ticket is good for: TLS 1.3's limit (RFC 8446, 4.6.1), so a fleet restarted within a week resumes. */
export const TICKET_LIFETIME_SECONDS = 7 * 24 * 3600;
/** A key this old is replaced: at start, or by the server's daily check. */
export const TICKET_KEY_MAX_AGE_MS = TICKET_LIFETIME_SECONDS * 1000;

export const TICKET_KEY_FILE = 'mqtt-ticket.key';

/**
 * The current ticket key from `dir` (DATA_DIR/tls), made (or replaced, when older than TICKET_KEY_MAX_AGE_MS or
 * not a key) first. `rotated` says a new one was written.
 */
export async function loadOrCreateTicketKey(opts: { dir: string; caHash: string; logger: Logger; now?: () => number }): Promise<{ key: Buffer; rotated: boolean }> {
  const now = opts.now ?? Date.now;
  const path = join(opts.dir, TICKET_KEY_FILE);
  const text = await readOptional(path);
  if (text !== undefined) {
    const key = Buffer.from(text.trim(), 'base64');
    const age = now() - (await stat(path)).mtimeMs;
    if (key.length === TICKET_KEY_BYTES && age < TICKET_KEY_MAX_AGE_MS) return { key: forCa(key, opts.caHash), rotated: false };
    if (key.length !== TICKET_KEY_BYTES) opts.logger.warn({ file: path }, 'the TLS session ticket key file is not a key: replaced (devices do one full handshake)');
  }
  const key = randomBytes(TICKET_KEY_BYTES);
  await writeFileAtomic(path, `${key.toString('base64')}\n`, 0o600);
  if (text !== undefined) opts.logger.info({ file: path }, 'renewed the TLS session ticket key');
  return { key: forCa(key, opts.caHash), rotated: true };
}

/**
 * The key tickets are sealed with, bound to the CA: a ticket keeps the verdict of the handshake that issued it, so
 * after the CA is replaced (a compromise) a certificate of the old one must not resume as verified. Another CA,
 * another key: those tickets no longer open and every client shakes hands in full against the new CA.
 */
function forCa(fileKey: Buffer, caHash: string): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, Buffer.from(caHash, 'hex'), 'drover mqtt session tickets', TICKET_KEY_BYTES));
}
