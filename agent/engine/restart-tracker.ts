import type { DesiredPod } from '../../src/contract/payloads.js';
import { backoffDelay } from '../../src/util/backoff.js';
import type { RuntimeContainer } from '../runtime/types.js';
import type { RunContext } from './env.js';
import { epochMs } from './match.js';
import { containerKey } from './naming.js';
import type { PlanContext } from './plan.js';
import type { ReportView, StepFailure } from './report.js';

export interface RestartTrackerOptions {
  clock?: () => number;
  /** First back-off; doubled per consecutive restart (kubelet: 10s). */
  baseMs?: number;
  /** Back-off cap (kubelet: 5 min). */
  maxMs?: number;
  /** A container that ran this long before exiting starts over at the first back-off (kubelet: 10 min). */
  resetAfterMs?: number;
  /** imagePullPolicy Always: a pull this recent serves the containers created after it. */
  pullFreshMs?: number;
}

interface CrashState {
  restarts: number;
  /** Exponent of the next back-off. */
  attempt: number;
  lastRestartAt?: number;
}

/**
 * Per-container memory the runtime does not keep: restart counts and CrashLoopBackOff, plus
 * back-off for failed pulls and runs so a broken image or port clash does not spin the loop.
 * Keys are `uid/container` (naming.containerKey); pull failures are keyed by image.
 */
export class RestartTracker implements ReportView {
  readonly clock: () => number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly resetAfterMs: number;
  private readonly crashes = new Map<string, CrashState>();
  private readonly pullFailures = new Map<string, StepFailure>();
  private readonly runFailures = new Map<string, StepFailure>();
  private readonly announced = new Map<string, string>();
  private readonly pulledAt = new Map<string, number>();
  private readonly pullFreshMs: number;
  /** Container id → key, for containers killed after failed liveness/startup probes. */
  private readonly unhealthy = new Map<string, string>();

  constructor(opts: RestartTrackerOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.baseMs = opts.baseMs ?? 10_000;
    this.maxMs = opts.maxMs ?? 300_000;
    this.resetAfterMs = opts.resetAfterMs ?? 600_000;
    this.pullFreshMs = opts.pullFreshMs ?? 60_000;
  }

  private delay(attempt: number): number {
    return backoffDelay(attempt, { baseMs: this.baseMs, maxMs: this.maxMs, jitter: 0 });
  }

  private ranLong(c: RuntimeContainer): boolean {
    const started = epochMs(c.startedAt);
    const finished = epochMs(c.finishedAt);
    return started > 0 && finished - started >= this.resetAfterMs;
  }

  restartCount(key: string): number {
    return this.crashes.get(key)?.restarts ?? 0;
  }

  /** The full back-off before the next restart of this exited container, counted from its exit. */
  restartDelay(key: string, exited: RuntimeContainer): number {
    const s = this.crashes.get(key);
    return this.delay(!s || this.ranLong(exited) ? 0 : s.attempt);
  }

  /** ms until the exited container may start again; 0 = now. */
  restartBackoff(key: string, exited: RuntimeContainer, now = this.clock()): number {
    // Without an exit time (a container that never started) the last restart attempt is the
    // reference; with neither, nothing says it is looping yet.
    const since = epochMs(exited.finishedAt) || this.crashes.get(key)?.lastRestartAt;
    if (!since) return 0;
    return Math.max(0, since + this.restartDelay(key, exited) - now);
  }

  /** Called when a restart is attempted, successful or not, so a container that cannot start backs off too. */
  recordRestart(key: string, exited: RuntimeContainer): void {
    const s = this.crashes.get(key) ?? { restarts: 0, attempt: 0 };
    s.attempt = (this.ranLong(exited) ? 0 : s.attempt) + 1;
    s.restarts += 1;
    s.lastRestartAt = this.clock();
    this.crashes.set(key, s);
  }

  private failed(map: Map<string, StepFailure>, k: string, reason: StepFailure['reason'], message: string): StepFailure {
    const failures = (map.get(k)?.failures ?? 0) + 1;
    const at = this.clock();
    const f = { reason, message, failures, at, retryAt: at + this.delay(failures - 1) };
    map.set(k, f);
    return f;
  }

  pullFailed(image: string, message: string): StepFailure {
    return this.failed(this.pullFailures, image, 'ErrImagePull', message);
  }

