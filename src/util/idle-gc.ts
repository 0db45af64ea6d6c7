import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from './logger.js';

/**
 * A full garbage collection once the process has gone quiet holding far more V8 heap than it uses.
 *
 * V8 gives back the heap a burst grew (a fleet joining, a rollout) through its memory reducer, which waits for a
 * low allocation rate. The keepalives and heartbeats of a large fleet can keep it from ever starting: in 2 of 7
 * runs of the scale bench the server sat at rest at 175-218 MiB RSS, its heap 75-117 MiB for 56-60 used,
 * instead of ~155 MiB (bench/results/issue13-s26.md).
 */
export interface IdleGcOptions {
  /** How often the heap and the event loop are looked at. */
  checkMs: number;
  /** Event-loop utilization (0-1) over the last check below which the process counts as quiet. */
  quietUtilization: number;
  /**
   * Heap held beyond what is used before a collection is worth its pause. 4 MiB: after placing one pod on
   * each of 1,000 agents the server sat at rest holding 13 MiB more than it used (24 MiB let it keep them),
   * and once the collection compacts (see `compacting`) even a few MiB of slack come back.
   */
  slackBytes: number;
  /**
   * After a collection that left the heap as big, none again until the heap has grown by this much. 8 MiB: at 16
   * a server that collected once after its agents joined kept the 13 MiB its first placement left unused.
   */
  regrowBytes: number;
}

export const IDLE_GC_DEFAULTS: IdleGcOptions = { checkMs: 10_000, quietUtilization: 0.05, slackBytes: 4 * 1024 * 1024, regrowBytes: 8 * 1024 * 1024 };

export interface HeapFigures {
  /** V8's heap as reserved (total_heap_size) and as used, in bytes. */
  total: number;
  used: number;
}

/**
 * Whether to collect now: quiet, and the heap holds more than `slackBytes` unused — unless an earlier collection
 * left it about this big already (V8 keeps what it keeps; collecting again would only cost pauses).
 */
export function shouldCollect(o: { utilization: number; heap: HeapFigures; totalAfterLast: number | undefined }, opts: IdleGcOptions = IDLE_GC_DEFAULTS): boolean {
  if (o.utilization >= opts.quietUtilization) return false;
  if (o.heap.total - o.heap.used < opts.slackBytes) return false;
  return o.totalAfterLast === undefined || o.heap.total >= o.totalAfterLast + opts.regrowBytes;
}

/**
 * V8's own `gc()`: the one --expose-gc gives, made available at run time (the single binary takes no node
 * flags on its command line); undefined if this V8 does not allow it.
 */
export function fullGc(): (() => void) | undefined {
  if (gcOnce !== null) return gcOnce;
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return (gcOnce = exposed);
  try {
    setFlagsFromString('--expose-gc');
    // One context for the process (each keeps some heap alive): several servers in one process share it.
    const gc = runInNewContext('gc') as unknown;
    gcOnce = typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    gcOnce = undefined;
  }
  return gcOnce;
}
let gcOnce: (() => void) | undefined | null = null;

/**
 * One full collection that also compacts the heap. A plain full collection frees dead objects but keeps
 * a page while any live object sits on it, so a burst's survivors, scattered thinly, keep its pages: in a
 * probe, 6 MiB live kept a heap of 72 MiB after gc() and 11 MiB after the same gc() compacting; in the
 * server at 1,000 agents a plain one left 62.1 of 62.6 MiB for 53.2 used. The flag is V8's own and is on
 * for this one collection only (V8's regular collections choose their own pages to compact).
 */
export function compacting(gc: () => void): void {
  // Started with the flag on (NODE_OPTIONS or the command line): every full collection compacts already.
  if (operatorCompacts) return gc();
  setFlagsFromString('--compact-on-every-full-gc');
  try {
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

const operatorCompacts = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a === '--compact-on-every-full-gc' || a === '--compact_on_every_full_gc');

export interface IdleGc {
  /** Collections made so far. */
  readonly collections: number;
  stop(): void;
}

export function startIdleGc(logger: Logger, opts: Partial<IdleGcOptions> = {}): IdleGc {
  const o: IdleGcOptions = { ...IDLE_GC_DEFAULTS, ...opts };
  const gc = fullGc();
  let collections = 0;
  let totalAfterLast: number | undefined;
  let elu: EventLoopUtilization = performance.eventLoopUtilization();
  const figures = (): HeapFigures => {
    const h = getHeapStatistics();
    return { total: h.total_heap_size, used: h.used_heap_size };
  };
  const timer = gc
    ? setInterval(() => {
        const now = performance.eventLoopUtilization();
        const utilization = performance.eventLoopUtilization(now, elu).utilization;
        elu = now;
        const before = figures();
        if (!shouldCollect({ utilization, heap: before, totalAfterLast }, o)) return;
        const t0 = performance.now();
        compacting(gc);
        const after = figures();
        totalAfterLast = after.total;
        collections++;
        // The collection itself counts toward the next check's utilization: start that window afresh.
        elu = performance.eventLoopUtilization();
        logger.debug({ heapTotalBefore: before.total, heapTotalAfter: after.total, heapUsedAfter: after.used, pauseMs: Math.round(performance.now() - t0) }, 'idle: full garbage collection gave heap back');
      }, o.checkMs)
    : undefined;
  timer?.unref();
  if (!gc) logger.debug('idle garbage collection unavailable (this V8 does not expose gc)');
  return {
    get collections() {
      return collections;
    },
    stop: () => clearInterval(timer),
  };
}
