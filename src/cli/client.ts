import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { DroverError, type FieldCause } from '../util/errors.js';

/**
 * An error the CLI reports to the user. The message is always one line because the entry point
 * prints it as `error: <message>`; `code` is the HTTP status when the server answered, 0 when the
 * error arose locally.
 */
export class CliError extends DroverError {
  readonly causes: FieldCause[];
  constructor(message: string, opts: { code?: number; reason?: string; causes?: FieldCause[]; cause?: unknown } = {}) {
    super(message.replace(/\s*\n\s*/g, ' ').trim(), { code: opts.code ?? 0, reason: opts.reason ?? 'CliError', cause: opts.cause });
    this.causes = opts.causes ?? [];
  }
}

/** Reasons for failures that no other request would escape either; callers stop instead of continuing. */
export const FATAL_REASONS = new Set(['Unreachable', 'Unauthorized', 'Timeout']);

export interface ClientOptions {
  server: string;
  token?: string;
  /** Per request; the default suits a slow edge link without hanging a script forever. */
  timeoutMs?: number;
  /** Receives each server warning (the text of a `Warning: 299 - "..."` header). */
  onWarning?: (text: string) => void;
  /** PEM of the CA that signed the server's certificate (the cluster CA, DATA/tls/ca.crt); the system roots otherwise. */
  ca?: string;
  /**
   * `--dry-run`: 'client' sends no write at all (reads still go out, a delete checks the object
   * exists); 'server' sends every write with `?dryRun=All`, which the server checks in full and
   * does not store.
   */
  dryRun?: DryRun;
  fetch?: typeof fetch;
}

/**
 * fetch over node:https trusting `ca` (fetch itself takes no CA). Enough of fetch for this client:
 * method, headers, string body, abort signal; the answer as a streaming Response.
 */
export function fetchWithCa(ca: string): typeof fetch {
  return ((input: string | URL, init: RequestInit = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(String(input));
      if (url.protocol !== 'https:') return resolve(fetch(input, init));
      const signal = init.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason);
      const req = httpsRequest(url, { method: init.method ?? 'GET', headers: init.headers as Record<string, string>, ca, rejectUnauthorized: true, signal }, (res) => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (Array.isArray(v)) for (const x of v) headers.append(k, x);
          else if (v !== undefined) headers.set(k, v);
        }
        const status = res.statusCode ?? 0;
        const body = status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
        resolve(new Response(body, { status, headers }));
      });
      req.on('error', reject);
      req.end(typeof init.body === 'string' ? init.body : undefined);
    })) as typeof fetch;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export type DryRun = 'client' | 'server';

/** `--dry-run=none|client|server` → the mode, as kubectl takes it. */
export function parseDryRun(v: string | undefined): DryRun | undefined {
  if (v === undefined || v === 'none') return undefined;
  if (v === 'client' || v === 'server') return v;
  throw new CliError(`Invalid dry-run value (${v}). Must be "none", "server", or "client".`);
}

/** What kubectl appends to `pod/web created` under --dry-run. */
export function dryRunSuffix(d: DryRun | undefined): string {
  return d === 'client' ? ' (dry run)' : d === 'server' ? ' (server dry run)' : '';
}

export type Query = Record<string, string | number | undefined>;

/** Server warnings from `Warning` headers; fetch joins repeated headers with ", ". */
export function parseWarningHeader(value: string | null): string[] {
  if (!value) return [];
  const out: string[] = [];
  const re = /\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(value); m; m = re.exec(value)) out.push(m[1]!.replace(/\\(.)/g, '$1'));
  // A server that sends bare text rather than the RFC 7234 form still deserves to be heard.
  return out.length ? out : [value];
}

/** Turn an error response into a CliError carrying the server's own message. */
export function errorFromResponse(status: number, body: string): CliError {
  if (status === 401) {
    return new CliError('unauthorized: check the token (DROVER_TOKEN or ~/.drover/config)', { code: 401, reason: 'Unauthorized' });
  }
  let parsed: { message?: unknown; reason?: unknown; details?: { causes?: FieldCause[] } } | undefined;
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  const reason = typeof parsed?.reason === 'string' ? parsed.reason : undefined;
  const causes = Array.isArray(parsed?.details?.causes) ? parsed.details.causes : [];
  let message: string;
  if (typeof parsed?.message === 'string' && parsed.message) {
    message = parsed.message;
  } else {
    const text = body.trim().split('\n')[0]?.slice(0, 200);
    message = `the server returned HTTP ${status}${text ? `: ${text}` : ''}`;
  }
  if (status === 403 && !/forbidden/i.test(message)) message = `forbidden: ${message}`;
  return new CliError(message, { code: status, reason: reason ?? `HTTP${status}`, causes });
}

function describeCause(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause ?? err;
  if (cause instanceof AggregateError && cause.errors.length) return describeCause(cause.errors[0]);
  const c = cause as { message?: unknown; code?: unknown };
  if (typeof c.message === 'string' && c.message) return c.message;
  if (typeof c.code === 'string') return c.code;
  return String(cause);
}

