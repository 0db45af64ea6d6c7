import type { IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import { KINDS } from '../../src/api/kinds.js';
import { backoffDelay } from '../../src/util/backoff.js';
import { GoneError, StoreError, errorMessage } from '../../src/util/errors.js';
import { parseObjectKey } from './keys.js';
import type { EtcdStore } from './etcd.js';
import type { WatchEvent } from './types.js';
import { Watcher } from './watcher.js';

/** Watch reconnect delays (src/util/backoff.ts). */
const WATCH_BACKOFF = { baseMs: 100, maxMs: 2_000 };

/**
 * One store watch on an etcd watch stream of its own, from the watcher's last delivered revision + 1.
 * A stream that fails (member gone, connection cut) is opened again after a backoff from where the
 * watcher is, so a change is neither lost nor delivered twice across an outage (the Watcher drops
 * anything at or below what it delivered). Compacted history ends the watch with GoneError.
 */
export class EtcdWatch {
  readonly watcher: Watcher;
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
    from: number,
    kinds: Set<string> | undefined,
    onEvent: (e: WatchEvent) => void,
    private readonly onError: ((err: Error) => void) | undefined,
    onClose: (w: EtcdWatch) => void,
  ) {
    this.watcher = new Watcher(from, kinds, onEvent, store.logger, () => {
      if (this.timer) clearTimeout(this.timer);
      this.drop();
      onClose(this);
    });
    this.watcher.endReplay();
  }

  /** Whether this watch's etcd range holds the object key `rel`. */
  covers(rel: string): boolean {
    return rel.startsWith(this.prefix);
  }

  connect(): void {
    if (this.watcher.closed) return;
    this.store.etcd.watchClient.watch().then(
      (stream) => {
        if (this.watcher.closed) {
          this.stream = stream;
          this.drop();
          return;
        }
        this.stream = stream;
        stream.on('data', (res: IWatchResponse) => this.onResponse(stream, res));
        stream.on('error', (err: Error) => this.lost(stream, err));
        stream.on('end', () => this.lost(stream, new Error('watch stream ended')));
        try {
          stream.write({ create_request: { ...this.store.rangeOf(this.prefix), start_revision: this.watcher.lastRevision() + 1, prev_kv: true, progress_notify: true } });
        } catch (err) {
          this.lost(stream, err as Error);
        }
      },
      (err: unknown) => this.lost(undefined, err as Error),
    );
  }

  private onResponse(stream: IDuplexStream<IWatchRequest, IWatchResponse>, res: IWatchResponse): void {
    if (stream !== this.stream || this.watcher.closed) return;
    this.store.noteRevision(res.header.revision);
    if (res.canceled) {
      const compacted = Number(res.compact_revision);
      if (compacted > 0) {
        this.store.noteCompacted(compacted);
        this.end(new GoneError(`revision ${this.watcher.lastRevision()} has been compacted (oldest watchable revision is ${compacted}); list again and watch from its revision`));
      } else {
        this.end(new StoreError(`store: etcd at ${this.store.endpoints.join(',')} canceled the watch on ${this.prefix}: ${res.cancel_reason || 'no reason given'}`));
      }
      return;
    }
    if (res.created) {
      if (this.failures > 0) this.store.logger.info({ prefix: this.prefix, from: this.watcher.lastRevision() }, 'etcd watch resumed');
      this.failures = 0;
      return;
    }
    if (res.events.length === 0) {
      // A progress notification: everything up to the header's revision has been sent.
      this.watcher.progress(Number(res.header.revision));
      this.store.watchAdvanced();
      return;
    }
    for (const ev of res.events) {
      const e = this.toEvent(ev);
      // One that cannot be decoded is skipped (and logged), yet passed: writes waiting for it go on.
      if (e) this.watcher.deliver(e);
      else this.watcher.progress(Number(ev.kv.mod_revision));
    }
    this.store.watchAdvanced();
  }

  private toEvent(ev: IEvent): WatchEvent | undefined {
    const revision = Number(ev.kv.mod_revision);
    const rel = this.store.relKey(ev.kv.key);
    try {
      if (ev.type === 'Put') {
        return { type: ev.kv.create_revision === ev.kv.mod_revision ? 'ADDED' : 'MODIFIED', revision, object: this.store.decode(rel, ev.kv.value, revision) };
      }
      // A delete carries the object it removed (prev_kv), at the deletion's revision.
      if (ev.prev_kv) return { type: 'DELETED', revision, object: this.store.decode(rel, ev.prev_kv.value, revision) };
      const ref = parseObjectKey(rel);
      if (!ref) return undefined;
      this.store.logger.warn({ key: rel, revision }, 'etcd sent a delete without the deleted object; the watch gets its name only');
      const apiVersion = KINDS.find((k) => k.kind === ref.kind)?.groupVersion ?? 'v1';
      return { type: 'DELETED', revision, object: { apiVersion, kind: ref.kind, metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}), resourceVersion: String(revision) } } };
    } catch (err) {
      // Garbage must not reach a watcher; the one undecryptable Secret is named, the rest are delivered.
      this.store.logger.error({ err: errorMessage(err), revision }, 'watch skipped a change that cannot be decoded');
      return undefined;
    }
  }

  /** The stream failed: open another after a backoff, from where the watcher is. */
  private lost(stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined, err: Error): void {
    if (this.watcher.closed || (stream && stream !== this.stream)) return;
    this.drop();
    const delay = backoffDelay(this.failures, WATCH_BACKOFF);
    if (this.failures === 0) this.store.logger.warn({ prefix: this.prefix, from: this.watcher.lastRevision(), err: errorMessage(err) }, 'etcd watch lost; reconnecting');
    this.failures += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private drop(): void {
    const s = this.stream;
    this.stream = undefined;
    if (!s) return;
    // Ended before cancelled: the client library then does not take the cancellation for a failed
    // member (it resets the member's connections on a stream error while the stream is writable).
    s.on('error', () => undefined);
    try {
      s.end();
      s.cancel();
    } catch (err) {
      this.store.logger.debug({ err: errorMessage(err) }, 'cancelling an etcd watch stream failed');
    }
  }

  /** The watch cannot go on: it is closed and the consumer told (or the log, when it did not ask). */
  private end(err: Error): void {
    this.watcher.close();
    if (this.onError) this.onError(err);
    else this.store.logger.error({ err: err.message, prefix: this.prefix }, 'store watch ended; its consumer does not hear of it');
  }
}
