/**
 * Images served by the server (issue 15): the part of the contract that the server's image store, the
 * agent's fetcher and the CLI share. An image is one archive (`podman save` / `nerdctl save` output, a
 * docker-archive or oci-archive tar), named by the sha256 of its bytes and cut into fixed-size chunks,
 * each with its own sha256, so a device verifies and keeps every chunk as it arrives and resumes after
 * the last good one (any drop, any agent restart), and a corrupted chunk is refused and fetched again
 * before the whole archive is checked.
 *
 * HTTP (the API server, over the cluster's TLS):
 *   POST   /drover/v1/images?name=REF[&name=REF…]   admin; body: the archive (application/x-tar), streamed.
 *                                                      201 + ImageManifest (200 if those bytes were there already).
 *   GET    /drover/v1/images                         view: { items: ImageInfo[] }
 *   GET    /drover/v1/images/DIGEST                  view, or a node whose desired state lists DIGEST: ImageManifest
 *   GET    /drover/v1/images/DIGEST/blob             the same callers; `Range: bytes=A-B` → 206 (one range)
 *   DELETE /drover/v1/images/DIGEST                  admin (or ?name=REF: that name's image)
 * DIGEST is `sha256:<64 hex>` as one path segment. A node authenticates with its client certificate
 * (the one its MQTT link uses). The server caps concurrent blob transfers: past the cap, 503 with
 * Retry-After, and the agent tries again later (src/util/backoff.ts).
 *
 * MQTT: the desired state lists, per node, the server's images its pods (or a coming rollout) use
 * (`desired.images`); the agent's status reports the archives it has loaded (`imageDigests`) and its
 * transfers in progress (`imageTransfers`).
 */
import { z } from 'zod';

export const IMAGES_PATH = '/drover/v1/images';
/** Chunks of 1 MiB: a drop costs at most one chunk again; 50 chunk requests for a 50 MB image. */
export const IMAGE_CHUNK_BYTES = 1024 * 1024;
export const imageDigest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 lowercase hex digits>');

/** What the server keeps about one archive: everything a device needs to fetch and check it. */
export const imageManifest = z.object({
  digest: imageDigest,
  /** The archive's size in bytes. */
  size: z.number().int().min(1),
  chunkSize: z.number().int().min(1),
  /** sha256 hex of each chunk in order (the last may be short). */
  chunks: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
  /** The image references it carries (e.g. localhost/app:1): a pod's `image` matches one of these. */
  names: z.array(z.string().min(1)).min(1),
  format: z.enum(['docker-archive', 'oci-archive']),
  createdAt: z.string(),
});
export type ImageManifest = z.infer<typeof imageManifest>;

/** One row of `drover get images`. */
export const imageInfo = imageManifest.omit({ chunks: true }).extend({
  /** Nodes whose agent reported this archive loaded. */
  nodes: z.array(z.string()),
});
export type ImageInfo = z.infer<typeof imageInfo>;

/** In a node's desired state: an image this node is to have, served by the server. */
export const desiredImage = z.object({
  /** The reference the pods use. */
  name: z.string(),
  digest: imageDigest,
  size: z.number().int().min(1),
  /** True when no pod on the node uses it yet: a rollout about to (fetch before the old pod stops). */
  prefetch: z.boolean().optional(),
});
export type DesiredImage = z.infer<typeof desiredImage>;

/** In an agent's status: a transfer in progress or failed (absent once loaded). */
export const imageTransfer = z.object({
  digest: imageDigest,
  name: z.string().max(512),
  bytes: z.number().int().min(0),
  total: z.number().int().min(0),
  state: z.enum(['waiting', 'fetching', 'loading', 'failed']),
  message: z.string().max(1024).optional(),
});
export type ImageTransfer = z.infer<typeof imageTransfer>;

/** The path of one image's manifest, blob or deletion. */
export function imagePath(digest: string, blob = false): string {
  return `${IMAGES_PATH}/${digest}${blob ? '/blob' : ''}`;
}

/** Byte range of chunk `i` (inclusive end, as HTTP Range writes it). */
export function chunkRange(m: Pick<ImageManifest, 'size' | 'chunkSize'>, i: number): { start: number; end: number } {
  const start = i * m.chunkSize;
  return { start, end: Math.min(m.size, start + m.chunkSize) - 1 };
}

/**
 * Resumable pushes (chunked uploads, the OCI distribution spec's shape simplified): a push longer than the
 * API's request timeout (60 s for a whole request, body included, on every route) goes up in pieces, each
 * its own short request, appended in order to a file on the server; a dropped piece resumes from the
 * server's offset, so a bad uplink costs at most the piece in flight, never the whole archive.
 *   POST   /drover/v1/images/uploads?name=REF[&name=…][&format=F]   admin → 201 UploadState (offset 0)
 *   PUT    /drover/v1/images/uploads/ID?offset=N                   admin; body: the next bytes (Content-Length
 *          required, at most UPLOAD_PIECE_MAX_BYTES, else 411/413) → UploadState. Appended only when N is
 *          the bytes already there; otherwise 409 whose body carries `offset`. A piece cut midway keeps
 *          the bytes that arrived (the offset says how many). A newer piece for the same upload takes
 *          over from one still open (a link that died without the server noticing).
 *   GET    /drover/v1/images/uploads/ID                            admin → UploadState
 *   POST   /drover/v1/images/uploads/ID/commit?digest=sha256:…     admin: the whole file must have that
 *          sha256 (else 400 naming both, upload discarded); stored as POST /drover/v1/images stores an
 *          archive: 201 (200 if already there) + ImageManifest; the upload is gone either way.
 *   DELETE /drover/v1/images/uploads/ID                            admin → UploadState
 * ID is 32 lowercase hex digits (128 random bits); anything else is 400, an unknown one 404. Uploads idle
 * for UPLOAD_IDLE_MS are deleted; the server holds at most a few at once (503 past its cap).
 */
export const IMAGE_UPLOADS_PATH = `${IMAGES_PATH}/uploads`;
/** The largest piece one PUT may carry: at 10 Mbit/s, 16 MiB takes 13 s, well inside the 60 s request timeout. */
export const UPLOAD_PIECE_MAX_BYTES = 16 * 1024 * 1024;
/** The CLI's piece by default: 8 MiB, half the bound (about 7 s at 10 Mbit/s). */
export const UPLOAD_PIECE_BYTES = 8 * 1024 * 1024;
/** An upload no piece touched for this long is deleted. */
export const UPLOAD_IDLE_MS = 24 * 60 * 60 * 1000;
export const uploadId = z.string().regex(/^[0-9a-f]{32}$/, 'must be 32 lowercase hex digits');
export const uploadState = z.object({
  id: uploadId,
  /** The bytes the server holds: where the next piece starts. */
  offset: z.number().int().min(0),
});
export type UploadState = z.infer<typeof uploadState>;

/** The path of one upload, or of its commit. */
export function uploadPath(id: string, commit = false): string {
  return `${IMAGE_UPLOADS_PATH}/${id}${commit ? '/commit' : ''}`;
}
