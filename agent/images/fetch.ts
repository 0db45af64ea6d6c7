/**
 * Fetching one image archive from the server (issue 15, src/contract/images.ts) over a link that drops,
 * stalls and costs money: the manifest first, then the blob chunk by chunk with HTTP Range requests.
 * Each chunk is checked against the manifest's sha256 before it is appended to
 * STATE_DIR/images/partial/<hex>.part, so the file only ever holds verified chunks (a torn last write
 * aside, which the next start finds and cuts); after any drop, and after an agent restart, the transfer
 * goes on from the first chunk not yet there, and nothing verified is fetched twice.
 *
 * One request per chunk over a kept-alive TLS connection: a drop costs at most the chunk in flight,
 * and a chunk is verified before anything later is asked for. The price is one round trip per chunk
 * (1 MiB): ~15 % on a 600 ms satellite link at 256 KiB/s, nothing on a LAN.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, statfs, type FileHandle } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chunkRange, imageManifest, imagePath, type ImageManifest, type ImageTransfer } from '../../src/contract/images.js';
import { backoffDelay, sleep, type BackoffOptions } from '../../src/util/backoff.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { hasErrno } from '../fs-errors.js';

/** Where transfers in progress keep their verified chunks, under the state dir. */
export const PARTIAL_DIR = join('images', 'partial');
/** Where a verified archive waits for the runtime to load it. */
export const ARCHIVE_DIR = 'images';

/** Largest chunk accepted from a manifest: a chunk is held in memory until verified. */
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
/** Largest manifest read (a 10 GB archive in 1 MiB chunks is ~700 KB of JSON). */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export type ImageTransferFailure =
  | 'DigestMismatch'
  | 'ChunkCorrupt'
  | 'Truncated'
  | 'DiskFull'
  | 'NotFound'
  | 'Refused'
  | 'BadManifest'
  | 'Unreachable'
  | 'Aborted'
  | 'FileError';

const CODES: Record<ImageTransferFailure, number> = {
  DigestMismatch: 502,
  ChunkCorrupt: 502,
  Truncated: 502,
  DiskFull: 507,
  NotFound: 404,
  Refused: 403,
  BadManifest: 502,
  Unreachable: 503,
  Aborted: 499,
  FileError: 500,
};

/** A transfer that failed; `reason` names the cause, `retryable` whether trying later may help. */
export class ImageTransferError extends DroverError {
  readonly failure: ImageTransferFailure;
  readonly retryable: boolean;
  constructor(message: string, failure: ImageTransferFailure, retryable: boolean, cause?: unknown) {
    super(message, { code: CODES[failure], reason: failure, cause });
    this.failure = failure;
    this.retryable = retryable;
  }
}

/**
 * A token bucket over bytes: the node's image bandwidth budget. Shared by every transfer of a node,
 * so the budget holds whatever runs. The burst is small (1/32 s of budget, 16 KiB at least) so the
 * rate measured over a few MB stays at the budget: a full bucket at the start is the only excess (at
 * 1/8 s it was 6 % over a 4 MB transfer at 2 MiB/s, bench/image-transfer.ts).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private rate: number | undefined;
  private _burst = 0;

  /** `bytesPerSecond` undefined: no budget (take() never waits) until setRate() gives one. */
  constructor(
    bytesPerSecond: number | undefined,
    private readonly burstBytes?: number,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.last = clock();
    this.tokens = 0;
    this.setRate(bytesPerSecond);
    this.tokens = this._burst;
  }

  get bytesPerSecond(): number | undefined {
    return this.rate;
  }

  get burst(): number {
    return this._burst;
  }

  /**
   * A new budget for every transfer from now on (the node's label changed in its desired state), or
   * none. The tokens already earned are kept, up to the new burst.
   */
  setRate(bytesPerSecond: number | undefined): void {
    if (bytesPerSecond !== undefined && !(bytesPerSecond > 0)) throw new RangeError(`bandwidth budget must be positive, got ${bytesPerSecond}`);
    if (this.rate !== undefined) this.refill();
    this.rate = bytesPerSecond;
    this._burst = bytesPerSecond === undefined ? 0 : (this.burstBytes ?? Math.max(16 * 1024, bytesPerSecond / 32));
    this.tokens = Math.min(this.tokens, this._burst);
    this.last = this.clock();
  }

  private refill(): void {
    const now = this.clock();
    this.tokens = Math.min(this._burst, this.tokens + ((now - this.last) * (this.rate ?? 0)) / 1000);
    this.last = now;
  }

  /** Takes `n` bytes; returns how long (ms) to wait before reading more (0: go on). */
  take(n: number): number {
    if (this.rate === undefined) return 0;
    this.refill();
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }
}

