/**
 * Pod volumes on the host (the impure half of agent/engine/volume-layout.ts): emptyDir directories, the
 * files of configMap and secret volumes, hostPath type checks, and removal of a pod's directory once
 * the pod and its containers are gone.
 *
 * ConfigMap and secret files are rewritten when their content changes, each one atomically (temp
 * file, rename) inside the directory the containers have bind-mounted: running containers see the
 * new content without a restart, as with the kubelet's eventual update. (A subPath mount of such a
 * file keeps the old content, as in Kubernetes.)
 *
 * Secret volumes live on a tmpfs mounted on their directory (as the kubelet does), so Secret values
 * never reach the device's disk. That needs root; an agent that cannot mount writes them to disk
 * (0400 files under the 0700 state dir) and says so once.
 */
import type { Stats } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { dirname, join, relative, resolve } from 'node:path';
import type { Volume } from '../src/api/pod.js';
import type { DesiredPod } from '../src/contract/payloads.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import type { RunContext } from './engine/env.js';
import { hasErrno } from './fs-errors.js';
import { LABELS } from './engine/naming.js';
import { podDir, volumeDir, volumeFiles, volumeKind, type VolumeFile } from './engine/volume-layout.js';
import type { RuntimeContainer } from './runtime/types.js';

const TMP_SUFFIX = '.drover-tmp';
/** Upper bound of one secret volume's tmpfs (Kubernetes caps a Secret at 1 MiB; items may repeat keys). */
const SECRET_TMPFS_SIZE = '8m';

/** Whether `dir` is the root of a filesystem mounted there (its device differs from its parent's). */
async function isMountPoint(dir: string): Promise<boolean> {
  const [a, b] = await Promise.all([stat(dir), stat(dirname(dir))]);
  return a.dev !== b.dev;
}

