/**
 * The keys that encrypt Secrets in the server's store: DATA_DIR/secrets/keys.json (0600, in a 0700
 * directory), made at first start. Several keys may be present during a rotation; the primary one
 * seals new writes, the others only open what they sealed until the rotation re-encrypted it.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isValidKeyId, KEY_BYTES, seal, unseal, type AeadKey } from '../../src/util/aead.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, tightenFile, writePrivateFileAtomic } from '../../src/util/private-fs.js';
import type { ValueCipher } from '../store/types.js';

const KEYRING_FORMAT = 1;

interface KeyringFile {
  format: number;
  primary: string;
  keys: { id: string; createdAt: string; key: string }[];
}

/** The key file is missing, unreadable or malformed. */
export class KeyringError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 500, reason: 'KeyringUnavailable', cause });
  }
}

export function keyringPath(dataDir: string): string {
  return join(dataDir, 'secrets', 'keys.json');
}

function parseKeyring(text: string, path: string): { primary: string; keys: Map<string, { key: Buffer; createdAt: string }> } {
  let file: KeyringFile;
  try {
    file = JSON.parse(text) as KeyringFile;
  } catch (err) {
    throw new KeyringError(`secrets keyring ${path} is not JSON: ${errorMessage(err)}`, err);
  }
  if (file?.format !== KEYRING_FORMAT) throw new KeyringError(`secrets keyring ${path}: unknown format ${String(file?.format)}`);
  if (!Array.isArray(file.keys) || file.keys.length === 0) throw new KeyringError(`secrets keyring ${path}: keys: must list at least one key`);
  const keys = new Map<string, { key: Buffer; createdAt: string }>();
  file.keys.forEach((k, i) => {
    if (typeof k?.id !== 'string' || !isValidKeyId(k.id)) throw new KeyringError(`secrets keyring ${path}: keys[${i}].id: must be 1-64 of [A-Za-z0-9._-]`);
    const key = Buffer.from(typeof k.key === 'string' ? k.key : '', 'base64');
    if (key.length !== KEY_BYTES) throw new KeyringError(`secrets keyring ${path}: keys[${i}].key (id ${k.id}): must be ${KEY_BYTES} bytes of base64, got ${key.length}`);
    if (keys.has(k.id)) throw new KeyringError(`secrets keyring ${path}: keys[${i}].id: "${k.id}" appears twice`);
    keys.set(k.id, { key, createdAt: String(k.createdAt ?? '') });
  });
  if (!keys.has(file.primary)) throw new KeyringError(`secrets keyring ${path}: primary: "${String(file.primary)}" is not one of the keys`);
  return { primary: file.primary, keys };
}

export class Keyring implements ValueCipher {
  private constructor(
    readonly path: string,
    private primary: string,
    private readonly keys: Map<string, { key: Buffer; createdAt: string }>,
    private readonly logger: Logger,
  ) {}

  /** Loads DATA_DIR/secrets/keys.json, creating it with one fresh key on first start; tightens loose modes. */
  static async loadOrCreate(dataDir: string, logger: Logger = silentLogger): Promise<Keyring> {
    const path = keyringPath(dataDir);
    const existing = await Keyring.read(path, logger);
    if (existing) return existing;
    const ring = new Keyring(path, 'k1', new Map([['k1', { key: randomBytes(KEY_BYTES), createdAt: new Date().toISOString() }]]), logger);
    await ring.save();
    logger.info({ path, keyId: 'k1' }, 'secrets encryption key created');
    return ring;
  }

  /** Loads an existing keyring; a missing one is an error (rotation must not invent the first key). */
  static async load(dataDir: string, logger: Logger = silentLogger): Promise<Keyring> {
    const path = keyringPath(dataDir);
    const ring = await Keyring.read(path, logger);
    if (!ring) throw new KeyringError(`no secrets keyring at ${path}: start the server once to create it`);
    return ring;
  }

  /** Nothing is created here: a mistyped --data-dir of rotate-key must not leave directories behind. */
  private static async read(path: string, logger: Logger): Promise<Keyring | undefined> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new KeyringError(`cannot read secrets keyring ${path}: ${errorMessage(err)}`, err);
    }
    await ensurePrivateDir(dirname(path), logger);
    await tightenFile(path, logger);
    const { primary, keys } = parseKeyring(text, path);
    return new Keyring(path, primary, keys, logger);
  }

  get primaryKeyId(): string {
    return this.primary;
  }

  keyIds(): string[] {
    return [...this.keys.keys()];
  }

  seal(plaintext: Buffer, aad: string): string {
    return seal(this.primaryKey(), plaintext, aad);
  }

  /** Throws SealError (unknown key, wrong key, tampered data); the store names the object. */
  unseal(envelope: string, aad: string): Buffer {
    return unseal((id) => this.keys.get(id)?.key, envelope, aad);
  }

  /** Adds a fresh key and makes it primary (persisted before returning); the old keys stay until dropped. */
  async addPrimaryKey(): Promise<string> {
    const next = Math.max(0, ...this.keyIds().map((id) => Number(/^k(\d+)$/.exec(id)?.[1] ?? 0))) + 1;
    const id = `k${next}`;
    this.keys.set(id, { key: randomBytes(KEY_BYTES), createdAt: new Date().toISOString() });
    this.primary = id;
    await this.save();
    this.logger.info({ path: this.path, keyId: id }, 'secrets encryption key added as primary');
    return id;
  }

  /** Removes every key but the primary one (persisted); returns the ids removed. */
  async dropNonPrimaryKeys(): Promise<string[]> {
    const dropped = this.keyIds().filter((id) => id !== this.primary);
    for (const id of dropped) this.keys.delete(id);
    if (dropped.length > 0) await this.save();
    return dropped;
  }

  private primaryKey(): AeadKey {
    return { id: this.primary, key: this.keys.get(this.primary)!.key };
  }

  private async save(): Promise<void> {
    const file: KeyringFile = {
      format: KEYRING_FORMAT,
      primary: this.primary,
      keys: [...this.keys].map(([id, k]) => ({ id, createdAt: k.createdAt, key: k.key.toString('base64') })),
    };
    await writePrivateFileAtomic(this.path, JSON.stringify(file, null, 2) + '\n', this.logger);
  }
}
