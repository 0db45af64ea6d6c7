import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { BrokerTraffic } from '../mqtt/broker.js';
import { LeanHistogram, type Series } from './lean-histogram.js';

/** A store write as the store interface sees it (server/metrics/timed-store.ts). */
export type StoreOperation = 'create' | 'update' | 'patch' | 'delete';
/** ok; refused: the store said no for a reason of the caller's (conflict, not found, exists); error: it failed. */
export type WriteResult = 'ok' | 'refused' | 'error';

/** What the API server tells /metrics about each request (server/api/server.ts). */
export interface ApiRequestSink {
  /** `verb` and `resource` are bounded (a role verb or method, a kind's plural or a route's declared path), never an object name. */
  request(verb: string, resource: string, code: number, seconds: number): void;
}

/** What the store tells /metrics: each write at the interface, and each group commit (one synced batch). */
export interface StoreSink {
  write(op: StoreOperation, result: WriteResult, seconds: number): void;
  commit(writes: number, seconds: number, ok: boolean): void;
}

/** The scheduler's outcome per pod it looked at (kube-scheduler's scheduler_schedule_attempts_total). */
export interface SchedulerSink {
  attempt(result: 'scheduled' | 'unschedulable'): void;
}

let processRegistry: Registry | undefined;

/**
 * The process figures (RSS, CPU, heap, event loop lag, GC), one registry per process: they describe the
 * process, which several servers in one test process share, and each collector set keeps an event loop
 * monitor running for good.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** A counter labelled `result`, one series per key of `counts`, read from `counts` when scraped. */
function countersOf(name: string, help: string, counts: Record<string, number>, registers: Registry[]): void {
  new Counter({
    name,
    help,
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      for (const [result, n] of Object.entries(counts)) this.inc({ result }, n);
    },
  });
}

/*
 * Buckets. API calls here take 0.2-2 ms when the machine is idle (a create is ~1 ms of CPU plus an
 * fsync), so the low end is finer than kube-apiserver's (which starts at 5 ms); a watch is observed when
 * it ends, so the top reaches an hour. Store writes are an fsync (0.1-10 ms on flash, more on SD cards).
 */
const API_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600];
const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Group commit holds up to 1,000 writes (server/store/level.ts GROUP_MAX_WRITES). */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/**
 * The server's Prometheus metrics, in a registry of its own (tests run several servers in one process,
 * so the global default registry would mix them), served after the process's own figures. The per-request histograms are LeanHistograms found
 * through nested maps (no string built, nothing allocated per observation once a label set was seen);
 * broker figures are plain counters in the broker, read only when scraped.
 */
export class ServerMetrics implements ApiRequestSink, StoreSink, SchedulerSink {
  readonly registry = new Registry();
  private readonly apiDuration: LeanHistogram;
  /** verb → resource → code → series. */
  private readonly apiSeries = new Map<string, Map<string, Map<number, Series>>>();
  private readonly storeWrite: LeanHistogram;
  private readonly storeSeries = new Map<string, Map<string, Series>>();
  private readonly commitDuration: Series;
  private readonly commitBatch: Series;
  private readonly commitFailures: Counter;
  /** Plain numbers bumped per event (a scheduler pass counts every pending pod), rendered when scraped. */
  private readonly desired = { ok: 0, error: 0 };
  private readonly schedule = { scheduled: 0, unschedulable: 0 };
  private readonly startPhases: Gauge;
  private lastPhaseAt = performance.now();

  constructor() {
    const registers = [this.registry];
    this.apiDuration = new LeanHistogram(
      'drover_apiserver_request_duration_seconds',
      'API request duration by verb (role verb, or method for routes outside the Kubernetes shape), resource (kind plural, plural/subresource, or route path) and HTTP code; a watch is observed when it ends.',
      ['verb', 'resource', 'code'],
      API_BUCKETS,
      this.registry,
    );
    this.storeWrite = new LeanHistogram(
      'drover_store_write_duration_seconds',
      'Store write duration at the store interface, from call to durable (fsynced) acknowledgement, by operation and result.',
      ['operation', 'result'],
      STORE_BUCKETS,
      this.registry,
    );
    this.commitDuration = new LeanHistogram('drover_store_commit_duration_seconds', 'Duration of one group commit: one synced LevelDB batch.', [], STORE_BUCKETS, this.registry).series();
    this.commitBatch = new LeanHistogram('drover_store_commit_batch_writes', 'Writes that shared one group commit (one fsync).', [], BATCH_BUCKETS, this.registry).series();
    this.commitFailures = new Counter({ name: 'drover_store_commit_failures_total', help: 'Group commits whose synced batch failed (their writes were refused).', registers });
    countersOf('drover_desired_state_publishes_total', "Nodes' desired-state snapshots published to the broker, by result.", this.desired, registers);
    this.startPhases = new Gauge({
      name: 'drover_server_start_phase_seconds',
      help: "How long each phase of this server process's start took (store open, identity, broker, link, caches and publishers, scheduler, controllers, API), in order.",
      labelNames: ['phase'],
      registers,
    });
    countersOf('drover_scheduler_schedule_attempts_total', 'Pods the scheduler tried to place, by result: scheduled (bound to a node) or unschedulable (each pass counts every pod still waiting).', this.schedule, registers);
  }

