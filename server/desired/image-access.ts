/**
 * Which server images a node may fetch (issue 15): only those its desired state lists — the images of
 * the pods bound to it, and those a rollout asked it to fetch ahead. Worked out from the store, not from
 * the publisher's memory, so every server answers the same (the publisher runs on the leader alone).
 * A device cannot read another node's image by guessing a digest.
 */
import type { Pod } from '../../src/api/pod.js';
import type { ImageCatalog } from './image-catalog.js';
import { imagesFor, desiredPodsFor } from './snapshot.js';

/** A yes is kept this long: an image of 50 chunks is 50 requests, not 50 lists of every pod. */
const ALLOWED_TTL_MS = 10_000;

/**
 * `pods` lists every Pod from memory (the server's object cache: server/cache/object-cache.ts), so the
 * check is synchronous and costs no store read.
 */
export function imageAccess(pods: () => Pod[], catalog: ImageCatalog, now: () => number = Date.now): (node: string, digest: string) => boolean {
  const allowed = new Map<string, number>();
  return (node, digest) => {
    const key = `${node}\n${digest}`;
    const at = allowed.get(key);
    if (at !== undefined && now() - at < ALLOWED_TTL_MS) return true;
    const ok = imagesFor(desiredPodsFor(node, pods()), catalog).some((i) => i.digest === digest);
    if (ok) {
      // Bounded: entries older than the TTL go whenever the map grows past a few thousand.
      if (allowed.size > 4096) for (const [k, t] of allowed) if (now() - t >= ALLOWED_TTL_MS) allowed.delete(k);
      allowed.set(key, now());
    } else allowed.delete(key);
    return ok;
  };
}
