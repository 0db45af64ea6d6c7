import { dirname, join } from 'node:path';
import { payloads } from '../src/contract/index.js';
import { parseWith } from '../src/api/validate.js';
import { errorMessage } from '../src/util/errors.js';
import { isEnvelope } from '../src/util/aead.js';
import type { Logger } from '../src/util/logger.js';
import { ensurePrivateDir } from '../src/util/private-fs.js';
import { CacheKey } from './cache-key.js';
import { moveAside, readStateFile, writeFileAtomic } from './state-file.js';

/**
 * On-disk format version of the cache file; a newer agent must still read older ones. Format 1 files
 * from before ConfigMaps and Secrets were delivered simply lack them: the schema defaults them to [].
 * Format 2 keeps the Secrets encrypted with the node key (`sealedSecrets`, `desired.secrets` empty);
 * a format 1 file (Secrets in the clear) still loads and is written as format 2 at the next save.
 */
export const CACHE_FORMAT = 2;

interface CacheFile {
  format: number;
  savedAt: string;
  desired: payloads.Desired;
  /** `desired.secrets` as JSON, AES-256-GCM with the node key (agent/cache-key.ts), AAD sealedFor(node). */
  sealedSecrets?: string;
}

/** Binds the sealed Secrets to this file and node: a copy from another node's cache does not open. */
function sealedFor(node: string): string {
  return `desired.json/${node}`;
}

function sameContent(a: payloads.Desired, b: payloads.Desired): boolean {
  const content = (d: payloads.Desired) => JSON.stringify([d.pods, d.configMaps ?? [], d.secrets ?? []]);
  return content(a) === content(b);
}

/**
 * The node's desired state and its disk cache (0600; its Secrets encrypted with the node key). The cache is what lets a device that reboots without
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
  private readonly key: CacheKey;

  constructor(stateDir: string, private readonly logger: Logger) {
    this.path = join(stateDir, 'desired.json');
    this.key = new CacheKey(stateDir, logger);
  }

  get desired(): payloads.Desired | undefined {
    return this.current;
  }

  /**
   * Loads the cache; a corrupt or unreadable file, or one written for another node, is moved aside
   * (kept for inspection) and reported, never fatal. Temp files left by an interrupted save are removed.
   */
  async load(node?: string): Promise<{ desired?: payloads.Desired; corrupt?: string }> {
    // The state dir holds the node's credential, key and Secrets: owner-only, tightened (warned) if not.
    await ensurePrivateDir(dirname(this.path), this.logger);
    const { text, unreadable } = await readStateFile(this.path, this.logger);
    if (unreadable) return this.moveAside(unreadable);
    if (text === undefined) return {};
    try {
      const file = JSON.parse(text) as CacheFile;
      if (typeof file.format !== 'number' || file.format > CACHE_FORMAT) throw new Error(`unknown cache format ${String(file.format)}`);
      if (file.sealedSecrets !== undefined) {
        if (!isEnvelope(file.sealedSecrets)) throw new Error('sealedSecrets is not an encrypted value');
        const node = String((file.desired as { node?: unknown })?.node);
        let secrets: unknown;
        try {
          secrets = JSON.parse((await this.key.unseal(file.sealedSecrets, sealedFor(node))).toString('utf8'));
        } catch (err) {
          throw new Error(`its Secrets cannot be decrypted: ${errorMessage(err)}`, { cause: err });
        }
        file.desired = { ...file.desired, secrets: secrets as payloads.Desired['secrets'] };
      }
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
    const secrets = d.secrets ?? [];
    const body: CacheFile = { format: CACHE_FORMAT, savedAt: new Date().toISOString(), desired: { ...d, secrets: [] } };
    // Sealed even when empty, so a file never has to be told apart by whether it happens to hold Secrets.
    body.sealedSecrets = await this.key.seal(Buffer.from(JSON.stringify(secrets), 'utf8'), sealedFor(d.node));
    await writeFileAtomic(this.path, JSON.stringify(body), this.logger);
  }
}
