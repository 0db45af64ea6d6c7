import { kindInfo, objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { ApiClient, CliError } from './client.js';
import { notFound, parseResourceArgs } from './context.js';
import { qualifiedPlural } from './output.js';
import { backoffDelay, sleep } from '../util/backoff.js';

/**
 * How long a read-modify-write keeps trying after conflicts. A controller writing the object's status
 * on every pod change (a Deployment while it scales) can win five rounds in a row on a loaded machine
 * (seen in CI: `scale` through an MQTT command); the server's own PATCH loop keeps trying this long too.
 */
const CONFLICT_RETRY_MS = 30_000;
/** A short random pause between tries breaks the lockstep with the writer that keeps winning. */
const CONFLICT_BACKOFF = { baseMs: 10, maxMs: 250, jitter: 1 };

export interface UpdateResult<T> {
  object: T;
  changed: boolean;
}

/** What a try of `retryConflicts` returns when a 409 Conflict says someone wrote in between. */
export const CONFLICT = Symbol('conflict');

/**
 * Runs `tryOnce` until it returns something other than CONFLICT, pausing a short random time between tries,
 * for up to CONFLICT_RETRY_MS; then gives up with `giveUp`'s error.
 */
export async function retryConflicts<T>(tryOnce: () => Promise<T | typeof CONFLICT>, giveUp: () => Error): Promise<T> {
  const giveUpAt = performance.now() + CONFLICT_RETRY_MS;
  for (let attempt = 0; attempt === 0 || performance.now() < giveUpAt; attempt++) {
    if (attempt > 0) await sleep(backoffDelay(attempt - 1, CONFLICT_BACKOFF));
    const r = await tryOnce();
    if (r !== CONFLICT) return r;
  }
  throw giveUp();
}

/**
 * A 409 from a write that carried a resourceVersion: the object changed since it was read. Broader than
 * src/util/errors.ts isConflict (reason Conflict): any 409 the API answers but AlreadyExists, one without a
 * reason in its body included.
 */
export function isStaleWrite(err: unknown): boolean {
  return err instanceof CliError && err.code === 409 && err.reason !== 'AlreadyExists';
}

/**
 * Read-modify-write of one object with optimistic concurrency: `mutate` changes the object in place
 * and returns false when there is nothing to change (no request is sent then). A 409 Conflict
 * (an agent or controller wrote in between) re-reads and applies `mutate` again to the fresh copy.
 */
export async function updateObject<T extends ApiObject>(
  client: ApiClient,
  kind: KindInfo,
  namespace: string | undefined,
  name: string,
  mutate: (obj: T) => boolean | void,
): Promise<UpdateResult<T>> {
  const path = objectPath(kind, namespace, name);
  return retryConflicts<UpdateResult<T>>(
    async () => {
      const cur = await client.getOptional<T>(path);
      if (!cur) throw notFound(kind, name);
      if (mutate(cur) === false) return { object: cur, changed: false };
      try {
        const updated = await client.replace<T>(path, cur);
        return { object: updated ?? cur, changed: true };
      } catch (err) {
        if (isStaleWrite(err)) return CONFLICT;
        if (err instanceof CliError && err.code === 404) throw notFound(kind, name);
        throw err;
      }
    },
    () => new CliError(`${qualifiedPlural(kind)} "${name}" kept changing while being updated; try again`, { code: 409, reason: 'Conflict' }),
  );
}

export interface Target {
  kind: KindInfo;
  name: string;
}

/**
 * `deployment/web`, `deployment web` or `deploy web api` → targets, each of a kind the verb
 * supports. `verb` and the allowed kinds make the error say what would have worked.
 */
export function parseTargets(args: string[], verb: string, allowed: string[]): Target[] {
  const parsed = parseResourceArgs(args);
  const out: Target[] = [];
  for (const p of parsed) {
    if (!allowed.includes(p.kind.kind)) {
      throw new CliError(`${verb} is not supported for ${qualifiedPlural(p.kind)} (supported: ${allowed.map((k) => kindInfo(k).plural).join(', ')})`);
    }
    if (!p.name) throw new CliError(`resource(s) were provided, but no name was specified: use "drover ${verb} ${p.kind.singular}/NAME"`);
    out.push({ kind: p.kind, name: p.name });
  }
  return out;
}
