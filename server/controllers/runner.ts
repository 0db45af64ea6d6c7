import type { ApiObject } from '../../src/api/meta.js';
import { DroverError, errorMessage, isConflict } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Store, Watch, WatchEvent, WatchEventType } from '../store/types.js';
import { withTimeout, type BackoffOptions } from '../../src/util/backoff.js';
import { WorkQueue } from './queue.js';

export interface ReconcileResult {
  /** Look at this key again after this long even if nothing changes (e.g. a progress deadline). */
  requeueAfterMs?: number;
  /**
   * This pass is costly (see paceFor): changes of the key's children (watches without coalesceMs) and of
   * its own status wake it again no sooner than this, gathered into one pass. A new object, a spec change
   * (generation), a requeue and the resync are not held.
   */
  paceMs?: number;
}

/** Replicas below which a key is never paced: a Deployment of a few hundred pods is never held. */
export const PACE_FROM_REPLICAS = 500;

/**
 * How long the passes of a ReplicaSet or Deployment of `replicas` replicas are paced: none below
 * PACE_FROM_REPLICAS, then 1 ms per 10 replicas, at most a second (5,000 → 500 ms: its status trails by half a
 * second at most). Such a pass costs ~9 ms of the one core the server has; woken by the pods of a 5,000-replica
 * Deployment turning Running, the ReplicaSet and Deployment passes took a fifth of the server's CPU while
 * those pods were being placed.
 */
export function paceFor(replicas: number): number {
  return replicas < PACE_FROM_REPLICAS ? 0 : Math.min(1000, Math.round(replicas / 10));
}

/**
 * One controller: which store changes concern it (mapped to its own keys, "namespace/name"), and a
 * level-triggered reconcile of one key that reads the whole current state and converges it.
 * Throwing requeues the key with per-key backoff.
 */
export interface Controller {
  name: string;
  /** The kind this controller owns; every object of it is resynced periodically. */
  kind: string;
  /** Other kinds whose changes map to keys of this controller (e.g. Pod → its owning ReplicaSet). */
  /**
   * Other kinds whose changes concern some of this controller's objects. `coalesceMs`: the keys are added
   * within that long, every change meanwhile gathered into one pass (for a costly pass woken by many small
   * changes, such as a DaemonSet by the status of each of its thousands of pods).
   */
  watches: Array<{ kind: string; keys(obj: ApiObject, type: WatchEventType): string[]; coalesceMs?: number }>;
  /**
   * `signal` aborts when the server stops: a reconcile that loops over many writes checks it between them
   * (see whyStop in still-wanted.ts), so a shutdown does not wait for the loop.
   */
  reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | void>;
  /**
   * The watch ended and was started again from the present: changes in between were not seen. A controller that
   * keeps what its watch told it (the garbage collector's living owners) forgets it here; every object is
   * resynced next.
   */
  watchRestarted?(): void;
}

