/**
 * Chunked, resumable pushes into the image store (paths and rules in src/contract/images.ts). The API's
 * request timeout (60 s, body included, server-wide: Node cannot exempt one route, and raising it would let
 * slow senders hold every route) cuts a one-request push of a big image over a slow uplink; here a push is
 * many short requests, each appending one piece to a file, and a cut costs only the piece in flight.
 *
 * Layout under `dir` (DATA_DIR/images/uploads):
 *   <id>.part   the bytes so far; its size is the offset (fsynced after every piece)
 *   <id>.json   the names and format given at creation
 * Uploads outlive a server restart (a client resumes against the new process); any left untouched for
 * `idleMs` are deleted at open and by a timer. The commit hands the file to ImageStore.putFile, which
 * checks and stores it exactly as a one-request push and renames it into the store (no second copy).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UPLOAD_IDLE_MS, uploadId, type ImageManifest, type UploadState } from '../../src/contract/images.js';
import { BadRequestError, DroverError, NotFoundError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { PRIVATE_FILE_MODE, writePrivateFileAtomic } from '../../src/util/private-fs.js';
import { PayloadTooLargeError } from '../api/respond.js';
import { normalizeImageName, type ArchiveFormat } from './archive.js';
import { InsufficientStorageError, type ImageStore } from './store.js';

/** At most this many uploads open at once: each may grow to the upload limit on the server's disk. */
export const DEFAULT_MAX_OPEN_UPLOADS = 8;
/** How often idle uploads are looked for. */
const SWEEP_MS = 60 * 60 * 1000;

/** 409: the piece was for another offset; the client resumes from `offset`. */
export class UploadOffsetError extends DroverError {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message, { code: 409, reason: 'Conflict' });
  }
}

/** 503: the server holds its cap of open uploads. */
export class UploadsFullError extends DroverError {
  constructor(message: string) {
    super(message, { code: 503, reason: 'ServiceUnavailable' });
  }
}

export interface UploadOptions {
  /** DEFAULT_MAX_OPEN_UPLOADS unless given. */
  maxOpen?: number;
  /** UPLOAD_IDLE_MS unless given. */
  idleMs?: number;
  /** How often the timer sweeps (SWEEP_MS); 0: no timer (sweep() by hand). */
  sweepMs?: number;
}

interface Upload {
  id: string;
  names: string[];
  format?: ArchiveFormat;
  size: number;
  touchedAt: number;
  /** The piece being appended: stopped when a newer one for the same upload arrives. */
  writer?: { stop: () => void; done: Promise<void> };
  committing?: boolean;
}

interface Meta {
  names: string[];
  format?: ArchiveFormat;
  createdAt: string;
}

function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The id as a file name only once it is 32 hex digits: nothing a client sends reaches a path otherwise. */
export function checkUploadId(id: string): string {
  if (!uploadId.safeParse(id).success) throw new BadRequestError(`invalid upload id ${JSON.stringify(id.slice(0, 80))}${id.length > 80 ? '…' : ''}: must be 32 lowercase hex digits`);
  return id;
}

