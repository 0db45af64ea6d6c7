/**
 * Which store a server runs on: the embedded LevelDB store (default) or etcd, chosen as k3s chooses
 * its datastore (`--datastore-endpoint https://etcd-1:2379,https://etcd-2:2379` with
 * `--datastore-cafile/--datastore-certfile/--datastore-keyfile`). Entry points call it; the store
 * modules themselves take their dependencies as given.
 */
import { readFile, stat } from 'node:fs/promises';
import { ValidationError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { LevelStore } from './level.js';
import type { BackendStore, ValueCipher } from './types.js';

/** The datastore flags, named as k3s names them. */
export interface DatastoreOptions {
  /** Comma-separated etcd client URLs; absent or empty: the embedded LevelDB store. */
  datastoreEndpoint?: string;
  /** PEM CA file the etcd members' certificates are checked against. */
  datastoreCafile?: string;
  /** PEM client certificate and key presented to etcd (both or neither). */
  datastoreCertfile?: string;
  datastoreKeyfile?: string;
}

export interface OpenStoreOptions extends DatastoreOptions {
  /** LevelDB directory, used when there is no datastore endpoint. */
  levelPath: string;
  logger: Logger;
  secrets?: ValueCipher;
}

/** The endpoints of a `--datastore-endpoint` value (empty: none). */
export function datastoreEndpoints(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
}

/** A TLS file's bytes; ValidationError naming the flag when it cannot be read. */
async function tlsFile(flag: string, path: string | undefined, logger: Logger, secret = false): Promise<Buffer | undefined> {
  if (path === undefined || path === '') return undefined;
  try {
    if (secret && ((await stat(path)).mode & 0o077) !== 0) {
      logger.warn({ path }, 'the etcd client key file can be read by other users; make it 0600');
    }
    return await readFile(path);
  } catch (err) {
    throw new ValidationError([{ field: flag, message: `cannot read ${path}: ${errorMessage(err)}` }], 'invalid datastore options');
  }
}

/**
 * Opens the store the options choose. etcd: StoreUnavailableError naming the endpoints when it does not
 * answer (the server exits with it); ValidationError naming the flag for a bad endpoint or an unreadable
 * TLS file; TLS files without an endpoint are refused rather than ignored.
 */
export async function openStore(opts: OpenStoreOptions): Promise<BackendStore> {
  const endpoints = datastoreEndpoints(opts.datastoreEndpoint);
  if (endpoints.length === 0) {
    const stray = (['datastoreCafile', 'datastoreCertfile', 'datastoreKeyfile'] as const).filter((f) => opts[f]);
    if (stray.length > 0) {
      throw new ValidationError(stray.map((f) => ({ field: f, message: 'given without datastoreEndpoint (the embedded store does not use it)' })), 'invalid datastore options');
    }
    return LevelStore.open({ path: opts.levelPath, logger: opts.logger, secrets: opts.secrets });
  }
  const [ca, cert, key] = await Promise.all([
    tlsFile('datastoreCafile', opts.datastoreCafile, opts.logger),
    tlsFile('datastoreCertfile', opts.datastoreCertfile, opts.logger),
    tlsFile('datastoreKeyfile', opts.datastoreKeyfile, opts.logger, true),
  ]);
  const tls = ca || cert || key ? { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) } : undefined;
  // Loaded only for an etcd datastore: the etcd client (gRPC, its protocol definitions) costs a LevelDB server
  // start time and memory for nothing.
  const { EtcdStore } = await import('./etcd.js');
  return EtcdStore.open({ endpoints, ...(tls ? { tls } : {}), logger: opts.logger, secrets: opts.secrets });
}
