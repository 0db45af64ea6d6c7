/*
 * The datastore snapshot file (`drover datastore snapshot save|restore`): one file, whichever backend
 * it came from.
 *
 *   bytes 0-4095   the header: one line of JSON, padded with spaces, ending in '\n':
 *                  { format: "drover-datastore-snapshot", version: 1, source: "leveldb" | "etcd",
 *                    revision, objects, kinds: { Kind: count }, sealedSecrets, keyIds: [...],
 *                    createdAt, bodyBytes, bodySha256 }
 *   bytes 4096-    the body: gzip of one JSON line per object, in the order to restore them:
 *                  { key: "/registry/Kind/ns/name", revision?: N, object: {...} }   or
 *                  { key: "/registry/Secret/ns/name", revision?: N, sealed: "k8s:enc:aesgcm:v1:k1:..." }
 *
 * So `head -c 4096 FILE` shows what it holds and `tail -c +4097 FILE | gunzip` its objects. Secrets are
 * the sealed strings the store held: never decrypted into the file; opening them needs the keyring they
 * were sealed with (DATA_DIR/secrets/keys.json), which must travel with the snapshot. The checksum
 * detects a truncated or damaged file before anything is restored; it is no signature (anyone who can
 * edit the file can recompute it): keep snapshots as private as the data dir (they are written 0600).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip, createGzip } from 'node:zlib';
import type { ApiObject } from '../../src/api/meta.js';
import { envelopeKeyId, isEnvelope } from '../../src/util/aead.js';
import { DroverError, errorMessage } from '../../src/util/errors.js';
import { PRIVATE_FILE_MODE, tempPathOf } from '../../src/util/private-fs.js';
import { parseObjectKey } from './keys.js';
import type { RawObject } from './raw-objects.js';
import { ENCRYPTED_KIND } from './secret-codec.js';

export const SNAPSHOT_FORMAT = 'drover-datastore-snapshot';
export const SNAPSHOT_VERSION = 1;
export const HEADER_BYTES = 4096;

export type SnapshotSource = 'leveldb' | 'etcd';

export interface SnapshotHeader {
  format: typeof SNAPSHOT_FORMAT;
  version: number;
  source: SnapshotSource;
  /** The source store's revision the objects are consistent with. */
  revision: number;
  objects: number;
  kinds: Record<string, number>;
  /** Secrets held sealed, and the key ids they are sealed with. */
  sealedSecrets: number;
  keyIds: string[];
  createdAt: string;
  bodyBytes: number;
  bodySha256: string;
}

/** A snapshot file that cannot be used: truncated, damaged, not a snapshot, or not writable. */
export class SnapshotError extends DroverError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 422, reason: 'InvalidSnapshot', cause });
  }
}

/** The counts a header carries, from the objects. */
export function describeObjects(objects: RawObject[]): Pick<SnapshotHeader, 'objects' | 'kinds' | 'sealedSecrets' | 'keyIds'> {
  const kinds: Record<string, number> = {};
  const keyIds = new Set<string>();
  let sealedSecrets = 0;
  for (const o of objects) {
    const kind = parseObjectKey(o.key)?.kind ?? '?';
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (typeof o.value === 'string') {
      sealedSecrets += 1;
      keyIds.add(envelopeKeyId(o.value) ?? '?');
    }
  }
  return { objects: objects.length, kinds, sealedSecrets, keyIds: [...keyIds].sort() };
}

function line(o: RawObject): string {
  const rev = o.revision !== undefined ? { revision: o.revision } : {};
  return JSON.stringify(typeof o.value === 'string' ? { key: o.key, ...rev, sealed: o.value } : { key: o.key, ...rev, object: o.value }) + '\n';
}

/**
 * Writes the snapshot to `path` atomically (a temp file beside it, 0600, fsynced, renamed over it, the
 * directory fsynced): a crash leaves the old file or the new one. Streams: the body is compressed and
 * hashed on its way to disk, the header written last into the space kept for it.
 */
