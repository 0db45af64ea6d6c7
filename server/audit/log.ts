import { join } from 'node:path';
import { createStream, type RotatingFileStream } from 'rotating-file-stream';
import { ValidationError } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import { ensurePrivateDir, tightenFile } from '../../src/util/private-fs.js';
import { maskTokens } from '../auth/tokens.js';

/** Who made a call: an API token (id and role, never the token), a node, or nobody known. */
export type AuditWho =
  | { kind: 'token'; tokenId: string; role: string; remote?: string }
  | { kind: 'node'; node: string; remote?: string }
  | { kind: 'anonymous'; remote?: string; /** the id part of a refused token, when it had one */ tokenId?: string };

/** The object of a call, as far as the request names it (`path` for routes outside the Kubernetes shape). */
export interface AuditResource {
  kind: string;
  namespace?: string;
  name?: string;
  sub?: string;
  path?: string;
}

export interface AuditRecord {
  who: AuditWho;
  verb: string;
  resource: AuditResource;
  /** HTTP status code of the answer. */
  result: number;
  reason?: string;
}

export interface AuditEntry extends AuditRecord {
  ts: string;
}

/** Where the API sends its records; AuditLog writes them to disk, tests may collect them. */
export interface AuditSink {
  write(r: AuditRecord): void;
}

export const AUDIT_FILE = 'audit.log';
export const DEFAULT_AUDIT_MAX_SIZE = '10M';
export const DEFAULT_AUDIT_MAX_FILES = 5;
const MAX_REASON = 300;

/** "10M", "512K", "1G", "4096B" (rotating-file-stream's units) → the same string, or a ValidationError. */
export function parseAuditSize(v: string, field = 'audit-log-max-size'): `${number}${'B' | 'K' | 'M' | 'G'}` {
  const m = /^([1-9]\d*)([BKMG])$/.exec(v.trim());
  if (!m) throw new ValidationError([{ field, message: `must be a whole number followed by B, K, M or G (e.g. 10M), got "${v}"` }], 'invalid flag');
  return `${Number(m[1])}${m[2] as 'B' | 'K' | 'M' | 'G'}`;
}

function scrub(s: string): string {
  // One line, bounded, and never a token: a reason is built from error messages that quote the request.
  // Masked before cutting, so a cut never leaves part of a secret behind.
  const oneLine = maskTokens(s.replace(/[\p{Cc}]+/gu, ' '));
  return oneLine.length > MAX_REASON ? `${oneLine.slice(0, MAX_REASON)}…` : oneLine;
}

function scrubResource(r: AuditResource): AuditResource {
  const out: AuditResource = { kind: scrub(r.kind) };
  if (r.namespace !== undefined) out.namespace = scrub(r.namespace);
  if (r.name !== undefined) out.name = scrub(r.name);
  if (r.sub !== undefined) out.sub = scrub(r.sub);
  if (r.path !== undefined) out.path = scrub(r.path);
  return out;
}

/**
 * The audit trail: one JSON line per mutating or refused call in DATA_DIR/audit.log (0600), rotated
 * by size to audit.log.1 … audit.log.N (classical logrotate order, the oldest dropped). Records carry
 * who, verb, object and result, never a token or a request body.
 */
export class AuditLog implements AuditSink {
  private closed = false;
  /**
   * Lines of this turn of the event loop, written as one chunk: the stream writes each chunk with a
   * file write of its own (one thread-pool round trip), which at hundreds of API writes per second
   * was a few percent of the server's CPU.
   */
  private pending: string[] = [];

  private constructor(
    private readonly stream: RotatingFileStream,
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {}

  static async open(opts: { dataDir: string; logger: Logger; maxSize?: string; maxFiles?: number; now?: () => number }): Promise<AuditLog> {
    const size = parseAuditSize(opts.maxSize ?? DEFAULT_AUDIT_MAX_SIZE);
    const maxFiles = opts.maxFiles ?? DEFAULT_AUDIT_MAX_FILES;
    if (!Number.isInteger(maxFiles) || maxFiles < 1 || maxFiles > 1000) {
      throw new ValidationError([{ field: 'audit-log-max-files', message: `must be a whole number from 1 to 1000, got ${String(maxFiles)}` }], 'invalid flag');
    }
    await ensurePrivateDir(opts.dataDir, opts.logger);
    // A file left by hand or an older version: the mode given to the stream only applies to new files.
    await tightenFile(join(opts.dataDir, AUDIT_FILE), opts.logger);
    const stream = createStream((index?: number | Date) => (index ? `${AUDIT_FILE}.${String(index)}` : AUDIT_FILE), {
      path: opts.dataDir,
      size,
      rotate: maxFiles,
      mode: 0o600,
    });
    const log = new AuditLog(stream, opts.logger, opts.now ?? Date.now);
    // A full disk must not take the API down; it is reported, loudly, in the server log.
    stream.on('error', (err) => opts.logger.error({ err: err.message }, 'audit log write failed'));
    stream.on('warning', (err) => opts.logger.warn({ err: err.message }, 'audit log warning'));
    return log;
  }

  write(r: AuditRecord): void {
    if (this.closed) {
      this.logger.warn({ verb: r.verb, result: r.result }, 'audit record after close, dropped');
      return;
    }
    const entry: AuditEntry = {
      ts: new Date(this.now()).toISOString(),
      who: r.who,
      verb: scrub(r.verb),
      resource: scrubResource(r.resource),
      result: r.result,
      ...(r.reason !== undefined ? { reason: scrub(r.reason) } : {}),
    };
    if (this.pending.length === 0) setImmediate(() => this.flush());
    this.pending.push(JSON.stringify(entry) + '\n');
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const chunk = this.pending.join('');
    this.pending = [];
    this.stream.write(chunk);
  }

  /** Flushes and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    await new Promise<void>((resolve) => {
      this.stream.once('finish', () => resolve());
      this.stream.end();
    });
  }
}
