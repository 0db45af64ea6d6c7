/**
 * `drover secrets rotate-key`: a new primary key, every Secret re-encrypted with it, then the old keys
 * dropped. Runs with the server stopped: on LevelDB its lock says whether it runs; on etcd (the
 * `--datastore-endpoint` flags) the leader key a running server holds, and then every server on that
 * etcd must be stopped (each holds the keyring in its own data dir: a server left running with the
 * old one could not open the re-encrypted Secrets, and one it sealed after the rotation would be lost
 * with the old key). Safe to re-run after a crash at any step: the old keys stay in the keyring until
 * nothing uses them.
 */
import { join } from 'node:path';
import { DroverError, errorMessage, StoreError } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { EtcdStore } from '../store/etcd.js';
import { datastoreEndpoints, openStore, type DatastoreOptions } from '../store/open.js';
import { compactEtcdHistory, etcdLeader, LEADER_KEY } from '../store/raw-objects.js';
import type { BackendStore } from '../store/types.js';
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
  /** What the operator must do next (etcd: copy the keyring to every other server), one line each; absent on LevelDB. */
  notes?: string[];
}

export class RotateKeyError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 500, reason: 'RotateKeyFailed', cause });
  }
}

/** The store of `dataDir`, or etcd; refused (before any change) while a server runs on it. */
async function openIdle(dataDir: string, keyring: Keyring, datastore: DatastoreOptions, logger: Logger): Promise<BackendStore> {
  const opts = { levelPath: storePath(dataDir), logger, ...datastore };
  const endpoints = datastoreEndpoints(datastore.datastoreEndpoint);
  if (endpoints.length > 0) {
    // Asked before the store is opened with the keyring: that open may already re-encrypt.
    const probe = (await openStore(opts)) as EtcdStore;
    try {
      const leader = await etcdLeader(probe);
      if (leader !== undefined) {
        throw new RotateKeyError(`cannot rotate the secrets key while a server runs on etcd at ${endpoints.join(',')} (${leader} holds the leader key ${LEADER_KEY}): stop every drover server on this etcd and run it again`);
      }
    } finally {
      await probe.close();
    }
  }
  try {
    return await openStore({ ...opts, secrets: keyring });
  } catch (err) {
    if (err instanceof StoreError && /in use/.test(err.message)) {
      throw new RotateKeyError(`cannot rotate the secrets key while the server runs: ${err.message}; stop the server and run it again`, err);
    }
    throw err;
  }
}

export async function rotateSecretsKey(dataDir: string, logger: Logger = silentLogger, datastore: DatastoreOptions = {}): Promise<RotateKeyResult> {
  const keyring = await Keyring.load(dataDir, logger);
  const endpoints = datastoreEndpoints(datastore.datastoreEndpoint);
  const store = await openIdle(dataDir, keyring, datastore, logger);
  try {
    const keyId = await keyring.addPrimaryKey();
    const report = await store.sealSecrets();
    if (report.failed.length > 0) {
      throw new RotateKeyError(`${report.failed.length} Secret(s) could not be decrypted and were not re-encrypted (old keys kept): ${report.failed.join('; ')}`);
    }
    const usage = await store.secretKeyUsage();
    const stale = Object.keys(usage).filter((id) => id !== keyId);
    if (stale.length > 0) throw new RotateKeyError(`Secrets still use ${stale.join(', ')} after re-encryption (old keys kept): ${JSON.stringify(usage)}`);
    const notes: string[] = [];
    if (endpoints.length > 0) {
      // etcd keeps every overwritten value in its history: the old ciphertexts go with it.
      const revision = await compactEtcdHistory(store as EtcdStore);
      notes.push(
        `every other server on etcd at ${endpoints.join(',')} needs the new keyring before it starts: copy ${keyring.path} (mode 0600) into its data dir (secrets/keys.json); with the old one it cannot open the Secrets`,
        `etcd's history was compacted to revision ${revision}, so the old ciphertexts are gone from it; run \`etcdctl defrag\` on each member to drop them from its disk too`,
      );
    }
    await store.close();
    const droppedKeys = await keyring.dropNonPrimaryKeys();
    logger.info({ keyId, droppedKeys, objects: report.objects, logEntries: report.logEntries }, 'secrets key rotated');
    return { keyId, droppedKeys, objects: report.objects, logEntries: report.logEntries, plaintext: report.plaintext, ...(notes.length > 0 ? { notes } : {}) };
  } finally {
    await store.close().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'closing the store after key rotation failed'));
  }
}