/** Mount points below `dir` (from /proc/self/mounts), deepest first, so they unmount in order. */
async function mountsBelow(relDir: string): Promise<string[]> {
  const dir = resolve(relDir);
  let table: string;
  try {
    table = await readFile('/proc/self/mounts', 'utf8');
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return [];
    throw err;
  }
  // Fields are space-separated with spaces in paths escaped as \040.
  const unescape = (p: string) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return table
    .split('\n')
    .map((l) => unescape(l.split(' ')[1] ?? ''))
    .filter((m) => m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

async function exists(path: string): Promise<boolean> {
  return (await lstatIfExists(path)) !== undefined;
}

/** lstat, or undefined when nothing is there; other failures (EACCES, EIO) throw. */
async function lstatIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if (hasErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
    throw err;
  }
}

/**
 * Kubernetes' hostPath `type` checks; DirectoryOrCreate and FileOrCreate create what is missing. With
 * no type a missing path is created as a directory, as containerd and Docker do (podman would refuse).
 */
async function prepareHostPath(hp: NonNullable<Volume['hostPath']>): Promise<void> {
  const type = hp.type ?? '';
  let st: Stats | undefined;
  try {
    st = await stat(hp.path);
  } catch (err) {
    if (!hasErrno(err, 'ENOENT', 'ENOTDIR')) throw err;
  }
  const fail = (what: string) => {
    throw new Error(`hostPath type check failed: ${hp.path} is not ${what}`);
  };
  switch (type) {
    case '':
      if (!st) await mkdir(hp.path, { recursive: true, mode: 0o755 });
      return;
    case 'DirectoryOrCreate':
      if (!st) await mkdir(hp.path, { recursive: true, mode: 0o755 });
      else if (!st.isDirectory()) fail('a directory');
      return;
    case 'FileOrCreate':
      if (!st) {
        await mkdir(dirname(hp.path), { recursive: true, mode: 0o755 });
        await writeFile(hp.path, '', { flag: 'a', mode: 0o644 });
      } else if (!st.isFile()) fail('a file');
      return;
    case 'Directory':
      if (!st?.isDirectory()) fail('a directory');
      return;
    case 'File':
      if (!st?.isFile()) fail('a file');
      return;
    case 'Socket':
      if (!st?.isSocket()) fail('a socket');
      return;
    case 'CharDevice':
      if (!st?.isCharacterDevice()) fail('a character device');
      return;
    case 'BlockDevice':
      if (!st?.isBlockDevice()) fail('a block device');
      return;
    default:
      throw new Error(`unknown hostPath type "${type}"`);
  }
}

/** Every regular file and symlink below dir, as paths relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else out.push(relative(dir, full));
    }
  };
  await walk(dir);
  return out;
}

async function removeEmptyDirs(dir: string, root: boolean): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) if (e.isDirectory()) await removeEmptyDirs(join(dir, e.name), false);
  if (!root && (await readdir(dir)).length === 0) {
    try {
      await rmdir(dir);
    } catch (err) {
      // Something was written into it meanwhile: it is no longer empty, and stays.
      if (!hasErrno(err, 'ENOTEMPTY', 'EEXIST')) throw err;
    }
  }
}

async function sameFile(path: string, f: VolumeFile): Promise<boolean> {
  const st = await lstatIfExists(path);
  if (!st?.isFile() || (st.mode & 0o777) !== f.mode || st.size !== f.data.length) return false;
  return (await readFile(path)).equals(f.data);
}

/**
 * The agent writes volume files as root: a directory on the way that is a symbolic link (planted by a
 * container that can write there) would send the write anywhere on the host. Refused, naming the link.
 */
async function refuseLinkedParents(dir: string, rel: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let p = dir;
  for (const part of parts) {
    p = join(p, part);
    const st = await lstatIfExists(p);
    if (!st) return;
    if (st.isSymbolicLink()) throw new Error(`refusing to write ${rel}: ${p} is a symbolic link`);
  }
}

/**
 * Makes dir hold exactly `files`: changed ones replaced atomically, stale ones removed. Returns the
 * number of files written or removed.
 */
export async function writeVolumeFiles(dir: string, files: VolumeFile[]): Promise<number> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  let changes = 0;
  for (const f of files) {
    const path = join(dir, f.path);
    await refuseLinkedParents(dir, f.path);
    if (await sameFile(path, f)) continue;
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    const tmp = path + TMP_SUFFIX;
    await rm(tmp, { force: true });
    const fh = await open(tmp, 'wx', f.mode);
    try {
      await fh.writeFile(f.data);
      // The mode given to open is cut by the umask.
      await fh.chmod(f.mode);
    } finally {
      await fh.close();
    }
    // A directory where a file now goes (items changed) is removed first.
    const st = await lstatIfExists(path);
    if (st?.isDirectory()) await rm(path, { recursive: true, force: true });
    await rename(tmp, path);
    changes += 1;
  }
  const wanted = new Set(files.map((f) => f.path));
  for (const rel of await listFiles(dir)) {
    if (wanted.has(rel)) continue;
    await rm(join(dir, rel), { force: true });
    changes += 1;
  }
  await removeEmptyDirs(dir, true);
  return changes;
}

export class VolumeManager {
  private errors = new Map<string, string>();
  /** Why secret volumes go to disk instead of a tmpfs; said once. */
  private noTmpfs: string | undefined;

  constructor(
    private readonly stateDir: string,
    private readonly logger: Logger,
  ) {}

  /** Why the pod's volume could not be prepared in the last sync, if it could not. */
  error(podUid: string, volume: string): string | undefined {
    return this.errors.get(`${podUid}/${volume}`);
  }

