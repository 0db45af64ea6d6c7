/**
 * Publishes what a dashboard subscribes to, retained so a new subscriber gets it at once: the fleet
 * summary (topics.fleetSummary()) and each node's state (topics.nodeState(node)). Fed by a store
 * watch into in-memory copies of the Nodes, Pods, Deployments and DaemonSets, so a pass reads no store.
 */
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import type { DaemonSet, Deployment } from '../../src/api/workloads.js';
import { droverVersion } from '../../src/version.js';
import { DELIVERY, topics } from '../../src/contract/topics.js';
import { withTimeout } from '../../src/util/backoff.js';
import { errorMessage, TimeoutError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { isKind, type Store, type Watch } from '../store/types.js';
import { DEFAULT_STALE_AFTER_MS, fleetStatus, isStale, nodeState, type FleetStatus, type NodeState } from './summary.js';

export interface FleetSink {
  publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
}

/** The retained payload of topics.nodeState(node). */
export interface NodeStatePayload {
  node: string;
  state: NodeState;
  /** When the server last heard from the node (ISO), null if never. */
  lastHeard: string | null;
  /** Last heard too long ago: `state` is what it last said, not known to be current. */
  stale: boolean;
  /** When this message was made. */
  at: string;
}

export interface FleetPublisherDeps {
  store: Store;
  sink: FleetSink;
  logger: Logger;
  /** The server's version, for agent version skew; package.json's if absent. */
  version?: string;
  now?: () => number;
  /** The summary goes out at most once per this (default 1 s); changes within it are coalesced. */
  debounceMs?: number;
  /** A node's state is re-sent with its newer lastHeard at most this often when nothing else changed (default 60 s). */
  refreshMs?: number;
  /** How often staleness, which comes with time alone, is looked at again (default 5 s). */
  tickMs?: number;
  staleAfterMs?: number;
}

/** Node-state messages in flight at once (the first pass of a large fleet sends one per node). */
const PUBLISH_BATCH = 200;
/** Longest a pass waits for the broker to take one message. */
const PUBLISH_TIMEOUT_MS = 30_000;
/** Longest stop() waits for a pass in progress. */
const STOP_WAIT_MS = 5_000;
/** The summary's fields that change with the clock alone: a new value of them is no change worth a message. */
const CLOCK_FIELDS = new Set(['generatedAt', 'ageSeconds', 'lastHeardAgeSeconds']);

function key(o: { metadata: { namespace?: string; name: string } }): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

export class FleetPublisher {
  private readonly nodes = new Map<string, Node>();
  private readonly pods = new Map<string, Pod>();
  private readonly deployments = new Map<string, Deployment>();
  private readonly daemonSets = new Map<string, DaemonSet>();
  /** What was last sent per node (by the server's clock). */
  private readonly sent = new Map<string, { state: NodeState; stale: boolean; lastHeard: string | null; atMs: number }>();
  /** Nodes deleted whose retained state is still to be cleared. */
  private readonly deleted = new Set<string>();
  private summaryDigest: string | undefined;
  private lastPassMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private watch: Watch | undefined;
  private running: Promise<void> = Promise.resolve();
  private passing = false;
  private again = false;
  private stopped = false;
  private readonly now: () => number;
  private readonly version: string;

  constructor(private readonly deps: FleetPublisherDeps) {
    this.now = deps.now ?? Date.now;
    this.version = deps.version ?? droverVersion();
  }

  async start(): Promise<void> {
    const { store } = this.deps;
    const [nodes, pods, deployments, daemonSets] = await Promise.all([store.list('Node'), store.list('Pod'), store.list('Deployment'), store.list('DaemonSet')]);
    for (const n of nodes.items) this.nodes.set(n.metadata.name, n);
    for (const p of pods.items) this.pods.set(key(p), p);
    for (const d of deployments.items) this.deployments.set(key(d), d);
    for (const d of daemonSets.items) this.daemonSets.set(key(d), d);
    // Events between the lists are replayed in order, so every copy ends at its latest version.
    const from = Math.min(nodes.revision, pods.revision, deployments.revision, daemonSets.revision);
    this.watch = store.watch(
      from,
      (e) => {
        const o = e.object;
        const gone = e.type === 'DELETED';
        if (isKind(o, 'Node')) {
          if (gone) {
            this.nodes.delete(o.metadata.name);
            this.deleted.add(o.metadata.name);
          } else {
            this.nodes.set(o.metadata.name, o);
            this.deleted.delete(o.metadata.name);
          }
        } else if (isKind(o, 'Pod')) {
          if (gone) this.pods.delete(key(o));
          else this.pods.set(key(o), o);
        } else if (isKind(o, 'Deployment')) {
          if (gone) this.deployments.delete(key(o));
          else this.deployments.set(key(o), o);
        } else if (isKind(o, 'DaemonSet')) {
          if (gone) this.daemonSets.delete(key(o));
          else this.daemonSets.set(key(o), o);
        } else return;
        this.schedule();
      },
      { kinds: ['Node', 'Pod', 'Deployment', 'DaemonSet'] },
    );
    this.ticker = setInterval(() => this.schedule(), this.deps.tickMs ?? 5_000);
    this.ticker.unref();
    await this.flush();
  }

  /** A pass soon, but at most one per debounce interval: a burst of changes is one message. */
  private schedule(): void {
    if (this.stopped || this.timer) return;
    const wait = Math.max(20, this.lastPassMs + (this.deps.debounceMs ?? 1_000) - this.now());
    this.timer = setTimeout(() => void this.flush(), wait);
  }

  /**
   * One publishing pass; passes run one after another. Asked for while one runs (a broker slow to
   * acknowledge), it runs once more after it, however often it was asked: passes do not queue up.
   */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.passing) {
      this.again = true;
      return this.running;
    }
    this.passing = true;
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.pass();
        } while (this.again && !this.stopped);
      } catch (err) {
        if (!this.stopped) this.deps.logger.error({ err: errorMessage(err) }, 'fleet publishing failed');
      } finally {
        this.passing = false;
      }
    })();
    return this.running;
  }

  /** The summary as it is now. */
  summary(): FleetStatus {
    return fleetStatus({
      nodes: [...this.nodes.values()],
      pods: [...this.pods.values()],
      deployments: [...this.deployments.values()],
      daemonSets: [...this.daemonSets.values()],
      nowMs: this.now(),
      serverVersion: this.version,
      staleAfterMs: this.deps.staleAfterMs,
    });
  }

  private async pass(): Promise<void> {
    if (this.stopped) return;
    this.lastPassMs = this.now();
    const { logger } = this.deps;
    const summary = this.summary();
    const digest = JSON.stringify(summary, (k, v: unknown) => (CLOCK_FIELDS.has(k) ? undefined : v));
    if (digest !== this.summaryDigest) {
      try {
        await this.publish(topics.fleetSummary(), JSON.stringify(summary), DELIVERY.fleetSummary);
        this.summaryDigest = digest;
        logger.debug({ nodes: summary.nodes.total }, 'fleet summary published');
      } catch (err) {
        // Left unmarked: the next tick tries again.
        logger.warn({ err: errorMessage(err) }, 'cannot publish the fleet summary; will retry');
      }
    }
    await this.publishNodeStates();
  }

  /**
   * One message, given up on after PUBLISH_TIMEOUT_MS (a broker gone away): what it carried is still
   * unsent as far as this publisher knows, so a later pass sends the state of then.
   */
  private publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    return withTimeout(this.deps.sink.publish(topic, payload, opts), PUBLISH_TIMEOUT_MS, () => {
      throw new TimeoutError(`the broker did not acknowledge ${topic} within ${PUBLISH_TIMEOUT_MS / 1000}s`);
    });
  }

  private async publishNodeStates(): Promise<void> {
    const nowMs = this.now();
    const refreshMs = this.deps.refreshMs ?? 60_000;
    const due: Array<() => Promise<void>> = [];
    for (const node of this.deleted) {
      due.push(async () => {
        // An empty retained message is how MQTT forgets one.
        await this.publish(topics.nodeState(node), '', DELIVERY.nodeState);
        this.deleted.delete(node);
        this.sent.delete(node);
      });
    }
    for (const [name, n] of this.nodes) {
      const state = nodeState(n);
      const stale = isStale(n, nowMs, this.deps.staleAfterMs ?? DEFAULT_STALE_AFTER_MS);
      const lastHeard = n.status?.lastHeard ?? null;
      const prev = this.sent.get(name);
      const changed = !prev || prev.state !== state || prev.stale !== stale;
      const refresh = prev !== undefined && prev.lastHeard !== lastHeard && nowMs - prev.atMs >= refreshMs;
      if (!changed && !refresh) continue;
      const payload: NodeStatePayload = { node: name, state, lastHeard, stale, at: new Date(nowMs).toISOString() };
      due.push(async () => {
        await this.publish(topics.nodeState(name), JSON.stringify(payload), DELIVERY.nodeState);
        this.sent.set(name, { state, stale, lastHeard, atMs: nowMs });
      });
    }
    let failed = 0;
    let firstError: string | undefined;
    for (let i = 0; i < due.length && !this.stopped; i += PUBLISH_BATCH) {
      const results = await Promise.allSettled(due.slice(i, i + PUBLISH_BATCH).map((f) => f()));
      for (const r of results) {
        if (r.status === 'rejected') {
          failed++;
          firstError ??= errorMessage(r.reason);
        }
      }
    }
    // What failed is still different from what was sent: the next tick sends it again.
    if (failed) this.deps.logger.warn({ failed, err: firstError }, 'cannot publish node states; will retry');
  }

  /** Stops publishing and waits for a pass in progress, so the store and the link can close under it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.close();
    if (this.timer) clearTimeout(this.timer);
    if (this.ticker) clearInterval(this.ticker);
    this.timer = undefined;
    await withTimeout(this.running, STOP_WAIT_MS, () => this.deps.logger.warn('fleet publishing pass still running at shutdown; not waiting for it'));
  }
}
