/*
 * `drover datastore snapshot save|restore` and `drover datastore migrate`: every object of one store
 * to a snapshot file (server/store/snapshot.ts) or into another store, as the store holds it.
 *
 * - uids, creationTimestamp and generation are kept (ownerReferences name their owner's uid), and so is
 *   every field of every object.
 * - Secrets are moved sealed, never decrypted into a file. They open only with the keyring that sealed
 *   them (DATA_DIR/secrets/keys.json), which must travel with them. Where a keyring is at hand (the data
 *   dir of a LevelDB target, of `migrate --from`, or `--data-dir` beside an etcd target) every Secret is
 *   opened with it before anything is written: a missing or wrong keyring stops the command, naming it.
 * - Revisions. Into LevelDB: every object keeps its resourceVersion, and the store continues from the
 *   highest of the snapshot's revision and its own, its change log empty (a watch from before is told to
 *   relist). Into etcd: etcd numbers its revisions itself and cannot be told a mod revision, so the
 *   objects are written in the order of their old revisions, up to 100 per transaction (which share one
 *   revision): their resourceVersions change, their order does not. Clients relist after a restore.
 * - A store a server is running on is refused: LevelDB says so by its lock, etcd by the leader key a
 *   running server holds. A target that holds objects is refused unless `force` (its objects are then
 *   replaced). A LevelDB store is read here with its server stopped (one process holds it); a running
 *   server's is saved through that server (`save --server`: GET /drover/v1/snapshot, snapshot-route.ts,
 *   received by receiveSnapshot). etcd is read while servers run, at one revision.
 * - The objects are held in memory between reading and writing (about the size of their JSON; 10,000
 *   pod-sized objects are ~20 MB): a whole file is checked before anything is written.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import type { ApiObject } from '../../src/api/meta.js';
import { STORE_LOCKED, type DatastoreTarget, type DatastoreTools, type ObjectsLoaded, type SnapshotSaved } from '../../src/cli/datastore.js';
import { DroverError, StoreError, ValidationError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { Keyring, keyringPath } from '../secrets/keyring.js';
import { storePath } from '../secrets/rotate.js';
import type { EtcdStore } from './etcd.js';
import { parseObjectKey, what } from './keys.js';
import { LevelStore, isLockError } from './level.js';
import { datastoreEndpoints, openStore } from './open.js';
import { countEtcd, dumpEtcd, dumpLevel, etcdLeader, LEADER_KEY, loadEtcd, loadLevel, type RawDump, type RawObject } from './raw-objects.js';
import { HEADER_BYTES, describeObjects, readSnapshot, receiveSnapshot, writeSnapshot, type SnapshotHeader } from './snapshot.js';

/** A datastore command refused or failed; the message says why and what to do. */
export class DatastoreToolError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 409, reason: 'DatastoreTool', cause });
  }
}

/** A server holds the LevelDB store (its lock): the CLI offers to save through that server's API instead. */
export class StoreLockedError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 409, reason: STORE_LOCKED, cause });
  }
}

/** The LevelDB store of `dataDir`; `mustExist`: a data dir without one is a mistake, not an empty store. */
async function openLevel(dataDir: string, logger: Logger, mustExist: boolean): Promise<LevelStore> {
  const path = storePath(dataDir);
  if (mustExist) {
    await access(join(path, 'CURRENT')).catch((err: unknown) => {
      throw new DatastoreToolError(`no drover store in ${dataDir} (${path} holds no LevelDB store: is --data-dir the server's data dir?)`, err);
    });
  }
  try {
    return await LevelStore.open({ path, logger });
  } catch (err) {
    if (isLockError(err)) throw new StoreLockedError(`a drover server is running on ${dataDir}: its LevelDB store ${path} is locked (one process at a time); stop the server and run this again`, err);
    throw err;
  }
}

/** TLS files without an endpoint are a mistake (as openStore says for the server), not ignored. */
function refuseStrayTls(target: DatastoreTarget): void {
  if (datastoreEndpoints(target.datastoreEndpoint).length > 0) return;
  const stray = (['datastoreCafile', 'datastoreCertfile', 'datastoreKeyfile'] as const).filter((f) => target[f]);
  if (stray.length > 0) throw new ValidationError(stray.map((f) => ({ field: f, message: 'given without datastoreEndpoint (a LevelDB store does not use it)' })), 'invalid datastore options');
}

async function openEtcd(target: DatastoreTarget, logger: Logger): Promise<EtcdStore> {
  // The etcd client is loaded only here (openStore imports it on demand), and openStore checks the flags.
  return (await openStore({ levelPath: '', logger, datastoreEndpoint: target.datastoreEndpoint, datastoreCafile: target.datastoreCafile, datastoreCertfile: target.datastoreCertfile, datastoreKeyfile: target.datastoreKeyfile })) as EtcdStore;
}

function etcdName(target: DatastoreTarget): string {
  return `etcd at ${datastoreEndpoints(target.datastoreEndpoint).join(',')}`;
}