/** Why a request got no answer: a server whose certificate fails verification is not "not running". */
function unreachable(server: string, err: unknown): CliError {
  const why = describeCause(err);
  const code = String(((err as { cause?: { code?: unknown } }).cause ?? (err as { code?: unknown })).code ?? '');
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code) || /certificate|altnames/i.test(why)) {
    return new CliError(`TLS verification of the drover server at ${server} failed: ${why} (wrong CA: set DROVER_CA_FILE or certificateAuthority in the config; or someone in between)`, { reason: 'Unreachable', cause: err });
  }
  return new CliError(`cannot reach the drover server at ${server}: ${why} (is \`drover server\` running? set DROVER_SERVER)`, { reason: 'Unreachable', cause: err });
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** A thin fetch client for the drover API: bearer auth, JSON in and out, errors as CliError. */
export class ApiClient {
  readonly server: string;
  private readonly token: string | undefined;
  readonly timeoutMs: number;
  private readonly onWarning: (text: string) => void;
  private readonly fetchFn: typeof fetch;
  readonly dryRun: DryRun | undefined;

  constructor(opts: ClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.server);
    } catch {
      throw new CliError(`invalid server URL "${opts.server}": expected something like http://127.0.0.1:6443`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new CliError(`invalid server URL "${opts.server}": only http and https are supported`);
    }
    this.server = opts.server.replace(/\/+$/, '');
    this.token = opts.token || undefined;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.onWarning = opts.onWarning ?? (() => {});
    this.fetchFn = opts.fetch ?? (opts.ca ? fetchWithCa(opts.ca) : fetch);
    this.dryRun = opts.dryRun;
  }

  url(path: string, query?: Query): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') qs.set(k, String(v));
    const s = qs.toString();
    return `${this.server}${path}${s ? `?${s}` : ''}`;
  }

  /** One request; resolves for 2xx, throws CliError otherwise. The body is returned as text. */
  async request(method: string, path: string, opts: { query?: Query; body?: unknown; accept?: string; timeoutMs?: number } = {}): Promise<ApiResponse<string>> {
    if (method !== 'GET' && this.dryRun === 'client') {
      // Nothing is written. A delete still fails as it would for a missing object; a write answers
      // with what was sent, which is what the server would have stored.
      if (method === 'DELETE') await this.request('GET', path, { timeoutMs: opts.timeoutMs });
      return { status: method === 'POST' ? 201 : 200, body: opts.body === undefined ? '' : JSON.stringify(opts.body) };
    }
    if (method !== 'GET' && this.dryRun === 'server') opts = { ...opts, query: { ...opts.query, dryRun: 'All' } };
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const signal = AbortSignal.timeout(timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.fetchFn(this.url(path, opts.query), {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal,
      });
      // The body read is under the same deadline: a server that stalls mid-response must not hang us.
      text = await res.text();
    } catch (err) {
      if (signal.aborted) {
        throw new CliError(`the drover server at ${this.server} did not answer ${method} ${path} within ${timeoutMs / 1000}s`, {
          reason: 'Timeout',
          cause: err,
        });
      }
      throw unreachable(this.server, err);
    }
    for (const w of parseWarningHeader(res.headers.get('warning'))) this.onWarning(w);
    if (!res.ok) throw errorFromResponse(res.status, text);
    return { status: res.status, body: text };
  }

  async json<T>(method: string, path: string, opts: { query?: Query; body?: unknown; timeoutMs?: number } = {}): Promise<ApiResponse<T>> {
    const res = await this.request(method, path, opts);
    if (!res.body) return { status: res.status, body: undefined as T };
    try {
      return { status: res.status, body: JSON.parse(res.body) as T };
    } catch {
      throw new CliError(`the server sent invalid JSON for ${method} ${path}: ${res.body.slice(0, 100)}`);
    }
  }

  async get<T>(path: string, query?: Query): Promise<T> {
    return (await this.json<T>('GET', path, { query })).body;
  }

  /** GET that maps 404 to undefined, for "does it exist yet" checks. */
  async getOptional<T>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path);
    } catch (err) {
      if (err instanceof CliError && err.code === 404) return undefined;
      throw err;
    }
  }

  async getText(path: string, query?: Query): Promise<string> {
    return (await this.request('GET', path, { query, accept: 'text/plain, application/json' })).body;
  }

  async create<T>(collectionPath: string, body: unknown): Promise<T> {
    return (await this.json<T>('POST', collectionPath, { body })).body;
  }

  async replace<T>(path: string, body: unknown): Promise<T> {
    return (await this.json<T>('PUT', path, { body })).body;
  }

  async delete(path: string): Promise<void> {
    await this.request('DELETE', path);
  }

  /**
   * A `?watch=1` stream: yields each `{type, object}` line until the server ends the stream or
   * `signal` aborts (then it simply returns). No request deadline applies: a watch is meant to stay
   * open, and the server may only send its headers with the first event.
   */
  async *watch<T = unknown>(path: string, query: Query, signal?: AbortSignal): AsyncGenerator<WatchEvent<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await this.fetchFn(this.url(path, { ...query, watch: 1 }), { method: 'GET', headers, signal });
    } catch (err) {
      if (signal?.aborted) return;
      throw unreachable(this.server, err);
    }
    for (const w of parseWarningHeader(res.headers.get('warning'))) this.onWarning(w);
    if (!res.ok) throw errorFromResponse(res.status, await res.text().catch(() => ''));
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let ev: WatchEvent<T>;
          try {
            ev = JSON.parse(line) as WatchEvent<T>;
          } catch {
            throw new CliError(`the server sent an invalid watch event: ${line.slice(0, 100)}`);
          }
          yield ev;
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof CliError) throw err;
      throw new CliError(`the watch on ${path} broke: ${describeCause(err)}`, { reason: 'WatchBroken', cause: err });
    }
  }
}

export interface WatchEvent<T = unknown> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'ERROR' | 'BOOKMARK';
  object: T;
}
