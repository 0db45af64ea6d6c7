/**
 * The device's side of the server's images (issue 15): the desired state lists the images this node
 * is to have (`desired.images`); each whose archive is not loaded yet is fetched from the server (one
 * transfer at a time by default: the link is the bottleneck, and two transfers would each take twice
 * as long before either pod can start), loaded into the runtime, recorded in STATE_DIR/images/loaded.json
 * and its archive deleted. The reconciler's pull step waits for an image through ensure(); the
 * status carries digests() and transfers(). Images nothing wants any more are removed from the
 * runtime after a grace period, the newest revisions of each name kept for a fast rollback.
 */
import { rm, stat } from 'node:fs/promises';
import type { DesiredImage, ImageTransfer } from '../../src/contract/images.js';
import { REPORT_LIMITS } from '../../src/contract/payloads.js';
import { backoffDelay, type BackoffOptions } from '../../src/util/backoff.js';
import { DroverError, RuntimeError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { EventInput } from '../reporter.js';
import { imagePresent } from '../engine/plan.js';
import type { ContainerRuntime } from '../runtime/types.js';
import { diskPressure, measureSpaces, type DiskPressure } from './disk.js';
import { ImageTransferError, type FetchProgress, type FetchResult, type ImageRef } from './fetch.js';
import { readRecord, recordLoaded, recordPath, updateRecord, type ImageRecord } from './record.js';
import { compareStrings } from '../../src/util/compare.js';

/** What the manager needs of a fetcher (agent/images/fetch.ts's ImageFetcher). */
export interface ImageFetchSource {
  fetch(img: ImageRef, opts: { signal?: AbortSignal; onProgress?: (p: FetchProgress) => void }): Promise<FetchResult>;
}

export interface ImageManagerOptions {
  stateDir: string;
  runtime: ContainerRuntime;
  /** The fetcher to use now (a getter: a renewed node certificate makes a new one). */
  fetcher: () => ImageFetchSource;
  logger?: Logger;
  now?: () => number;
  /** Whether a transfer may start now (the node is approved, its credential usable); default: always. */
  mayFetch?: () => boolean;
  /** Image references the node's containers (any state) use: never collected. */
  inUse?: () => Promise<string[]>;
  /** Node events (a transfer that failed, an image collected). */
  emit?: (e: EventInput) => void;
  node?: string;
  /** How long an image nothing wants stays before it is removed. Default 1 h. */
  gcGraceMs?: number;
  /** Newest loaded revisions of each image name kept whatever the grace (fast rollback). Default 2. */
  keepPerName?: number;
  /** Transfers at once. Default 1. */
  concurrency?: number;
  /** Shortest time between two progress-only changes told to onChange listeners. Default 2 s. */
  progressIntervalMs?: number;
  /** Delays before a failed transfer is tried again on its own (ensure() tries at once). */
  retry?: BackoffOptions;
  /** How often the record is read again (an airgap load), failed transfers retried and garbage collected. Default 10 s. */
  refreshMs?: number;
}

/** What ensure() tells the pull step. */
export interface ImageReady {
  /** False when it was loaded already. */
  fetched: boolean;
  /** The archive's size. */
  bytes?: number;
  /** Bytes received on the wire (refused and cut chunks included). */
  wireBytes?: number;
  seconds?: number;
}

interface Waiter {
  name: string;
  resolve: (r: ImageReady) => void;
  reject: (err: Error) => void;
}

interface Transfer {
  digest: string;
  name: string;
  size: number;
  prefetch: boolean;
  /** Something waits for it (a pull step): goes first. */
  urgent: boolean;
  state: ImageTransfer['state'];
  bytes: number;
  total: number;
  message?: string;
  failures: number;
  retryAt?: number;
  waiters: Waiter[];
  controller?: AbortController;
  /** Why it was stopped on purpose (no longer desired, agent stopping). */
  dropped?: string;
  seq: number;
}

const GC_INTERVAL_MS = 60_000;

/** The repository part of a reference (registry:port/path:tag → registry:port/path): revisions of one name. */
export function repositoryOf(ref: string): string {
  const at = ref.indexOf('@');
  const base = at >= 0 ? ref.slice(0, at) : ref;
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  return colon > slash ? base.slice(0, colon) : base;
}

export class ImageManager {
  private desired = new Map<string, DesiredImage>();
  private record: ImageRecord = { version: 1, images: {} };
  private recordStamp = '';
  private readonly active = new Map<string, Transfer>();
  private running = 0;
  private seq = 0;
  private stopped = false;
  private readonly listeners: Array<() => void> = [];
  private lastProgressTold = -Infinity;
  private progressTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private lastGc = -Infinity;
  private gcRunning: Promise<unknown> | undefined;
  private readonly logger: Logger;
  private readonly now: () => number;
  private pressure: DiskPressure | undefined;
  /** The runtime's image store directory: undefined until asked, null when the runtime cannot tell. */
  private storeDir: string | null | undefined;
  private diskCheck: Promise<void> | undefined;

  constructor(private readonly o: ImageManagerOptions) {
    this.logger = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
  }

  /** Reads the record and starts the periodic look (record changes, retries, garbage collection). */
  async start(): Promise<void> {
    const { record, corrupt } = await readRecord(this.o.stateDir, this.logger);
    this.record = record;
    this.recordStamp = await this.stamp();
    if (corrupt) this.nodeEvent('Warning', 'CorruptImageRecord', `${corrupt}: images still wanted are fetched and recorded again`);
    void this.checkDisk();
    const tick = () => {
      this.refreshTimer = setTimeout(() => {
        void this.tick().finally(() => {
          if (!this.stopped) tick();
        });
      }, this.o.refreshMs ?? 10_000);
      this.refreshTimer.unref();
    };
    tick();
  }

  /** Stops the transfers (their verified chunks stay for the next start) and the periodic look. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.progressTimer);
    for (const t of this.active.values()) {
      t.dropped = 'the agent is stopping';
      t.controller?.abort(new Error(t.dropped));
    }
    await Promise.all([this.gcRunning, this.diskCheck]);
  }

  /** Called whenever digests() or transfers() change (progress at most every progressIntervalMs). */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** The current desired state's images: fetches what is missing, drops transfers no longer wanted. */
  setDesired(images: DesiredImage[] | undefined): void {
    const next = new Map<string, DesiredImage>();
    for (const i of images ?? []) next.set(i.name, i);
    this.desired = next;
    const wanted = new Set([...next.values()].map((i) => i.digest));
    for (const t of [...this.active.values()]) {
      if (wanted.has(t.digest) || t.urgent) continue;
      if (t.controller) {
        t.dropped = 'no longer in the desired state';
        t.controller.abort(new Error(t.dropped));
      } else this.active.delete(t.digest);
    }
    for (const i of next.values()) {
      if (this.record.images[i.digest] || this.active.has(i.digest)) continue;
      this.active.set(i.digest, this.newTransfer(i, false));
    }
    // The prefetch mark may change (a rollout reached this node's pods): keep the transfer, update it.
    for (const i of next.values()) {
      const t = this.active.get(i.digest);
      if (t) t.prefetch = t.prefetch && i.prefetch === true;
    }
    this.changed(true);
    this.pump();
    // What is queued raises the free space needed.
    void this.checkDisk();
  }

  /** Something that mayFetch depends on changed (the link came up): waiting transfers start now, not at the next look. */
  poke(): void {
    this.pump();
  }

  /** Whether `name` is one of the server's images for this node (else it is pulled from its registry). */
  serves(name: string): boolean {
    return this.desired.has(name);
  }

  /**
   * Whether `name` is one of the server's images whose desired archive is not loaded yet, though the
   * runtime may have an image under that name: the same tag pushed again with other bytes. The plan
   * then fetches before it creates a container from that name, so a new container runs the new bytes.
   * Containers already running keep their image: as in Kubernetes, a tag that moves restarts
   * nothing (a rollout or a re-created pod does); one that exits and is due to start again is
   * re-created from the new image, as the kubelet's restart creates a new container from the name.
   */
  awaiting(name: string): boolean {
    const want = this.desired.get(name);
    return want !== undefined && !this.record.images[want.digest];
  }

  /** The runtime's id of the image the desired state wants under `name`, once loaded (and recorded with its id). */
  loadedId(name: string): string | undefined {
    const want = this.desired.get(name);
    return want ? this.record.images[want.digest]?.id : undefined;
  }

  /** The last disk-pressure look (undefined before the first), for the status. */
  diskPressure(): DiskPressure | undefined {
    return this.pressure;
  }

  /**
   * Measures the state dir's and the image store's filesystems against what is queued; listeners
   * are told when the pressure comes or goes (a node event too). One look at a time.
   */
  checkDisk(): Promise<void> {
    this.diskCheck ??= this.lookAtDisk()
      .catch((err) => this.logger.warn({ err: errorMessage(err) }, 'disk pressure look failed'))
      .finally(() => (this.diskCheck = undefined));
    return this.diskCheck;
  }

  private async lookAtDisk(): Promise<void> {
    const rt = this.o.runtime;
    if (this.storeDir === undefined) {
      // Asked until the runtime answers: a runtime not up yet at the agent's start answers later.
      this.storeDir = rt.imageStoreDir ? await rt.imageStoreDir().catch((err) => (this.logger.warn({ err: errorMessage(err) }, 'cannot tell where the runtime stores images'), undefined)) : null;
    }
    const dirs = [{ label: 'state dir', path: this.o.stateDir }, ...(this.storeDir ? [{ label: 'image store', path: this.storeDir }] : [])];
    const { spaces, unmeasured } = await measureSpaces(dirs);
    if (unmeasured.length) this.logger.debug({ unmeasured }, 'filesystems not measured for disk pressure');
    const queued = [...this.active.values()].reduce((n, t) => n + t.size, 0);
    const next = diskPressure(spaces, queued);
    const was = this.pressure;
    this.pressure = next;
    if (was?.pressure === next.pressure) return;
    // The first look says only pressure; later ones each change.
    if (next.pressure || was) {
      this.logger[next.pressure ? 'warn' : 'info']({ message: next.message, queuedBytes: queued }, next.pressure ? 'disk pressure' : 'no disk pressure');
      this.nodeEvent(next.pressure ? 'Warning' : 'Normal', next.pressure ? 'NodeHasDiskPressure' : 'NodeHasNoDiskPressure', next.message);
    }
    this.changed(true);
  }

  /**
   * Resolves once the image `name` is loaded (fetching it first if need be, ahead of other transfers);
   * rejects with the transfer's error (ImageTransferError: digest mismatch, truncated, disk full…).
   */
  async ensure(name: string): Promise<ImageReady> {
    const want = this.desired.get(name);
    if (!want) throw new DroverError(`image "${name}" is not one of the server's images for this node`, { code: 404, reason: 'NotFound' });
    if (!this.o.runtime.load) throw new RuntimeError(`container runtime ${this.o.runtime.name} cannot load image archives: "${name}" cannot be used on this node`);
    const loaded = this.record.images[want.digest];
    if (loaded) {
      // The record says loaded, yet the pull step asks: the image may have been removed by hand since,
      // or the desired state gives the archive a name it did not have (pushed again with --name).
      const present = new Set(await this.o.runtime.images().catch(() => [] as string[]));
      if (imagePresent(present, name)) return { fetched: false };
      const source = loaded.names.find((n) => present.has(n) && !this.movedOn(want.digest, n));
      if (source && (await this.tagged([source], [name])).includes(name)) {
        this.record = await updateRecord(this.o.stateDir, (r) => {
          const e = r.images[want.digest];
          if (e && !e.names.includes(name)) e.names = [...e.names, name].sort();
        }, this.logger);
        this.recordStamp = await this.stamp();
        return { fetched: false };
      }
      this.logger.warn({ image: name, digest: want.digest }, 'a recorded image is no longer in the runtime; fetching it again');
      await this.forget(want.digest);
    }
    let t = this.active.get(want.digest);
    if (!t) {
      t = this.newTransfer(want, true);
      this.active.set(want.digest, t);
    }
    t.urgent = true;
    if (t.state === 'failed') {
      // The pull step's own back-off (ImagePullBackOff) paces these retries.
      t.state = 'waiting';
      t.retryAt = undefined;
    }
    const transfer = t;
    const p = new Promise<ImageReady>((resolve, reject) => transfer.waiters.push({ name, resolve, reject }));
    this.changed(true);
    this.pump();
    return p;
  }

  /** Digests of the archives loaded on this device, for the status. */
  digests(): string[] {
    return Object.keys(this.record.images).sort().slice(0, REPORT_LIMITS.images);
  }

  /** Transfers waiting, in progress or failed, for the status. */
  transfers(): ImageTransfer[] {
    return [...this.active.values()]
      .sort((a, b) => a.seq - b.seq)
      .slice(0, 64)
      .map((t) => ({ digest: t.digest, name: t.name.slice(0, 512), bytes: t.bytes, total: t.total, state: t.state, ...(t.message ? { message: t.message.slice(0, 1024) } : {}) }));
  }

  private newTransfer(i: DesiredImage, urgent: boolean): Transfer {
    return { digest: i.digest, name: i.name, size: i.size, prefetch: i.prefetch === true, urgent, state: 'waiting', bytes: 0, total: i.size, failures: 0, waiters: [], seq: this.seq++ };
  }

  /** Starts waiting transfers while there is room: urgent ones first, then the pods', then prefetches. */
  private pump(): void {
    if (this.stopped) return;
    const limit = this.o.concurrency ?? 1;
    const now = this.now();
    while (this.running < limit) {
      const ready = [...this.active.values()].filter((t) => t.state === 'waiting' && !t.controller && (t.retryAt === undefined || t.retryAt <= now));
      if (!ready.length) return;
      if (!this.o.runtime.load) {
        // Fetching what cannot be loaded would only fill the disk.
        for (const t of ready) Object.assign(t, { state: 'failed', message: `container runtime ${this.o.runtime.name} cannot load image archives`, retryAt: Infinity });
        this.changed(true);
        return;
      }
      if (this.o.mayFetch && !this.o.mayFetch()) {
        for (const t of ready) t.message = 'waiting until this node may fetch from the server (not approved yet, or no credential)';
        return;
      }
      ready.sort((a, b) => Number(b.urgent) - Number(a.urgent) || Number(a.prefetch) - Number(b.prefetch) || a.seq - b.seq);
      void this.run(ready[0]!);
    }
  }

  private async run(t: Transfer): Promise<void> {
    this.running++;
    t.controller = new AbortController();
    t.state = 'fetching';
    t.message = undefined;
    this.changed(true);
    this.logger.info({ image: t.name, digest: t.digest, bytes: t.size, prefetch: t.prefetch }, 'fetching an image from the server');
    try {
      const r = await this.o.fetcher().fetch(
        { digest: t.digest, size: t.size, name: t.name },
        {
          signal: t.controller.signal,
          onProgress: (p) => {
            const stateChanged = p.state !== t.state || p.message !== t.message;
            Object.assign(t, { bytes: p.bytes, total: p.total, state: p.state, message: p.message });
            this.changed(stateChanged);
          },
        },
      );
      t.state = 'loading';
      t.bytes = t.total = r.manifest.size;
      t.message = undefined;
      this.changed(true);
      let names: string[];
      try {
        // A name the archive carries moves to the new image (a tag pushed again): containers running
        // from the old one keep it, and garbage collection removes it once unused.
        names = await this.o.runtime.load!(r.path);
      } finally {
        // Loaded or not, the archive goes: it is as large as the image, and a failed load is fetched again.
        await rm(r.path, { force: true });
      }
      names = await this.tagged(names, [...this.namesOf(t.digest), ...t.waiters.map((w) => w.name)]);
      const id = await this.o.runtime.imageId?.(names[0]!).catch(() => undefined);
      this.record = await recordLoaded(this.o.stateDir, t.digest, [...new Set([...names, ...this.namesOf(t.digest)])], 'server', new Date(this.now()), this.logger, id);
      this.recordStamp = await this.stamp();
      this.active.delete(t.digest);
      const seconds = r.ms / 1000;
      this.logger.info({ image: t.name, digest: t.digest, bytes: r.manifest.size, wireBytes: r.wireBytes, seconds: Math.round(seconds * 10) / 10, names }, 'image fetched and loaded');
      for (const w of t.waiters) {
        // The archive must carry the name the pod uses, or its container cannot be created from it.
        if (!imagePresent(new Set(names), w.name)) w.reject(new DroverError(`the archive of image ${t.digest} was loaded but carries ${names.join(', ')}, not "${w.name}"`, { code: 502, reason: 'ImageNameMismatch' }));
        else w.resolve({ fetched: true, bytes: r.manifest.size, wireBytes: r.wireBytes, seconds });
      }
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (t.dropped) {
        this.active.delete(t.digest);
        for (const w of t.waiters) w.reject(new ImageTransferError(`the transfer of image "${t.name}" was stopped: ${t.dropped}`, 'Aborted', true));
        this.logger.info({ image: t.name, digest: t.digest, why: t.dropped }, 'image transfer stopped');
      } else {
        t.failures++;
        t.state = 'failed';
        t.message = error.message;
        t.retryAt = this.now() + backoffDelay(t.failures - 1, this.o.retry ?? { baseMs: 10_000, maxMs: 10 * 60_000 });
        t.urgent = false;
        for (const w of t.waiters) w.reject(error);
        this.logger.warn({ image: t.name, digest: t.digest, err: error.message, failures: t.failures }, 'image transfer failed');
        this.nodeEvent('Warning', 'ImageFetchFailed', `Failed to fetch image "${t.name}" (${t.digest}) from the server: ${error.message}`);
      }
    } finally {
      t.waiters = [];
      t.controller = undefined;
      this.running--;
      this.changed(true);
      this.pump();
    }
  }

  /**
   * The loaded image (named by `loaded`, the load's output) given every name in `wanted` it does not
   * have yet: `podman load` creates only the names the archive carries, and an image pushed with
   * `--name REF` is used by that REF. Returns the names it has now; a name that could not be given is
   * left out (its pull step then fails with the archive's names).
   */
  private async tagged(loaded: string[], wanted: string[]): Promise<string[]> {
    const have = new Set(loaded);
    const rt = this.o.runtime;
    for (const name of new Set(wanted)) {
      if (imagePresent(have, name) || !rt.tag || !loaded[0]) continue;
      try {
        await rt.tag(loaded[0], name);
        have.add(name);
      } catch (err) {
        this.logger.warn({ image: loaded[0], name, err: errorMessage(err) }, 'cannot tag a loaded image with the name its pods use');
      }
    }
    return [...have];
  }

  /** Whether a newer recorded archive carries `name` (it moved there): that name no longer means `digest`'s image. */
  private movedOn(digest: string, name: string): boolean {
    const e = this.record.images[digest];
    return Object.entries(this.record.images).some(([d, o]) => d !== digest && o.names.includes(name) && (!e || o.loadedAt > e.loadedAt));
  }

  private namesOf(digest: string): string[] {
    return [...this.desired.values()].filter((i) => i.digest === digest).map((i) => i.name);
  }

  private async forget(digest: string): Promise<void> {
    this.record = await updateRecord(this.o.stateDir, (r) => void delete r.images[digest], this.logger);
    this.recordStamp = await this.stamp();
    this.changed(true);
  }

  private nodeEvent(type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (this.o.emit && this.o.node) this.o.emit({ type, reason, message, involved: { kind: 'Node', name: this.o.node } });
  }

  /**
   * Tells the listeners. A change of state (or of the digests) goes at once; progress alone at most
   * every progressIntervalMs, the latest one last.
   */
  private changed(force: boolean): void {
    if (this.stopped) return;
    const interval = this.o.progressIntervalMs ?? 2_000;
    const since = performance.now() - this.lastProgressTold;
    if (!force && since < interval) {
      this.progressTimer ??= setTimeout(() => {
        this.progressTimer = undefined;
        this.tell();
      }, interval - since);
      return;
    }
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    this.tell();
  }

  private tell(): void {
    this.lastProgressTold = performance.now();
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.logger.warn({ err: errorMessage(err) }, 'image change listener failed');
      }
    }
  }

  /** The record file's identity (mtime and size): changed by someone else when it differs from ours. */
  private async stamp(): Promise<string> {
    try {
      const s = await stat(recordPath(this.o.stateDir));
      return `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      return '';
    }
  }

  /** One periodic look: the record again if someone else wrote it, failed transfers due, garbage collection. */
  private async tick(): Promise<void> {
    try {
      await this.refresh();
      this.pump();
      await this.checkDisk();
      if (this.now() - this.lastGc >= GC_INTERVAL_MS) {
        this.lastGc = this.now();
        this.gcRunning = this.gc();
        await this.gcRunning;
      }
    } catch (err) {
      this.logger.warn({ err: errorMessage(err) }, 'image record look failed');
    }
  }

  /**
   * Reads the record again when another writer changed it (`drover image load` on the device): an
   * archive it loaded is reported, and a transfer of the same digest is no longer needed.
   */
  async refresh(): Promise<void> {
    const stamp = await this.stamp();
    if (stamp === this.recordStamp) return;
    this.recordStamp = stamp;
    const before = this.digests().join();
    this.record = (await readRecord(this.o.stateDir, this.logger)).record;
    for (const t of [...this.active.values()]) {
      if (!this.record.images[t.digest] || t.controller) continue;
      this.active.delete(t.digest);
      for (const w of t.waiters) w.resolve({ fetched: false });
    }
    if (this.digests().join() !== before) {
      this.logger.info({ images: this.digests().length }, 'image record changed on disk (an image loaded by hand)');
      this.changed(true);
    }
  }

  /**
   * Removes from the runtime the recorded images that neither the desired state nor any container
   * wants, once they have been unwanted for the grace period, keeping the newest `keepPerName` of each
   * name. An image loaded by hand that nothing has used yet is kept: it may be what a pod will need
   * while the device has no link. Images not in the record (pulled from registries) are not touched.
   */
  async gc(): Promise<string[]> {
    if (!this.o.runtime.removeImage || !this.o.inUse) return [];
    const used = new Set(await this.o.inUse());
    const desiredDigests = new Set([...this.desired.values()].map((i) => i.digest));
    const now = this.now();
    const grace = this.o.gcGraceMs ?? 60 * 60_000;
    const keep = this.o.keepPerName ?? 2;
    const marks = new Map<string, { wanted: boolean }>();
    for (const [digest, e] of Object.entries(this.record.images)) marks.set(digest, { wanted: desiredDigests.has(digest) || e.names.some((n) => used.has(n)) });
    // The newest `keep` of each repository stay, whatever wants them.
    const newest = new Set<string>();
    const byRepo = new Map<string, Array<[string, string]>>();
    for (const [digest, e] of Object.entries(this.record.images)) {
      for (const repo of new Set(e.names.map(repositoryOf))) {
        const list = byRepo.get(repo) ?? [];
        list.push([digest, e.loadedAt]);
        byRepo.set(repo, list);
      }
    }
    for (const list of byRepo.values()) list.sort((a, b) => compareStrings(b[1], a[1])).slice(0, keep).forEach(([d]) => newest.add(d));
    const due: string[] = [];
    const nowIso = new Date(now).toISOString();
    let dirty = false;
    for (const [digest, e] of Object.entries(this.record.images)) {
      const { wanted } = marks.get(digest)!;
      if (wanted) {
        if (e.unusedSince || !e.wanted) dirty = true;
        continue;
      }
      if (!e.wanted) continue;
      if (!e.unusedSince) {
        dirty = true;
        continue;
      }
      if (now - Date.parse(e.unusedSince) >= grace && !newest.has(digest)) due.push(digest);
    }
    const removed: string[] = [];
    for (const digest of due) {
      const e = this.record.images[digest]!;
      // A name a newer archive carries now points at that one: removing by it would remove the wrong image.
      const named = e.names.filter((n) => !this.movedOn(digest, n));
      // Every name moved to a newer image (the same tag pushed again): the old one is left untagged, and only its id removes it.
      const refs = named.length ? named : e.id ? [e.id] : [];
      try {
        for (const ref of refs) await this.o.runtime.removeImage(ref);
        removed.push(digest);
        this.logger.info({ digest, names: refs }, 'unused image removed');
        this.nodeEvent('Normal', 'ImageGarbageCollected', `Removed unused image ${refs.join(', ') || digest} (${digest}): unused since ${e.unusedSince}`);
      } catch (err) {
        this.logger.warn({ digest, names: refs, err: errorMessage(err) }, 'cannot remove an unused image; trying again later');
      }
    }
    if (dirty || removed.length) {
      this.record = await updateRecord(
        this.o.stateDir,
        (r) => {
          for (const [digest, e] of Object.entries(r.images)) {
            const mark = marks.get(digest);
            // An entry someone else added meanwhile is left as it is.
            if (!mark) continue;
            if (mark.wanted) {
              delete e.unusedSince;
              e.wanted = true;
            } else if (e.wanted && !e.unusedSince) e.unusedSince = nowIso;
          }
          for (const d of removed) delete r.images[d];
        },
        this.logger,
      );
      this.recordStamp = await this.stamp();
      if (removed.length) this.changed(true);
    }
    return removed;
  }
}