async function closing<S extends { close(): Promise<void> }, T>(store: S, logger: Logger, fn: (s: S) => Promise<T>): Promise<T> {
  try {
    return await fn(store);
  } finally {
    await store.close().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'closing the store failed'));
  }
}

async function refuseRunningServer(store: EtcdStore, name: string): Promise<void> {
  const leader = await etcdLeader(store);
  if (leader !== undefined) {
    throw new DatastoreToolError(`a drover server is running on ${name} (${leader} holds the leader key ${LEADER_KEY}; it is released when the server stops or its lease expires): stop every server on this etcd and run this again`);
  }
}

function refuseNonEmpty(held: number, name: string, force: boolean): void {
  if (held > 0 && !force) throw new DatastoreToolError(`${name} already holds ${held} object(s): use an empty one, or add --force to replace them`);
}

/** The objects in the order etcd should receive them: by old revision (a LevelDB-sealed Secret's is unknown: first). */
function byRevision(objects: RawObject[]): RawObject[] {
  return [...objects].sort((a, b) => (a.revision ?? 0) - (b.revision ?? 0) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * Opens every sealed Secret with the keyring of `dataDir` (required when there is one to open), so a
 * missing or wrong keyring stops the command before it writes. The opened Secrets, by key, for a
 * LevelDB target that must re-seal one (see loadIntoLevel).
 */
async function openSecrets(objects: RawObject[], dataDir: string, logger: Logger, why: string): Promise<{ keyring?: Keyring; opened: Map<string, ApiObject> }> {
  const sealed = objects.filter((o): o is RawObject & { value: string } => typeof o.value === 'string');
  const opened = new Map<string, ApiObject>();
  if (sealed.length === 0) return { opened };
  const path = keyringPath(dataDir);
  const { keyIds } = describeObjects(sealed);
  const present = await access(path).then(
    () => true,
    () => false,
  );
  if (!present) {
    throw new DatastoreToolError(`${sealed.length} Secret(s) are sealed with key(s) ${keyIds.join(', ')} and there is no keyring at ${path} (${why}): copy secrets/keys.json from the data dir of the server that sealed them there (mode 0600) and run this again`);
  }
  const keyring = await Keyring.load(dataDir, logger);
  const failed: string[] = [];
  for (const o of sealed) {
    const ref = parseObjectKey(o.key)!;
    const name = what(ref.kind, ref.namespace, ref.name);
    try {
      const obj = JSON.parse(keyring.unseal(o.value, o.key).toString('utf8')) as ApiObject;
      opened.set(o.key, obj);
    } catch (err) {
      failed.push(`${name}: ${errorMessage(err)}`);
    }
  }
  if (failed.length > 0) {
    const shown = failed.slice(0, 3).join('; ') + (failed.length > 3 ? `; and ${failed.length - 3} more` : '');
    throw new DatastoreToolError(`the keyring ${path} (keys ${keyring.keyIds().join(', ')}) does not open ${failed.length} of ${sealed.length} Secret(s), sealed with ${keyIds.join(', ')}: ${shown}; put the keyring that sealed them there and run this again (nothing was written)`);
  }
  return { keyring, opened };
}

async function dumpSource(from: DatastoreTarget, logger: Logger): Promise<{ dump: RawDump; source: 'leveldb' | 'etcd'; name: string }> {
  refuseStrayTls(from);
  if (datastoreEndpoints(from.datastoreEndpoint).length > 0) {
    return closing(await openEtcd(from, logger), logger, async (s) => ({ dump: await dumpEtcd(s), source: 'etcd' as const, name: etcdName(from) }));
  }
  const dataDir = from.dataDir!;
  return closing(await openLevel(dataDir, logger, true), logger, async (s) => ({ dump: await dumpLevel(s, storePath(dataDir)), source: 'leveldb' as const, name: `LevelDB store ${storePath(dataDir)}` }));
}

/**
 * Into LevelDB: each object with its resourceVersion (its revision). A Secret sealed in etcd has none
 * inside its sealed value (etcd keeps it as the mod revision), so it is opened and sealed again with the
 * target's keyring, with its resourceVersion inside; one sealed in LevelDB is written as it is.
 */
async function loadIntoLevel(objects: RawObject[], revision: number, dataDir: string, force: boolean, logger: Logger): Promise<ObjectsLoaded> {
  const name = `LevelDB store ${storePath(dataDir)}`;
  return closing(await openLevel(dataDir, logger, false), logger, async (store) => {
    let held = 0;
    for await (const _ of store.storedObjects()) held += 1;
    refuseNonEmpty(held, name, force);
    const { keyring, opened } = await openSecrets(objects, dataDir, logger, 'the server on this data dir opens them with it');
    const values = objects.map((o) => {
      if (typeof o.value !== 'string') return { key: o.key, value: { ...o.value, metadata: { ...o.value.metadata, resourceVersion: String(o.revision) } } };
      if (o.revision === undefined) return { key: o.key, value: o.value };
      const obj = opened.get(o.key)!;
      const withRv = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(o.revision) } };
      return { key: o.key, value: keyring!.seal(Buffer.from(JSON.stringify(withRv), 'utf8'), o.key) };
    });
    const top = Math.max(revision, store.revision(), ...objects.map((o) => o.revision ?? 0));
    await loadLevel(store, values, top);
    return {
      target: name,
      ...describeObjects(objects),
      revisions: `kept (resourceVersions as they were; the store continues from revision ${top}, its change log empty: watches from before relist)`,
      notes: [],
    };
  });
}

