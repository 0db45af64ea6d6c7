/**
 * `drover secrets rotate-key`: a new primary key, every Secret re-encrypted with it, then the old keys
 * dropped. Runs with the server stopped (the store is single-process: LevelDB's lock says so). Safe to
 * re-run after a crash at any step: the old keys stay in the keyring until nothing uses them.
 */
import { join } from 'node:path';
import { DroverError, errorMessage, StoreError } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { LevelStore } from '../store/level.js';
import { Keyring } from './keyring.js';

/** Where the server keeps its store in its data dir. */
export function storePath(dataDir: string): string {
  return join(dataDir, 'store');
}

export interface RotateKeyResult {
  keyId: string;
  droppedKeys: string[];
  /** Secret objects and change-log entries re-encrypted with the new key. */
  objects: number;
  logEntries: number;
  /** Of those, how many were still plaintext. */
  plaintext: number;
}

export class RotateKeyError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 500, reason: 'RotateKeyFailed', cause });
  }
}

export async function rotateSecretsKey(dataDir: string, logger: Logger = silentLogger): Promise<RotateKeyResult> {
  const keyring = await Keyring.load(dataDir, logger);
  // Opened before the keyring changes, so a running server (which holds the store's lock) stops
  // the rotation before it has done anything.
  let store: LevelStore;
  try {
    store = await LevelStore.open({ path: storePath(dataDir), logger, secrets: keyring });
  } catch (err) {
    if (err instanceof StoreError && /in use/.test(err.message)) {
      throw new RotateKeyError(`cannot rotate the secrets key while the server runs: ${err.message}; stop the server and run it again`, err);
    }
    throw err;
  }
  try {
    const keyId = await keyring.addPrimaryKey();
    const report = await store.sealSecrets();
    if (report.failed.length > 0) {
      throw new RotateKeyError(`${report.failed.length} Secret(s) could not be decrypted and were not re-encrypted (old keys kept): ${report.failed.join('; ')}`);
    }
    const usage = await store.secretKeyUsage();
    const stale = Object.keys(usage).filter((id) => id !== keyId);
    if (stale.length > 0) throw new RotateKeyError(`Secrets still use ${stale.join(', ')} after re-encryption (old keys kept): ${JSON.stringify(usage)}`);
    await store.close();
    const droppedKeys = await keyring.dropNonPrimaryKeys();
    logger.info({ keyId, droppedKeys, objects: report.objects, logEntries: report.logEntries }, 'secrets key rotated');
    return { keyId, droppedKeys, objects: report.objects, logEntries: report.logEntries, plaintext: report.plaintext };
  } finally {
    await store.close().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'closing the store after key rotation failed'));
  }
}
