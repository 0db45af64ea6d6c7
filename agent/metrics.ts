/**
 * The agent's /metrics (Prometheus text): reconcile durations, runtime call durations by verb and
 * outcome, the runtime call bound, and the process (RSS, CPU, event loop). Served only when asked
 * for (`--metrics-addr`), on loopback unless told otherwise: the agent has no API tokens to check, so
 * anyone who can reach the port reads it (and may scrape it as often as they like), and on a device
 * the figures say what runs there and how busy it is. A node exporter or a Prometheus agent on the
 * device scrapes 127.0.0.1; exposing it to the network is a deliberate choice (--metrics-allow-remote).
 * prom-client is loaded only then, so an agent without the flag pays nothing for it (idle RSS is a goal).
 */
import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';
import type { Counter, Histogram, Registry } from 'prom-client';
import { DroverError, ValidationError, errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import type { AgentMetricsSink } from './metrics-sink.js';
import type { RuntimeCallOutcome, RuntimeCallSink } from './runtime/timed.js';

export interface MetricsAddress {
  host: string;
  port: number;
}

const FLAG = '--metrics-addr';

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * `PORT` (on 127.0.0.1), `HOST:PORT` or `[IPV6]:PORT`. A host that is not loopback (`:PORT` and
 * `0.0.0.0:PORT` included: all interfaces) is refused unless `allowRemote`, naming the flag and why.
 * Port 0 picks a free one (tests).
 */
export function parseMetricsAddress(value: string, opts: { allowRemote?: boolean } = {}): MetricsAddress {
  const bad = (message: string) => new ValidationError([{ field: FLAG, message }], 'invalid agent option');
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(value.trim());
  if (!m) throw bad(`"${value.slice(0, 100)}" is not PORT, HOST:PORT or [IPV6]:PORT`);
  const port = Number(m[3]);
  if (port > 65_535) throw bad(`port ${port} is not from 0 to 65535`);
  const given = m[1] ?? m[2];
  // Only a bare port means loopback; ":9100" is every interface, as Go exporters read it.
  const host = given === undefined ? '127.0.0.1' : given === '' ? '0.0.0.0' : given;
  if (!isLoopback(host) && !opts.allowRemote) {
    throw bad(`${host} is not a loopback address: the agent's metrics have no authentication, so anyone who reaches the port reads them; use 127.0.0.1:${port} (scraped on the device), or add --metrics-allow-remote to serve them on ${host}`);
  }
  return { host, port };
}

/** What the agent's parts tell the metrics: the reconciler (AgentMetricsSink) and the runtime wrapper (RuntimeCallSink). */
export interface AgentMetrics extends AgentMetricsSink, RuntimeCallSink {
  /** Where it is served, e.g. http://127.0.0.1:9100/metrics. */
  readonly url: string;
  /** Reports the runtime call bound (agent/runtime/bounded.ts Slots) at each scrape: size, callers waiting, most held at once. */
  watchSlots(slots: { readonly size: number; readonly waiting: number; readonly peak: number }): void;
  close(): Promise<void>;
}

let processRegistry: Registry | undefined;

/** The process figures (RSS, CPU, event loop), once per process: each collector set keeps an event loop monitor running. */
function processMetrics(prom: typeof import('prom-client')): Registry {
  if (!processRegistry) {
    processRegistry = new prom.Registry();
    prom.collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Reconciles take 1-50 ms when nothing changes (no runtime call: the workers run them); a runtime call spawns a process (50 ms-5 s), a pull longer. */
const RECONCILE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const RUNTIME_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

class PromAgentMetrics implements AgentMetrics {
  private readonly reconcileDuration: Histogram;
  private readonly reconcileCount: Counter;
  private readonly runtimeDuration: Histogram<'runtime' | 'verb' | 'outcome'>;
  private slots: { readonly size: number; readonly waiting: number; readonly peak: number } | undefined;
  private server: Server | undefined;
  url = '';

  constructor(
    private readonly prom: typeof import('prom-client'),
    private readonly registry: Registry,
  ) {
    const registers = [registry];
    this.reconcileDuration = new prom.Histogram({ name: 'drover_agent_reconcile_duration_seconds', help: 'Duration of one reconcile: list, plan, dispatch to the pods\' workers and status report (the workers\' runtime calls run after it).', buckets: RECONCILE_BUCKETS, registers });
    this.reconcileCount = new prom.Counter({ name: 'drover_agent_reconciles_total', help: 'Reconciles run since the agent started.', registers });
    this.runtimeDuration = new prom.Histogram({
      name: 'drover_agent_runtime_call_duration_seconds',
      help: 'Container runtime calls (podman, nerdctl) by runtime, verb (run, start, stop, remove, list, inspect, exec, pull, ...) and outcome (ok, error, timeout: an exec whose command ran out of time).',
      labelNames: ['runtime', 'verb', 'outcome'],
      buckets: RUNTIME_BUCKETS,
      registers,
    });
    const read = () => this.slots;
    new prom.Gauge({
      name: 'drover_agent_runtime_slots',
      help: 'The bound on runtime calls at once: size, callers waiting for a slot now, and the most slots ever held at once (peak).',
      labelNames: ['figure'],
      registers,
      collect() {
        const s = read();
        if (!s) return;
        this.set({ figure: 'size' }, s.size);
        this.set({ figure: 'waiting' }, s.waiting);
        this.set({ figure: 'peak' }, s.peak);
      },
    });
  }

  reconcile(seconds: number): void {
    this.reconcileDuration.observe(seconds);
    this.reconcileCount.inc();
  }

  runtimeCall(runtime: string, verb: string, outcome: RuntimeCallOutcome, seconds: number): void {
    this.runtimeDuration.observe({ runtime, verb, outcome }, seconds);
  }

  watchSlots(slots: { readonly size: number; readonly waiting: number; readonly peak: number }): void {
    this.slots = slots;
  }

  async listen(address: MetricsAddress, logger: Logger): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('only /metrics is served here\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end(`method ${req.method} is not supported on /metrics\n`);
        return;
      }
      Promise.all([processMetrics(this.prom).metrics(), this.registry.metrics()]).then(
        ([proc, own]) => {
          const text = `${proc}\n${own}`;
          res.writeHead(200, { 'content-type': this.registry.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (err: unknown) => {
          logger.warn({ err: errorMessage(err) }, 'agent metrics: collecting failed');
          res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('collecting the metrics failed\n');
        },
      );
    });
    // A scraper sends one small GET: nobody gets to hold a connection open for minutes.
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const a = server.address();
    const port = typeof a === 'object' && a ? a.port : address.port;
    this.url = `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${port}/metrics`;
    logger.info({ url: this.url }, 'agent metrics served');
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/**
 * Loads prom-client, makes the agent's registry (its own, not the global one) and serves it at
 * `address`. The caller hands the result to the reconciler (deps.metrics) and wraps the runtime with
 * it (agent/runtime/timed.ts); a port in use is an error naming the flag.
 */
export async function startAgentMetrics(o: { address: MetricsAddress; logger: Logger }): Promise<AgentMetrics> {
  const prom = await import('prom-client');
  const metrics = new PromAgentMetrics(prom, new prom.Registry());
  try {
    await metrics.listen(o.address, o.logger);
  } catch (err) {
    await metrics.close();
    // Named after the flag: the operator picked a port in use or an address this host does not have.
    throw new DroverError(`${FLAG}: cannot serve metrics on ${o.address.host}:${o.address.port}: ${errorMessage(err)}`, { code: 400, reason: 'MetricsAddressUnavailable', cause: err });
  }
  return metrics;
}
