import type { Pod } from '../../src/api/pod.js';
import { backoffDelay, withTimeout, type BackoffOptions } from '../../src/util/backoff.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { isKind, type Store, type Watch } from '../store/types.js';
import { configKey, configRefs, contentDigest, PassReader, snapshotOf } from './snapshot.js';
import { IMAGE_BANDWIDTH_LABEL, type ImageCatalog } from './image-catalog.js';
import type { Node } from '../../src/api/node.js';
import { parseBandwidth } from '../../src/util/bandwidth.js';
import { deflateRawSync } from 'node:zlib';
import { encode, type payloads } from '../../src/contract/index.js';
import { DEFLATE_MARKER, type DesiredEncoding } from '../../src/contract/payloads.js';

export interface DesiredSink {
  /**
   * Publishes a node's snapshot (retained). `encoded`: the payload to send instead of plain JSON (see
   * encodeDesired); a sink that ignores it sends plain JSON, which every agent reads.
   */
  publishDesired(d: payloads.Desired, encoded?: Buffer): Promise<void>;
  /** Empties what the broker retains for a node (its Node object was deleted). */
  clearRetained(node: string): Promise<void>;
}

/**
 * Publishes each node's full desired snapshot (retained) whenever the set of pods bound to it, or a
 * ConfigMap or Secret one of those pods references, changes.
 * The generation is the store revision at the time of the snapshot: it only grows, across server
 * restarts too, so an agent can always keep the newest snapshot and drop older ones.
 */
/** Pause before a failed publishing pass is tried again, growing while it keeps failing. */
const RETRY: BackoffOptions = { baseMs: 1_000, maxMs: 30_000, jitter: 0.2 };
/** Longest stop() waits for a pass in progress. */
const STOP_WAIT_MS = 5_000;
/** Nodes whose snapshots are published at once (each waits for its PUBACK). */
const PUBLISH_GROUP = 64;
/** Smaller snapshots go as plain JSON: DEFLATE saves next to nothing on them (a node with no pods: ~100 bytes). */
const DEFLATE_MIN_BYTES = 256;

/**
 * A snapshot's payload for a node that reads `encodings` (its hello's `accepts`): DEFLATE_MARKER and raw
 * DEFLATE of the JSON when the node takes it and it is smaller, else plain JSON (pure).
 */
export function encodeDesired(d: payloads.Desired, encodings: readonly string[] | undefined): { payload: Buffer; encoding: DesiredEncoding | 'json' } {
  const json = encode(d);
  if (!encodings?.includes('deflate') || json.length < DEFLATE_MIN_BYTES) return { payload: json, encoding: 'json' };
  const packed = Buffer.concat([Buffer.from([DEFLATE_MARKER]), deflateRawSync(json, { level: 9 })]);
  return packed.length < json.length ? { payload: packed, encoding: 'deflate' } : { payload: json, encoding: 'json' };
}

export class DesiredPublisher {
  private readonly published = new Map<string, string>();
  /** Per node, the encodings its agent's last hello accepts (absent: plain JSON only). */
  private readonly encodings = new Map<string, readonly string[]>();
  /** Per node, the encoding of the snapshot last published (what the broker retains for it). */
  private readonly sentEncoding = new Map<string, DesiredEncoding | 'json'>();
  /** Nodes whose Node object was deleted: their retained topics are cleared in the next pass. */
  private readonly deleted = new Set<string>();
  private failedPasses = 0;
  private readonly dirty = new Set<string>();
  /** Per node, the configKeys its last computed snapshot referenced. */
  private readonly refs = new Map<string, Set<string>>();
  /**
   * ConfigMaps/Secrets changed since the last publish pass. Resolved against `refs` at the start of
   * the next pass, not when the change arrives: a change landing while a pass computes the refs of a
   * pod that is new to them is then still seen.
   */
  private readonly changedConfig = new Set<string>();
  /** Per node, the namespaces its pods run in: a Service or EndpointSlice change there concerns it. */
  private readonly namespaces = new Map<string, Set<string>>();
  /**
   * The pods bound to each node, kept from the store's watch: a pass reads only what the dirty nodes'
   * snapshots need, not every pod of the cluster (1,000 nodes: one list of all pods per change before).
   */
  private readonly podsByNode = new Map<string, Map<string, Pod>>();
  /** Where each indexed pod is bound ("ns/name" → node). */
  private readonly podNode = new Map<string, string>();
  /** Namespaces whose Services or EndpointSlices changed since the last pass (resolved as changedConfig is). */
  private readonly changedServices = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private watch: Watch | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  private unwatchImages: (() => void) | undefined;
  /** Per node, its IMAGE_BANDWIDTH_LABEL value as last published (undefined: none): a change republishes it. */
  private readonly bandwidthLabels = new Map<string, string | undefined>();

  constructor(
    private readonly deps: {
      store: Store;
      sink: DesiredSink;
      logger: Logger;
      debounceMs?: number;
      images?: ImageCatalog;
      /** The Node from memory instead of the store, for every publish (see RegistryOptions.cachedNode). */
      cachedNode?: (name: string) => Node | undefined;
    },
  ) {}

