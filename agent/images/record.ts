/**
 * STATE_DIR/images/loaded.json: which of the server's image archives (by digest) this device has
 * loaded into its runtime, under which names and when. Written by the agent's ImageManager and by
 * `drover image load` (airgap) alike: whole or not at all (temp file, fsync, rename), and each writer
 * reads the file again just before it writes and applies only its own change, so the two do not undo
 * each other's entries.
 */
import { z } from 'zod';
import { join } from 'node:path';
import { imageDigest } from '../../src/contract/images.js';
import { errorMessage } from '../../src/util/errors.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import { ensurePrivateDir } from '../../src/util/private-fs.js';
import { moveAside, readStateFile, writeFileAtomic } from '../state-file.js';

export const RECORD_FILE = join('images', 'loaded.json');

const entry = z.object({
  names: z.array(z.string()),
  loadedAt: z.string(),
  /** server: fetched by the agent; airgap: `drover image load`. */
  source: z.enum(['server', 'airgap']).default('server'),
  /** Since when neither the desired state nor any container wants it (garbage collection's clock). */
  unusedSince: z.string().optional(),
  /** Whether anything ever wanted it: an airgap image nothing has used yet is never collected. */
  wanted: z.boolean().optional(),
  /** The runtime's id of the loaded image: what garbage collection removes once its names moved to a newer one. */
  id: z.string().regex(/^[0-9a-f]{64}$/).optional(),
});
export type LoadedImage = z.infer<typeof entry>;

const recordSchema = z.object({ version: z.literal(1), images: z.record(imageDigest, entry) });
export type ImageRecord = z.infer<typeof recordSchema>;

export function recordPath(stateDir: string): string {
  return join(stateDir, RECORD_FILE);
}

/**
 * The record as it is on disk; none yet: empty. A damaged one is moved aside (and said in `corrupt`):
 * the images stay in the runtime, and the ones still wanted are fetched and recorded again.
 */
export async function readRecord(stateDir: string, logger: Logger = silentLogger): Promise<{ record: ImageRecord; corrupt?: string }> {
  const path = recordPath(stateDir);
  const { text, unreadable } = await readStateFile(path, logger);
  if (unreadable) return { record: empty(), corrupt: `${path}: ${unreadable}` };
  if (text === undefined) return { record: empty() };
  let parsed: ReturnType<typeof recordSchema.safeParse>;
  try {
    parsed = recordSchema.safeParse(JSON.parse(text));
  } catch (err) {
    return { record: empty(), ...(await moveAside(path, 'image record', `not JSON: ${errorMessage(err)}`, logger)) };
  }
  if (!parsed.success) return { record: empty(), ...(await moveAside(path, 'image record', parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '), logger)) };
  return { record: parsed.data };
}

function empty(): ImageRecord {
  return { version: 1, images: {} };
}

/** Reads the record, applies `change` to it and writes it back atomically; returns what was written. */
export async function updateRecord(stateDir: string, change: (r: ImageRecord) => void, logger: Logger = silentLogger): Promise<ImageRecord> {
  await ensurePrivateDir(join(stateDir, 'images'), logger);
  const { record } = await readRecord(stateDir, logger);
  change(record);
  await writeFileAtomic(recordPath(stateDir), `${JSON.stringify(record, null, 2)}\n`, logger);
  return record;
}

/** Adds (or refreshes) one loaded archive. */
export function recordLoaded(stateDir: string, digest: string, names: string[], source: LoadedImage['source'], now: Date, logger?: Logger, id?: string): Promise<ImageRecord> {
  return updateRecord(
    stateDir,
    (r) => {
      const had = r.images[digest];
      r.images[digest] = { names: [...new Set([...(had?.names ?? []), ...names])].sort(), loadedAt: now.toISOString(), source, ...(source === 'server' ? { wanted: true } : had?.wanted ? { wanted: true } : {}), ...(id ? { id } : {}) };
    },
    logger,
  );
}
