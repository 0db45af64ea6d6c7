/**
 * The drover binaries a server hands out for install.sh: the drover-linux-ARCH files of its downloads
 * dir (`--downloads-dir`, default DATA_DIR/downloads), and its own file when it is itself the single
 * binary (for its own arch, unless the dir has one), with their SHA256SUMS.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

/** Go's names, as the binaries are named (dist/bin/drover-linux-amd64 ...). */
export const BINARY_ARCHES = ['amd64', 'arm64', 'arm'] as const;
export type BinaryArch = (typeof BINARY_ARCHES)[number];

/** The only names served: nothing else can reach the file system. */
const BINARY_NAME = /^drover-linux-(amd64|arm64|arm)$/;

export function binaryName(arch: BinaryArch): string {
  return `drover-linux-${arch}`;
}

export function isBinaryName(name: string): boolean {
  return BINARY_NAME.test(name);
}

/** node's process.arch → the binary's arch name. */
export function binaryArch(nodeArch: string): BinaryArch | undefined {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm' } as Record<string, BinaryArch>)[nodeArch];
}

/** This process's own file, when it is drover's single binary (a Node SEA). */
export interface SelfBinary {
  arch: BinaryArch;
  path: string;
}

/** The running binary, if this process is drover's single binary; undefined under node/tsx. */
export async function selfBinary(): Promise<SelfBinary | undefined> {
  let sea: typeof import('node:sea');
  try {
    sea = await import('node:sea');
  } catch (err) {
    // A Node without node:sea cannot be a single executable: nothing of its own to serve.
    if ((err as NodeJS.ErrnoException).code === 'ERR_UNKNOWN_BUILTIN_MODULE') return undefined;
    throw err;
  }
  if (!sea.isSea()) return undefined;
  const arch = binaryArch(process.arch);
  return arch ? { arch, path: process.execPath } : undefined;
}

/** An open binary: read it from the handle (the file may be replaced meanwhile; the handle keeps this one). */
export interface OpenBinary {
  handle: FileHandle;
  size: number;
}

interface CachedHash {
  /** Which file version the hash is of: device, inode, size and mtime. */
  key: string;
  hash: Promise<string>;
}

export class DownloadCatalog {
  private readonly hashes = new Map<string, CachedHash>();

  constructor(private readonly o: { dir: string; self?: SelfBinary }) {}

  get dir(): string {
    return this.o.dir;
  }

  /** The path a name is served from, in the order tried: the downloads dir, then this binary itself. */
  private candidates(name: string): string[] {
    if (!isBinaryName(name)) throw new Error(`not a binary name: ${JSON.stringify(name.slice(0, 64))}`);
    const self = this.o.self && binaryName(this.o.self.arch) === name ? [this.o.self.path] : [];
    return [join(this.o.dir, name), ...self];
  }

  /** The binary of that name, opened, or undefined when the server has none. */
  async open(name: string): Promise<OpenBinary | undefined> {
    for (const path of this.candidates(name)) {
      let handle: FileHandle;
      try {
        handle = await open(path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const st = await handle.stat();
      if (st.isFile()) return { handle, size: st.size };
      // A directory (or a device) under that name is no binary.
      await handle.close();
    }
    return undefined;
  }

  /**
   * SHA256SUMS of the binaries present, in sha256sum's format (`<hex>  drover-linux-amd64`). A file's
   * hash is kept until its size, mtime or inode changes (a 90 MB binary takes a while to hash).
   */
  async sha256sums(): Promise<string> {
    const lines: string[] = [];
    for (const arch of BINARY_ARCHES) {
      const name = binaryName(arch);
      const f = await this.open(name);
      if (!f) continue;
      try {
        const st = await f.handle.stat();
        const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
        let cached = this.hashes.get(name);
        if (!cached || cached.key !== key) {
          cached = { key, hash: hashHandle(f.handle) };
          this.hashes.set(name, cached);
          // A failed hash is not kept: the next request tries again.
          cached.hash.catch(() => this.hashes.get(name) === cached && this.hashes.delete(name));
        }
        lines.push(`${await cached.hash}  ${name}\n`);
      } finally {
        await f.handle.close();
      }
    }
    return lines.join('');
  }
}

async function hashHandle(handle: FileHandle): Promise<string> {
  const h = createHash('sha256');
  // From the same open file as the stat above, so the hash and its key describe one version.
  await pipeline(handle.createReadStream({ start: 0, autoClose: false }), h);
  return h.digest('hex');
}