  async start(): Promise<void> {
    // An image pushed, renamed or removed may change what any node with pods is to fetch: the digests
    // skip the nodes it does not concern.
    this.unwatchImages = this.deps.images?.onChange(() => {
      for (const node of this.podsByNode.keys()) this.dirty.add(node);
      this.schedule();
    });
    const nodes = await this.deps.store.list('Node');
    const pods = await this.deps.store.list('Pod');
    for (const n of nodes.items) this.dirty.add(n.metadata.name);
    for (const p of pods.items) {
      this.indexPod(p, false);
      if (p.spec.nodeName) this.dirty.add(p.spec.nodeName);
    }
    const from = Math.min(nodes.revision, pods.revision);
    this.watch = this.deps.store.watch(
      from,
      (e) => {
        if (e.object.kind === 'Node') {
          // A node (re)registering gets its snapshot even if nothing changed: its retained copy may be gone.
          // A snapshot holds nothing of the Node itself but its image bandwidth label: status writes
          // (heartbeats) change nothing.
          if (e.type === 'MODIFIED') {
            const name = e.object.metadata.name;
            if (this.bandwidthLabels.has(name) && this.bandwidthLabels.get(name) !== e.object.metadata.labels?.[IMAGE_BANDWIDTH_LABEL]) this.markDirty(name);
            return;
          }
          if (e.type === 'ADDED') this.deleted.delete(e.object.metadata.name);
          if (e.type === 'DELETED') this.deleted.add(e.object.metadata.name);
          this.published.delete(e.object.metadata.name);
          this.markDirty(e.object.metadata.name);
        } else if (e.object.kind === 'ConfigMap' || e.object.kind === 'Secret') {
          this.changedConfig.add(configKey(e.object.kind, e.object.metadata.namespace ?? 'default', e.object.metadata.name));
          this.schedule();
        } else if (e.object.kind === 'Service' || e.object.kind === 'EndpointSlice') {
          this.changedServices.add(e.object.metadata.namespace ?? 'default');
          this.schedule();
        } else if (isKind(e.object, 'Pod')) {
          // The node it left (deleted, or a new pod of the same name elsewhere) and the node it is on.
          const was = this.indexPod(e.object, e.type === 'DELETED');
          if (was) this.markDirty(was);
          const node = e.object.spec.nodeName;
          if (node) this.markDirty(node);
        }
      },
      { kinds: ['Pod', 'Node', 'ConfigMap', 'Secret', 'Service', 'EndpointSlice'] },
    );
    await this.flush();
  }

  /**
   * A node's agent said hello with these `accepts`: later snapshots use them. One that no longer reads
   * what the broker retains for it (an agent downgraded to one without DEFLATE) gets its snapshot again
   * in plain JSON at once; one that newly accepts DEFLATE gets it compressed with its next change.
   */
  encodingsHeard(node: string, accepts: readonly string[] | undefined): void {
    if (accepts?.length) this.encodings.set(node, [...accepts]);
    else this.encodings.delete(node);
    const sent = this.sentEncoding.get(node);
    if (sent && sent !== 'json' && !accepts?.includes(sent)) {
      this.published.delete(node);
      this.markDirty(node);
    }
  }

  /** Puts a pod in the index under its node (or takes it out); returns the node it was under before, if another. */
  private indexPod(p: Pod, deleted: boolean): string | undefined {
    const key = `${p.metadata.namespace ?? 'default'}/${p.metadata.name}`;
    const was = this.podNode.get(key);
    const node = deleted ? undefined : p.spec.nodeName;
    if (was !== undefined && was !== node) {
      const set = this.podsByNode.get(was);
      set?.delete(key);
      if (set?.size === 0) this.podsByNode.delete(was);
      this.podNode.delete(key);
    }
    if (node) {
      let set = this.podsByNode.get(node);
      if (!set) this.podsByNode.set(node, (set = new Map()));
      set.set(key, p);
      this.podNode.set(key, node);
    }
    return was !== node ? was : undefined;
  }

  private markDirty(node: string): void {
    this.dirty.add(node);
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    if (!this.timer) this.timer = setTimeout(() => void this.flush(), this.deps.debounceMs ?? 20);
  }

  /** Publish every dirty node's snapshot; serialised so generations go out in order. */
  flush(): Promise<void> {
    this.timer = undefined;
    // A failed pass (store closing, broker gone) must not poison the chain or go unhandled.
    this.running = this.running
      .then(() => this.publishDirty())
      .then(() => {
        if (!this.retryTimer) this.failedPasses = 0;
      })
      .catch((err) => {
        if (!this.stopped) this.deps.logger.error({ err: errorMessage(err) }, 'desired-state publishing failed');
      });
    return this.running;
  }