  request(verb: string, resource: string, code: number, seconds: number): void {
    let byResource = this.apiSeries.get(verb);
    if (!byResource) this.apiSeries.set(verb, (byResource = new Map()));
    let byCode = byResource.get(resource);
    if (!byCode) byResource.set(resource, (byCode = new Map()));
    let series = byCode.get(code);
    if (!series) byCode.set(code, (series = this.apiDuration.series(verb, resource, String(code))));
    series.observe(seconds);
  }

  write(op: StoreOperation, result: WriteResult, seconds: number): void {
    let byResult = this.storeSeries.get(op);
    if (!byResult) this.storeSeries.set(op, (byResult = new Map()));
    let series = byResult.get(result);
    if (!series) byResult.set(result, (series = this.storeWrite.series(op, result)));
    series.observe(seconds);
  }

  commit(writes: number, seconds: number, ok: boolean): void {
    if (!ok) {
      this.commitFailures.inc();
      return;
    }
    this.commitDuration.observe(seconds);
    this.commitBatch.observe(writes);
  }

  /** Ends a phase of the server's start: the time since the previous phase ended (or since `from`, a performance.now()). */
  startPhase(phase: string, from?: number): void {
    const now = performance.now();
    this.startPhases.set({ phase }, (now - (from ?? this.lastPhaseAt)) / 1000);
    this.lastPhaseAt = now;
  }

  desiredPublished(result: 'ok' | 'error'): void {
    this.desired[result]++;
  }

  attempt(result: 'scheduled' | 'unschedulable'): void {
    this.schedule[result]++;
  }

  /**
   * Adds the embedded broker's figures (drover_mqtt_*), read from its counters at each scrape. Not called
   * with an external broker, so they are absent rather than zero: that broker keeps its own ($SYS topics).
   */
  watchBroker(traffic: () => BrokerTraffic): void {
    this.brokerMetrics(traffic, [this.registry]);
  }

  /** The exposition (Prometheus text format 0.0.4) and its content type. */
  async exposition(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: (await processMetrics().metrics()) + '\n' + (await this.registry.metrics()) };
  }

  private brokerMetrics(read: () => BrokerTraffic, registers: Registry[]): void {
    // Set from the broker's own counters when scraped: nothing is done per message here.
    const byDirectionAndClient = (name: string, help: string, pick: (t: BrokerTraffic) => BrokerTraffic['messages']) =>
      new Counter({
        name,
        help,
        labelNames: ['direction', 'client'],
        registers,
        collect() {
          const counts = pick(read());
          this.reset();
          for (const direction of ['in', 'out'] as const) for (const [client, n] of Object.entries(counts[direction])) this.inc({ direction, client }, n);
        },
      });
    byDirectionAndClient('drover_mqtt_messages_total', 'MQTT PUBLISH messages through the embedded broker: in (received from a client) and out (delivered to a subscriber), by client role (server, agent, operator).', (t) => t.messages);
    byDirectionAndClient('drover_mqtt_publish_bytes_total', 'Topic and payload bytes of the MQTT PUBLISH messages counted by drover_mqtt_messages_total.', (t) => t.publishBytes);
    new Counter({
      name: 'drover_mqtt_wire_bytes_total',
      help: "Bytes on the broker's TCP connections (TLS records, MQTT headers, pings and acknowledgements included), in and out.",
      labelNames: ['direction'],
      registers,
      collect() {
        const t = read();
        this.reset();
        this.inc({ direction: 'in' }, t.wireBytes.in);
        this.inc({ direction: 'out' }, t.wireBytes.out);
      },
    });
    new Counter({
      name: 'drover_mqtt_tls_handshakes_total',
      help: 'TLS handshakes the broker completed, by whether the client resumed a session (a ticket from an earlier connection; the ticket key survives restarts).',
      labelNames: ['resumed'],
      registers,
      collect() {
        const t = read().tlsHandshakes;
        this.reset();
        this.inc({ resumed: 'false' }, t.full);
        this.inc({ resumed: 'true' }, t.resumed);
      },
    });
    new Gauge({
      name: 'drover_mqtt_connected_agents',
      help: 'Agents (node certificates or node passwords) connected to the embedded broker now.',
      registers,
      collect() {
        this.set(read().connected.agent);
      },
    });
    new Gauge({
      name: 'drover_mqtt_connected_clients',
      help: 'Clients connected to the embedded broker now, by role (server: its own link; operator: API-token sessions).',
      labelNames: ['client'],
      registers,
      collect() {
        const t = read();
        this.reset();
        for (const [client, n] of Object.entries(t.connected)) this.set({ client }, n);
      },
    });
  }
}
