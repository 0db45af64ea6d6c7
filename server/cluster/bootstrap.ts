/**
 * One identity for every server sharing an etcd datastore, as k3s keeps its "bootstrap data" in its
 * datastore: the CA (certificate and key), the server's MQTT client identity, the Secrets keyring and
 * the bootstrap admin token live in etcd under BOOTSTRAP_KEY, sealed (AES-256-GCM) with a key derived
 * from the server token (server/cluster/server-token.ts). The first server uploads its own (made where
 * missing) in a create-if-absent transaction, so two servers starting together agree on one; every
 * later server writes the cluster's into its data dir (0600 files, 0700 dirs) before the PKI, the
 * keyring and the token store are opened. Each server still issues its own serving certificate (its
 * own names) from the shared CA. The same derived key seals the documents the servers share while
 * they run (API and join tokens, node credentials, the default join token: ClusterIdentity.docs).
 *
 * A data dir that already holds files (a LevelDB server moved onto etcd, a server restarted) is
 * reconciled: equal files stay; files made by another cluster's CA are refused (the data dir belongs
 * to another cluster); a keyring rotated here (a higher primary key, `drover secrets rotate-key`) is
 * uploaded, one rotated elsewhere downloaded; any other file is replaced by the cluster's, with a warning.
 */
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { seal, SealError, unseal, type AeadKey } from '../../src/util/aead.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, writePrivateFileAtomic } from '../../src/util/private-fs.js';
import { ADMIN_TOKEN_FILE, loadOrCreateAdminToken } from '../auth/tokens.js';
import { loadOrCreateClusterPki, PKI_FILES, readOptional } from '../pki/pki.js';
import { Keyring, keyringPath } from '../secrets/keyring.js';
import type { EtcdStore } from '../store/etcd.js';
import { datastoreEndpoints, openStore, type DatastoreOptions } from '../store/open.js';
import type { SharedDoc } from './doc.js';
import { EtcdDoc } from './etcd-doc.js';
import { checkServerToken, deriveKey, newKdfParams, SERVER_TOKEN_ENV, ServerTokenError, type KdfParams } from './server-token.js';

/** Where the cluster's identity and shared documents live in etcd (beside the store's /drover/registry/). */
export const CLUSTER_KEYS = {
  bootstrap: '/drover/cluster/bootstrap',
  tokens: '/drover/cluster/tokens',
  nodes: '/drover/cluster/node-credentials',
  joinToken: '/drover/cluster/join-token',
} as const;

const BOOTSTRAP_FORMAT = 1;
/** Attempts at reconciling with a bootstrap document other servers keep changing (a keyring upload). */
const RECONCILE_ATTEMPTS = 5;

/** The data dir's files the bootstrap data carries, relative to the data dir. */
export function bootstrapFiles(dataDir: string): { ca: string[]; keyring: string; other: string[]; all: string[] } {
  const tls = (f: string) => join('tls', f);
  const ca = [tls(PKI_FILES.caCert), tls(PKI_FILES.caKey)];
  const keyring = relative(dataDir, keyringPath(dataDir));
  const other = [tls(PKI_FILES.clientCert), tls(PKI_FILES.clientKey), ADMIN_TOKEN_FILE];
  return { ca, keyring, other, all: [...ca, keyring, ...other] };
}

/** The bootstrap data cannot be used with this data dir (it belongs to another cluster, the document is damaged). */
export class ClusterBootstrapError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 500, reason: 'ClusterBootstrapFailed', cause });
  }
}

interface BootstrapDoc {
  format: number;
  kdf: KdfParams;
  /** The sealed JSON of { files: { relative path: content } }. */
  data: string;
}

export interface ClusterIdentity {
  /** Documents every server on this etcd shares, sealed with the server token's key. */
  docs: { tokens: SharedDoc; nodes: SharedDoc; joinToken: SharedDoc };
  /** This server uploaded the bootstrap data (it was the first). */
  created: boolean;
  close(): Promise<void>;
}