  pullSucceeded(image: string): void {
    this.pullFailures.delete(image);
    this.pulledAt.set(image, this.clock());
  }

  pulledRecently(image: string, now = this.clock()): boolean {
    const at = this.pulledAt.get(image);
    return at !== undefined && now - at < this.pullFreshMs;
  }

  /** Remembers that the agent killed this container for failing its liveness or startup probe. */
  killedForProbe(key: string, id: string): void {
    this.unhealthy.set(id, key);
  }

  killedUnhealthy(id: string): boolean {
    return this.unhealthy.has(id);
  }

  pullBackoff(image: string, now = this.clock()): number {
    const f = this.pullFailures.get(image);
    return f ? Math.max(0, f.retryAt - now) : 0;
  }

  runFailed(key: string, message: string): StepFailure {
    return this.failed(this.runFailures, key, 'RunContainerError', message);
  }

  /** A new container for the key: its crash back-off starts over, its restart count stays (as in Kubernetes). */
  runSucceeded(key: string): void {
    this.runFailures.delete(key);
    this.clearUnhealthy(key);
    // A later failure to configure it is news again.
    this.announced.delete(`${key}#invalid`);
    const s = this.crashes.get(key);
    if (s) {
      s.attempt = 0;
      s.lastRestartAt = undefined;
    }
  }

  runBackoff(key: string, now = this.clock()): number {
    const f = this.runFailures.get(key);
    return f ? Math.max(0, f.retryAt - now) : 0;
  }

  pullFailure(image: string): StepFailure | undefined {
    return this.pullFailures.get(image);
  }

  runFailure(key: string): StepFailure | undefined {
    return this.runFailures.get(key);
  }

  lastError(key: string, image: string): StepFailure | undefined {
    return this.runFailures.get(key) ?? this.pullFailures.get(image);
  }

  /**
   * True the first time `marker` is seen for `key`: lets a back-off be announced once per crash or
   * failure instead of on every pass of the loop.
   */
  announce(key: string, marker: string): boolean {
    if (this.announced.get(key) === marker) return false;
    this.announced.set(key, marker);
    return true;
  }

  private clearUnhealthy(key: string): void {
    for (const [id, k] of this.unhealthy) if (k === key) this.unhealthy.delete(id);
  }

  /** A restarted container is a fresh start: the kill that led to it is dealt with. */
  restarted(key: string): void {
    this.clearUnhealthy(key);
  }

  forget(key: string): void {
    this.crashes.delete(key);
    this.runFailures.delete(key);
    this.clearUnhealthy(key);
    for (const k of this.announced.keys()) if (k === key || k.startsWith(`${key}#`)) this.announced.delete(k);
  }

  /** Drops memory of pods and images no longer in target, so the tracker does not grow forever. */
  retain(target: DesiredPod[]): void {
    const keys = new Set<string>();
    const images = new Set<string>();
    for (const p of target) {
      for (const c of p.spec.containers) {
        keys.add(containerKey(p.uid, c.name));
        images.add(c.image);
      }
    }
    for (const k of [...this.crashes.keys(), ...this.runFailures.keys()]) if (!keys.has(k)) this.forget(k);
    for (const k of this.announced.keys()) if (!keys.has(k.split('#')[0]!)) this.announced.delete(k);
    for (const i of this.pullFailures.keys()) if (!images.has(i)) this.pullFailures.delete(i);
    for (const i of this.pulledAt.keys()) if (!images.has(i)) this.pulledAt.delete(i);
    for (const [id, k] of this.unhealthy) if (!keys.has(k)) this.unhealthy.delete(id);
  }

  /** PlanContext wired to this tracker, at the tracker's clock. */
  planContext(node: string, images: Set<string>, run?: RunContext): PlanContext {
    return {
      node,
      now: this.clock(),
      images,
      restartBackoff: (key, exited, now) => this.restartBackoff(key, exited, now),
      pullBackoff: (image, now) => this.pullBackoff(image, now),
      runBackoff: (key, now) => this.runBackoff(key, now),
      pulledRecently: (image, now) => this.pulledRecently(image, now),
      killedUnhealthy: (id) => this.killedUnhealthy(id),
      run,
    };
  }
}