export async function writeSnapshot(path: string, source: SnapshotSource, revision: number, objects: RawObject[]): Promise<SnapshotHeader> {
  const tmp = tempPathOf(path);
  const hash = createHash('sha256');
  let bodyBytes = 0;
  let written: SnapshotHeader;
  try {
    // A temp file left by a crashed save goes; the new one is created exclusively (O_EXCL), so a
    // symlink planted at the temp path is never followed into another file.
    await rm(tmp, { force: true });
    const fh = await open(tmp, 'wx', PRIVATE_FILE_MODE);
    try {
      await fh.write(Buffer.alloc(HEADER_BYTES, ' '), 0, HEADER_BYTES, 0);
      let position = HEADER_BYTES;
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          bodyBytes += chunk.length;
          const at = position;
          position += chunk.length;
          fh.write(chunk, 0, chunk.length, at).then(() => done(), done);
        },
      });
      const gzip = createGzip({ level: 6 });
      const feeding = (async () => {
        for (const o of objects) if (!gzip.write(line(o))) await new Promise((r) => gzip.once('drain', r));
        gzip.end();
      })();
      await Promise.all([pipeline(gzip, sink), feeding]);
      const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, source, revision, ...describeObjects(objects), createdAt: new Date().toISOString(), bodyBytes, bodySha256: hash.digest('hex') };
      const text = JSON.stringify(header);
      if (Buffer.byteLength(text) > HEADER_BYTES - 1) throw new SnapshotError(`the snapshot header is ${Buffer.byteLength(text)} bytes, over the ${HEADER_BYTES - 1} kept for it (too many kinds or key ids)`);
      const padded = Buffer.alloc(HEADER_BYTES, ' ');
      padded.write(text, 0, 'utf8');
      padded[HEADER_BYTES - 1] = 0x0a;
      await fh.write(padded, 0, HEADER_BYTES, 0);
      await fh.sync();
      written = header;
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return written;
  } catch (err) {
    await rm(tmp, { force: true }).catch((rmErr: unknown) => {
      throw new SnapshotError(`writing ${path} failed: ${errorMessage(err)} (and its temp file ${tmp} could not be removed: ${errorMessage(rmErr)})`, err);
    });
    if (err instanceof SnapshotError) throw err;
    throw new SnapshotError(`writing the snapshot ${path} failed: ${errorMessage(err)}`, err);
  }
}

function parseHeader(path: string, bytes: Buffer): SnapshotHeader {
  const notOne = `${path} is not a drover datastore snapshot`;
  if (bytes.length < HEADER_BYTES || bytes[HEADER_BYTES - 1] !== 0x0a) throw new SnapshotError(`${notOne} (no ${HEADER_BYTES}-byte header line; a file cut short within its header?)`);
  let h: SnapshotHeader;
  try {
    h = JSON.parse(bytes.toString('utf8', 0, HEADER_BYTES)) as SnapshotHeader;
  } catch (err) {
    throw new SnapshotError(`${notOne} (its header is not JSON: ${errorMessage(err)})`, err);
  }
  if (h?.format !== SNAPSHOT_FORMAT) throw new SnapshotError(`${notOne} (header format is ${JSON.stringify(h?.format)})`);
  if (h.version !== SNAPSHOT_VERSION) throw new SnapshotError(`${path}: snapshot format version ${String(h.version)} is not one this drover reads (${SNAPSHOT_VERSION})`);
  const bad: string[] = [];
  if (h.source !== 'leveldb' && h.source !== 'etcd') bad.push(`source: ${JSON.stringify(h.source)}`);
  for (const f of ['revision', 'objects', 'bodyBytes', 'sealedSecrets'] as const) if (!Number.isSafeInteger(h[f]) || h[f] < 0) bad.push(`${f}: ${JSON.stringify(h[f])}`);
  if (typeof h.bodySha256 !== 'string' || !/^[0-9a-f]{64}$/.test(h.bodySha256)) bad.push(`bodySha256: ${JSON.stringify(h.bodySha256)}`);
  if (typeof h.kinds !== 'object' || h.kinds === null) bad.push('kinds: not an object');
  if (bad.length > 0) throw new SnapshotError(`${path}: the snapshot header is damaged (${bad.join('; ')})`);
  return h;
}

