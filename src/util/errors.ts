/**
 * Typed errors shared by server, agent and CLI. Each carries an HTTP-like `code` so the API layer
 * maps them to responses without string matching, and an optional `cause` so logs show the origin.
 */
export interface FieldCause {
  field: string;
  message: string;
}

export class DroverError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(message: string, opts: { code?: number; reason?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = opts.code ?? 500;
    this.reason = opts.reason ?? 'InternalError';
  }
}

/** A manifest or payload did not pass its schema. `causes` name every failing field path. */
export class ValidationError extends DroverError {
  readonly causes: FieldCause[];
  constructor(causes: FieldCause[], prefix = 'invalid object') {
    super(`${prefix}: ${causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join('; ')}`, {
      code: 422,
      reason: 'Invalid',
    });
    this.causes = causes;
  }
}

export class NotFoundError extends DroverError {
  constructor(what: string) {
    super(`${what} not found`, { code: 404, reason: 'NotFound' });
  }
}

export class AlreadyExistsError extends DroverError {
  constructor(what: string) {
    super(`${what} already exists`, { code: 409, reason: 'AlreadyExists' });
  }
}

/** Optimistic concurrency: the caller's resourceVersion is older than the stored one. */
export class ConflictError extends DroverError {
  constructor(what: string, expected: string, actual: string) {
    super(
      `operation cannot be fulfilled on ${what}: the object has been modified (resourceVersion ${expected} is stale, current is ${actual}); get the latest version and try again`,
      { code: 409, reason: 'Conflict' },
    );
  }
}

/** The store cannot serve: it is closed, or its data dir cannot be opened (locked by another process, unreadable). */
export class StoreError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 503, reason: 'StoreUnavailable', cause });
  }
}

/**
 * The store's backend cannot be reached (etcd down, partitioned, or without quorum): the message names
 * the endpoint(s) and the cause. The API answers 503 with it; the call may be retried once the backend
 * is back (the store reconnects by itself). A write that fails this way may or may not have landed.
 */
export class StoreUnavailableError extends StoreError {
  readonly endpoints: string[];
  constructor(endpoints: string[], cause: unknown) {
    super(`etcd at ${endpoints.join(',')} unreachable: ${errorMessage(cause)}`, cause);
    this.endpoints = endpoints;
  }
}

/** A watch asked for a revision that compaction already dropped. */
export class GoneError extends DroverError {
  constructor(message: string) {
    super(message, { code: 410, reason: 'Expired' });
  }
}

export class UnauthorizedError extends DroverError {
  constructor(message = 'a valid bearer token is required') {
    super(message, { code: 401, reason: 'Unauthorized' });
  }
}

/** Why a token was refused; named in the error and the audit log, never with the token itself. */
export type TokenRefusal = 'unknown' | 'expired' | 'used up' | 'revoked' | 'malformed' | 'wrong type';

/** A join or API token was presented and refused; `why` says which check failed. */
export class TokenRefusedError extends UnauthorizedError {
  readonly why: TokenRefusal;
  constructor(what: string, why: TokenRefusal) {
    super(`${what} refused: ${why}`);
    this.why = why;
  }
}

/** Authenticated, but the identity may not do this (a `view` token that deletes, a privileged pod in a plain namespace). */
export class ForbiddenError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 403, reason: 'Forbidden', cause });
  }
}

export class BadRequestError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 400, reason: 'BadRequest', cause });
  }
}

/** The identity already holds as many of a bounded resource (log followers, ...) as it may. */
export class TooManyRequestsError extends DroverError {
  constructor(message: string) {
    super(message, { code: 429, reason: 'TooManyRequests' });
  }
}

/** The agent could not reach or use its container runtime. */
export class RuntimeError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 503, reason: 'RuntimeError', cause });
  }
}

/** A request over MQTT (logs, ...) got no answer in time. */
export class TimeoutError extends DroverError {
  constructor(message: string) {
    super(message, { code: 504, reason: 'Timeout' });
  }
}

/**
 * A write was fenced off: this server no longer holds the leadership the write was made under (its etcd
 * lease expired or was revoked, or another server leads). Nothing was written; the new leader acts instead.
 */
export class NotLeaderError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 503, reason: 'NotLeader', cause });
  }
}

/*
 * Tests by reason rather than by class, so an error rebuilt from an HTTP answer (the CLI's CliError
 * carries the server's reason) is recognised the same as one thrown in-process.
 */
function hasReason(err: unknown, reason: string): err is DroverError {
  return err instanceof DroverError && err.reason === reason;
}

/** The object does not exist (NotFoundError, or an API answer 404 NotFound). */
export function isNotFound(err: unknown): boolean {
  return hasReason(err, 'NotFound');
}

/** A write lost an optimistic-concurrency race: the caller's resourceVersion is stale. */
export function isConflict(err: unknown): boolean {
  return hasReason(err, 'Conflict');
}

/** A create met an object of the same kind, namespace and name. */
export function isAlreadyExists(err: unknown): boolean {
  return hasReason(err, 'AlreadyExists');
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
