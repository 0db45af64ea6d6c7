/**
 * The image gate of a rollout (issue 15, pre-pull), PURE: may a rollout stop this old pod now, or must it
 * wait until the pod's node has loaded the server-served images its replacement runs? balena's
 * download-then-kill: a device fetches the new image while the old pod still serves, and a pod is never
 * stopped for an image that is not there yet (over a cellular link the fetch takes minutes, or fails).
 *
 * Only images the server serves (catalog.byName) are gated: an image from a registry keeps today's
 * behaviour exactly (the rollout does not wait, the agent pulls when the new pod comes). Only a Ready old
 * pod is held: one that does not serve (crash-looping, Pending, on a lost node) loses nothing when it goes.
 *
 * The controllers (daemonset.ts, replicaset.ts) hold the pod, set PREFETCH_ANNOTATION on it (the
 * publisher then lists those images as `prefetch` in its node's desired state) and look again after
 * IMAGE_GATE_RECHECK_MS or when the node reports (status.imageDigests, status.imageTransfers).
 */
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { isNotFound } from '../../src/util/errors.js';
import type { Store } from '../store/types.js';
import { PREFETCH_ANNOTATION, podImages, prefetchImages, type ImageCatalog } from '../desired/image-catalog.js';
import { podReady } from './pods.js';

/**
 * A held pod's owner is looked at again after this long even if no report wakes it: a Node watch event
 * lost to a restart or a compaction costs a few seconds, not a resync period.
 */
export const IMAGE_GATE_RECHECK_MS = 5_000;

/** The server-served image references of a pod spec (sorted, each once); empty when all come from registries. */
export function servedImages(spec: { containers: Array<{ image: string }> }, catalog: ImageCatalog): string[] {
  return podImages(spec)
    .filter((ref) => catalog.byName(ref) !== undefined)
    .sort();
}

/** The value PREFETCH_ANNOTATION carries for these references (sorted, comma-separated); undefined for none. */
export function prefetchValue(served: readonly string[]): string | undefined {
  return served.length ? [...new Set(served)].sort().join(',') : undefined;
}

/** Of `served`, the references whose archive (the catalog's digest now) the node has not reported loaded. */
export function missingOn(node: Node | undefined, served: readonly string[], catalog: ImageCatalog): string[] {
  const have = new Set(node?.status?.imageDigests ?? []);
  return served.filter((ref) => {
    const img = catalog.byName(ref);
    return img !== undefined && !have.has(img.digest);
  });
}

/** A failed transfer of one of `refs` on the node, as one line naming the node, the image and the cause. */
export function failedTransfer(node: Node | undefined, refs: readonly string[], catalog: ImageCatalog): string | undefined {
  if (!node) return undefined;
  for (const ref of refs) {
    const digest = catalog.byName(ref)?.digest;
    const t = (node.status?.imageTransfers ?? []).find((x) => x.state === 'failed' && (x.name === ref || (digest !== undefined && x.digest === digest)));
    if (t) return `node ${node.metadata.name} could not fetch image ${ref}: ${t.message || 'transfer failed'}`;
  }
  return undefined;
}

export interface GateVerdict {
  /** The pod stays for now: its node lacks an image its replacement needs. */
  hold: boolean;
  /** The images it waits for (references). */
  missing: string[];
  /** What PREFETCH_ANNOTATION should say on the held pod (undefined when not held). */
  annotation?: string;
  /** The node reported a failed transfer of one of them: the Warning event's message. */
  failure?: string;
}

const PASS: GateVerdict = { hold: false, missing: [] };

/**
 * May the rollout stop `pod` now, given `served` (servedImages of the template replacing it) and the pod's
 * node as stored? Holds a Ready pod on a node that has not reported every served image loaded.
 */
export function imageGate(pod: Pod, served: readonly string[], catalog: ImageCatalog, node: Node | undefined): GateVerdict {
  if (served.length === 0 || !pod.spec.nodeName || !node || !podReady(pod) || pod.metadata.deletionTimestamp) return PASS;
  const missing = missingOn(node, served, catalog);
  if (missing.length === 0) return PASS;
  const failure = failedTransfer(node, missing, catalog);
  return { hold: true, missing, annotation: prefetchValue(served), ...(failure ? { failure } : {}) };
}

