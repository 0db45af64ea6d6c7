/**
 * A sim worker: the simulated agents of one share of the fleet, joined and connected on command of
 * the parent (fleet.ts), which collects their totals. Runs as a forked process (one event loop per
 * share, so thousands of TLS clients do not share one core) or, with no workers, in the parent itself;
 * either way it talks through a Channel of plain messages.
 */
import type { DeviceKeyPem, Joined } from './device-join.js';
import { joinDevice, nativeCsr } from './device-join.js';
import { emptyAgentStats, SimAgent, type SimAgentSettings, type SimAgentStats } from './agent.js';

export interface SimNodeName {
  name: string;
  index: number;
}

export interface WorkerConfig extends SimAgentSettings {
  nodes: SimNodeName[];
  apiUrl: string;
  /** The K10 join token. */
  joinToken: string;
  /** RSA key pool; node i uses keys[i % keys.length]. */
  keys: DeviceKeyPem[];
  /** Joins in flight at once in this worker. */
  joinConcurrency: number;
  /** Connections opened per second by this worker; 0 = all at once. */
  connectPerSecond: number;
}

export interface WorkerStats extends SimAgentStats {
  agents: number;
  connectedNow: number;
  everConnected: number;
  bytesIn: number;
  bytesOut: number;
  podsRunning: number;
  cpuMs: number;
  rssMiB: number;
}

export interface JoinReport {
  ok: number;
  failed: number;
  latenciesMs: number[];
  /** Date.now() at each successful join's answer: the rate as the credential store grows. */
  doneAt: number[];
  errorSamples: string[];
}

export type FromWorker =
  | { type: 'prepared' }
  | { type: 'joined'; report: JoinReport }
  | { type: 'connected'; count: number }
  | { type: 'stats'; id: number; stats: WorkerStats }
  | { type: 'started' }
  | { type: 'stopped' };
export type ToWorker = { type: 'config'; config: WorkerConfig } | { type: 'join' } | { type: 'connect' } | { type: 'stats'; id: number } | { type: 'stop' };

/** The worker's side of the link to its parent. */
export interface WorkerChannel {
  send(m: FromWorker): void;
  onMessage(handler: (m: ToWorker) => void): void;
}

export function runWorker(ch: WorkerChannel): void {
  const base = emptyAgentStats();
  const agents: SimAgent[] = [];
  let everConnected = 0;
  let pendingConnected = 0;
  const flushConnected = setInterval(() => {
    if (pendingConnected) ch.send({ type: 'connected', count: pendingConnected });
    pendingConnected = 0;
  }, 50);

  let cfg: WorkerConfig | undefined;
  let csrs: string[] = [];
  const joined: Array<(Joined & { key: string }) | undefined> = [];
  const need = (): WorkerConfig => {
    if (!cfg) throw new Error('sim worker: a command came before its config');
    return cfg;
  };
  ch.onMessage((m) => {
    if (m.type === 'config') {
      cfg = m.config;
      const c = cfg;
      // Device-side work done before the clock starts: each node's CSR for its key.
      csrs = c.nodes.map((n) => nativeCsr(n.name, c.keys[n.index % c.keys.length]!));
      ch.send({ type: 'prepared' });
    } else if (m.type === 'join') {
      const c = need();
      const report: JoinReport = { ok: 0, failed: 0, latenciesMs: [], doneAt: [], errorSamples: [] };
      let next = 0;
      const lane = async () => {
        while (next < c.nodes.length) {
          const i = next++;
          const n = c.nodes[i]!;
          const t = performance.now();
          try {
            const j = await joinDevice(c.apiUrl, c.joinToken, n.name, csrs[i]!);
            joined[i] = { ...j, key: c.keys[n.index % c.keys.length]!.key };
            report.ok++;
            report.latenciesMs.push(Math.round(performance.now() - t));
            report.doneAt.push(Date.now());
          } catch (err) {
            report.failed++;
            if (report.errorSamples.length < 5) report.errorSamples.push(`${n.name}: ${(err as Error).message}`);
          }
        }
      };
      void Promise.all(Array.from({ length: Math.max(1, c.joinConcurrency) }, lane)).then(() => ch.send({ type: 'joined', report }));
    } else if (m.type === 'connect') {
      const c = need();
      let i = 0;
      const startOne = () => {
        const k = i++;
        const n = c.nodes[k]!;
        const creds = joined[k];
        if (!creds) return; // its join failed: counted in the join phase
        const a = new SimAgent(n.name, n.index, c, creds, base, () => {
          everConnected++;
          pendingConnected++;
        });
        agents.push(a);
        a.start();
      };
      if (c.connectPerSecond <= 0) {
        while (i < c.nodes.length) startOne();
      } else {
        const perTick = Math.max(1, Math.round(c.connectPerSecond / 20));
        const t = setInterval(() => {
          for (let k = 0; k < perTick && i < c.nodes.length; k++) startOne();
          if (i >= c.nodes.length) clearInterval(t);
        }, 50);
      }
      ch.send({ type: 'started' });
    } else if (m.type === 'stats') {
      let bin = 0;
      let bout = 0;
      let connectedNow = 0;
      let pods = 0;
      for (const a of agents) {
        const b = a.bytes();
        bin += b.in;
        bout += b.out;
        if (a.connected()) connectedNow++;
        pods += a.podsRunning();
      }
      const cpu = process.cpuUsage();
      ch.send({
        type: 'stats',
        id: m.id,
        stats: { ...base, agents: cfg?.nodes.length ?? 0, everConnected, bytesIn: bin, bytesOut: bout, connectedNow, podsRunning: pods, cpuMs: (cpu.user + cpu.system) / 1000, rssMiB: process.memoryUsage().rss / 2 ** 20 },
      });
    } else if (m.type === 'stop') {
      clearInterval(flushConnected);
      for (const a of agents) a.stop();
      ch.send({ type: 'stopped' });
    }
  });
}

// Forked by fleet.ts with this flag: this file is then the process's entry point.
if (process.argv.includes('--drover-sim-worker') && process.send) {
  runWorker({
    send: (m) => process.send?.(m),
    onMessage: (h) => {
      process.on('message', (m: ToWorker) => {
        h(m);
        // The last stats went out with 'stopped'; the event loop may still hold closing sockets.
        if (m.type === 'stop') setTimeout(() => process.exit(0), 200);
      });
    },
  });
  process.on('disconnect', () => process.exit(0));
}
