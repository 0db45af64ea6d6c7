import { objectPath, type KindInfo } from '../api/kinds.js';
import type { ApiObject } from '../api/meta.js';
import { ApiClient, CliError, type WatchEvent } from './client.js';

export interface WatchOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Only changes after this store revision; when unset the server first sends the current objects as ADDED. */
  resourceVersion?: string;
  signal?: AbortSignal;
  /** Reconnect attempts after a broken stream before giving up (default 5). */
  retries?: number;
  /** Pause before reconnecting, ms (default 1000). */
  retryDelayMs?: number;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/**
 * Watch a collection until `signal` aborts, as kubectl's watch does: when the server ends the
 * stream (a restart, a timeout) the watch resumes from the last revision seen, so no change is
 * missed or shown twice. A stream that keeps breaking ends in a CliError after `retries` attempts;
 * errors the server answers (bad selector, 410 Expired) end it at once.
 */
export async function* watchObjects(client: ApiClient, kind: KindInfo, opts: WatchOptions): AsyncGenerator<WatchEvent<ApiObject>> {
  let rv = opts.resourceVersion;
  let failures = 0;
  const retries = opts.retries ?? 5;
  const delay = opts.retryDelayMs ?? 1000;
  while (!opts.signal?.aborted) {
    try {
      const stream = client.watch<ApiObject>(
        objectPath(kind, opts.namespace),
        { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector, resourceVersion: rv },
        opts.signal,
      );
      for await (const ev of stream) {
        failures = 0;
        if (ev.type === 'ERROR') {
          const status = ev.object as unknown as { message?: string };
          throw new CliError(`watch failed: ${status?.message ?? 'the server reported an error'}`, { reason: 'WatchError' });
        }
        if (ev.type === 'BOOKMARK') {
          rv = ev.object?.metadata?.resourceVersion ?? rv;
          continue;
        }
        rv = ev.object?.metadata?.resourceVersion ?? rv;
        yield ev;
      }
    } catch (err) {
      if (opts.signal?.aborted) return;
      // The server answered (HTTP status): retrying would get the same answer.
      if (!(err instanceof CliError) || err.code !== 0 || err.reason === 'WatchError' || ++failures > retries) throw err;
    }
    await sleep(delay, opts.signal);
  }
}

/** A timer as an AbortSignal that also follows `parent`; `clear()` stops the timer. */
export function deadlineSignal(ms: number | undefined, parent?: AbortSignal): { signal: AbortSignal; timedOut: () => boolean; clear: () => void } {
  const ctl = new AbortController();
  let timedOut = false;
  const onParent = (): void => ctl.abort();
  if (parent?.aborted) ctl.abort();
  parent?.addEventListener('abort', onParent, { once: true });
  const timer =
    ms && ms > 0
      ? setTimeout(() => {
          timedOut = true;
          ctl.abort();
        }, ms)
      : undefined;
  return {
    signal: ctl.signal,
    timedOut: () => timedOut,
    clear: () => {
      if (timer) clearTimeout(timer);
      parent?.removeEventListener('abort', onParent);
    },
  };
}

export { sleep };
