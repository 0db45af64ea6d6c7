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
 * Over HTTP (GET /drover/v1/snapshot, server/store/snapshot-route.ts) the same file travels with its
 * header last (body, then the 4096 header bytes): the header needs the body's length and sha256, and
 * the server streams the body as it reads the store. receiveSnapshot() puts the header back in front.
 *
 * So `head -c 4096 FILE` shows what it holds and `tail -c +4097 FILE | gunzip` its objects. Secrets are
 * the sealed strings the store held: never decrypted into the file; opening them needs the keyring they
 * were sealed with (DATA_DIR/secrets/keys.json), which must travel with the snapshot. The checksum
 * detects a truncated or damaged file before anything is restored; it is no signature (anyone who can
 * edit the file can recompute it): keep snapshots as private as the data dir (they are written 0600).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
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

type ObjectCounts = Pick<SnapshotHeader, 'objects' | 'kinds' | 'sealedSecrets' | 'keyIds'>;

/** The counts a header carries, kept as the objects go by (a streamed snapshot never holds them all). */
class ObjectCounter {
  private readonly kinds: Record<string, number> = {};
  private readonly keyIds = new Set<string>();
  private objects = 0;
  private sealedSecrets = 0;

  add(o: RawObject): void {
    const kind = parseObjectKey(o.key)?.kind ?? '?';
    this.kinds[kind] = (this.kinds[kind] ?? 0) + 1;
    this.objects += 1;
    if (typeof o.value === 'string') {
      this.sealedSecrets += 1;
      this.keyIds.add(envelopeKeyId(o.value) ?? '?');
    }
  }

  counts(): ObjectCounts {
    return { objects: this.objects, kinds: { ...this.kinds }, sealedSecrets: this.sealedSecrets, keyIds: [...this.keyIds].sort() };
  }
}

/** The counts a header carries, from the objects. */
export function describeObjects(objects: RawObject[]): ObjectCounts {
  const counter = new ObjectCounter();
  for (const o of objects) counter.add(o);
  return counter.counts();
}

function line(o: RawObject): string {
  const rev = o.revision !== undefined ? { revision: o.revision } : {};
  return JSON.stringify(typeof o.value === 'string' ? { key: o.key, ...rev, sealed: o.value } : { key: o.key, ...rev, object: o.value }) + '\n';
}

/** The header as its 4096 bytes: JSON padded with spaces, ending in '\n'. */
function headerBlock(header: SnapshotHeader): Buffer {
  const text = JSON.stringify(header);
  if (Buffer.byteLength(text) > HEADER_BYTES - 1) throw new SnapshotError(`the snapshot header is ${Buffer.byteLength(text)} bytes, over the ${HEADER_BYTES - 1} kept for it (too many kinds or key ids)`);
  const padded = Buffer.alloc(HEADER_BYTES, ' ');
  padded.write(text, 0, 'utf8');
  padded[HEADER_BYTES - 1] = 0x0a;
  return padded;
}

/**
 * The snapshot of `objects` as a stream: their gzip'd lines go to `sink` chunk by chunk (each awaited:
 * a slow sink slows the reading of the objects, nothing piles up), hashed and counted on the way; then
 * the header, which only the whole body determines, is returned with its 4096 bytes.
 */
export async function encodeSnapshot(
  source: SnapshotSource,
  revision: number,
  objects: AsyncIterable<RawObject> | Iterable<RawObject>,
  sink: (chunk: Buffer) => Promise<void>,
): Promise<{ header: SnapshotHeader; block: Buffer }> {
  const hash = createHash('sha256');
  const counter = new ObjectCounter();
  let bodyBytes = 0;
  async function* lines(): AsyncGenerator<string> {
    for await (const o of objects) {
      counter.add(o);
      yield line(o);
    }
  }
  await pipeline(
    Readable.from(lines()),
    createGzip({ level: 6 }),
    new Writable({
      write(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bodyBytes += chunk.length;
        sink(chunk).then(() => done(), done);
      },
    }),
  );
  const header: SnapshotHeader = { format: SNAPSHOT_FORMAT, version: SNAPSHOT_VERSION, source, revision, ...counter.counts(), createdAt: new Date().toISOString(), bodyBytes, bodySha256: hash.digest('hex') };
  return { header, block: headerBlock(header) };
}

/**
 * Fills a new file that replaces `path` atomically: a temp file beside it, created exclusively (a
 * symlink planted at the temp path is never followed) and 0600, fsynced, renamed over `path`, the
 * directory fsynced: a crash leaves the old file or the new one. Removed when `fill` fails.
 */