export interface FetchProgress {
  /** Verified bytes on disk. */
  bytes: number;
  total: number;
  state: ImageTransfer['state'];
  message?: string;
}

export interface ImageFetcherOptions {
  /** https://host:port of the server's API (the agent's --server); http:// only for an --insecure server. */
  baseUrl: string;
  /** The node's certificate and key (its link's) and the cluster CA; `servername` as --tls-server-name. */
  tls?: { ca: string; cert: string; key: string; servername?: string };
  stateDir: string;
  /** The node's bandwidth budget; none: as fast as the link goes. */
  bucket?: TokenBucket;
  /** A request that receives nothing for this long is dropped and tried again (a stalled link). Default 30 s. */
  readTimeoutMs?: number;
  /** Times one chunk may fail its sha256 before the transfer fails. Default 5. */
  chunkAttempts?: number;
  /** Drops in a row with no chunk gained before the transfer fails (it is tried again later). Default 8. */
  dropAttempts?: number;
  /** Delays between attempts after a drop or a refused chunk. */
  backoff?: BackoffOptions;
  /** Longest Retry-After honoured (a longer one is cut to this). Default 5 minutes. */
  maxRetryAfterMs?: number;
  logger?: Logger;
}

export interface FetchResult {
  /** The verified archive (moved out of partial/): the caller loads it, then deletes it. */
  path: string;
  manifest: ImageManifest;
  /** Bytes this transfer received (body bytes, refused and cut chunks included). */
  wireBytes: number;
  /** Chunks already on disk at the start (an earlier, interrupted transfer's). */
  resumedChunks: number;
  refusedChunks: number;
  drops: number;
  ms: number;
}

/** What the fetch of one image needs to know of it (a DesiredImage fits). */
export interface ImageRef {
  digest: string;
  /** Expected size: a manifest that says otherwise is refused. */
  size?: number;
  name?: string;
}

/** A drop: the link failed or the server is busy; worth trying again from the last good chunk. */
class Drop extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    readonly received = 0,
    /** What had arrived of the body when it was cut (a chunk's next attempt goes on from there). */
    readonly partial?: Buffer,
  ) {
    super(message);
  }
}

/** The part of one chunk received so far, across the attempts of that chunk (verified once it is whole). */
interface HeldChunk {
  bytes: Buffer[];
  length: number;
}

