/**
 * The server-wide cap on image blob transfers in flight (issue 15): a thousand devices updating at once
 * must not share the server's uplink a thousand ways (each crawling, none finishing) or hold a thousand
 * open files. Past the cap a device is told to come back later (503 + Retry-After) and keeps the chunks
 * it has. A slot is held from the answer's start to its end, however it ends (finished, client gone, error).
 */
import type { ServerResponse } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';
import { DroverError } from '../../src/util/errors.js';
import { DEFAULTS } from '../config.js';

export const DEFAULT_IMAGE_TRANSFERS: number = DEFAULTS.imageTransfers;
/** What Retry-After says: about the time a 1 MiB chunk takes on a slow link, so slots do not stay idle long. */
export const RETRY_AFTER_SECONDS = 5;

/** 503 with the wait in its message; the route sets Retry-After. */
export class TransfersBusyError extends DroverError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message, { code: 503, reason: 'ServiceUnavailable' });
  }
}

export interface TransferLimitOptions {
  max?: number;
  retryAfterSeconds?: number;
  /** The server's metrics registry (ServerMetrics.registry): transfers active, refused, bytes served. */
  registry?: Registry;
}

export class TransferLimit {
  readonly max: number;
  private readonly retryAfterSeconds: number;
  private activeCount = 0;
  private served = 0;
  private refused = 0;

  constructor(opts: TransferLimitOptions = {}) {
    const max = opts.max ?? DEFAULT_IMAGE_TRANSFERS;
    if (!Number.isSafeInteger(max) || max < 1) throw new DroverError(`image transfers cap must be a whole number of at least 1, got ${max}`, { code: 400, reason: 'BadRequest' });
    this.max = max;
    this.retryAfterSeconds = opts.retryAfterSeconds ?? RETRY_AFTER_SECONDS;
    if (opts.registry) this.register(opts.registry);
  }

  get active(): number {
    return this.activeCount;
  }

  /**
   * Takes a slot for the answer `res`, given back once when the response closes (sent, or the client
   * gone); throws TransfersBusyError when all are taken.
   */
  acquire(res: ServerResponse): void {
    if (this.activeCount >= this.max) {
      this.refused++;
      throw new TransfersBusyError(`the server is sending ${this.activeCount} image transfers, its cap (--image-transfers ${this.max}): try again in ${this.retryAfterSeconds} s`, this.retryAfterSeconds);
    }
    this.activeCount++;
    let released = false;
    // 'close' comes for every end of a response: finished, aborted by the client, destroyed on error.
    res.once('close', () => {
      if (released) return;
      released = true;
      this.activeCount--;
    });
  }

  /** Bytes of archive sent (counted as they leave, so a dropped transfer counts what it sent). */
  sent(bytes: number): void {
    this.served += bytes;
  }

  private register(registry: Registry): void {
    const self = this;
    const registers = [registry];
    new Gauge({
      name: 'drover_image_transfers_active',
      help: 'Image blob transfers being sent now (capped by --image-transfers).',
      registers,
      collect() {
        this.set(self.activeCount);
      },
    });
    new Counter({
      name: 'drover_image_transfers_refused_total',
      help: 'Image blob requests answered 503 because --image-transfers were all in use.',
      registers,
      collect() {
        this.reset();
        this.inc(self.refused);
      },
    });
    new Counter({
      name: 'drover_image_bytes_served_total',
      help: 'Bytes of image archives sent to nodes and clients (whole archives and ranges).',
      registers,
      collect() {
        this.reset();
        this.inc(self.served);
      },
    });
  }
}
