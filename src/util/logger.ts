import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured logs to stdout (no transports: a single-binary build has no worker files on disk). */
export function createLogger(opts: { name: string; level?: string }): Logger {
  return pino({ name: opts.name, level: opts.level ?? process.env.DROVER_LOG_LEVEL ?? 'info' });
}

/** A logger that drops everything; for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
