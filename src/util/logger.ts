import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export const REDACTED = '[Redacted]';

/*
 * Fields that can carry a secret wherever they appear in a log record (top level or nested up to two
 * levels): credentials, and the data of Secret objects (an object or desired state logged whole).
 * Counts are kept (`secrets: 3` says how many, not what).
 */
const SECRET_FIELDS = ['authorization', 'cookie', 'token', 'adminToken', 'joinToken', 'password', 'brokerPassword', 'mqttPassword', 'privateKey', 'data', 'stringData', 'binaryData', 'secrets'];
const REDACT_PATHS = [
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  'req.headers.authorization',
  'headers.authorization',
  // podman's command line (agent/runtime/podman.ts logs it): `--env NAME=value` may hold a Secret.
  'args',
  '*.args',
];

/** Flags after which a command line holds NAME=value environment settings. */
const ENV_FLAGS = new Set(['--env', '-e']);

/** A command line with every environment value masked (`--env PW=[Redacted]`, `--env=PW=...`). */
export function redactArgs(args: readonly unknown[]): unknown[] {
  const mask = (kv: string) => (kv.includes('=') ? `${kv.slice(0, kv.indexOf('='))}=${REDACTED}` : kv);
  return args.map((a, i) => {
    if (typeof a !== 'string') return a;
    if (i > 0 && ENV_FLAGS.has(String(args[i - 1]))) return mask(a);
    for (const f of ENV_FLAGS) if (a.startsWith(`${f}=`)) return `${f}=${mask(a.slice(f.length + 1))}`;
    return a;
  });
}

function censor(value: unknown, path: string[]): unknown {
  const field = path[path.length - 1];
  if (field === 'args') return Array.isArray(value) ? redactArgs(value) : value;
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return value;
  if (Array.isArray(value) && field === 'secrets') return `${REDACTED} (${value.length})`;
  return REDACTED;
}

/**
 * Structured logs to stdout (no transports: a single-binary build has no worker files on disk), or to
 * `destination` (tests capture it). Secret-bearing fields are redacted (REDACT_PATHS); what goes
 * into a free-text message or `err` string is the caller's to keep clean.
 */
export function createLogger(opts: { name: string; level?: string; destination?: DestinationStream }): Logger {
  const options = { name: opts.name, level: opts.level ?? process.env.DROVER_LOG_LEVEL ?? 'info', redact: { paths: REDACT_PATHS, censor } };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** A logger that drops everything; for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
