import assert from 'node:assert/strict';
import type { Store, WatchEvent } from '../../server/store/types.js';

/** Collects watch events until `done` says so (or times out, failing with what arrived). */
export function collect(store: Store, from: number, done: (events: WatchEvent[]) => boolean, opts?: { kinds?: string[] }): Promise<WatchEvent[]> {
  return new Promise((resolve, reject) => {
    const events: WatchEvent[] = [];
    const timer = setTimeout(() => {
      w.close();
      reject(new Error(`watch timed out with ${events.length} events: ${events.map((e) => e.revision).join(',')}`));
    }, 30_000);
    const w = store.watch(
      from,
      (e) => {
        events.push(e);
        if (done(events)) {
          clearTimeout(timer);
          w.close();
          resolve(events);
        }
      },
      opts,
    );
  });
}

/** The events' revisions are exactly first..last, each once, in order. */
export function assertConsecutive(events: WatchEvent[], first: number, last: number): void {
  assert.deepEqual(
    events.map((e) => e.revision),
    Array.from({ length: last - first + 1 }, (_, i) => first + i),
  );
}
