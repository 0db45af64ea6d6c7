/**
 * For the leader election tests: a log of who led when (wall-clock ms from every participant, in-process
 * or child process), the check that no two leadership intervals overlap, and elections wired to it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LeaderElection, type LeaderElectionOptions } from '../../server/leader/election.js';
import { createLogger } from '../../src/util/logger.js';

export interface LeadInterval {
  who: string;
  start: number;
  /** Undefined while it leads. */
  end?: number;
  reason?: string;
}

export class LeadershipLog {
  readonly intervals: LeadInterval[] = [];
  private readonly waiters: Array<() => void> = [];

  started(who: string, at = Date.now()): void {
    assert.equal(this.open(who), undefined, `${who} started leading twice without stopping`);
    this.intervals.push({ who, start: at });
    this.wake();
  }

  stopped(who: string, at = Date.now(), reason?: string): void {
    const i = this.open(who);
    if (i) Object.assign(i, { end: at, reason });
    this.wake();
  }

  open(who: string): LeadInterval | undefined {
    return this.intervals.find((i) => i.who === who && i.end === undefined);
  }

  /** Who leads now, by the log (throws when two do: the point of these tests). */
  current(): string | undefined {
    const open = this.intervals.filter((i) => i.end === undefined);
    assert.ok(open.length <= 1, `two leaders at once: ${JSON.stringify(open)}`);
    return open[0]?.who;
  }

  /** Resolves once `pred` holds, checked at every start and stop; rejects after `ms`. */
  async until(what: string, pred: () => boolean, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; intervals: ${JSON.stringify(this.intervals)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  /** No two intervals overlap: each one ends (by its own clock) no later than the next one starts. */
  assertNoOverlap(): void {
    const sorted = [...this.intervals].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      const next = sorted[i]!;
      assert.ok(prev.end !== undefined && prev.end <= next.start, `leadership overlapped: ${prev.who} [${prev.start}, ${prev.end ?? 'still leading'}] and ${next.who} from ${next.start}; all: ${JSON.stringify(sorted)}`);
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

export const testTimings = { leaseDurationSeconds: 6, renewDeadlineSeconds: 4, retryPeriodSeconds: 1 };

/** An in-process election that records into `log` under its identity; started. */
export function recordedElection(log: LeadershipLog, opts: Omit<LeaderElectionOptions, 'logger'> & { logger?: LeaderElectionOptions['logger'] }): LeaderElection {
  const e = new LeaderElection({
    ...testTimings,
    logger: createLogger({ name: opts.identity, level: process.env.LEADER_TEST_LOG ?? 'silent' }),
    ...opts,
    onStartedLeading: (signal) => {
      log.started(opts.identity);
      void opts.onStartedLeading?.(signal);
    },
    // The interval ends once the stop work is done: that is when this server stopped acting.
    onStoppedLeading: async (reason) => {
      await opts.onStoppedLeading?.(reason);
      log.stopped(opts.identity, Date.now(), reason);
    },
  });
  e.start();
  return e;
}

export interface LeaderChild {
  proc: ChildProcess;
  /** SIGKILL; resolves with the wall-clock time the process was seen gone, which closes its interval. */
  kill(): Promise<number>;
  stderr(): string;
}

/** An election in a child process (test/helpers/leader-child.ts) recording into `log`; resolves once it campaigns. */
export async function spawnLeaderChild(log: LeadershipLog, opts: { endpoints: string[]; name: string; identity: string } & Partial<typeof testTimings>): Promise<LeaderChild> {
  const script = fileURLToPath(new URL('./leader-child.ts', import.meta.url));
  const proc = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify({ ...testTimings, ...opts })], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (c) => (err = (err + c).slice(-4000)));
  const exited = new Promise<number>((resolve) => proc.once('exit', () => resolve(Date.now())));
  const ready = new Promise<void>((resolve, reject) => {
    proc.once('exit', (code, signal) => reject(new Error(`leader child exited (${code ?? signal}) before campaigning: ${err}`)));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as { event: string; at: number; reason?: string };
      if (m.event === 'ready') resolve();
      else if (m.event === 'started') log.started(opts.identity, m.at);
      else if (m.event === 'stopped') log.stopped(opts.identity, m.at, m.reason);
    });
  });
  await ready;
  return {
    proc,
    stderr: () => err,
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      const at = await exited;
      // It cannot act once gone: its interval ends there (it never said so itself).
      log.stopped(opts.identity, at, 'SIGKILL');
      return at;
    },
  };
}