  /**
   * Prepares every volume of every target pod; never throws: a volume that cannot be prepared is
   * recorded (error()) and blocks only the containers that mount it. A configMap or secret volume
   * whose object is missing keeps the files it had, as the kubelet does.
   */
  async sync(pods: DesiredPod[], ctx: RunContext): Promise<void> {
    const errors = new Map<string, string>();
    for (const pod of pods) {
      for (const v of pod.spec.volumes ?? []) {
        try {
          const kind = volumeKind(v);
          if (kind === 'hostPath') {
            await prepareHostPath(v.hostPath!);
            continue;
          }
          const dir = volumeDir(this.stateDir, pod.uid, v.name);
          if (kind === 'emptyDir') {
            if (!(await exists(dir))) {
              await mkdir(dir, { recursive: true });
              // Writable by any user in the container, as Kubernetes makes it.
              await chmod(dir, 0o777);
            }
            continue;
          }
          const files = volumeFiles(pod, v, ctx) ?? [];
          if (kind === 'secret') await this.secretTmpfs(dir);
          const changes = await writeVolumeFiles(dir, files);
          if (changes > 0) this.logger.info({ pod: `${pod.namespace}/${pod.name}`, volume: v.name, changes }, `${kind} volume updated`);
        } catch (err) {
          errors.set(`${pod.uid}/${v.name}`, errorMessage(err));
        }
      }
    }
    for (const [k, msg] of errors) if (this.errors.get(k) !== msg) this.logger.warn({ volume: k, err: msg }, 'volume not ready');
    this.errors = errors;
  }

  /**
   * Mounts a tmpfs on a secret volume's directory when it is new (or empty: the tmpfs of a previous
   * boot is gone, its mount point left). A directory that already holds files stays as it is: a
   * running container has it bind-mounted, and would not see a tmpfs mounted over it now.
   */
  private async secretTmpfs(dir: string): Promise<void> {
    if (this.noTmpfs) return;
    const st = await lstatIfExists(dir);
    if (st?.isDirectory() && (await isMountPoint(dir))) return;
    if (st && (!st.isDirectory() || (await readdir(dir)).length > 0)) return;
    if (process.getuid?.() !== 0) {
      this.noTmpfs = 'the agent is not root, so it cannot mount a tmpfs';
    } else {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      const r = await execa('mount', ['-t', 'tmpfs', '-o', `size=${SECRET_TMPFS_SIZE},mode=0755,nosuid,nodev,noexec`, 'tmpfs', dir], { reject: false, stdin: 'ignore' });
      if (r.exitCode === 0) return;
      this.noTmpfs = `mount -t tmpfs failed: ${String(r.stderr || r.shortMessage || `exit code ${r.exitCode}`).trim()}`;
    }
    this.logger.warn({ reason: this.noTmpfs }, 'secret volumes are written to disk (0400 files in the 0700 state dir) instead of a tmpfs');
  }

  /** Unmounts the tmpfs of every secret volume below a pod's directory before it is removed. */
  private async unmountBelow(dir: string): Promise<void> {
    for (const m of await mountsBelow(dir)) {
      const r = await execa('umount', [m], { reject: false, stdin: 'ignore' });
      // Still busy (a container's process holds it open): detach it, the kernel frees it when unused.
      if (r.exitCode !== 0) await execa('umount', ['-l', m], { stdin: 'ignore' });
    }
  }

  /**
   * Removes the directories of pods that are neither in the target nor have containers left (their
   * emptyDir data goes with them, as in Kubernetes). Never throws.
   */
  async cleanup(pods: DesiredPod[], containers: RuntimeContainer[]): Promise<void> {
    const keep = new Set(pods.map((p) => p.uid));
    for (const c of containers) {
      const uid = c.labels[LABELS.podUid];
      if (uid) keep.add(uid);
    }
    let entries: string[];
    try {
      entries = await readdir(join(this.stateDir, 'pods'));
    } catch (err) {
      // No pod had a volume yet.
      if (hasErrno(err, 'ENOENT')) return;
      this.logger.warn({ err: errorMessage(err) }, 'cannot list pod volume directories');
      return;
    }
    for (const uid of entries) {
      if (keep.has(uid)) continue;
      try {
        await this.unmountBelow(podDir(this.stateDir, uid));
        await rm(podDir(this.stateDir, uid), { recursive: true, force: true, maxRetries: 2 });
        this.logger.debug({ uid }, 'pod volumes removed');
      } catch (err) {
        this.logger.warn({ uid, err: errorMessage(err) }, 'cannot remove pod volumes');
      }
    }
  }
}
