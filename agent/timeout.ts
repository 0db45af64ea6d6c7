/**
 * Waiting on a promise for a bounded time. Kept here until src/util/backoff.ts, the one place for
 * retry and timeout helpers, has one.
 */

/** The value, or undefined when `p` does not settle (or fails) within `ms`. */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}