/** Reads only the header (what `snapshot save` printed): SnapshotError when it is not one. */
export async function readSnapshotHeader(path: string): Promise<SnapshotHeader> {
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new SnapshotError(`cannot read the snapshot ${path}: ${errorMessage(err)}`, err);
  });
  try {
    const buf = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEADER_BYTES, 0);
    return parseHeader(path, buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

/**
 * The header and the objects of a snapshot, checked before any is returned: its length and the
 * body's sha256 against the header (a truncated or edited file is refused, naming which), then every
 * line (JSON, a valid object key, the object's kind/namespace/name matching it, a uid, no key twice),
 * then the counts against the header.
 */
export async function readSnapshot(path: string): Promise<{ header: SnapshotHeader; objects: RawObject[] }> {
  const header = await readSnapshotHeader(path);
  const size = (await stat(path)).size;
  const expected = HEADER_BYTES + header.bodyBytes;
  if (size < expected) throw new SnapshotError(`${path} is truncated: ${size} bytes, its header says ${expected}; nothing was restored`);
  if (size > expected) throw new SnapshotError(`${path} has ${size - expected} bytes more than its header says (${expected}): appended to or damaged; nothing was restored`);
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { start: HEADER_BYTES }), new Writable({ write: (c: Buffer, _e, done) => (hash.update(c), done()) }));
  const sha = hash.digest('hex');
  if (sha !== header.bodySha256) throw new SnapshotError(`${path} is damaged or was edited: the sha256 of its body is ${sha}, its header says ${header.bodySha256}; nothing was restored`);
  const objects: RawObject[] = [];
  const seen = new Set<string>();
  let rest = '';
  let n = 0;
  const decoder = new StringDecoder('utf8');
  const take = (text: string) => {
    n += 1;
    const at = `${path}: object ${n}`;
    let rec: { key?: unknown; revision?: unknown; object?: unknown; sealed?: unknown };
    try {
      rec = JSON.parse(text) as typeof rec;
    } catch (err) {
      throw new SnapshotError(`${at} is not JSON: ${errorMessage(err)}`, err);
    }
    const ref = typeof rec.key === 'string' ? parseObjectKey(rec.key) : undefined;
    if (!ref) throw new SnapshotError(`${at}: key ${JSON.stringify(rec.key)} is not /registry/{kind}/{namespace}/{name}`);
    const key = rec.key as string;
    if (seen.has(key)) throw new SnapshotError(`${at}: ${key} appears twice`);
    seen.add(key);
    if (rec.revision !== undefined && (!Number.isSafeInteger(rec.revision) || (rec.revision as number) < 1)) throw new SnapshotError(`${at} (${key}): revision ${JSON.stringify(rec.revision)} is not a positive integer`);
    const revision = rec.revision as number | undefined;
    if (rec.sealed !== undefined) {
      if (ref.kind !== ENCRYPTED_KIND || !isEnvelope(rec.sealed)) throw new SnapshotError(`${at} (${key}): only a Secret may be sealed, as k8s:enc:aesgcm:v1:<keyid>:<data>`);
      objects.push({ key, ...(revision !== undefined ? { revision } : {}), value: rec.sealed as string });
      return;
    }
    const obj = rec.object as ApiObject | undefined;
    if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object' || obj.metadata === null) throw new SnapshotError(`${at} (${key}): no object`);
    if (obj.kind !== ref.kind || (obj.metadata.namespace ?? '') !== ref.namespace || obj.metadata.name !== ref.name) throw new SnapshotError(`${at}: the object is ${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}, stored under ${key}`);
    if (typeof obj.metadata.uid !== 'string' || obj.metadata.uid === '') throw new SnapshotError(`${at} (${key}): no metadata.uid`);
    if (revision === undefined) throw new SnapshotError(`${at} (${key}): no revision`);
    objects.push({ key, revision, value: obj });
  };
  try {
    await pipeline(
      createReadStream(path, { start: HEADER_BYTES }),
      createGunzip(),
      new Writable({
        write(chunk: Buffer, _e, done) {
          try {
            const lines = (rest + decoder.write(chunk)).split('\n');
            rest = lines.pop()!;
            for (const l of lines) if (l) take(l);
            done();
          } catch (err) {
            done(err as Error);
          }
        },
      }),
    );
  } catch (err) {
    if (err instanceof SnapshotError) throw err;
    throw new SnapshotError(`${path}: its body does not decompress: ${errorMessage(err)}`, err);
  }
  rest += decoder.end();
  if (rest) take(rest);
  const counts = describeObjects(objects);
  if (counts.objects !== header.objects) throw new SnapshotError(`${path}: holds ${counts.objects} objects, its header says ${header.objects}`);
  return { header, objects };
}
