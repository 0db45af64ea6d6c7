/**
 * What the image store checks in an upload as it streams by (issue 15): that the body is a whole tar
 * archive (every header's checksum, every entry's bytes, the end-of-archive blocks) and an image archive
 * (docker-archive: manifest.json at the top; oci-archive: index.json and oci-layout), and which image
 * references it carries. Only the small top-level JSON files are kept in memory; layers pass through.
 * Written here rather than taken from a tar library: package.json has none, and a checker that reads
 * 512-byte ustar headers (with the pax and GNU long-name extensions podman, docker and GNU tar write) is small.
 *
 * Also the naming rules: references are normalized as podman names what it loads (`podman load` of an
 * archive whose RepoTags say `app:1` lists `localhost/app:1`), and a pod's short reference is looked up
 * the way podman resolves short names locally (localhost/ first, then docker.io).
 */
import { BadRequestError } from '../../src/util/errors.js';

const BLOCK = 512;
/** The top-level JSON files kept to read names from; far larger than any real one. */
const MAX_KEPT_FILE = 1024 * 1024;
/** A pax or GNU long-name record: a path, a few attributes. */
const MAX_EXTENDED_HEADER = 1024 * 1024;

export type ArchiveFormat = 'docker-archive' | 'oci-archive';

export interface ArchiveSummary {
  format: ArchiveFormat;
  /** The references the archive itself carries (RepoTags; OCI ref annotations), normalized. */
  names: string[];
  entries: number;
}

/** A tar header field: NUL-terminated text. */
function text(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end === -1 || end > start + len ? start + len : end);
}