async function loadIntoEtcd(objects: RawObject[], to: DatastoreTarget, force: boolean, keyringDir: string | undefined, logger: Logger): Promise<ObjectsLoaded> {
  const name = etcdName(to);
  return closing(await openEtcd(to, logger), logger, async (store) => {
    await refuseRunningServer(store, name);
    refuseNonEmpty(await countEtcd(store), name, force);
    const notes: string[] = [];
    const counted = describeObjects(objects);
    if (keyringDir !== undefined) {
      await openSecrets(objects, keyringDir, logger, 'the Secrets are checked against it');
      if (counted.sealedSecrets) notes.push(`the Secrets stay sealed with the keyring ${keyringPath(keyringDir)}: start servers on this etcd with --data-dir ${keyringDir}, or copy that file (mode 0600) into the data dir of every server on this etcd before it starts`);
    } else if (counted.sealedSecrets) {
      notes.push(`the Secrets stay sealed with key(s) ${counted.keyIds.join(', ')}: every server on this etcd needs the keyring that sealed them in its data dir (secrets/keys.json, mode 0600) before it starts; they were not checked (give --data-dir DIR to check them against DIR's keyring)`);
    }
    let done;
    try {
      done = await loadEtcd(store, byRevision(objects), { replace: force });
    } catch (err) {
      if (err instanceof StoreError) {
        throw new StoreError(`${errorMessage(err)} (the load stopped part way: run it again with --force once the cause is fixed)`, err);
      }
      throw err;
    }
    return {
      target: name,
      ...counted,
      revisions: `renumbered by etcd: written in their old order as revisions ${done.firstRevision}-${done.lastRevision} (resourceVersions changed, uids kept: clients relist)`,
      notes,
    };
  });
}

function saved(file: string, source: string, header: SnapshotHeader): SnapshotSaved {
  return { file, source, revision: header.revision, objects: header.objects, kinds: header.kinds, sealedSecrets: header.sealedSecrets, keyIds: header.keyIds, bytes: header.bodyBytes + HEADER_BYTES, sha256: header.bodySha256 };
}

export function datastoreTools(logger: Logger = silentLogger): DatastoreTools {
  return {
    async saveSnapshot(file: string, from: DatastoreTarget): Promise<SnapshotSaved> {
      const { dump, source, name } = await dumpSource(from, logger);
      const header = await writeSnapshot(file, source, dump.revision, dump.objects);
      logger.info({ file, source: name, objects: header.objects, revision: header.revision }, 'datastore snapshot saved');
      return saved(file, name, header);
    },

    async receiveSnapshot(file: string, from: string, stream: AsyncIterable<Uint8Array>): Promise<SnapshotSaved> {
      const header = await receiveSnapshot(file, from, stream);
      const name = `${from}'s ${header.source === 'etcd' ? 'etcd' : 'LevelDB store'}`;
      logger.info({ file, source: name, objects: header.objects, revision: header.revision }, 'datastore snapshot saved from a running server');
      return saved(file, name, header);
    },

    async restoreSnapshot(file: string, to: DatastoreTarget, opts: { force: boolean }): Promise<ObjectsLoaded> {
      refuseStrayTls(to);
      // The whole file is checked before any store is touched.
      const { header, objects } = await readSnapshot(file);
      const r =
        datastoreEndpoints(to.datastoreEndpoint).length > 0
          ? await loadIntoEtcd(objects, to, opts.force, to.dataDir, logger)
          : await loadIntoLevel(objects, header.revision, to.dataDir!, opts.force, logger);
      logger.info({ file, target: r.target, objects: r.objects }, 'datastore snapshot restored');
      return r;
    },

    async migrate(fromDataDir: string, to: DatastoreTarget, opts: { force: boolean }): Promise<ObjectsLoaded> {
      if (datastoreEndpoints(to.datastoreEndpoint).length === 0) throw new DatastoreToolError('migrate: --to names no etcd endpoint');
      const { dump } = await dumpSource({ dataDir: fromDataDir }, logger);
      // The keyring of the data dir that sealed the Secrets: checked, and named for the servers on etcd.
      const r = await loadIntoEtcd(dump.objects, to, opts.force, fromDataDir, logger);
      logger.info({ from: fromDataDir, target: r.target, objects: r.objects }, 'LevelDB store copied into etcd');
      return r;
    },
  };
}
