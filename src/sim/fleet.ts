/**
 * The parent side of the simulated fleet: forks the sim workers (worker.ts), hands each its share of
 * the nodes, and sums what they report. `count` 0 runs the one share in this process instead (for a
 * single-file binary, which cannot fork a module, and for small fleets).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runWorker, type FromWorker, type JoinReport, type SimNodeName, type ToWorker, type WorkerConfig, type WorkerStats } from './worker.js';

/**
 * This module's file: worker.ts under tsx, worker.js when compiled sit beside it. Read when a worker is
 * forked, not at load: in the single binary (one bundled script) there is no module file, and the agents
 * run in process there (--workers 0).
 */
function moduleFile(): string {
  const url = (import.meta as { url?: string }).url;
  if (!url) throw new Error('worker processes need drover run from its files (node bin/drover.js); the single binary runs the simulated agents in its own process: use --workers 0');
  return fileURLToPath(url);
}

export interface SimFleet {
  /** Agents that have connected at least once, all workers together. */
  connected: number;
  /** Process ids of the forked workers (none in-process). */
  pids: number[];
  /** Every worker joins its agents; resolves with all their outcomes. */
  join(): Promise<JoinReport>;
  /** Every worker starts the MQTT clients of the agents that joined; onConnected gets the running total. */
  connect(onConnected?: (total: number) => void): Promise<void>;
  stats(): Promise<WorkerStats>;
  stop(): Promise<void>;
}

/** The parent's end of one worker. */
interface Link {
  send(m: ToWorker): void;
  on(handler: (m: FromWorker) => void): void;
  off(handler: (m: FromWorker) => void): void;
  /** Resolves once the worker is gone (or, in process, has stopped its agents). */
  stop(): Promise<void>;
}

function forkedLink(): { link: Link; proc: ChildProcess } {
  const here = moduleFile();
  // Under tsx the worker is TypeScript too: the child needs the same loader; compiled, plain node runs it.
  const execArgv = [...(extname(here) === '.ts' ? ['--import', 'tsx'] : []), ...(process.env.DROVER_SIM_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.DROVER_SIM_PROF_DIR}`] : [])];
  const proc = fork(join(dirname(here), `worker${extname(here)}`), ['--drover-sim-worker'], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const link: Link = {
    send: (m) => {
      if (proc.connected) proc.send(m);
    },
    on: (h) => proc.on('message', h),
    off: (h) => proc.off('message', h),
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        proc.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        if (proc.connected) proc.send({ type: 'stop' } satisfies ToWorker);
        else proc.kill('SIGTERM');
      }),
  };
  return { link, proc };
}

function inProcessLink(): Link {
  const toWorker = new EventEmitter();
  const fromWorker = new EventEmitter();
  // Messages cross on the next tick, as they would over IPC: neither side re-enters the other.
  runWorker({ send: (m) => setImmediate(() => fromWorker.emit('m', m)), onMessage: (h) => toWorker.on('m', h) });
  return {
    send: (m) => setImmediate(() => toWorker.emit('m', m)),
    on: (h) => fromWorker.on('m', h),
    off: (h) => fromWorker.off('m', h),
    stop: () =>
      new Promise<void>((resolve) => {
        const on = (m: FromWorker) => {
          if (m.type !== 'stopped') return;
          fromWorker.off('m', on);
          resolve();
        };
        fromWorker.on('m', on);
        toWorker.emit('m', { type: 'stop' } satisfies ToWorker);
      }),
  };
}

/** Starts the workers and hands each its share of the nodes; resolves once each has made its CSRs. */
export async function startSimFleet(count: number, nodes: SimNodeName[], base: Omit<WorkerConfig, 'nodes'>): Promise<SimFleet> {
  const links: Link[] = [];
  const pids: number[] = [];
  const shares = Math.max(1, count);
  for (let k = 0; k < shares; k++) {
    if (count === 0) links.push(inProcessLink());
    else {
      const { link, proc } = forkedLink();
      links.push(link);
      if (proc.pid !== undefined) pids.push(proc.pid);
    }
  }
  let reqId = 0;
  const waiting = new Map<number, { got: WorkerStats[]; resolve: (s: WorkerStats) => void }>();
  /** Resolves when every worker has sent one message of `type`, with those messages. */
  const fromAll = <T extends FromWorker['type']>(type: T): Promise<Array<Extract<FromWorker, { type: T }>>> =>
    Promise.all(
      links.map(
        (l) =>
          new Promise<Extract<FromWorker, { type: T }>>((resolve) => {
            const on = (m: FromWorker) => {
              if (m.type !== type) return;
              l.off(on);
              resolve(m as Extract<FromWorker, { type: T }>);
            };
            l.on(on);
          }),
      ),
    );
  let onConnected: (total: number) => void = () => {};
  const fleet: SimFleet = {
    connected: 0,
    pids,
    join: async () => {
      const done = fromAll('joined');
      for (const l of links) l.send({ type: 'join' });
      const reports = (await done).map((m) => m.report);
      return {
        ok: reports.reduce((a, r) => a + r.ok, 0),
        failed: reports.reduce((a, r) => a + r.failed, 0),
        latenciesMs: reports.flatMap((r) => r.latenciesMs),
        doneAt: reports.flatMap((r) => r.doneAt),
        errorSamples: reports.flatMap((r) => r.errorSamples),
      };
    },
    connect: async (cb) => {
      onConnected = cb ?? (() => {});
      const started = fromAll('started');
      for (const l of links) l.send({ type: 'connect' });
      await started;
    },
    stats: () =>
      new Promise((resolve) => {
        const id = ++reqId;
        waiting.set(id, { got: [], resolve });
        for (const l of links) l.send({ type: 'stats', id });
      }),
    stop: async () => {
      await Promise.all(links.map((l) => l.stop()));
    },
  };
  for (const l of links) {
    l.on((m) => {
      if (m.type === 'connected') {
        fleet.connected += m.count;
        onConnected(fleet.connected);
      } else if (m.type === 'stats') {
        const rec = waiting.get(m.id);
        if (!rec) return;
        rec.got.push(m.stats);
        if (rec.got.length === links.length) {
          waiting.delete(m.id);
          rec.resolve(sumStats(rec.got));
        }
      }
    });
  }
  const prepared = fromAll('prepared');
  links.forEach((l, k) => {
    const mine = nodes.filter((_, i) => i % shares === k);
    l.send({ type: 'config', config: { ...base, nodes: mine, connectPerSecond: base.connectPerSecond / shares } });
  });
  await prepared;
  return fleet;
}

/** Totals over workers: counters add up, sizes keep the first seen, lists join. */
export function sumStats(list: WorkerStats[]): WorkerStats {
  const out = structuredClone(list[0]!);
  for (const s of list.slice(1)) {
    for (const k of Object.keys(s) as Array<keyof WorkerStats>) {
      if (typeof s[k] === 'number') (out[k] as number) += s[k] as number;
    }
    for (const [k, v] of Object.entries(s.sizes)) out.sizes[k] ??= v;
    out.errorSamples.push(...s.errorSamples);
    for (const [k, v] of Object.entries(s.errorKinds)) out.errorKinds[k] = (out.errorKinds[k] ?? 0) + v;
    out.reconnectMs.push(...s.reconnectMs);
    out.reconnectAttempts.push(...s.reconnectAttempts);
    out.reconnectLastAttemptMs.push(...s.reconnectLastAttemptMs);
  }
  return out;
}