/** A numeric field: octal text, or base-256 (high bit of the first byte set) for sizes above 8 GiB. */
function num(b: Buffer, start: number, len: number): number {
  if (b[start]! & 0x80) {
    let v = b[start]! & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + b[i]!;
    return v;
  }
  const s = text(b, start, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return NaN;
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = num(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  return stored === unsigned || stored === signed;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** `./manifest.json` and `manifest.json` are the same top-level file. */
function entryName(name: string): string {
  return name.replace(/^(\.\/)+/, '');
}

const KEPT = new Set(['manifest.json', 'index.json', 'oci-layout']);

/**
 * Fed the upload's bytes in order (`push`), then `finish()`: throws BadRequestError naming the cause at
 * the first sign the body is not a whole tar image archive.
 */
export class TarScanner {
  private offset = 0;
  private header = Buffer.alloc(BLOCK);
  private headerFill = 0;
  /** Bytes of the current entry's data still to come, then its padding to a whole block. */
  private dataLeft = 0;
  private padLeft = 0;
  private current: { name: string; size: number; type: string } | undefined;
  private keep: Buffer[] | undefined;
  private zeroBlocks = 0;
  private ended = false;
  private entries = 0;
  /** pax 'x' and GNU 'L' records apply to the entry that follows them. */
  private nextName: string | undefined;
  private nextSize: number | undefined;
  private readonly kept = new Map<string, Buffer>();

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.ended) {
        // After the end-of-archive blocks writers pad with zeros (GNU tar to 10 KiB records); anything else is not this archive.
        for (; i < chunk.length; i++) {
          if (chunk[i] !== 0) throw new BadRequestError(`not an image archive: data after the end of the tar archive (at byte ${this.offset + i})`);
        }
        break;
      }
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - i);
        // Copied: only small top-level files are kept, and the caller may reuse its buffer.
        this.keep?.push(Buffer.from(chunk.subarray(i, i + n)));
        this.dataLeft -= n;
        i += n;
        if (this.dataLeft === 0) this.entryDone();
        continue;
      }
      if (this.padLeft > 0) {
        const n = Math.min(this.padLeft, chunk.length - i);
        this.padLeft -= n;
        i += n;
        continue;
      }
      const n = Math.min(BLOCK - this.headerFill, chunk.length - i);
      chunk.copy(this.header, this.headerFill, i, i + n);
      this.headerFill += n;
      i += n;
      if (this.headerFill === BLOCK) {
        this.headerFill = 0;
        this.onHeader(this.offset + i - BLOCK);
      }
    }
    this.offset += chunk.length;
  }

  private onHeader(at: number): void {
    const h = this.header;
    if (isZero(h)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) this.ended = true;
      return;
    }
    if (this.zeroBlocks > 0) throw new BadRequestError(`not an image archive: a tar header after an end-of-archive block (at byte ${at})`);
    if (!checksumOk(h)) {
      throw new BadRequestError(this.entries === 0 ? 'not an image archive: the body is not a tar archive (its first 512 bytes are not a tar header)' : `not an image archive: corrupt tar header at byte ${at} (checksum mismatch)`);
    }
    const type = String.fromCharCode(h[156]!) === '\0' ? '0' : String.fromCharCode(h[156]!);
    const magic = h.toString('latin1', 257, 263);
    const prefix = magic === 'ustar\0' ? text(h, 345, 155) : '';
    let name = this.nextName ?? (prefix ? `${prefix}/${text(h, 0, 100)}` : text(h, 0, 100));
    let size = this.nextSize ?? num(h, 124, 12);
    if (!Number.isSafeInteger(size) || size < 0) throw new BadRequestError(`not an image archive: bad size field in the tar header at byte ${at}`);
    this.entries++;
    // Links, directories and devices carry no data whatever their size field says.
    if (type === '1' || type === '2' || type === '3' || type === '4' || type === '5' || type === '6') size = 0;
    const extended = type === 'x' || type === 'g' || type === 'L' || type === 'K';
    if (!extended) {
      this.nextName = undefined;
      this.nextSize = undefined;
    }
    name = entryName(name);
    this.current = { name, size, type };
    this.keep = undefined;
    if (extended) {
      if (size > MAX_EXTENDED_HEADER) throw new BadRequestError(`not an image archive: a tar extended header of ${size} bytes at byte ${at}`);
      this.keep = [];
    } else if ((type === '0' || type === '7') && KEPT.has(name) && size <= MAX_KEPT_FILE) this.keep = [];
    this.dataLeft = size;
    this.padLeft = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.entryDone();
  }

  private entryDone(): void {
    const cur = this.current!;
    const data = this.keep ? Buffer.concat(this.keep) : undefined;
    this.keep = undefined;
    if (!data) return;
    if (cur.type === 'x') this.applyPax(data);
    else if (cur.type === 'L') this.nextName = text(data, 0, data.length);
    else if (cur.type === 'g' || cur.type === 'K') return;
    else this.kept.set(cur.name, data);
  }

  /** pax records: "LEN key=value\n"; path and size override the next header's. */
  private applyPax(data: Buffer): void {
    let i = 0;
    while (i < data.length) {
      const sp = data.indexOf(0x20, i);
      if (sp === -1) break;
      const len = Number(data.toString('latin1', i, sp));
      if (!Number.isSafeInteger(len) || len <= 0 || i + len > data.length) throw new BadRequestError('not an image archive: malformed pax extended header');
      const rec = data.toString('utf8', sp + 1, i + len - 1);
      const eq = rec.indexOf('=');
      const key = rec.slice(0, eq);
      const value = rec.slice(eq + 1);
      if (key === 'path') this.nextName = value;
      else if (key === 'size') {
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < 0) throw new BadRequestError('not an image archive: bad size in a pax extended header');
        this.nextSize = n;
      }
      i += len;
    }
  }

  /** After the last byte: the archive must be whole, and an image archive. */
  finish(): ArchiveSummary {
    if (this.offset === 0) throw new BadRequestError('empty body: expected an image archive (`podman save` output)');
    if (!this.ended) {
      if (this.dataLeft > 0 || this.padLeft > 0) {
        const cur = this.current!;
        throw new BadRequestError(`truncated archive: it ends inside entry "${cur.name.slice(0, 200)}" (${cur.size - this.dataLeft} of ${cur.size} bytes) after ${this.offset} bytes`);
      }
      if (this.entries === 0 && this.zeroBlocks === 0) throw new BadRequestError(`not an image archive: the body (${this.offset} bytes) is not a tar archive`);
      throw new BadRequestError(`truncated archive: no end-of-archive marker after ${this.offset} bytes`);
    }
    const manifest = this.kept.get('manifest.json');
    const index = this.kept.get('index.json');
    if (manifest) return { format: 'docker-archive', names: dockerNames(manifest), entries: this.entries };
    if (index && this.kept.has('oci-layout')) return { format: 'oci-archive', names: ociNames(index), entries: this.entries };
    throw new BadRequestError('not an image archive: a tar archive without manifest.json (docker-archive) or index.json and oci-layout (oci-archive) at its top level');
  }
}

function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new BadRequestError(`not an image archive: its ${what} is not JSON (${(err as Error).message})`, err);
  }
}