async function replaceFile<T>(path: string, fill: (fh: FileHandle, tmp: string) => Promise<T>): Promise<T> {
  const tmp = tempPathOf(path);
  try {
    // A temp file left by a crashed save goes.
    await rm(tmp, { force: true });
    const fh = await open(tmp, 'wx', PRIVATE_FILE_MODE);
    let result: T;
    try {
      result = await fill(fh, tmp);
      await fh.sync();
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
    return result;
  } catch (err) {
    await rm(tmp, { force: true }).catch((rmErr: unknown) => {
      throw new SnapshotError(`writing ${path} failed: ${errorMessage(err)} (and its temp file ${tmp} could not be removed: ${errorMessage(rmErr)})`, err);
    });
    if (err instanceof SnapshotError) throw err;
    throw new SnapshotError(`writing the snapshot ${path} failed: ${errorMessage(err)}`, err);
  }
}

/**
 * Writes the snapshot to `path` atomically (replaceFile). Streams: the body is compressed and hashed on
 * its way to disk, the header written last into the space kept for it.
 */
export async function writeSnapshot(path: string, source: SnapshotSource, revision: number, objects: AsyncIterable<RawObject> | Iterable<RawObject>): Promise<SnapshotHeader> {
  return replaceFile(path, async (fh) => {
    await fh.write(Buffer.alloc(HEADER_BYTES, ' '), 0, HEADER_BYTES, 0);
    let position = HEADER_BYTES;
    const { header, block } = await encodeSnapshot(source, revision, objects, async (chunk) => {
      const at = position;
      position += chunk.length;
      await fh.write(chunk, 0, chunk.length, at);
    });
    await fh.write(block, 0, HEADER_BYTES, 0);
    return header;
  });
}

/**
 * Writes a snapshot that arrives as encodeSnapshot() streamed it (body, then the header) to `path`,
 * atomically (replaceFile) with its header in front, and checks it whole before it takes the place of
 * `path`: the header there, the body's length and sha256 against it (a stream cut short or damaged on
 * its way is refused: the last 4096 bytes it brought are no header, or the body does not match it),
 * then every object as a restore reads them. On any failure no file is left. `from` names the sender.
 */
export async function receiveSnapshot(path: string, from: string, stream: AsyncIterable<Uint8Array>): Promise<SnapshotHeader> {
  return replaceFile(path, async (fh, tmp) => {
    const hash = createHash('sha256');
    let position = HEADER_BYTES;
    // The last HEADER_BYTES bytes seen so far: the header, if the stream ends here.
    let held = Buffer.alloc(0);
    for await (const chunk of stream) {
      held = held.length === 0 ? Buffer.from(chunk) : Buffer.concat([held, chunk]);
      if (held.length <= HEADER_BYTES) continue;
      const body = held.subarray(0, held.length - HEADER_BYTES);
      held = Buffer.from(held.subarray(held.length - HEADER_BYTES));
      hash.update(body);
      await fh.write(body, 0, body.length, position);
      position += body.length;
    }
    const received = position - HEADER_BYTES + held.length;
    if (held.length < HEADER_BYTES) throw new SnapshotError(`the snapshot from ${from} ended after ${received} bytes, before its header: cut short; no file was written`);
    let header: SnapshotHeader;
    try {
      header = parseHeader(from, held);
    } catch (err) {
      throw new SnapshotError(`the snapshot from ${from} did not end with its header (${errorMessage(err)}): cut short or damaged on its way (${received} bytes); no file was written`, err);
    }
    const bodyBytes = position - HEADER_BYTES;
    if (bodyBytes !== header.bodyBytes) throw new SnapshotError(`the snapshot from ${from} brought ${bodyBytes} body bytes, its header says ${header.bodyBytes}: cut short or damaged; no file was written`);
    const sha = hash.digest('hex');
    if (sha !== header.bodySha256) throw new SnapshotError(`the snapshot from ${from} is damaged: the sha256 of its body is ${sha}, its header says ${header.bodySha256}; no file was written`);
    await fh.write(held, 0, HEADER_BYTES, 0);
    await fh.sync();
    // What a restore will check, checked now: a file saved is a file that restores.
    await scanSnapshot(tmp, () => undefined);
    return header;
  });
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
  const objects: RawObject[] = [];
  const header = await scanSnapshot(path, (o) => void objects.push(o));
  return { header, objects };
}

/** readSnapshot's checks, each object handed to `onObject` as it is read (nothing else is held). */
async function scanSnapshot(path: string, onObject: (o: RawObject) => void): Promise<SnapshotHeader> {
  const header = await readSnapshotHeader(path);
  const size = (await stat(path)).size;
  const expected = HEADER_BYTES + header.bodyBytes;
  if (size < expected) throw new SnapshotError(`${path} is truncated: ${size} bytes, its header says ${expected}; nothing was restored`);
  if (size > expected) throw new SnapshotError(`${path} has ${size - expected} bytes more than its header says (${expected}): appended to or damaged; nothing was restored`);
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { start: HEADER_BYTES }), new Writable({ write: (c: Buffer, _e, done) => (hash.update(c), done()) }));
  const sha = hash.digest('hex');
  if (sha !== header.bodySha256) throw new SnapshotError(`${path} is damaged or was edited: the sha256 of its body is ${sha}, its header says ${header.bodySha256}; nothing was restored`);
  const counter = new ObjectCounter();
  const found = (o: RawObject) => {
    counter.add(o);
    onObject(o);
  };
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
      found({ key, ...(revision !== undefined ? { revision } : {}), value: rec.sealed as string });
      return;
    }
    const obj = rec.object as ApiObject | undefined;
    if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object' || obj.metadata === null) throw new SnapshotError(`${at} (${key}): no object`);
    if (obj.kind !== ref.kind || (obj.metadata.namespace ?? '') !== ref.namespace || obj.metadata.name !== ref.name) throw new SnapshotError(`${at}: the object is ${obj.kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}, stored under ${key}`);
    if (typeof obj.metadata.uid !== 'string' || obj.metadata.uid === '') throw new SnapshotError(`${at} (${key}): no metadata.uid`);
    if (revision === undefined) throw new SnapshotError(`${at} (${key}): no revision`);
    found({ key, revision, value: obj });
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
  const counts = counter.counts();
  if (counts.objects !== header.objects) throw new SnapshotError(`${path}: holds ${counts.objects} objects, its header says ${header.objects}`);
  return header;
}
