/**
 * The work only the leader does (scheduler, controllers, node lifecycle, publishers), started when a
 * LeaderElection wins and stopped when it loses, as controller-runtime's manager runs its leader-election
 * runnables. Each term builds its components afresh (a factory per task): nothing stopped in one term is
 * reused in the next. Transitions run one at a time, so a loss during a slow start waits for what has
 * started and then stops it; the election resigns only after stopped() has returned.
 */
import { backoffDelay, sleep, withTimeout, type BackoffOptions } from '../../src/util/backoff.js';
import { TimeoutError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';

export interface Stoppable {
  stop(): Promise<void> | void;
}

export interface LeaderTask {
  name: string;
  /** Builds and starts the component for this term; `signal` aborts when the term ends. */
  start(signal: AbortSignal): Promise<Stoppable>;
}

export interface LeaderWorkOptions {
  tasks: LeaderTask[];
  logger: Logger;
  /** Waits between attempts when a start fails (etcd slow, a list refused) while still leading. */
  retry?: BackoffOptions;
  /** How long one component may take to stop before it is left behind (its writes are fenced anyway). */
  stopTimeoutMs?: number;
}

const DEFAULT_RETRY: BackoffOptions = { baseMs: 500, maxMs: 10_000 };
const DEFAULT_STOP_TIMEOUT_MS = 5_000;

export class LeaderWork {
  private readonly running: Array<{ name: string; handle: Stoppable }> = [];
  private transition: Promise<void> = Promise.resolve();
  private readonly logger: Logger;

  constructor(private readonly opts: LeaderWorkOptions) {
    this.logger = opts.logger.child({ component: 'leader-work' });
  }

  /** The names of the components running now, in start order. */
  names(): string[] {
    return this.running.map((r) => r.name);
  }

  /** For onStartedLeading: starts every task in order; a failed start stops the others and tries again while the term lasts. */
  started = (signal: AbortSignal): Promise<void> => this.serially(() => this.startAll(signal));

  /** For onStoppedLeading: stops what runs, last started first. */
  stopped = (reason?: string): Promise<void> => this.serially(() => this.stopAll(reason ?? 'leadership ended'));

  private serially(step: () => Promise<void>): Promise<void> {
    this.transition = this.transition.then(step, step);
    return this.transition;
  }

  private async startAll(signal: AbortSignal): Promise<void> {
    for (let attempt = 0; !signal.aborted; attempt++) {
      try {
        for (const task of this.opts.tasks) {
          if (signal.aborted) return;
          const handle = await task.start(signal);
          this.running.push({ name: task.name, handle });
        }
        this.logger.info({ components: this.names() }, 'leader work started');
        return;
      } catch (err) {
        const waitMs = backoffDelay(attempt, this.opts.retry ?? DEFAULT_RETRY);
        this.logger.error({ err: errorMessage(err), started: this.names(), retryInMs: waitMs }, 'leader work could not start; stopping what started and trying again');
        await this.stopAll('a component failed to start');
        await sleep(waitMs, signal);
      }
    }
  }

  private async stopAll(reason: string): Promise<void> {
    if (this.running.length === 0) return;
    this.logger.info({ reason, components: this.names() }, 'leader work stopping');
    const timeoutMs = this.opts.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    while (this.running.length > 0) {
      const { name, handle } = this.running.pop()!;
      try {
        await withTimeout(Promise.resolve(handle.stop()), timeoutMs, () => {
          throw new TimeoutError(`${name} did not stop within ${timeoutMs} ms`);
        });
      } catch (err) {
        this.logger.warn({ component: name, err: errorMessage(err) }, 'leader work: a component did not stop cleanly');
      }
    }
  }
}
