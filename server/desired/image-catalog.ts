/**
 * What the desired-state publisher and the rollout controllers need to know of the server's image store
 * (issue 15, server/images/store.ts implements it): which image references the server serves, as which
 * archive. Synchronous: the store keeps its manifests in memory, and a controller's plan is a plain function.
 */
export interface ServedImage {
  digest: string;
  size: number;
  names: string[];
}

export interface ImageCatalog {
  /** The archive the server serves for a pod's image reference (normalized as podman names images), if any. */
  byName(ref: string): ServedImage | undefined;
  /** Called after an image is pushed, renamed or removed. Returns a function that stops the calls. */
  onChange(cb: () => void): () => void;
}

/** A catalog that serves nothing: a server built without an image store, and tests. */
export const NO_IMAGES: ImageCatalog = { byName: () => undefined, onChange: () => () => undefined };

/** Every image reference a pod spec runs, each once. */
export function podImages(spec: { containers: Array<{ image: string }> }): string[] {
  return [...new Set(spec.containers.map((c) => c.image))];
}

/**
 * On a pod a rollout is about to replace: the image references of its replacement, comma-separated. The
 * rollout controllers set it and wait to stop the pod until its node reports those images loaded
 * (status.imageDigests); the publisher lists them as `prefetch` in that node's desired state, so the
 * device fetches the new image while the old pod still runs (balena's download-then-kill).
 */
export const PREFETCH_ANNOTATION = 'drover.io/prefetch-images';

/** The references a pod's PREFETCH_ANNOTATION names (empty when it has none). */
export function prefetchImages(annotations: Record<string, string> | undefined): string[] {
  const v = annotations?.[PREFETCH_ANNOTATION];
  return v ? [...new Set(v.split(',').map((s) => s.trim()).filter(Boolean))] : [];
}

/** On a Node: its devices' image bandwidth budget (`256KiB`, `2MB`: src/util/bandwidth.ts), over the agent's own setting. */
export const IMAGE_BANDWIDTH_LABEL = 'drover.io/image-bandwidth';
