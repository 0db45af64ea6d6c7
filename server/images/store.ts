/**
 * The server's content-addressed image store (issue 15): each pushed archive (`podman save` output) is
 * kept once, named by the sha256 of its bytes, with a manifest listing the sha256 of every
 * IMAGE_CHUNK_BYTES chunk so a device checks each chunk as it arrives and resumes after the last good one.
 *
 * Layout under `dir` (DATA_DIR/images by default):
 *   blobs/sha256/<hex>       the archive bytes, as uploaded
 *   manifests/<hex>.json     its ImageManifest (plus when its names last changed)
 *   tmp/                     uploads in progress: removed on failure, and at open (a crash's leftovers)
 *   uploads/                 chunked pushes in progress (uploads.ts): kept across restarts until idle 24 h
 * An upload streams to tmp/ while its hashes are computed and its tar structure checked, is fsynced,
 * then renamed into blobs/ (same file system: atomic); the manifest follows. A name points at one
 * archive, like a tag: pushing it with other bytes moves it, and an archive left with no name is removed.
 */
import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { IMAGE_CHUNK_BYTES, imageDigest, imageManifest, type ImageManifest } from '../../src/contract/images.js';
import { BadRequestError, DroverError, NotFoundError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, PRIVATE_FILE_MODE, writePrivateFileAtomic } from '../../src/util/private-fs.js';
import { PayloadTooLargeError } from '../api/respond.js';
import type { ImageCatalog } from '../desired/image-catalog.js';
import { nameCandidates, normalizeImageName, TarScanner, type ArchiveFormat } from './archive.js';
import { Uploads, type UploadOptions } from './uploads.js';

/** 507: the disk under the image store is full; nothing was stored. */
export class InsufficientStorageError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 507, reason: 'InsufficientStorage', cause });
  }
}

/** What changed: the archive, and the names it had before and has now (empty after a removal). */
export interface ImageChange {
  digest: string;
  before: string[];
  after: string[];
}

export interface ImageStoreOptions {
  dir: string;
  logger: Logger;
  /** IMAGE_CHUNK_BYTES unless a test wants smaller chunks. */
  chunkSize?: number;
  now?: () => number;
  /** Chunked uploads: their cap and idle expiry (uploads.ts). */
  uploads?: UploadOptions;
}

export interface PutOptions {
  /** The caller's expectation; refused (400) when the archive is the other format. */
  format?: ArchiveFormat;
  /** Bytes beyond this are refused (413) as they arrive. */
  maxBytes?: number;
  /** The declared size (Content-Length), checked against the free space before a byte is written. */
  expectedBytes?: number;
}

interface Stored {
  manifest: ImageManifest;
  /** When its names last changed: after a crash midway through moving a name, the newer holder keeps it. */
  updatedAt: string;
}

function hexOf(digest: string): string {
  const ok = imageDigest.safeParse(digest);
  if (!ok.success) throw new BadRequestError(`invalid image digest ${JSON.stringify(digest.slice(0, 80))}: must be sha256:<64 lowercase hex digits>`);
  return digest.slice('sha256:'.length);
}