function dockerNames(data: Buffer): string[] {
  const m = parseJson(data, 'manifest.json');
  if (!Array.isArray(m) || m.length === 0 || !m.every((e) => e && typeof e === 'object' && typeof (e as { Config?: unknown }).Config === 'string')) {
    throw new BadRequestError('not an image archive: its manifest.json is not a docker-archive manifest (a list of {Config, RepoTags, Layers})');
  }
  const tags = m.flatMap((e) => ((e as { RepoTags?: unknown }).RepoTags as unknown[] | undefined) ?? []).filter((t): t is string => typeof t === 'string');
  return uniqueNormalized(tags);
}

function ociNames(data: Buffer): string[] {
  const idx = parseJson(data, 'index.json') as { manifests?: Array<{ annotations?: Record<string, unknown> }> } | null;
  if (!idx || !Array.isArray(idx.manifests)) throw new BadRequestError('not an image archive: its index.json has no manifests list');
  const refs: string[] = [];
  for (const m of idx.manifests) {
    const a = m?.annotations ?? {};
    const full = a['io.containerd.image.name'];
    const ref = a['org.opencontainers.image.ref.name'];
    if (typeof full === 'string') refs.push(full);
    // OCI allows a bare tag ("1") here; only a whole reference names an image.
    else if (typeof ref === 'string' && /[:/]/.test(ref)) refs.push(ref);
  }
  return uniqueNormalized(refs);
}

/** Names an archive carries that do not parse are left out (podman would not load them under that name either). */
function uniqueNormalized(refs: string[]): string[] {
  const out = new Set<string>();
  for (const r of refs) {
    try {
      out.add(normalizeImageName(r));
    } catch {
      // skipped: see above
    }
  }
  return [...out];
}

/** A path component of a repository (the distribution spec's grammar). */
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
export const MAX_IMAGE_NAME = 255;

function hasDomain(first: string, rest: boolean): boolean {
  return rest && (first.includes('.') || first.includes(':') || first === 'localhost');
}

/**
 * An image reference as podman names the image it loads: a registry host first (`localhost/` for a
 * name without one: podman 4 loads an archive tagged `app:1` as `localhost/app:1`), `docker.io/x` as
 * `docker.io/library/x`, `:latest` when no tag. A digest reference names no archive (tags only).
 */
export function normalizeImageName(ref: string): string {
  const r = ref.trim();
  const bad = (why: string) => new BadRequestError(`invalid image name ${JSON.stringify(r.slice(0, 100))}: ${why}`);
  if (r === '' || r.length > MAX_IMAGE_NAME) throw bad(`1-${MAX_IMAGE_NAME} characters`);
  if (r.includes('@')) throw bad('a digest reference cannot name an archive; give a tag (e.g. localhost/app:1)');
  const parts = r.split('/');
  const domain = hasDomain(parts[0]!, parts.length > 1) ? parts.shift()! : 'localhost';
  if (!DOMAIN.test(domain)) throw bad(`"${domain}" is not a registry host`);
  let last = parts.pop()!;
  let tag = 'latest';
  const colon = last.indexOf(':');
  if (colon !== -1) {
    tag = last.slice(colon + 1);
    last = last.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag "${tag.slice(0, 130)}" is not 1-128 of letters, digits, '_', '.' and '-' (not starting with '.' or '-')`);
  }
  const path = [...parts, last];
  for (const c of path) if (!COMPONENT.test(c)) throw bad(`"${c.slice(0, 100)}" is not a repository path component (lower-case letters and digits, separated by '.', '_', '__' or '-')`);
  if (domain === 'docker.io' && path.length === 1) path.unshift('library');
  return `${domain}/${path.join('/')}:${tag}`;
}

/**
 * The stored names a pod's reference may mean, in the order podman resolves a short name among local
 * images (localhost/ first, then the docker.io search registry). Never throws: a reference that does not
 * parse matches nothing.
 */
export function nameCandidates(ref: string): string[] {
  const r = ref.trim();
  if (r.includes('@')) return [];
  const parts = r.split('/');
  const last = parts.at(-1)!;
  const tagged = last.includes(':') ? r : `${r}:latest`;
  const out: string[] = [];
  const add = (s: string) => {
    try {
      const n = normalizeImageName(s);
      if (!out.includes(n)) out.push(n);
    } catch {
      // not a reference
    }
  };
  if (hasDomain(parts[0]!, parts.length > 1)) add(tagged);
  else {
    add(`localhost/${tagged}`);
    add(`docker.io/${tagged}`);
  }
  return out;
}