export function keyOf(obj: ApiObject): string {
  return `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** Keys of the owners (of a given kind) named in an object's ownerReferences. */
export function ownerKeys(obj: ApiObject, ownerKind: string): string[] {
  return (obj.metadata.ownerReferences ?? []).filter((r) => r.kind === ownerKind).map((r) => `${obj.metadata.namespace ?? ''}/${r.name}`);
}

export interface RunnerOptions {
  store: Store;
  logger: Logger;
  controllers: Controller[];
  /** Every object of each controller's kind is queued again this often (ms). Default 30 s. */
  resyncMs?: number;
  /** Keys of one controller reconciled at once (never the same key twice). Default 2. */
  workersPerController?: number;
  /** Retry delays of a failing key. Default: WorkQueue's. */
  retryBackoff?: BackoffOptions;
}

export const RUNNER_DEFAULTS = { resyncMs: 30_000, workersPerController: 2 } as const;

/**
 * How long stop() waits for reconciles in flight once they are told to stop. One that does not check its
 * signal (a slow store write) is left behind: SIGTERM must end the server within 10 s whatever it does.
 */
export const STOP_GRACE_MS = 3_000;

/**
 * Runs controllers: store watch → enqueue keys → workers call reconcile; periodic resync enqueues
 * every object of each controller's kind, so a missed event is repaired within one resync period.
 */
export class ControllerRunner {
  private readonly queues = new Map<string, WorkQueue>();
  private watch: Watch | undefined;
  private resync: NodeJS.Timeout | undefined;
  private workers: Promise<void>[] = [];
  private readonly stopping = new AbortController();

  /** Per controller, the generation last seen of each of its objects (to tell a status write from a spec change). */
  private readonly generations = new Map<string, Map<string, number | undefined>>();

  private statusOnly(controller: string, key: string, e: WatchEvent): boolean {
    const seen = this.generations.get(controller)!;
    if (e.type === 'DELETED') {
      seen.delete(key);
      return false;
    }
    const had = seen.has(key);
    const before = seen.get(key);
    const now = e.object.metadata.generation;
    seen.set(key, now);
    return e.type === 'MODIFIED' && had && before === now;
  }

  constructor(private readonly deps: RunnerOptions) {
    for (const c of deps.controllers) {
      this.queues.set(c.name, new WorkQueue(deps.retryBackoff));
      this.generations.set(c.name, new Map());
    }
  }

  async start(): Promise<void> {
    this.watchAll();
    await this.resyncAll();
    this.resync = setInterval(() => void this.resyncAll(), this.deps.resyncMs ?? RUNNER_DEFAULTS.resyncMs);
    this.resync.unref();
    for (const c of this.deps.controllers) {
      for (let i = 0; i < (this.deps.workersPerController ?? RUNNER_DEFAULTS.workersPerController); i++) this.workers.push(this.work(c));
    }
  }

  private watchAll(): void {
    const { store, controllers } = this.deps;
    const kinds = new Set(controllers.flatMap((c) => [c.kind, ...c.watches.map((w) => w.kind)]));
    this.watch = store.watch(
      store.revision(),
      (e) => {
        for (const c of controllers) {
          const q = this.queues.get(c.name)!;
          if (e.object.kind === c.kind) {
            // A change of its own object's status (generation unchanged) is paced like a child's: a paced pass
            // writes that status itself, and must not be woken by it at once. A new object or a spec change is not held.
            const key = keyOf(e.object);
            if (this.statusOnly(c.name, key, e)) q.addPaced(key);
            else q.add(key);
          }
          for (const w of c.watches) if (w.kind === e.object.kind) for (const k of w.keys(e.object, e.type)) w.coalesceMs ? q.addSoon(k, w.coalesceMs) : q.addPaced(k);
        }
      },
      {
        kinds: [...kinds],
        // The store ended the watch by itself (etcd compacted past it): watch again from now and look at every
        // object once, so nothing that changed in between is missed.
        onError: (err) => {
          if (this.stopping.signal.aborted) return;
          this.deps.logger.warn({ err: errorMessage(err) }, 'controllers watch ended; watching again and resyncing');
          for (const c of this.deps.controllers) c.watchRestarted?.();
          this.watchAll();
          void this.resyncAll();
        },
      },
    );
  }

  private async resyncAll(): Promise<void> {
    for (const c of this.deps.controllers) {
      try {
        const { items } = await this.deps.store.list(c.kind);
        const seen = this.generations.get(c.name)!;
        for (const o of items) {
          const key = keyOf(o);
          // Known from here on: the first status write after it is told from a spec change.
          if (!seen.has(key)) seen.set(key, o.metadata.generation);
          this.queues.get(c.name)!.add(key);
        }
      } catch (err) {
        this.deps.logger.warn({ controller: c.name, err: errorMessage(err) }, 'resync failed');
      }
    }
  }

  private async work(c: Controller): Promise<void> {
    const q = this.queues.get(c.name)!;
    const log = this.deps.logger.child({ controller: c.name });
    for (;;) {
      const key = await q.get();
      if (key === undefined) return;
      try {
        const r = await c.reconcile(key, this.stopping.signal);
        q.forget(key);
        q.pace(key, r?.paceMs ?? 0);
        if (r?.requeueAfterMs !== undefined) q.addAfter(key, r.requeueAfterMs);
      } catch (err) {
        if (this.stopping.signal.aborted) {
          log.debug({ key, err: errorMessage(err) }, 'reconcile stopped: shutting down');
          return;
        }
        const ms = q.addRateLimited(key);
        // Conflicts are normal under concurrency: the retry reads the fresh object.
        log[isConflict(err) ? 'debug' : 'warn']({ key, err: errorMessage(err), retryMs: ms }, 'reconcile failed; will retry');
      } finally {
        q.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    this.watch?.close();
    if (this.resync) clearInterval(this.resync);
    this.stopping.abort(new StoppingError());
    for (const q of this.queues.values()) q.stop();
    const late = await withTimeout(
      Promise.all(this.workers).then(() => false),
      STOP_GRACE_MS,
      () => true,
    );
    if (late) this.deps.logger.warn({ graceMs: STOP_GRACE_MS }, 'controllers still busy at shutdown; not waiting for them');
  }
}

/** Why a reconcile was cut short: the server is stopping. */
export class StoppingError extends DroverError {
  constructor() {
    super('the controllers are stopping', { code: 503, reason: 'ShuttingDown' });
  }
}