function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class ImageStore implements ImageCatalog {
  private readonly byDigest = new Map<string, Stored>();
  private readonly names = new Map<string, string>();
  private readonly listeners = new Set<(c: ImageChange) => void>();
  /** Changes to the manifests and blobs/ one at a time (uploads stream in parallel, commit in turn). */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly chunkSize: number;
  private readonly now: () => number;
  /** Chunked, resumable pushes (set by open). */
  uploads!: Uploads;

  private constructor(
    readonly dir: string,
    private readonly logger: Logger,
    opts: ImageStoreOptions,
  ) {
    this.chunkSize = opts.chunkSize ?? IMAGE_CHUNK_BYTES;
    this.now = opts.now ?? Date.now;
  }

  private get blobDir(): string {
    return join(this.dir, 'blobs', 'sha256');
  }
  private get manifestDir(): string {
    return join(this.dir, 'manifests');
  }
  private get tmpDir(): string {
    return join(this.dir, 'tmp');
  }
  private blobPath(hex: string): string {
    return join(this.blobDir, hex);
  }
  private manifestPath(hex: string): string {
    return join(this.manifestDir, `${hex}.json`);
  }

  /** Opens (creating) the store and makes it whole again after a crash: see `recover`. */
  static async open(opts: ImageStoreOptions): Promise<ImageStore> {
    const s = new ImageStore(opts.dir, opts.logger, opts);
    await ensurePrivateDir(opts.dir, opts.logger);
    await mkdir(s.blobDir, { recursive: true, mode: 0o700 });
    await mkdir(s.manifestDir, { recursive: true, mode: 0o700 });
    await mkdir(s.tmpDir, { recursive: true, mode: 0o700 });
    await s.recover();
    s.uploads = await Uploads.open(join(opts.dir, 'uploads'), s, opts.logger, s.now, opts.uploads);
    return s;
  }

  /** Stops the idle-upload timer (it is unref'd: a server that never calls this still exits). */
  close(): void {
    this.uploads.close();
  }

  /**
   * Uploads a crash interrupted are deleted; a manifest whose archive is missing or of another size is
   * dropped, an archive without a manifest (a crash between the two renames) deleted; a name two
   * manifests claim (a crash while moving it) stays with the one changed last.
   */
  private async recover(): Promise<void> {
    for (const f of await readdir(this.tmpDir)) {
      await rm(join(this.tmpDir, f), { force: true, recursive: true });
      this.logger.warn({ file: f }, 'image store: removed an upload left unfinished by a crash');
    }
    const manifestFiles = new Set<string>();
    for (const f of await readdir(this.manifestDir)) {
      const path = join(this.manifestDir, f);
      if (f.includes('.tmp-')) {
        await rm(path, { force: true });
        continue;
      }
      const m = /^([0-9a-f]{64})\.json$/.exec(f);
      if (!m) continue;
      manifestFiles.add(m[1]!);
      let stored: Stored;
      try {
        const raw = JSON.parse(await readFile(path, 'utf8')) as { updatedAt?: unknown };
        stored = { manifest: imageManifest.parse(raw), updatedAt: typeof raw.updatedAt === 'string' ? raw.updatedAt : '' };
      } catch (err) {
        // Kept on disk for a person to look at; its archive stays too (see the orphan pass below).
        this.logger.error({ file: path, err: errorMessage(err) }, 'image store: unreadable manifest left out');
        continue;
      }
      const hex = m[1]!;
      const size = await stat(this.blobPath(hex)).then((st) => st.size, () => -1);
      if (stored.manifest.digest !== `sha256:${hex}` || size !== stored.manifest.size) {
        this.logger.warn({ digest: stored.manifest.digest, file: path, size }, 'image store: dropped a manifest whose archive is missing or of another size');
        await rm(path, { force: true });
        manifestFiles.delete(hex);
        continue;
      }
      this.byDigest.set(stored.manifest.digest, stored);
    }
    for (const f of await readdir(this.blobDir)) {
      if (manifestFiles.has(f)) continue;
      await rm(join(this.blobDir, f), { force: true });
      this.logger.warn({ file: f }, 'image store: removed an archive with no manifest (a crash between storing it and describing it)');
    }
    // Newest first: it keeps a name two manifests claim.
    const order = [...this.byDigest.values()].sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0));
    for (const s of order) {
      const keep = s.manifest.names.filter((n) => !this.names.has(n));
      for (const n of keep) this.names.set(n, s.manifest.digest);
      if (keep.length === s.manifest.names.length) continue;
      if (keep.length === 0) {
        await this.unlinkImage(s.manifest.digest);
        this.byDigest.delete(s.manifest.digest);
      } else {
        s.manifest = { ...s.manifest, names: keep };
        await this.writeManifest(s);
      }
    }
    this.logger.info({ dir: this.dir, images: this.byDigest.size }, 'image store open');
  }

  /**
   * Stores an archive from `body` under `names` (normalized; with the names the archive itself carries).
   * Refuses (400) a body that is not a whole tar image archive, (413) one over `maxBytes`, (507) one the
   * disk has no room for; the upload's temp file is removed whatever fails. Bytes already stored only get
   * the names (created: false).
   */
  async put(body: AsyncIterable<Buffer | Uint8Array>, names: string[], opts: PutOptions = {}): Promise<{ manifest: ImageManifest; created: boolean }> {
    const given = names.map(normalizeImageName);
    if (opts.expectedBytes !== undefined) await this.assertRoom(opts.expectedBytes);
    const tmp = join(this.tmpDir, `upload-${randomUUID()}`);
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fh = await open(tmp, 'wx', PRIVATE_FILE_MODE);
      return await this.ingest(body, given, opts, tmp, fh);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await rm(tmp, { force: true }).catch((rmErr: unknown) => this.logger.error({ file: tmp, err: errorMessage(rmErr) }, 'image store: cannot remove a failed upload'));
      if (isNoSpace(err)) throw this.noSpace(err);
      throw err;
    }
  }

  /**
   * Stores the archive already on disk at `file` (a finished chunked upload, on this store's file system)
   * exactly as `put` stores a body, checked the same way; the file itself becomes the blob (renamed, no
   * second copy) or is removed when those bytes are stored already. With `digest`, the file's sha256 must
   * be that one (400 naming both, checked before the archive's structure: bytes that are not what the
   * client sent explain any other fault). On a refusal the file is left where it was, for the caller.
   */
  async putFile(file: string, names: string[], opts: PutOptions & { digest?: string } = {}): Promise<{ manifest: ImageManifest; created: boolean }> {
    const given = names.map(normalizeImageName);
    if (opts.digest !== undefined) hexOf(opts.digest);
    try {
      return await this.ingest(createReadStream(file), given, opts, file, undefined);
    } catch (err) {
      if (isNoSpace(err)) throw this.noSpace(err);
      throw err;
    }
  }

  /**
   * One pass over the bytes: the whole sha256, each chunk's, the tar structure (and, with `fh`, the copy to
   * `file`); then the manifest is committed under the lock with `file` becoming the blob. `fh` is closed here.
   */
  private async ingest(body: AsyncIterable<Buffer | Uint8Array>, given: string[], opts: PutOptions & { digest?: string }, file: string, fh: Awaited<ReturnType<typeof open>> | undefined): Promise<{ manifest: ImageManifest; created: boolean }> {
    const whole = createHash('sha256');
    const chunks: string[] = [];
    let chunkHash: Hash = createHash('sha256');
    let inChunk = 0;
    let size = 0;
    const scanner = new TarScanner();
    // With a digest to check, a structural fault waits for the whole hash (see putFile).
    let scanError: unknown;
    for await (const raw of body) {
      const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      size += buf.length;
      if (opts.maxBytes !== undefined && size > opts.maxBytes) throw new PayloadTooLargeError(`image archive larger than ${opts.maxBytes} bytes (the server's upload limit)`);
      if (scanError === undefined) {
        try {
          scanner.push(buf);
        } catch (err) {
          if (opts.digest === undefined) throw err;
          scanError = err;
        }
      }
      whole.update(buf);
      for (let i = 0; i < buf.length; ) {
        const n = Math.min(this.chunkSize - inChunk, buf.length - i);
        chunkHash.update(buf.subarray(i, i + n));
        inChunk += n;
        i += n;
        if (inChunk === this.chunkSize) {
          chunks.push(chunkHash.digest('hex'));
          chunkHash = createHash('sha256');
          inChunk = 0;
        }
      }
      if (fh) await fh.write(buf);
    }
    if (inChunk > 0) chunks.push(chunkHash.digest('hex'));
    const digest = `sha256:${whole.digest('hex')}`;
    if (opts.digest !== undefined && opts.digest !== digest) {
      throw new BadRequestError(`the uploaded bytes (${size}) have digest ${digest}, not the ${opts.digest} the client computed: bytes were lost or changed on the way; nothing was stored`);
    }
    if (scanError !== undefined) throw scanError;
    const summary = scanner.finish();
    if (opts.format && opts.format !== summary.format) throw new BadRequestError(`the archive is an ${summary.format}, not the ${opts.format} it was said to be`);
    const all = [...new Set([...given, ...summary.names])];
    if (all.length === 0) throw new BadRequestError('the image needs a name: the archive carries none (no RepoTags); give one (?name=REF, `drover image push --name REF`)');
    if (fh) {
      await fh.sync();
      await fh.close();
    }
    return await this.serial(() => this.commit(file, { digest, size, chunkSize: this.chunkSize, chunks, names: all, format: summary.format, createdAt: new Date(this.now()).toISOString() }));
  }

  private noSpace(err: unknown): InsufficientStorageError {
    return new InsufficientStorageError(`the server's image store (${this.dir}) ran out of disk space while storing the image (${(err as { code?: string }).code}): nothing was stored; free space or remove images (drover image rm)`, err);
  }

  /** 507 unless the store's file system has `bytes` free. */
  async assertRoom(bytes: number): Promise<void> {
    const fs = await statfs(this.dir);
    const free = fs.bavail * fs.bsize;
    if (bytes > free) throw new InsufficientStorageError(`the server's image store (${this.dir}) has ${free} bytes free, the image is ${bytes} bytes: nothing was stored; free space or remove images (drover image rm)`);
  }

  /** Under the lock: the upload becomes the archive (or is dropped for the copy already there), then names move. */
  private async commit(tmp: string, fresh: ImageManifest): Promise<{ manifest: ImageManifest; created: boolean }> {
    const hex = fresh.digest.slice('sha256:'.length);
    const existing = this.byDigest.get(fresh.digest);
    const updatedAt = new Date(this.now()).toISOString();
    let stored: Stored;
    let before: string[] = [];
    if (existing) {
      await rm(tmp, { force: true });
      before = existing.manifest.names;
      const names = [...new Set([...existing.manifest.names, ...fresh.names])];
      stored = { manifest: { ...existing.manifest, names }, updatedAt };
      if (names.length !== before.length) await this.writeManifest(stored);
    } else {
      stored = { manifest: fresh, updatedAt };
      await rename(tmp, this.blobPath(hex));
      try {
        await this.syncDir(this.blobDir);
        await this.writeManifest(stored);
      } catch (err) {
        // The store stays as it was: no archive without its manifest.
        await rm(this.blobPath(hex), { force: true }).catch(() => undefined);
        throw err;
      }
    }
    this.byDigest.set(fresh.digest, stored);
    const changes: ImageChange[] = [];
    if (before.length !== stored.manifest.names.length) changes.push({ digest: fresh.digest, before, after: stored.manifest.names });
    // Names this archive now holds leave the archives that held them.
    const losers = new Map<string, string[]>();
    for (const n of stored.manifest.names) {
      const prev = this.names.get(n);
      if (prev && prev !== fresh.digest) losers.set(prev, [...(losers.get(prev) ?? []), n]);
      this.names.set(n, fresh.digest);
    }
    for (const [digest, lost] of losers) {
      const s = this.byDigest.get(digest)!;
      const prevNames = s.manifest.names;
      const keep = prevNames.filter((n) => !lost.includes(n));
      if (keep.length === 0) this.byDigest.delete(digest);
      else s.manifest = { ...s.manifest, names: keep };
      s.updatedAt = updatedAt;
      changes.push({ digest, before: prevNames, after: keep });
      try {
        if (keep.length === 0) {
          await this.unlinkImage(digest);
          this.logger.info({ digest, names: prevNames, by: fresh.digest }, 'image store: removed an archive whose last name moved to another');
        } else await this.writeManifest(s);
      } catch (err) {
        // The push itself is stored; the next open gives the name to the archive changed last (this one) all the same.
        this.logger.error({ digest, err: errorMessage(err) }, 'image store: cannot record a name moving off an archive; repaired at the next start');
      }
    }
    this.logger.info({ digest: fresh.digest, size: stored.manifest.size, names: stored.manifest.names, created: !existing }, existing ? 'image names added' : 'image stored');
    for (const c of changes) this.emit(c);
    return { manifest: stored.manifest, created: !existing };
  }

  private async writeManifest(s: Stored): Promise<void> {
    const hex = s.manifest.digest.slice('sha256:'.length);
    await writePrivateFileAtomic(this.manifestPath(hex), JSON.stringify({ ...s.manifest, updatedAt: s.updatedAt }) + '\n', this.logger);
  }

  /** Manifest first: a crash between leaves an archive with no manifest, which the next open removes. */
  private async unlinkImage(digest: string): Promise<void> {
    const hex = digest.slice('sha256:'.length);
    await rm(this.manifestPath(hex), { force: true });
    await rm(this.blobPath(hex), { force: true });
    await this.syncDir(this.manifestDir);
  }

  private async syncDir(dir: string): Promise<void> {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private emit(c: ImageChange): void {
    for (const cb of this.listeners) {
      try {
        cb(c);
      } catch (err) {
        this.logger.error({ err: errorMessage(err) }, 'image store: change listener failed');
      }
    }
  }

  /** The archive a pod's image reference means (short names resolved as podman does locally), if stored. */
  byName(ref: string): ImageManifest | undefined {
    for (const c of nameCandidates(ref)) {
      const d = this.names.get(c);
      if (d) return this.byDigest.get(d)?.manifest;
    }
    return undefined;
  }

  /** Throws 400 for a malformed digest (never a path), undefined when not stored. */
  get(digest: string): ImageManifest | undefined {
    hexOf(digest);
    return this.byDigest.get(digest)?.manifest;
  }

  list(): ImageManifest[] {
    return [...this.byDigest.values()].map((s) => s.manifest).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.digest < b.digest ? -1 : 1));
  }

  /** Removes an archive and its names; 404 if it is not stored. Reads already streaming it finish (the file lives while open). */
  remove(digest: string): Promise<ImageManifest> {
    hexOf(digest);
    return this.serial(async () => {
      const s = this.byDigest.get(digest);
      if (!s) throw new NotFoundError(`image ${digest}`);
      await this.unlinkImage(digest);
      this.byDigest.delete(digest);
      for (const n of s.manifest.names) if (this.names.get(n) === digest) this.names.delete(n);
      this.logger.info({ digest, names: s.manifest.names }, 'image removed');
      this.emit({ digest, before: s.manifest.names, after: [] });
      return s.manifest;
    });
  }

  /**
   * Bytes start..end (inclusive) of an archive, read from disk as sent. The file is opened before this
   * resolves, so a removal afterwards does not cut the read short.
   */
  async openRange(digest: string, start: number, end: number): Promise<ReadStream> {
    const hex = hexOf(digest);
    const m = this.byDigest.get(digest);
    if (!m) throw new NotFoundError(`image ${digest}`);
    if (start < 0 || end < start || end >= m.manifest.size) throw new BadRequestError(`range ${start}-${end} is outside image ${digest} (${m.manifest.size} bytes)`);
    let fh;
    try {
      fh = await open(this.blobPath(hex), 'r');
    } catch (err) {
      throw new NotFoundError(`image ${digest} (removed: ${errorMessage(err)})`);
    }
    // autoClose: the handle is closed when the stream ends, fails or is destroyed (a client that hangs up).
    return fh.createReadStream({ start, end, autoClose: true });
  }

  onChange(cb: (c: ImageChange) => void): () => void {
    this.listeners.add(cb);
    return () => void this.listeners.delete(cb);
  }
}
