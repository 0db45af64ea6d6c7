/**
 * The node's own key for what it keeps on disk of its Secrets (STATE_DIR/cache.key: 32 random bytes,
 * base64, 0600), made on first use. It never leaves the device; losing it only costs the cached
 * Secrets, which the server sends again on reconnect.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KEY_BYTES, seal, unseal, type AeadKey } from '../src/util/aead.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { tightenFile, writePrivateFileAtomic } from '../src/util/private-fs.js';
import { hasErrno } from './fs-errors.js';

export const CACHE_KEY_FILE = 'cache.key';
/** The id in the envelope prefix: there is one cache key per node, replaced (not rotated) if lost. */
const KEY_ID = 'node';

export class CacheKey {
  private key: Promise<AeadKey | undefined> | undefined;
  readonly path: string;

  constructor(stateDir: string, private readonly logger: Logger) {
    this.path = join(stateDir, CACHE_KEY_FILE);
  }

  /** Seals with the node key, creating it first when there is none. */
  async seal(plaintext: Buffer, aad: string): Promise<string> {
    const k = (await this.load()) ?? (await this.create());
    return seal(k, plaintext, aad);
  }

  /** Throws SealError (or one saying the key file is missing) when the envelope cannot be opened. */
  async unseal(envelope: string, aad: string): Promise<Buffer> {
    const k = await this.load();
    if (!k) throw new Error(`its Secrets are encrypted, but the node key ${this.path} is missing`);
    return unseal((id) => (id === k.id ? k.key : undefined), envelope, aad);
  }

  private load(): Promise<AeadKey | undefined> {
    this.key ??= (async () => {
      let text: string;
      try {
        text = await readFile(this.path, 'utf8');
      } catch (err) {
        if (hasErrno(err, 'ENOENT')) return undefined;
        throw new Error(`cannot read the node key ${this.path}: ${errorMessage(err)}`, { cause: err });
      }
      await tightenFile(this.path, this.logger);
      const key = Buffer.from(text.trim(), 'base64');
      if (key.length !== KEY_BYTES) throw new Error(`the node key ${this.path} is not ${KEY_BYTES} bytes of base64`);
      return { id: KEY_ID, key };
    })();
    // A failed read is retried at the next use rather than remembered.
    this.key.catch(() => (this.key = undefined));
    return this.key;
  }

  private async create(): Promise<AeadKey> {
    const k = { id: KEY_ID, key: randomBytes(KEY_BYTES) };
    await writePrivateFileAtomic(this.path, `${k.key.toString('base64')}\n`, this.logger);
    this.key = Promise.resolve(k);
    this.logger.info({ path: this.path }, 'node cache key created');
    return k;
  }
}