/** The pod's annotations with PREFETCH_ANNOTATION set to `value` (removed for undefined); undefined when no change. */
export function withPrefetch(pod: Pod, value: string | undefined): Record<string, string> | undefined {
  const cur = pod.metadata.annotations?.[PREFETCH_ANNOTATION];
  if (cur === value) return undefined;
  const next = { ...pod.metadata.annotations };
  if (value === undefined) delete next[PREFETCH_ANNOTATION];
  else next[PREFETCH_ANNOTATION] = value;
  return next;
}

/** The Event reason of a held pod whose node reported its transfer failed. */
export const IMAGE_FETCH_FAILED = 'ImageFetchFailed';

/**
 * The one store write of the gate (everything else here is pure): sets (or, with undefined, removes)
 * PREFETCH_ANNOTATION on the pod as stored now, if it is still the same pod and the value differs.
 */
export async function setPrefetch(store: Store, pod: Pod, value: string | undefined): Promise<boolean> {
  try {
    const out = await store.patch('Pod', pod.metadata.namespace ?? 'default', pod.metadata.name, (cur) => {
      if (cur.metadata.uid !== pod.metadata.uid || cur.metadata.deletionTimestamp) return undefined;
      const next = withPrefetch(cur, value);
      if (!next) return undefined;
      cur.metadata.annotations = next;
      return cur;
    });
    return out !== undefined;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/** Whether the pod carries a prefetch request (it is, or was, held by a rollout). */
export function isGated(pod: Pod): boolean {
  return prefetchImages(pod.metadata.annotations).length > 0;
}

/**
 * The parts of a node's status the gate reads, as one comparable string: the archives it has loaded and
 * its failed transfers. A change of either is the one node change a held pod's owner must react to
 * (progress bytes are for `rollout status`, not a reason to plan again).
 */
export function imageFacts(n: Node): string {
  const digests = [...(n.status?.imageDigests ?? [])].sort().join(',');
  const failed = (n.status?.imageTransfers ?? [])
    .filter((t) => t.state === 'failed')
    .map((t) => `${t.digest}:${t.message ?? ''}`)
    .sort()
    .join(',');
  return `${digests}|${failed}`;
}

/**
 * Which owners (controller keys) hold a gated pod on which node, so a node's report wakes only those:
 * a fleet's heartbeats and status reports must not wake every ReplicaSet or DaemonSet.
 */
export class GatedIndex {
  private readonly byNode = new Map<string, Set<string>>();
  private readonly byOwner = new Map<string, Set<string>>();
  /** Per watched node, imageFacts as last seen. */
  private readonly facts = new Map<string, string>();

  /** The owner `key` holds gated pods on exactly `nodes` now (an empty list: none). */
  set(key: string, nodes: Iterable<string>): void {
    const next = new Set(nodes);
    for (const n of this.byOwner.get(key) ?? []) {
      if (next.has(n)) continue;
      const s = this.byNode.get(n);
      s?.delete(key);
      if (s && s.size === 0) {
        this.byNode.delete(n);
        this.facts.delete(n);
      }
    }
    if (next.size === 0) this.byOwner.delete(key);
    else this.byOwner.set(key, next);
    for (const n of next) {
      let s = this.byNode.get(n);
      if (!s) this.byNode.set(n, (s = new Set()));
      s.add(key);
    }
  }

  /** Remember a node's facts without waking anyone (what a pass planned with). */
  seen(node: Node): void {
    if (this.byNode.has(node.metadata.name)) this.facts.set(node.metadata.name, imageFacts(node));
  }

  /** The owners to wake for this node change: those holding pods there, when its image facts moved. */
  changed(node: Node | undefined, name: string): string[] {
    const owners = this.byNode.get(name);
    if (!owners) return [];
    if (!node) return [...owners];
    const f = imageFacts(node);
    if (this.facts.get(name) === f) return [];
    this.facts.set(name, f);
    return [...owners];
  }

  get size(): number {
    return this.byOwner.size;
  }
}