/** A refused chunk: the bytes arrived but their sha256 is not the manifest's. */
class BadChunk extends Error {}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfterMs(header: string | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const at = Date.parse(header);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

function hex(digest: string): string {
  return digest.slice('sha256:'.length);
}

export function partialPath(stateDir: string, digest: string): string {
  return join(stateDir, PARTIAL_DIR, `${hex(digest)}.part`);
}

export function archivePath(stateDir: string, digest: string): string {
  return join(stateDir, ARCHIVE_DIR, `${hex(digest)}.tar`);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export class ImageFetcher {
  /** Body bytes received by every transfer of this fetcher, refused and cut chunks included. */
  wireBytes = 0;
  refusedChunks = 0;
  drops = 0;
  private readonly agent: HttpAgent;
  private readonly base: URL;
  private readonly logger: Logger;
  private readonly readTimeoutMs: number;
  private readonly backoff: BackoffOptions;

  constructor(private readonly o: ImageFetcherOptions) {
    this.base = new URL(o.baseUrl);
    if (this.base.protocol !== 'https:' && this.base.protocol !== 'http:') throw new ImageTransferError(`the server URL must be https:// (got ${this.base.protocol}//)`, 'Refused', false);
    if (this.base.protocol === 'https:' && !o.tls) throw new ImageTransferError('fetching images over https needs the node certificate and the cluster CA', 'Refused', false);
    this.logger = o.logger ?? silentLogger;
    this.readTimeoutMs = o.readTimeoutMs ?? 30_000;
    this.backoff = o.backoff ?? { baseMs: 500, maxMs: 30_000 };
    // One connection, kept alive between chunk requests: a TLS handshake per MiB would cost a round trip or two each.
    this.agent =
      this.base.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: o.tls!.ca, cert: o.tls!.cert, key: o.tls!.key, rejectUnauthorized: true, ...(o.tls!.servername ? { servername: o.tls!.servername } : {}) })
        : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  }

  close(): void {
    this.agent.destroy();
  }

  /**
   * Fetches `img` to STATE_DIR/images/<hex>.tar, resuming a partial file an earlier transfer left.
   * Throws ImageTransferError; an abort (signal) leaves the verified chunks for the next attempt.
   */
  async fetch(img: ImageRef, opts: { signal?: AbortSignal; onProgress?: (p: FetchProgress) => void } = {}): Promise<FetchResult> {
    const began = performance.now();
    const wireAtStart = this.wireBytes;
    const refusedAtStart = this.refusedChunks;
    const dropsAtStart = this.drops;
    const { signal } = opts;
    const progress = (p: FetchProgress) => opts.onProgress?.(p);
    progress({ bytes: 0, total: img.size ?? 0, state: 'fetching' });
    const m = await this.withDrops(`the manifest of ${img.digest}`, signal, progress, () => this.manifest(img, signal), () => ({ bytes: 0, total: img.size ?? 0 }));
    // A run that died after the archive was verified and before it was loaded left it whole: not fetched again.
    const done = archivePath(this.o.stateDir, m.digest);
    if ((await this.fileDigest(done).catch(() => undefined)) === hex(m.digest)) {
      progress({ bytes: m.size, total: m.size, state: 'fetching' });
      return { path: done, manifest: m, wireBytes: this.wireBytes - wireAtStart, resumedChunks: m.chunks.length, refusedChunks: 0, drops: 0, ms: performance.now() - began };
    }
    const part = partialPath(this.o.stateDir, m.digest);
    await mkdir(join(this.o.stateDir, PARTIAL_DIR), { recursive: true, mode: 0o700 });
    const fh = await open(part, 'a+', 0o600).catch((err: unknown) => {
      throw new ImageTransferError(`cannot open ${part}: ${errorMessage(err)}`, 'FileError', false, err);
    });
    let next: number;
    try {
      next = await this.verifiedPrefix(fh, m, part);
      const resumedChunks = next;
      if (next > 0) this.logger.info({ digest: m.digest, chunks: next, of: m.chunks.length }, 'resuming an image transfer from its verified chunks');
      await this.checkSpace(m, next, part);
      const got = () => Math.min(m.size, next * m.chunkSize);
      progress({ bytes: got(), total: m.size, state: 'fetching' });
      while (next < m.chunks.length) {
        const i = next;
        let bad = 0;
        for (;;) {
          try {
            // What arrived of this chunk before a drop is kept: the next attempt asks only for the rest (on a lossy
            // link a stall near the end of a chunk cost the whole chunk again).
            const held: HeldChunk = { bytes: [], length: 0 };
            const chunk = await this.withDrops(`chunk ${i} of ${m.digest}`, signal, progress, () => this.chunk(m, i, signal, held), () => ({ bytes: got() + held.length, total: m.size }));
            await this.append(fh, chunk, part);
            break;
          } catch (err) {
            if (!(err instanceof BadChunk)) throw err;
            bad++;
            this.refusedChunks++;
            const { start, end } = chunkRange(m, i);
            this.logger.warn({ digest: m.digest, chunk: i, attempt: bad, err: err.message }, 'image chunk refused: its sha256 is not the manifest\'s; fetching it again');
            if (bad >= (this.o.chunkAttempts ?? 5)) {
              throw new ImageTransferError(`chunk ${i} of ${m.chunks.length} (bytes ${start}-${end}) of image ${m.digest} failed its sha256 check ${bad} times: ${err.message}`, 'ChunkCorrupt', true);
            }
            progress({ bytes: got(), total: m.size, state: 'fetching', message: `chunk ${i} refused (sha256 mismatch), fetching it again` });
            await sleep(backoffDelay(bad - 1, this.backoff), signal);
            this.throwIfAborted(signal, m.digest);
          }
        }
        next++;
        progress({ bytes: got(), total: m.size, state: 'fetching' });
      }
      await fh.close();
      const whole = await this.fileDigest(part);
      if (whole !== hex(m.digest)) {
        await rm(part, { force: true });
        throw new ImageTransferError(`image ${m.digest}: the fetched archive's sha256 is sha256:${whole} although every chunk matched the manifest (the server's manifest is wrong); the partial file was removed`, 'DigestMismatch', false);
      }
      await rename(part, done);
      return {
        path: done,
        manifest: m,
        wireBytes: this.wireBytes - wireAtStart,
        resumedChunks,
        refusedChunks: this.refusedChunks - refusedAtStart,
        drops: this.drops - dropsAtStart,
        ms: performance.now() - began,
      };
    } finally {
      await fh.close().catch(() => undefined);
    }
  }

  private throwIfAborted(signal: AbortSignal | undefined, digest: string): void {
    if (signal?.aborted) throw new ImageTransferError(`the transfer of image ${digest} was stopped; its verified chunks are kept`, 'Aborted', true, signal.reason);
  }

  /**
   * Runs `attempt` until it returns, trying again after drops (link errors, stalls, a busy server): a
   * Retry-After is waited out as asked, others back off; `dropAttempts` drops in a row fail it.
   */
  private async withDrops<T>(what: string, signal: AbortSignal | undefined, progress: (p: FetchProgress) => void, attempt: () => Promise<T>, at: () => { bytes: number; total: number }): Promise<T> {
    for (let drops = 0; ; ) {
      this.throwIfAborted(signal, what);
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof Drop)) throw err;
        this.throwIfAborted(signal, what);
        this.drops++;
        let delay: number;
        if (err.retryAfterMs !== undefined) {
          // The server's cap on concurrent transfers: not the link's fault, and not counted against it.
          delay = Math.min(err.retryAfterMs, this.o.maxRetryAfterMs ?? 300_000);
          progress({ ...at(), state: 'waiting', message: `${err.message}; trying again in ${Math.round(delay / 1000)} s` });
        } else {
          drops++;
          if (drops >= (this.o.dropAttempts ?? 8)) throw new ImageTransferError(`fetching ${what} failed ${drops} times in a row: ${err.message}`, 'Unreachable', true, err);
          delay = backoffDelay(drops - 1, this.backoff);
          progress({ ...at(), state: 'fetching', message: `${err.message}; resuming in ${Math.round(delay / 1000)} s` });
        }
        this.logger.warn({ what, err: err.message, retryInMs: Math.round(delay) }, 'image transfer interrupted; resuming from the last good chunk');
        await sleep(delay, signal);
      }
    }
  }

  /** GET and validate the manifest: it must be the digest asked for, of the size expected. */
  private async manifest(img: ImageRef, signal: AbortSignal | undefined): Promise<ImageManifest> {
    const res = await this.get(imagePath(img.digest), undefined, signal);
    const body = await this.readBody(res, { max: MAX_MANIFEST_BYTES, signal });
    let parsed: ReturnType<typeof imageManifest.safeParse>;
    try {
      parsed = imageManifest.safeParse(JSON.parse(body.toString('utf8')));
    } catch (err) {
      throw new ImageTransferError(`the manifest of image ${img.digest} is not JSON: ${errorMessage(err)}`, 'BadManifest', false, err);
    }
    if (!parsed.success) throw new ImageTransferError(`the manifest of image ${img.digest} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, 'BadManifest', false);
    const m = parsed.data;
    const problem =
      m.digest !== img.digest
        ? `it is the manifest of ${m.digest}`
        : img.size !== undefined && m.size !== img.size
          ? `it says ${m.size} bytes, the desired state ${img.size}`
          : m.chunkSize > MAX_CHUNK_BYTES
            ? `chunkSize ${m.chunkSize} is over ${MAX_CHUNK_BYTES}`
            : m.chunks.length !== Math.ceil(m.size / m.chunkSize)
              ? `${m.chunks.length} chunk digests for ${Math.ceil(m.size / m.chunkSize)} chunks`
              : undefined;
    if (problem) throw new ImageTransferError(`the manifest of image ${img.digest} is refused: ${problem}`, 'BadManifest', false);
    return m;
  }

  /** One chunk's bytes, checked against the manifest (BadChunk when they do not match). */
  private async chunk(m: ImageManifest, i: number, signal: AbortSignal | undefined, held: HeldChunk = { bytes: [], length: 0 }): Promise<Buffer> {
    const { start: chunkStart, end } = chunkRange(m, i);
    // The bytes of this chunk an earlier attempt received are kept (held); only the rest is asked for.
    const start = chunkStart + held.length;
    const res = await this.get(imagePath(m.digest, true), `bytes=${start}-${end}`, signal);
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
    if (res.statusCode !== 206 || !range || Number(range[1]) !== start || Number(range[2]) !== end) {
      res.destroy();
      // A server that ignores Range would send the whole archive for every chunk.
      throw new ImageTransferError(`the server answered ${res.statusCode} (Content-Range ${res.headers['content-range'] ?? 'absent'}) to Range bytes=${start}-${end} of image ${m.digest}`, 'Refused', false);
    }
    let rest: Buffer;
    try {
      rest = await this.readBody(res, { exact: end - start + 1, signal, limit: true });
    } catch (err) {
      if (err instanceof Drop && err.partial?.length) {
        held.bytes.push(err.partial);
        held.length += err.partial.length;
      }
      throw err;
    }
    const body = held.length ? Buffer.concat([...held.bytes, rest], held.length + rest.length) : rest;
    const got = sha256(body);
    if (got !== m.chunks[i]) throw new BadChunk(`chunk ${i} has sha256 ${got}, the manifest says ${m.chunks[i]}`);
    return body;
  }

  /**
   * Appends a verified chunk. fsync per chunk: on the links this is for a chunk takes seconds to
   * arrive and an fsync milliseconds, and without it a power cut could lose every chunk the page cache
   * still held (tens of MB to fetch again over a metered link). Correctness does not rest on it: a
   * torn write is found by the check at the next start and cut off.
   */
  private async append(fh: FileHandle, chunk: Buffer, part: string): Promise<void> {
    try {
      await fh.write(chunk);
      await fh.datasync();
    } catch (err) {
      if (hasErrno(err, 'ENOSPC', 'EDQUOT')) {
        await fh.close().catch(() => undefined);
        await rm(part, { force: true });
        throw new ImageTransferError(`the disk is full: cannot write ${part} (${errorMessage(err)}); the partial file was removed`, 'DiskFull', true, err);
      }
      throw new ImageTransferError(`cannot write ${part}: ${errorMessage(err)}`, 'FileError', false, err);
    }
  }

  /**
   * How many chunks at the start of the partial file match the manifest; the rest (a torn write, a
   * chunk damaged on disk) is cut off. Read back rather than trusted: the file may have been written
   * by a run that died in the middle of a write.
   */
  private async verifiedPrefix(fh: FileHandle, m: ImageManifest, part: string): Promise<number> {
    const size = (await fh.stat()).size;
    let good = 0;
    const buf = Buffer.alloc(m.chunkSize);
    for (; good < m.chunks.length; good++) {
      const { start, end } = chunkRange(m, good);
      if (end + 1 > size) break;
      const len = end - start + 1;
      const { bytesRead } = await fh.read(buf, 0, len, start);
      if (bytesRead !== len || sha256(buf.subarray(0, len)) !== m.chunks[good]) break;
    }
    const keep = Math.min(m.size, good * m.chunkSize);
    if (size !== keep) {
      this.logger.warn({ path: part, size, keep }, 'partial image file has an unverified tail; cutting it off');
      await fh.truncate(keep);
    }
    return good;
  }

  /** Fails early, before fetching anything, when what is left cannot fit on the disk. */
  private async checkSpace(m: ImageManifest, next: number, part: string): Promise<void> {
    const left = m.size - Math.min(m.size, next * m.chunkSize);
    const fs = await statfs(join(this.o.stateDir, PARTIAL_DIR)).catch(() => undefined);
    if (!fs) return;
    const free = fs.bavail * fs.bsize;
    if (free < left) {
      await rm(part, { force: true });
      throw new ImageTransferError(`the disk is full: image ${m.digest} needs ${left} more bytes in ${join(this.o.stateDir, PARTIAL_DIR)}, ${free} are free; the partial file was removed`, 'DiskFull', true);
    }
  }

  private async fileDigest(path: string): Promise<string> {
    const h = createHash('sha256');
    for await (const d of createReadStream(path)) h.update(d as Buffer);
    return h.digest('hex');
  }

  /** A GET whose answer is a 2xx; link failures and busy answers are Drops, refusals final errors. */
  private get(path: string, range: string | undefined, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    const url = new URL(path, this.base);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(url, { method: 'GET', agent: this.agent, headers: { accept: 'application/json, application/octet-stream', ...(range ? { range } : {}) }, signal });
      // Until the headers come: connecting, the TLS handshake, the server's answer.
      const timer = setTimeout(() => req.destroy(new Drop(`no answer from ${url.host} within ${this.readTimeoutMs / 1000} s`)), this.readTimeoutMs);
      req.on('response', (res) => {
        clearTimeout(timer);
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(res);
        // The error body is short: read it for the message, bounded.
        void this.readBody(res, { max: 4096, signal })
          .then((b) => b.toString('utf8'), () => '')
          .then((text) => {
            const said = serverMessage(text);
            const what = `GET ${url.pathname} answered ${status}${said ? `: ${said}` : ''}`;
            if (status === 503 || status === 429) reject(new Drop(what, retryAfterMs(res.headers['retry-after']) ?? undefined));
            else if (status >= 500) reject(new Drop(what));
            else if (status === 404) reject(new ImageTransferError(`${what} (the server does not have it)`, 'NotFound', true));
            else reject(new ImageTransferError(what, 'Refused', status === 401 || status === 403));
          });
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        if (err instanceof Drop) return reject(err);
        if (signal?.aborted) return reject(new ImageTransferError(`the transfer was stopped`, 'Aborted', true, err));
        const code = (err as NodeJS.ErrnoException).code ?? '';
        // A certificate the cluster CA did not sign is the wrong server, not a hiccup.
        // One it refuses (an alert: our certificate is not the cluster's) is no hiccup either.
        if (/CERT|SELF_SIGNED|ALTNAME|UNABLE_TO_VERIFY|ALERT/.test(code)) return reject(new ImageTransferError(`TLS verification of ${url.host} failed: ${err.message}`, 'Refused', false, err));
        reject(new Drop(`cannot reach ${url.host}: ${err.message}`));
      });
      req.end();
    });
  }

  /**
   * Reads a body: `exact` bytes (fewer is a drop, more a refusal) or at most `max`. With `limit`, the
   * bandwidth budget paces the reading: the stream is paused, so TCP holds the sender back, rather
   * than read at link speed and held here. No byte for readTimeoutMs (not counting the pauses) is a drop.
   */
  private readBody(res: IncomingMessage, o: { exact?: number; max?: number; signal?: AbortSignal; limit?: boolean }): Promise<Buffer> {
    const cap = o.exact ?? o.max ?? Infinity;
    const bucket = o.limit ? this.o.bucket : undefined;
    return new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      let got = 0;
      let settled = false;
      let idle: NodeJS.Timeout | undefined;
      let pause: NodeJS.Timeout | undefined;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        clearTimeout(pause);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) {
          res.destroy();
          reject(err);
        } else resolve(Buffer.concat(parts, got));
      };
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => finish(new Drop(`no data for ${this.readTimeoutMs / 1000} s after ${got} bytes (stalled link)`, undefined, got, Buffer.concat(parts, got))), this.readTimeoutMs);
      };
      const onAbort = () => finish(new ImageTransferError('the transfer was stopped; its verified chunks are kept', 'Aborted', true, o.signal?.reason));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      res.on('data', (d: Buffer) => {
        if (settled) return;
        this.wireBytes += d.length;
        got += d.length;
        if (got > cap) {
          if (o.exact !== undefined) return finish(new ImageTransferError(`the server sent more than the ${cap} bytes asked for`, 'Refused', false));
          return finish(new ImageTransferError(`the server's answer is over ${cap} bytes`, 'Refused', false));
        }
        parts.push(d);
        const wait = bucket?.take(d.length) ?? 0;
        if (wait > 0) {
          clearTimeout(idle);
          res.pause();
          pause = setTimeout(() => {
            if (settled) return;
            arm();
            res.resume();
          }, wait);
        } else arm();
      });
      res.on('end', () => {
        if (o.exact !== undefined && got < o.exact) finish(new Drop(`the answer ended after ${got} of ${o.exact} bytes (truncated)`, undefined, got, Buffer.concat(parts, got)));
        else finish();
      });
      res.on('aborted', () => finish(new Drop(`the connection was cut after ${got} bytes`, undefined, got, Buffer.concat(parts, got))));
      res.on('error', (err) => finish(err instanceof DroverError ? err : new Drop(`the connection failed after ${got} bytes: ${err.message}`, undefined, got, Buffer.concat(parts, got))));
      res.on('close', () => {
        if (!res.complete) finish(new Drop(`the connection was cut after ${got} bytes`, undefined, got, Buffer.concat(parts, got)));
      });
      arm();
    });
  }
}

function serverMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof m === 'string') return m.slice(0, 300);
  } catch {
    // Not JSON: the text itself, cut.
  }
  return text.slice(0, 300);
}

/** Whether `path` exists (a partial left by an earlier run, for reporting). */
export async function partialBytes(stateDir: string, digest: string): Promise<number> {
  try {
    return (await stat(partialPath(stateDir, digest))).size;
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return 0;
    throw err;
  }
}