export class Uploads {
  private readonly open = new Map<string, Upload>();
  private readonly maxOpen: number;
  private readonly idleMs: number;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly dir: string,
    private readonly store: ImageStore,
    private readonly logger: Logger,
    private readonly now: () => number,
    opts: UploadOptions,
  ) {
    this.maxOpen = opts.maxOpen ?? DEFAULT_MAX_OPEN_UPLOADS;
    this.idleMs = opts.idleMs ?? UPLOAD_IDLE_MS;
  }

  /** Reads the uploads a previous run left, drops the idle and the broken ones, and starts the sweep timer. */
  static async open(dir: string, store: ImageStore, logger: Logger, now: () => number, opts: UploadOptions = {}): Promise<Uploads> {
    const u = new Uploads(dir, store, logger, now, opts);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await u.load();
    const every = opts.sweepMs ?? SWEEP_MS;
    if (every > 0) {
      u.timer = setInterval(() => void u.sweep().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'image uploads: sweep failed')), every);
      // A server closing does not wait for the next sweep.
      u.timer.unref();
    }
    return u;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private part(id: string): string {
    return join(this.dir, `${id}.part`);
  }
  private meta(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  private async load(): Promise<void> {
    const files = await readdir(this.dir);
    const ids = new Set<string>();
    for (const f of files) {
      const m = /^([0-9a-f]{32})\.(part|json)$/.exec(f);
      if (m) ids.add(m[1]!);
      else {
        // Temp files of an interrupted metadata write, or anything else: not an upload.
        await rm(join(this.dir, f), { force: true, recursive: true });
      }
    }
    for (const id of ids) {
      try {
        const raw = JSON.parse(await readFile(this.meta(id), 'utf8')) as Meta;
        if (!Array.isArray(raw.names) || !raw.names.every((n) => typeof n === 'string')) throw new Error('no names list');
        const [p, j] = await Promise.all([stat(this.part(id)), stat(this.meta(id))]);
        const upload: Upload = { id, names: raw.names, size: p.size, touchedAt: Math.max(p.mtimeMs, j.mtimeMs), ...(raw.format ? { format: raw.format } : {}) };
        this.open.set(id, upload);
      } catch (err) {
        this.logger.warn({ upload: id, err: errorMessage(err) }, 'image uploads: removed an upload with a missing or unreadable part (a crash at its creation)');
        await this.unlink(id);
      }
    }
    await this.sweep();
    if (this.open.size) this.logger.info({ uploads: this.open.size }, 'image uploads resumed from the last run');
  }

  private async unlink(id: string): Promise<void> {
    await rm(this.part(id), { force: true });
    await rm(this.meta(id), { force: true });
  }

  /** Deletes uploads no piece has touched for idleMs (not one being appended or committed). */
  async sweep(): Promise<string[]> {
    const cutoff = this.now() - this.idleMs;
    const gone: string[] = [];
    for (const u of [...this.open.values()]) {
      if (u.writer || u.committing || u.touchedAt >= cutoff) continue;
      this.open.delete(u.id);
      await this.unlink(u.id);
      gone.push(u.id);
      this.logger.info({ upload: u.id, names: u.names, bytes: u.size, idleHours: Math.round((this.now() - u.touchedAt) / 3_600_000) }, 'image upload deleted: idle too long');
    }
    return gone;
  }

  get count(): number {
    return this.open.size;
  }

  private get(id: string): Upload {
    const u = this.open.get(checkUploadId(id));
    if (!u) throw new NotFoundError(`image upload ${id} (finished, deleted, or idle for more than ${Math.round(this.idleMs / 3_600_000)} h)`);
    return u;
  }

  /** A new upload for an archive to be stored under `names`. */
  async create(names: string[], format?: ArchiveFormat): Promise<UploadState> {
    // Refused now, not after the whole archive went up.
    const given = names.map(normalizeImageName);
    if (this.open.size >= this.maxOpen) {
      throw new UploadsFullError(`the server holds ${this.open.size} unfinished image uploads, its cap: finish or delete one (DELETE ${'/drover/v1/images/uploads/ID'}), or wait until idle ones expire`);
    }
    const id = randomBytes(16).toString('hex');
    const u: Upload = { id, names: given, size: 0, touchedAt: this.now(), ...(format ? { format } : {}) };
    // Claimed before the awaits: uploads created at once count against the cap.
    this.open.set(id, u);
    try {
      const meta: Meta = { names: given, createdAt: new Date(this.now()).toISOString(), ...(format ? { format } : {}) };
      await writePrivateFileAtomic(this.meta(id), JSON.stringify(meta) + '\n', this.logger);
      await (await open(this.part(id), 'wx', PRIVATE_FILE_MODE)).close();
    } catch (err) {
      this.open.delete(id);
      await this.unlink(id).catch(() => undefined);
      if (isNoSpace(err)) throw new InsufficientStorageError(`the server's image store (${this.dir}) is out of disk space: cannot start an upload`, err);
      throw err;
    }
    this.logger.info({ upload: id, names: given }, 'image upload started');
    return { id, offset: 0 };
  }

  state(id: string): UploadState {
    const u = this.get(id);
    return { id: u.id, offset: u.size };
  }

  /**
   * Appends `length` bytes from `body` when `offset` is the size so far (409 with the size otherwise). The
   * bytes are kept as they arrive: a piece cut midway leaves what reached the disk, and the offset says so.
   * A piece still being appended is stopped first (`stop` of the older request): its client has gone.
   */
  async append(id: string, offset: number, length: number, body: AsyncIterable<Buffer | Uint8Array>, stop: () => void, maxBytes: number): Promise<UploadState> {
    let u = this.get(id);
    if (u.committing) throw new UploadOffsetError(`image upload ${id} is being committed`, u.size);
    if (u.writer) {
      this.logger.info({ upload: id, offset: u.size }, 'image upload: a newer piece takes over from one still open');
      u.writer.stop();
      await u.writer.done;
      u = this.get(id);
      if (u.committing) throw new UploadOffsetError(`image upload ${id} is being committed`, u.size);
    }
    if (u.writer) throw new UploadOffsetError(`another piece of image upload ${id} arrived at the same time`, u.size);
    if (offset !== u.size) throw new UploadOffsetError(`image upload ${id} holds ${u.size} bytes: the piece must start at offset ${u.size}, not ${offset}`, u.size);
    if (u.size + length > maxBytes) throw new PayloadTooLargeError(`image upload ${id} would grow to ${u.size + length} bytes, over the server's upload limit of ${maxBytes} bytes`);
    await this.store.assertRoom(length);
    let finished!: () => void;
    u.writer = { stop, done: new Promise<void>((resolve) => (finished = resolve)) };
    let fh: Awaited<ReturnType<typeof open>> | undefined;
    try {
      fh = await open(this.part(id), 'r+');
      for await (const raw of body) {
        const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
        for (let i = 0; i < buf.length; ) {
          const { bytesWritten } = await fh.write(buf, i, buf.length - i, u.size);
          i += bytesWritten;
          // As it goes: a GET during a piece, or after its link died, sees what is on disk.
          u.size += bytesWritten;
        }
      }
      await fh.sync();
      return { id, offset: u.size };
    } catch (err) {
      // Kept: whatever reached the file (fsynced, so the offset a client is told holds after a crash too).
      await fh?.truncate(u.size).catch(() => undefined);
      await fh?.sync().catch(() => undefined);
      if (isNoSpace(err)) throw new InsufficientStorageError(`the server's image store (${this.dir}) ran out of disk space while appending to upload ${id}: it keeps the ${u.size} bytes it had; free space (drover image rm) and resume`, err);
      throw err;
    } finally {
      await fh?.close().catch(() => undefined);
      u.touchedAt = this.now();
      u.writer = undefined;
      finished();
    }
  }

  /**
   * Stores the upload as an image when its bytes have sha256 `digest` (see ImageStore.putFile); the upload
   * is gone afterwards, and also when refused (400: wrong digest, not an archive): its bytes cannot become
   * an image, so the client starts again. A server-side failure (507, 5xx) keeps it for another commit.
   */
  async commit(id: string, digest: string): Promise<{ manifest: ImageManifest; created: boolean }> {
    const u = this.get(id);
    if (u.writer || u.committing) throw new UploadOffsetError(`image upload ${id} is busy (a piece is being appended, or it is being committed)`, u.size);
    if (u.size === 0) throw new BadRequestError(`image upload ${id} is empty: send the archive in pieces (PUT ?offset=N) before the commit`);
    u.committing = true;
    try {
      const r = await this.store.putFile(this.part(id), u.names, { digest, ...(u.format ? { format: u.format } : {}) });
      this.open.delete(id);
      // The part became the blob (or was removed as a copy): only the description is left.
      await this.unlink(id);
      this.logger.info({ upload: id, digest: r.manifest.digest, created: r.created }, 'image upload committed');
      return r;
    } catch (err) {
      if (err instanceof DroverError && err.code >= 400 && err.code < 500) {
        this.open.delete(id);
        await this.unlink(id);
        this.logger.info({ upload: id, err: errorMessage(err) }, 'image upload refused at its commit and deleted');
      }
      throw err;
    } finally {
      u.committing = false;
      u.touchedAt = this.now();
    }
  }

  /** Drops an upload (a piece being appended is stopped first). */
  async remove(id: string): Promise<UploadState> {
    const u = this.get(id);
    if (u.committing) throw new UploadOffsetError(`image upload ${id} is being committed`, u.size);
    if (u.writer) {
      u.writer.stop();
      await u.writer.done;
    }
    this.open.delete(id);
    await this.unlink(id);
    this.logger.info({ upload: id, bytes: u.size }, 'image upload deleted');
    return { id, offset: u.size };
  }

  /** The part's size on disk, for tests and checks: what the offset claims. */
  async sizeOnDisk(id: string): Promise<number> {
    return (await stat(this.part(checkUploadId(id)))).size;
  }
}

