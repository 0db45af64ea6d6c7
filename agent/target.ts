import { join } from 'node:path';
import { payloads } from '../src/contract/index.js';
import { parseWith } from '../src/api/validate.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { moveAside, readStateFile, writeFileAtomic } from './state-file.js';

/**
 * On-disk format version of the cache file; a newer agent must still read older ones. Format 1 files
 * from before ConfigMaps and Secrets were delivered simply lack them: the schema defaults them to [].
 */
export const CACHE_FORMAT = 1;

interface CacheFile {
  format: number;
  savedAt: string;
  desired: payloads.Desired;
}

function sameContent(a: payloads.Desired, b: payloads.Desired): boolean {
  const content = (d: payloads.Desired) => JSON.stringify([d.pods, d.configMaps ?? [], d.secrets ?? []]);
  return content(a) === content(b);
}

/**
 * The node's desired state and its disk cache (which holds the node's Secrets: written 0600). The cache is what lets a device that reboots without
 * a link bring its workloads back. Written atomically (temp file, fsync, rename, fsync dir) so a
 * power cut leaves either the old or the new snapshot, never half of one.
 */
export class TargetState {
  private current: payloads.Desired | undefined;
  /** The newest snapshot received, saved or not yet. */
  private latest: payloads.Desired | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Why the last accepted snapshot could not be written to disk; undefined once one was. */
  saveError: string | undefined;
  private readonly path: string;

  constructor(stateDir: string, private readonly logger: Logger) {
    this.path = join(stateDir, 'desired.json');
  }

  get desired(): payloads.Desired | undefined {
    return this.current;
  }

  /**
   * Loads the cache; a corrupt or unreadable file, or one written for another node, is moved aside
   * (kept for inspection) and reported, never fatal. Temp files left by an interrupted save are removed.
   */
  async load(node?: string): Promise<{ desired?: payloads.Desired; corrupt?: string }> {
    const { text, unreadable } = await readStateFile(this.path, this.logger);
    if (unreadable) return this.moveAside(unreadable);
    if (text === undefined) return {};
    try {
      const file = JSON.parse(text) as CacheFile;
      if (typeof file.format !== 'number' || file.format > CACHE_FORMAT) throw new Error(`unknown cache format ${String(file.format)}`);
      const desired = parseWith(payloads.desired, file.desired, 'cached desired state');
      if (node !== undefined && desired.node !== node) throw new Error(`it is the desired state of node ${desired.node}, this agent is node ${node}`);
      this.current = desired;
      this.latest = desired;
      return { desired };
    } catch (err) {
      return this.moveAside(errorMessage(err));
    }
  }

  private moveAside(why: string): Promise<{ corrupt: string }> {
    return moveAside(this.path, 'desired-state cache', why, this.logger);
  }

  /**
   * Accepts a snapshot if it is newer than the one held; persists it before returning true.
   * Snapshots are handled one at a time in arrival order, and one overtaken by a newer arrival before
   * its turn is skipped (returns false): after a reconnect only the latest of a burst is written and
   * applied.
   */
  accept(d: payloads.Desired): Promise<boolean> {
    if (this.latest && d.generation < this.latest.generation) return Promise.resolve(false);
    this.latest = d;
    const turn = this.queue.then(async () => {
      if (this.latest !== d) return false;
      if (this.current && d.generation < this.current.generation) return false;
      if (this.current && d.generation === this.current.generation && sameContent(d, this.current)) return false;
      // A cache that cannot be written (full disk) must not block the state that may fix it (e.g.
      // removing the pod filling the disk): apply it anyway, and say the cache is behind.
      try {
        await this.save(d);
        this.saveError = undefined;
      } catch (err) {
        this.saveError = errorMessage(err);
        this.logger.error({ err: this.saveError, generation: d.generation }, 'desired state applied but not cached: an offline restart would run the previous one');
      }
      this.current = d;
      return true;
    });
    // The queue only orders the turns: the caller of this one gets its failure.
    this.queue = turn.catch(() => false);
    return turn;
  }

  private async save(d: payloads.Desired): Promise<void> {
    const body: CacheFile = { format: CACHE_FORMAT, savedAt: new Date().toISOString(), desired: d };
    await writeFileAtomic(this.path, JSON.stringify(body));
  }
}
