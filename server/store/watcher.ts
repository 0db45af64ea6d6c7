import { deepFreeze } from '../../src/util/deep-freeze.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Watch, WatchEvent } from './types.js';

/**
 * One watch, for any backend: buffers live events while its replay runs, drops anything at or below
 * what it already delivered (so a replay overlapping live events, or a backend's watch stream resumed
 * after a reconnect, delivers each revision at most once), filters by kind, and keeps a throwing
 * callback from breaking the store or other watchers.
 */
export class Watcher implements Watch {
  closed = false;
  private replaying = true;
  private buffer: WatchEvent[] = [];
  private last: number;

  constructor(
    from: number,
    private readonly kinds: Set<string> | undefined,
    private readonly onEvent: (e: WatchEvent) => void,
    private readonly logger: Logger,
    private readonly onClose: (w: Watcher) => void,
  ) {
    this.last = from;
  }

  /** The last revision delivered (or known to have nothing for this watch): resume after it. */
  lastRevision(): number {
    return this.last;
  }

  /** Whether an event about an object of this kind can reach the callback (a backend skips copying it for nobody). */
  wants(kind: string): boolean {
    return !this.closed && (!this.kinds || this.kinds.has(kind));
  }

  /** A live event, published right after its write committed. */
  offer(e: WatchEvent): void {
    if (this.closed) return;
    if (this.replaying) this.buffer.push(e);
    else this.deliver(e);
  }

  deliver(e: WatchEvent): void {
    // The revision guard makes replay/live overlap harmless: each revision reaches the callback at most once.
    if (this.closed || e.revision <= this.last) return;
    this.last = e.revision;
    if (this.kinds && !this.kinds.has(e.object.kind)) return;
    try {
      // Frozen on every path (live LevelDB events already are; replayed and etcd ones are not), so a
      // watch that writes to its event fails in every backend alike, not only in one.
      deepFreeze(e.object);
      this.onEvent(e);
    } catch (err) {
      // A broken consumer must not break the store or the other watchers.
      this.logger.error({ err: errorMessage(err), revision: e.revision, kind: e.object.kind }, 'watch callback threw');
    }
  }

  /** The backend says every change up to `revision` has been delivered: a resume may start after it. */
  progress(revision: number): void {
    if (!this.replaying && revision > this.last) this.last = revision;
  }

  endReplay(): void {
    this.replaying = false;
    const buffered = this.buffer;
    this.buffer = [];
    for (const e of buffered) this.deliver(e);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.buffer = [];
    this.onClose(this);
  }
}
