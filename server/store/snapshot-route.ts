/*
 * GET /drover/v1/snapshot: the datastore snapshot (server/store/snapshot.ts) of a running server, read
 * at one revision while it keeps writing — what `drover datastore snapshot save FILE --server` fetches,
 * so a single server on LevelDB (whose lock keeps the offline tool out) is backed up without stopping.
 *
 * - Admin tokens only: the file holds every object of the cluster (a view token gets 403, none 401, and
 *   the API's audit log records those refusals). Each snapshot served, or cut off, is audited here too
 *   (the API audits only the GETs it refuses).
 * - Secrets are sent sealed, as the store holds them: the snapshot opens only with the server's keyring.
 * - The body streams as the store is read: the objects come from one LevelDB snapshot (or etcd at one
 *   revision) and are compressed chunk by chunk, each written when the client has taken the last, so
 *   memory stays bounded by a chunk whatever the store's size. The header, which needs the whole body's
 *   length and sha256, comes last (receiveSnapshot() moves it to the front). A failure part way closes
 *   the connection without ending the body: the client sees a cut stream, never a complete-looking one.
 */
import type { ServerResponse } from 'node:http';
import { once } from 'node:events';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { ExtraRoute } from '../api/server.js';
import type { AuditSink } from '../audit/log.js';
import type { EtcdStore } from './etcd.js';
import { LevelStore } from './level.js';
import { readEtcdAtOneRevision, readLevelAtOneRevision, type RawRead } from './raw-objects.js';
import { encodeSnapshot, type SnapshotSource } from './snapshot.js';
import type { BackendStore } from './types.js';

export const SNAPSHOT_PATH = '/drover/v1/snapshot';
/** The media type of the stream: a snapshot file with its header last. */
export const SNAPSHOT_STREAM_TYPE = 'application/vnd.drover.snapshot-stream';
/** Response header naming the revision the objects are at (before the body, for the client's message). */
export const SNAPSHOT_REVISION_HEADER = 'x-drover-snapshot-revision';

export interface SnapshotRouteDeps {
  /** The backend as openStore returned it: read as stored, below admission and fencing. */
  store: BackendStore;
  audit?: AuditSink;
  logger: Logger;
}

/** The client went away mid-stream: nothing to answer, only to stop reading the store. */
class ClientGone extends DroverError {
  constructor() {
    super('the client closed the connection before the snapshot was complete', { code: 499, reason: 'ClientClosedRequest' });
  }
}

function readAtOneRevision<T>(store: BackendStore, read: (r: RawRead, source: SnapshotSource) => Promise<T>): Promise<T> {
  if (store instanceof LevelStore) return readLevelAtOneRevision(store, 'the LevelDB store', (r) => read(r, 'leveldb'));
  // The one other backend (etcd.ts is imported only where etcd is used: its client is heavy).
  return readEtcdAtOneRevision(store as EtcdStore, (r) => read(r, 'etcd'));
}

/** Writes `chunk`, waiting for the client to take what it has before the next (or failing once it is gone). */
async function send(res: ServerResponse, chunk: Buffer): Promise<void> {
  if (res.destroyed) throw new ClientGone();
  if (res.write(chunk)) return;
  const gone = new AbortController();
  const onClose = () => gone.abort();
  res.once('close', onClose);
  try {
    await once(res, 'drain', { signal: gone.signal });
  } catch (err) {
    if (gone.signal.aborted) throw new ClientGone();
    throw err;
  } finally {
    res.off('close', onClose);
  }
}

export function snapshotRoute(deps: SnapshotRouteDeps): ExtraRoute {
  return {
    method: 'GET',
    path: SNAPSHOT_PATH,
    access: 'admin',
    verb: 'datastore.snapshot',
    async handle(req, res, ctx) {
      const identity = ctx.identity!;
      const began = performance.now();
      const audited = (result: number, reason?: string) =>
        deps.audit?.write({
          who: { kind: 'token', tokenId: identity.tokenId, role: identity.role, remote: req.socket.remoteAddress },
          verb: 'datastore.snapshot',
          resource: { kind: 'route', path: SNAPSHOT_PATH },
          result,
          ...(reason ? { reason } : {}),
        });
      let revision: number | undefined;
      try {
        const header = await readAtOneRevision(deps.store, async (r, source) => {
          revision = r.revision;
          res.writeHead(200, { 'content-type': SNAPSHOT_STREAM_TYPE, 'cache-control': 'no-store', [SNAPSHOT_REVISION_HEADER]: String(r.revision) });
          const { header, block } = await encodeSnapshot(source, r.revision, r.objects, (chunk) => send(res, chunk));
          await send(res, block);
          return header;
        });
        res.end();
        audited(200);
        deps.logger.info({ revision: header.revision, objects: header.objects, bytes: header.bodyBytes, ms: Math.round(performance.now() - began), tokenId: identity.tokenId }, 'datastore snapshot served');
      } catch (err) {
        if (!res.headersSent) {
          // Refused before a byte was sent (the store unavailable): the API answers with the error.
          audited(err instanceof DroverError ? err.code : 500, errorMessage(err));
          throw err;
        }
        // The body has begun: no error status can follow it. The connection is cut instead, so the
        // client's download fails (an ended body would look whole up to its missing header).
        res.destroy();
        const reason = err instanceof ClientGone ? err.message : `the snapshot at revision ${revision} failed part way: ${errorMessage(err)}`;
        audited(err instanceof ClientGone ? 499 : 500, reason);
        if (err instanceof ClientGone) deps.logger.info({ revision, tokenId: identity.tokenId }, reason);
        else deps.logger.warn({ err: errorMessage(err), revision, tokenId: identity.tokenId }, 'datastore snapshot cut off part way');
      }
    },
  };
}