export interface JoinClusterOptions {
  dataDir: string;
  datastore: DatastoreOptions;
  /** The server token (readServerToken); undefined is refused, naming the flag. */
  serverToken: string | undefined;
  logger: Logger;
  now?: () => number;
}

/**
 * Makes the data dir hold the cluster's identity (uploading its own when etcd has none yet) and opens
 * the shared documents. Errors: ServerTokenError (no token, or one that does not open the cluster's
 * data), ClusterBootstrapError (a data dir of another cluster), StoreUnavailableError (etcd not answering).
 */
export async function joinCluster(o: JoinClusterOptions): Promise<ClusterIdentity> {
  const endpoints = datastoreEndpoints(o.datastore.datastoreEndpoint);
  if (endpoints.length === 0) throw new ClusterBootstrapError('joinCluster needs an etcd datastore (--datastore-endpoint)');
  await ensurePrivateDir(o.dataDir, o.logger);
  const store = (await openStore({
    levelPath: '',
    datastoreEndpoint: o.datastore.datastoreEndpoint,
    datastoreCafile: o.datastore.datastoreCafile,
    datastoreCertfile: o.datastore.datastoreCertfile,
    datastoreKeyfile: o.datastore.datastoreKeyfile,
    logger: o.logger,
  })) as EtcdStore;
  try {
    // After the store: etcd not answering is told first (naming the endpoint), as without a token.
    const given: { token: string; source: string; generated?: string } = o.serverToken ? { token: o.serverToken, source: 'the one given' } : await localServerToken(store, o);
    checkServerToken(given.token, given.source);
    let boot: { key: AeadKey; created: boolean };
    try {
      boot = await bootstrap(store, { ...o, serverToken: given.token });
    } catch (err) {
      if (given.generated && err instanceof ServerTokenError) {
        // Another server created the cluster between our look and our write: the token made here opens nothing.
        await rm(given.generated, { force: true });
        throw new ServerTokenError(`another server created the cluster in ${where(store)} while this one started: give this server that server's token (its DATA_DIR/${SERVER_TOKEN_FILE}) with --server-token-file or ${SERVER_TOKEN_ENV}`, err);
      }
      throw err;
    }
    const { key, created } = boot;
    const doc = (k: string) => new EtcdDoc(store, k, key, o.logger);
    const docs = { tokens: doc(CLUSTER_KEYS.tokens), nodes: doc(CLUSTER_KEYS.nodes), joinToken: doc(CLUSTER_KEYS.joinToken) };
    return {
      docs,
      created,
      close: async () => {
        for (const d of Object.values(docs)) await d.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Where the first server of a cluster keeps the server token it generated (k3s: server/token). */
export const SERVER_TOKEN_FILE = 'server-token';

/**
 * No token given (k3s's K3S_TOKEN unset): the one this data dir generated before (a restart of the
 * cluster's first server), else a new one when etcd holds no cluster yet, written to DATA_DIR/server-token
 * (0600) for the operator to give the other servers. A later server must be given it: refused, naming how.
 */
async function localServerToken(store: EtcdStore, o: JoinClusterOptions): Promise<{ token: string; source: string; generated?: string }> {
  const path = join(o.dataDir, SERVER_TOKEN_FILE);
  const kept = (await readOptional(path))?.trim();
  if (kept) return { token: kept, source: path };
  if (await readBootstrap(store)) {
    throw new ServerTokenError(
      `this server joins the cluster in ${where(store)}, which needs the cluster's server token: --server-token-file FILE (mode 0600) or ${SERVER_TOKEN_ENV} ` +
        `(the first server wrote it to its DATA_DIR/${SERVER_TOKEN_FILE}, unless it was given one)`,
    );
  }
  const token = randomBytes(32).toString('hex');
  await writePrivateFileAtomic(path, `${token}\n`);
  o.logger.info({ path }, `no server token given: generated the cluster's server token; every other server on this etcd needs it (--server-token-file with a copy of ${path})`);
  return { token, source: path, generated: path };
}

async function readLocal(dataDir: string): Promise<Map<string, string | undefined>> {
  const files = new Map<string, string | undefined>();
  for (const rel of bootstrapFiles(dataDir).all) files.set(rel, await readOptional(join(dataDir, rel)));
  return files;
}

function where(store: EtcdStore): string {
  return `etcd at ${store.endpoints.join(',')}`;
}

async function readBootstrap(store: EtcdStore): Promise<{ doc: BootstrapDoc; version: number } | undefined> {
  const kv = await store.call('reading the bootstrap data', async (o) => (await store.etcd.kv.range({ key: Buffer.from(CLUSTER_KEYS.bootstrap) }, o)).kvs[0]);
  return kv ? { doc: parseDoc(store, kv.value), version: Number(kv.mod_revision) } : undefined;
}

function parseDoc(store: EtcdStore, value: Buffer): BootstrapDoc {
  let doc: BootstrapDoc;
  try {
    doc = JSON.parse(value.toString('utf8')) as BootstrapDoc;
  } catch (err) {
    throw new ClusterBootstrapError(`the cluster's bootstrap data in ${where(store)} (${CLUSTER_KEYS.bootstrap}) is not JSON: ${errorMessage(err)}`, err);
  }
  if (doc?.format !== BOOTSTRAP_FORMAT || typeof doc.data !== 'string' || typeof doc.kdf?.salt !== 'string') {
    throw new ClusterBootstrapError(`the cluster's bootstrap data in ${where(store)} (${CLUSTER_KEYS.bootstrap}) is not in a format this version reads (format ${String(doc?.format)})`);
  }
  return doc;
}

function encodeDoc(kdf: KdfParams, key: AeadKey, files: Map<string, string>): Buffer {
  const plain = Buffer.from(JSON.stringify({ files: Object.fromEntries(files) }), 'utf8');
  const doc: BootstrapDoc = { format: BOOTSTRAP_FORMAT, kdf, data: seal(key, plain, CLUSTER_KEYS.bootstrap) };
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

function openDoc(store: EtcdStore, doc: BootstrapDoc, key: AeadKey): Map<string, string> {
  let plain: Buffer;
  try {
    plain = unseal((id) => (id === key.id ? key.key : undefined), doc.data, CLUSTER_KEYS.bootstrap);
  } catch (err) {
    if (err instanceof SealError) throw new ServerTokenError(`the server token does not open the cluster's bootstrap data in ${where(store)}`, err);
    throw err;
  }
  const files = (JSON.parse(plain.toString('utf8')) as { files?: Record<string, unknown> }).files ?? {};
  return new Map(Object.entries(files).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

/** Writes the bootstrap document if its key is still at `version` (0: absent); the document there otherwise. */
async function putDoc(store: EtcdStore, value: Buffer, version: number): Promise<{ ok: true; version: number } | { ok: false; current: { doc: BootstrapDoc; version: number } }> {
  const key = Buffer.from(CLUSTER_KEYS.bootstrap);
  const compare = version === 0 ? { key, target: 'Create' as const, result: 'Equal' as const, create_revision: 0 } : { key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: version };
  const r = await store.call('writing the bootstrap data', (o) => store.etcd.kv.txn({ compare: [compare], success: [{ request_put: { key, value } }], failure: [{ request_range: { key } }] }, o));
  if (r.succeeded) return { ok: true, version: Number(r.header.revision) };
  const kv = r.responses[0]?.response_range?.kvs[0];
  if (!kv) throw new ClusterBootstrapError(`the cluster's bootstrap data in ${where(store)} was deleted while this server read it; start again`);
  return { ok: false, current: { doc: parseDoc(store, kv.value), version: Number(kv.mod_revision) } };
}

/** A keyring file's primary key: its number (k1, k2, ...: rotate-key counts up; NaN when none) and its material. */
function primaryOf(keyringText: string): { n: number; key: string | undefined } {
  try {
    const ring = JSON.parse(keyringText) as { primary?: unknown; keys?: Array<{ id?: unknown; key?: unknown }> };
    const m = /^k(\d+)$/.exec(String(ring.primary));
    const key = ring.keys?.find((k) => k.id === ring.primary)?.key;
    return { n: m ? Number(m[1]) : NaN, key: typeof key === 'string' ? key : undefined };
  } catch {
    // A keyring that is not JSON has no primary: the caller refuses it by name (Keyring says what is wrong when it opens).
    return { n: NaN, key: undefined };
  }
}

async function bootstrap(store: EtcdStore, o: JoinClusterOptions): Promise<{ key: AeadKey; created: boolean }> {
  const { dataDir, logger } = o;
  const token = o.serverToken!;
  const names = bootstrapFiles(dataDir);
  const existedBefore = new Set([...(await readLocal(dataDir))].filter(([, text]) => text !== undefined).map(([rel]) => rel));
  let current = await readBootstrap(store);
  if (!current) {
    // The first server: this data dir's identity (made now where missing) becomes the cluster's.
    await loadOrCreateClusterPki({ dir: join(dataDir, 'tls'), logger, now: o.now });
    await Keyring.loadOrCreate(dataDir, logger);
    await loadOrCreateAdminToken(join(dataDir, ADMIN_TOKEN_FILE), logger);
    const files = new Map([...(await readLocal(dataDir))].map(([rel, text]) => [rel, text ?? '']));
    const kdf = newKdfParams();
    const key = await deriveKey(token, kdf);
    const put = await putDoc(store, encodeDoc(kdf, key, files), 0);
    if (put.ok) {
      logger.info({ etcd: store.endpoints, key: CLUSTER_KEYS.bootstrap }, "this server's CA, keyring and admin token are the cluster's bootstrap data now (sealed with the server token)");
      return { key, created: true };
    }
    // Another server uploaded first: its identity is the cluster's; what this start made here gives way.
    logger.info('another server uploaded the bootstrap data first: taking it');
    current = put.current;
  }
  for (let attempt = 1; ; attempt++) {
    const key = await deriveKey(token, current.doc.kdf);
    const theirs = openDoc(store, current.doc, key);
    const local = await readLocal(dataDir);
    const upload = new Map(theirs);
    let uploads = false;
    const writes: Array<[string, string]> = [];
    for (const rel of names.all) {
      const want = theirs.get(rel);
      const mine = local.get(rel);
      if (want === undefined) throw new ClusterBootstrapError(`the cluster's bootstrap data in ${where(store)} lacks ${rel}`);
      if (mine === want) continue;
      const path = join(dataDir, rel);
      if (mine === undefined || !existedBefore.has(rel)) {
        writes.push([rel, want]);
      } else if (names.ca.includes(rel)) {
        throw new ClusterBootstrapError(
          `${path} is not the cluster's CA (the bootstrap data in ${where(store)}): this data dir belongs to another cluster; ` +
            `move ${join(dataDir, 'tls')} away (its nodes then join again) or start this server with an empty --data-dir`,
        );
      } else if (rel === names.keyring) {
        const [p, q] = [primaryOf(mine), primaryOf(want)];
        const [n, m] = [p.n, q.n];
        if (n === m && p.key !== undefined && p.key === q.key) {
          // The same primary key (rotate-key published the keyring before dropping the old keys here): nothing is lost either way.
          writes.push([rel, want]);
        } else if (n > m) {
          upload.set(rel, mine);
          uploads = true;
          logger.info({ path, keyId: `k${n}` }, "this data dir's secrets keyring is newer than the cluster's (rotate-key): uploading it");
        } else if (n < m) {
          writes.push([rel, want]);
          logger.warn({ path, keyId: `k${m}` }, "the secrets keyring was rotated on another server: taking the cluster's");
        } else {
          throw new ClusterBootstrapError(
            `${path} is not the cluster's secrets keyring (the bootstrap data in ${where(store)}) though its primary key has the same id: ` +
              `Secrets of this data dir's store and of the cluster's cannot both be read; move it away to take the cluster's`,
          );
        }
      } else {
        writes.push([rel, want]);
        if (existedBefore.has(rel)) logger.warn({ path }, "replaced by the cluster's copy (bootstrap data in etcd)");
      }
    }
    if (uploads) {
      const put = await putDoc(store, encodeDoc(current.doc.kdf, key, upload), current.version);
      if (!put.ok) {
        if (attempt >= RECONCILE_ATTEMPTS) throw new ClusterBootstrapError(`the cluster's bootstrap data in ${where(store)} keeps changing while this server starts; start it again`);
        current = put.current;
        continue;
      }
      current = { ...current, version: put.version };
    }
    for (const [rel, text] of writes) await writePrivateFileAtomic(join(dataDir, rel), text, logger);
    logger.info({ etcd: store.endpoints, written: writes.map(([rel]) => rel) }, "this data dir holds the cluster's identity (bootstrap data in etcd)");
    await renewSharedClientCert(store, o, key, { ...current, files: upload });
    return { key, created: false };
  }
}

/**
 * The server's MQTT client certificate is re-issued by loadOrCreateClusterPki when near expiry: the new
 * one becomes the cluster's, or every server would take the old one at each start and issue its own
 * again. A server that loses the race to another doing the same keeps its own (valid) until its next start.
 */
async function renewSharedClientCert(store: EtcdStore, o: JoinClusterOptions, key: AeadKey, current: { doc: BootstrapDoc; version: number; files: Map<string, string> }): Promise<void> {
  const { serverClient } = await loadOrCreateClusterPki({ dir: join(o.dataDir, 'tls'), logger: o.logger, now: o.now });
  const [certRel, keyRel] = [join('tls', PKI_FILES.clientCert), join('tls', PKI_FILES.clientKey)];
  if (current.files.get(certRel) === serverClient.cert && current.files.get(keyRel) === serverClient.key) return;
  const files = new Map(current.files).set(certRel, serverClient.cert).set(keyRel, serverClient.key);
  const put = await putDoc(store, encodeDoc(current.doc.kdf, key, files), current.version);
  if (put.ok) o.logger.info("the server's MQTT client certificate was renewed: the cluster's now (bootstrap data in etcd)");
}

/**
 * After `drover secrets rotate-key` on etcd (every server stopped): the rotated keyring of `dataDir`
 * becomes the cluster's, so every server takes it from etcd at its next start. false when etcd holds no
 * bootstrap data (no server with a server token ran on it yet: nothing to update). ServerTokenError
 * when the token does not open it.
 */
export async function publishRotatedKeyring(o: { store: EtcdStore; dataDir: string; serverToken: string; logger: Logger }): Promise<boolean> {
  const rel = bootstrapFiles(o.dataDir).keyring;
  const text = await readFile(join(o.dataDir, rel), 'utf8');
  for (let attempt = 1; ; attempt++) {
    const current = await readBootstrap(o.store);
    if (!current) return false;
    const key = await deriveKey(o.serverToken, current.doc.kdf);
    const files = openDoc(o.store, current.doc, key);
    if (files.get(rel) === text) return true;
    files.set(rel, text);
    const put = await putDoc(o.store, encodeDoc(current.doc.kdf, key, files), current.version);
    if (put.ok) {
      o.logger.info({ etcd: o.store.endpoints, keyId: `k${primaryOf(text).n}` }, "the rotated secrets keyring is the cluster's now (bootstrap data in etcd)");
      return true;
    }
    if (attempt >= RECONCILE_ATTEMPTS) throw new ClusterBootstrapError(`the cluster's bootstrap data in ${where(o.store)} keeps changing; run rotate-key again`);
  }
}