  private async publishDirty(): Promise<void> {
    for (const key of this.changedConfig) {
      for (const [node, keys] of this.refs) if (keys.has(key)) this.dirty.add(node);
    }
    this.changedConfig.clear();
    for (const ns of this.changedServices) {
      for (const [node, spaces] of this.namespaces) if (spaces.has(ns)) this.dirty.add(node);
    }
    this.changedServices.clear();
    if (this.dirty.size === 0) return;
    const nodes = [...this.dirty];
    this.dirty.clear();
    const { store } = this.deps;
    // The generation is read before anything else: a change after it gets a later generation of its own.
    const generation = store.revision();
    // One reader per pass: an object several dirty nodes reference (a Secret, a Service's slices) is read once.
    const reader = new PassReader(store);
    // Nodes in parallel groups: one at a time, each publish waits for its PUBACK (about 45 ms over TLS),
    // and a server with 2,000 nodes took 90 s to start.
    for (let i = 0; i < nodes.length; i += PUBLISH_GROUP) {
      // Shutting down: what is left goes out from the next server (it publishes every node at start).
      if (this.stopped) return;
      await Promise.all(nodes.slice(i, i + PUBLISH_GROUP).map((node) => this.publishNode(node, generation, reader)));
    }
  }

  private async publishNode(node: string, generation: number, reader: PassReader): Promise<void> {
    const { store, sink, logger } = this.deps;
    let snap;
    try {
      // Only a registered node gets a snapshot: one that registers later gets it then (Node ADDED).
      const nodeObj = this.deps.cachedNode?.(node) ?? (await store.get('Node', '', node));
      if (!nodeObj) {
        this.refs.delete(node);
        this.namespaces.delete(node);
        this.sentEncoding.delete(node);
        this.bandwidthLabels.delete(node);
        if (this.deleted.has(node)) await this.clear(node);
        return;
      }
      snap = await snapshotOf(node, [...(this.podsByNode.get(node)?.values() ?? [])], reader, this.deps.images);
      const bandwidth = this.imageBandwidth(nodeObj);
      if (bandwidth !== undefined) snap = { ...snap, imageBandwidth: bandwidth };
    } catch (err) {
      if (!this.stopped) logger.warn({ node, err: errorMessage(err) }, 'cannot read the store for a desired state; will retry');
      this.retryLater([node]);
      return;
    }
    this.refs.set(node, configRefs(snap.pods));
    this.namespaces.set(node, new Set(snap.pods.map((p) => p.namespace)));
    const digest = contentDigest(snap);
    if (this.published.get(node) === digest) return;
    try {
      const d: payloads.Desired = { node, generation, ...snap, ts: new Date().toISOString() };
      const { payload, encoding } = encodeDesired(d, this.encodings.get(node));
      await sink.publishDesired(d, encoding === 'json' ? undefined : payload);
      this.published.set(node, digest);
      this.sentEncoding.set(node, encoding);
      logger.debug({ node, generation, pods: snap.pods.length, configMaps: snap.configMaps.length, secrets: snap.secrets.length, services: snap.services?.length ?? 0, bytes: payload.length, encoding }, 'desired state published');
    } catch (err) {
      logger.warn({ node, err: errorMessage(err) }, 'cannot publish desired state; will retry');
      this.retryLater([node]);
    }
  }

  /** The node's image bandwidth budget from its label; a value that is not a bandwidth is left out, once warned of. */
  private imageBandwidth(node: Node): number | undefined {
    const name = node.metadata.name;
    const value = node.metadata.labels?.[IMAGE_BANDWIDTH_LABEL];
    const before = this.bandwidthLabels.get(name);
    this.bandwidthLabels.set(name, value);
    if (value === undefined) return undefined;
    try {
      return parseBandwidth(value, `metadata.labels["${IMAGE_BANDWIDTH_LABEL}"]`);
    } catch (err) {
      if (before !== value) this.deps.logger.warn({ node: name, err: errorMessage(err) }, 'node label ignored: not a bandwidth; the agent keeps its own budget');
      return undefined;
    }
  }

  /** A deleted node's desired state carries Secret data: it must not stay on the broker. */
  private async clear(node: string): Promise<void> {
    try {
      await this.deps.sink.clearRetained(node);
      this.deleted.delete(node);
      this.deps.logger.info({ node }, 'retained messages of a deleted node cleared');
    } catch (err) {
      this.deps.logger.warn({ node, err: errorMessage(err) }, 'cannot clear the retained messages of a deleted node; will retry');
      this.retryLater([node]);
    }
  }

  /** Nodes whose pass failed go again after a pause (longer while failures repeat), not in a tight loop. */
  private retryLater(nodes: string[]): void {
    for (const n of nodes) this.dirty.add(n);
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.flush();
    }, backoffDelay(this.failedPasses++, RETRY));
  }

  /** Stops publishing and waits for a pass in progress, so the store can close under it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.close();
    this.unwatchImages?.();
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.timer = undefined;
    // A publish to an unreachable external broker may never settle: do not hang the shutdown on it.
    await withTimeout(this.running, STOP_WAIT_MS, () => this.deps.logger.warn('desired-state pass still running at shutdown; not waiting for it'));
  }
}
