import type { Command } from 'commander';
import { withTimeout } from '../util/backoff.js';
import { DroverError } from '../util/errors.js';
import { CliError, DEFAULT_TIMEOUT_MS, errorFromResponse, fetchWithCa } from './client.js';
import { resolveConfig } from './config.js';
import { parseDuration, type CliIo } from './context.js';

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
  /**
   * Writes the snapshot a running server streams (GET /drover/v1/snapshot: the file with its header
   * last) to `file` (0600, atomically), checked whole before it takes the place of `file`: a stream cut
   * short or damaged leaves no file. `from` names the server.
   */
  receiveSnapshot(file: string, from: string, stream: AsyncIterable<Uint8Array>): Promise<SnapshotSaved>;
}

/** The reason transfer.ts gives when a server holds the LevelDB store a command wants. */
export const STORE_LOCKED = 'StoreLocked';
/** The server's snapshot route (server/store/snapshot-route.ts SNAPSHOT_PATH). */
const SNAPSHOT_PATH = '/drover/v1/snapshot';

export interface DatastoreCommandDeps {
  defaultDataDir: string;
  tools(): Promise<DatastoreTools>;
}

/** What a failed fetch says: node's fetch wraps the cause (ECONNREFUSED, a TLS error) in "fetch failed". */
function why(err: unknown): string {
  const e = (err as { cause?: unknown }).cause ?? err;
  return e instanceof Error ? e.message : String(e);
}

/**
 * The body of GET /drover/v1/snapshot, chunk by chunk; a server that sends nothing for `idleMs` (stalled,
 * or a link gone silent) fails the download instead of hanging it.
 */
async function* bodyOf(res: Response, server: string, idleMs: number, abort: AbortController): AsyncGenerator<Uint8Array> {
  if (!res.body) return;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const next = await withTimeout(reader.read(), idleMs, () => {
        abort.abort();
        throw new CliError(`the drover server at ${server} sent nothing for ${idleMs / 1000}s in the middle of the snapshot; no file was written`, { reason: 'Timeout' });
      });
      if (next.done) return;
      yield next.value;
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    // A connection cut part way (the server stopped, a proxy gave up): the file is refused as cut short.
    throw new CliError(`the snapshot download from ${server} broke: ${why(err)}; no file was written`, { reason: 'Unreachable', cause: err });
  } finally {
    reader.releaseLock();
  }
}

/**
 * `save FILE --server`: the snapshot of a running server through its API (admin token), written like
 * the offline save. Server, token and CA are found as the other verbs find them (flag, DROVER_SERVER /
 * DROVER_TOKEN / DROVER_CA_FILE, the config file); the token never comes from the command line.
 */
async function saveThroughServer(file: string, server: string | undefined, flags: { config?: string; requestTimeout?: string }, io: { env: NodeJS.ProcessEnv }, deps: DatastoreCommandDeps): Promise<SnapshotSaved> {
  const cfg = resolveConfig({ server }, flags.config ? { ...io.env, DROVER_CONFIG: flags.config } : io.env);
  if (!cfg.token) throw new CliError(`saving through the server at ${cfg.server} needs an admin token: set DROVER_TOKEN (the server's DATA_DIR/admin-token, or \`drover token create --role admin\`) or put it in ${cfg.configPath}`);
  const timeoutMs = flags.requestTimeout ? parseDuration(flags.requestTimeout) : DEFAULT_TIMEOUT_MS;
  const fetchFn = cfg.ca ? fetchWithCa(cfg.ca) : fetch;
  const url = `${cfg.server.replace(/\/+$/, '')}${SNAPSHOT_PATH}`;
  const abort = new AbortController();
  let res: Response;
  try {
    res = await withTimeout(fetchFn(url, { headers: { authorization: `Bearer ${cfg.token}`, accept: 'application/vnd.drover.snapshot-stream' }, signal: abort.signal }), timeoutMs, () => {
      abort.abort();
      throw new CliError(`the drover server at ${cfg.server} did not answer GET ${SNAPSHOT_PATH} within ${timeoutMs / 1000}s`, { reason: 'Timeout' });
    });
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot reach the drover server at ${cfg.server}: ${why(err)} (is \`drover server\` running? set DROVER_SERVER)`, { reason: 'Unreachable', cause: err });
  }
  if (!res.ok) {
    const err = errorFromResponse(res.status, await res.text().catch(() => ''));
    if (res.status === 403) throw new CliError(`${err.message} (a snapshot holds every object of the cluster: it needs an admin token)`, { code: 403, reason: err.reason });
    throw err;
  }
  try {
    return await (await deps.tools()).receiveSnapshot(file, `the drover server at ${cfg.server}`, bodyOf(res, cfg.server, timeoutMs, abort));
  } finally {
    abort.abort();
  }
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
export function registerDatastoreCommands(program: Command, io: Pick<CliIo, 'stdout' | 'stderr'> & { env?: NodeJS.ProcessEnv }, deps: DatastoreCommandDeps): void {
  const datastore = program.command('datastore').description('back up, restore and migrate the cluster state (run on the server machine)');
  const snapshot = datastore.command('snapshot').description('one-file backups of the datastore (Secrets stay sealed: keep DATA_DIR/secrets/keys.json with them)');
  const dataDirHelp = `server data directory whose LevelDB store is used (default ${deps.defaultDataDir}); with --datastore-endpoint: where the keyring is`;
  withEtcdFlags(
    snapshot
      .command('save')
      .argument('<file>', 'snapshot file to write (0600, replaced atomically)')
      .description('write every object of the store to FILE (LevelDB: with the server stopped, or --server while it runs; etcd: while servers run, at one revision)')
      .option('--data-dir <dir>', `server data directory whose LevelDB store is saved (default ${deps.defaultDataDir})`)
      .option('--server [url]', 'save from the running server through its API, at one revision, without stopping it (URL default: DROVER_SERVER or the config file; admin token: DROVER_TOKEN or the config file)')
      .option('--request-timeout <duration>', 'with --server: give up when the server has not answered, or sent nothing, for this long (default 30s)'),
    'save from etcd instead of LevelDB: client URLs, comma-separated',
  ).action(async (file: string, o: Flags & { server?: string | true; requestTimeout?: string }, cmd: Command) => {
    let r: SnapshotSaved;
    if (o.server !== undefined) {
      const stray = (['dataDir', 'datastoreEndpoint', 'datastoreCafile', 'datastoreCertfile', 'datastoreKeyfile'] as const).filter((f) => o[f] !== undefined);
      if (stray.length > 0) throw new CliError(`--server saves through the server's API: it does not take ${stray.map((f) => `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}`);
      const globals = cmd.optsWithGlobals<{ config?: string }>();
      r = await saveThroughServer(file, o.server === true ? undefined : o.server, { config: globals.config, requestTimeout: o.requestTimeout }, { env: io.env ?? process.env }, deps);
    } else {
      const from: DatastoreTarget = o.datastoreEndpoint ? etcdTarget(o, o.datastoreEndpoint) : { dataDir: o.dataDir ?? deps.defaultDataDir, ...etcdTarget(o, undefined) };
      try {
        r = await (await deps.tools()).saveSnapshot(file, from);
      } catch (err) {
        if (err instanceof DroverError && err.reason === STORE_LOCKED) throw new CliError(`${err.message}; or save it while it runs: add --server (its URL from DROVER_SERVER or the config, an admin token from DROVER_TOKEN)`, { reason: STORE_LOCKED, cause: err });
        throw err;
      }
    }
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
