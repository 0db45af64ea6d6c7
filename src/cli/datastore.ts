import type { Command } from 'commander';
import type { CliIo } from './context.js';

/** Which store a datastore command works on: LevelDB in a data dir, or etcd (the server's flag names). */
export interface DatastoreTarget {
  dataDir?: string;
  datastoreEndpoint?: string;
  datastoreCafile?: string;
  datastoreCertfile?: string;
  datastoreKeyfile?: string;
}

/** What was written or read, counted (server/store/transfer.ts). */
export interface ObjectsCounted {
  objects: number;
  kinds: Record<string, number>;
  /** Secrets moved sealed, and the ids of the keys that seal them. */
  sealedSecrets: number;
  keyIds: string[];
}

export interface SnapshotSaved extends ObjectsCounted {
  file: string;
  /** 'LevelDB store DIR/store' or 'etcd at URL'. */
  source: string;
  revision: number;
  bytes: number;
  sha256: string;
}

export interface ObjectsLoaded extends ObjectsCounted {
  /** 'LevelDB store DIR/store' or 'etcd at URL'. */
  target: string;
  /** How the revisions map (kept, or renumbered from R1 to R2 by etcd). */
  revisions: string;
  /** What the operator must do next (the keyring), one line each. */
  notes: string[];
}

/** The tools the entry point loads on demand (server/store/transfer.ts): the server's modules are not the CLI's to import. */
export interface DatastoreTools {
  saveSnapshot(file: string, from: DatastoreTarget): Promise<SnapshotSaved>;
  restoreSnapshot(file: string, to: DatastoreTarget, opts: { force: boolean }): Promise<ObjectsLoaded>;
  migrate(fromDataDir: string, to: DatastoreTarget, opts: { force: boolean }): Promise<ObjectsLoaded>;
}

export interface DatastoreCommandDeps {
  defaultDataDir: string;
  tools(): Promise<DatastoreTools>;
}

type Flags = { dataDir?: string; datastoreEndpoint?: string; datastoreCafile?: string; datastoreCertfile?: string; datastoreKeyfile?: string };

function withEtcdFlags(c: Command, endpointHelp: string): Command {
  return withTlsFlags(c.option('--datastore-endpoint <urls>', endpointHelp));
}

function withTlsFlags(c: Command): Command {
  return c
    .option('--datastore-cafile <file>', "PEM CA the etcd members' certificates are checked against")
    .option('--datastore-certfile <file>', 'PEM client certificate presented to etcd')
    .option('--datastore-keyfile <file>', 'PEM key of that client certificate (keep it 0600)');
}

function etcdTarget(o: Flags, endpoint: string | undefined): DatastoreTarget {
  return {
    ...(endpoint ? { datastoreEndpoint: endpoint } : {}),
    ...(o.datastoreCafile ? { datastoreCafile: o.datastoreCafile } : {}),
    ...(o.datastoreCertfile ? { datastoreCertfile: o.datastoreCertfile } : {}),
    ...(o.datastoreKeyfile ? { datastoreKeyfile: o.datastoreKeyfile } : {}),
  };
}

function kinds(c: ObjectsCounted): string {
  const list = Object.entries(c.kinds)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, n]) => `${k} ${n}`);
  return list.length ? list.join(', ') : 'none';
}

function sealed(c: ObjectsCounted): string {
  return c.sealedSecrets ? `; ${c.sealedSecrets} Secret(s) sealed with key(s) ${c.keyIds.join(', ')}` : '';
}

function loaded(io: Pick<CliIo, 'stdout'>, verb: string, r: ObjectsLoaded): void {
  io.stdout(`${verb} ${r.objects} object(s) into ${r.target}: ${kinds(r)}${sealed(r)}\n`);
  io.stdout(`revisions: ${r.revisions}\n`);
  for (const n of r.notes) io.stdout(`note: ${n}\n`);
}

/**
 * `drover datastore snapshot save|restore FILE` and `drover datastore migrate`: work on a store
 * directly, LevelDB in a data dir (the server stopped: it holds LevelDB's lock) or etcd. A snapshot
 * holds Secrets sealed: the keyring (DATA_DIR/secrets/keys.json) must travel with it.
 */
export function registerDatastoreCommands(program: Command, io: Pick<CliIo, 'stdout' | 'stderr'>, deps: DatastoreCommandDeps): void {
  const datastore = program.command('datastore').description('back up, restore and migrate the cluster state (run on the server machine)');
  const snapshot = datastore.command('snapshot').description('one-file backups of the datastore (Secrets stay sealed: keep DATA_DIR/secrets/keys.json with them)');
  const dataDirHelp = `server data directory whose LevelDB store is used (default ${deps.defaultDataDir}); with --datastore-endpoint: where the keyring is`;
  withEtcdFlags(
    snapshot
      .command('save')
      .argument('<file>', 'snapshot file to write (0600, replaced atomically)')
      .description('write every object of the store to FILE (LevelDB: with the server stopped; etcd: while servers run, at one revision)')
      .option('--data-dir <dir>', `server data directory whose LevelDB store is saved (default ${deps.defaultDataDir})`),
    'save from etcd instead of LevelDB: client URLs, comma-separated',
  ).action(async (file: string, o: Flags) => {
    const from: DatastoreTarget = o.datastoreEndpoint ? etcdTarget(o, o.datastoreEndpoint) : { dataDir: o.dataDir ?? deps.defaultDataDir, ...etcdTarget(o, undefined) };
    const r = await (await deps.tools()).saveSnapshot(file, from);
    io.stdout(`saved ${r.objects} object(s) from ${r.source} at revision ${r.revision} to ${r.file} (${r.bytes} bytes, sha256 ${r.sha256}): ${kinds(r)}${sealed(r)}\n`);
    if (r.sealedSecrets) io.stdout('note: the Secrets in it open only with the keyring that sealed them (DATA_DIR/secrets/keys.json): back that file up with the snapshot, kept apart from it\n');
  });
  withEtcdFlags(
    snapshot
      .command('restore')
      .argument('<file>', 'snapshot file written by `drover datastore snapshot save`')
      .description('write the objects of FILE into an empty store (its checksum checked first; uids kept)')
      .option('--data-dir <dir>', dataDirHelp)
      .option('--force', 'replace the objects of a store that is not empty'),
    'restore into etcd instead of LevelDB: client URLs, comma-separated',
  ).action(async (file: string, o: Flags & { force?: boolean }) => {
    const to: DatastoreTarget = o.datastoreEndpoint ? { ...etcdTarget(o, o.datastoreEndpoint), ...(o.dataDir ? { dataDir: o.dataDir } : {}) } : { dataDir: o.dataDir ?? deps.defaultDataDir, ...etcdTarget(o, undefined) };
    loaded(io, 'restored', await (await deps.tools()).restoreSnapshot(file, to, { force: o.force === true }));
  });
  withTlsFlags(
    datastore
      .command('migrate')
      .description('copy the LevelDB store of a data dir into etcd (server stopped; uids kept, Secrets stay sealed with that data dir\'s keyring)')
      .requiredOption('--from <dir>', 'server data directory whose LevelDB store is copied')
      .requiredOption('--to <urls>', 'etcd client URLs, comma-separated')
      .option('--force', 'replace the objects already in etcd'),
  ).action(async (o: Flags & { from: string; to: string; force?: boolean }) => {
    loaded(io, 'copied', await (await deps.tools()).migrate(o.from, etcdTarget(o, o.to), { force: o.force === true }));
  });
}
