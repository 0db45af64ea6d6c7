/**
 * Disk pressure on the device (issue 15): the agent reports it when the filesystem of its state dir
 * (where archives arrive) or of the runtime's image store (podman's graphroot, where they are
 * unpacked) has less free space than max(10 % of the filesystem, 2 × the bytes of the images queued
 * to fetch). Twice: an archive is on disk once as it arrives and about once more as layers after the
 * load (an oci-archive is unpacked in /var/tmp on the way, too). The server turns it into the Node
 * condition DiskPressure and the taint node.kubernetes.io/disk-pressure:NoSchedule, so no new pod
 * (and no new image) is sent to a device that cannot hold it.
 */
import { stat, statfs } from 'node:fs/promises';

/** Below this share of its filesystem free, a disk is under pressure whatever is queued. */
export const MIN_FREE_FRACTION = 0.1;

/** One filesystem the agent writes images to, as measured. */
export interface FsSpace {
  /** What it holds, for the message ("state dir", "image store"). */
  label: string;
  path: string;
  totalBytes: number;
  /** Free for unprivileged writers (statfs bavail): what df shows as available. */
  freeBytes: number;
}

export interface DiskPressure {
  pressure: boolean;
  message: string;
}

function size(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** Whether any filesystem is under pressure, and why in words (pure). */
export function diskPressure(spaces: FsSpace[], queuedBytes: number): DiskPressure {
  const lines: string[] = [];
  let pressure = false;
  for (const s of spaces) {
    const floor = MIN_FREE_FRACTION * s.totalBytes;
    const need = Math.max(floor, 2 * queuedBytes);
    const low = s.freeBytes < need;
    pressure ||= low;
    const why = need > floor ? `2 × the ${size(queuedBytes)} of images queued to fetch` : '10 % of the filesystem';
    lines.push(`${s.label} ${s.path}: ${size(s.freeBytes)} free of ${size(s.totalBytes)}${low ? `, below ${size(need)} (${why})` : ''}`);
  }
  if (!spaces.length) return { pressure: false, message: 'no filesystem could be measured' };
  return { pressure, message: lines.join('; ') };
}

/**
 * Measures each directory's filesystem (statfs), once per filesystem (two directories on one disk
 * count once, under the first label). A directory that cannot be measured (not there yet) is left
 * out and named in `unmeasured`.
 */
export async function measureSpaces(dirs: Array<{ label: string; path: string }>): Promise<{ spaces: FsSpace[]; unmeasured: string[] }> {
  const spaces: FsSpace[] = [];
  const unmeasured: string[] = [];
  const seen = new Set<number>();
  for (const d of dirs) {
    try {
      const [st, fs] = await Promise.all([stat(d.path), statfs(d.path)]);
      if (seen.has(st.dev)) continue;
      seen.add(st.dev);
      spaces.push({ label: d.label, path: d.path, totalBytes: fs.blocks * fs.bsize, freeBytes: fs.bavail * fs.bsize });
    } catch (err) {
      unmeasured.push(`${d.path}: ${(err as Error).message}`);
    }
  }
  return { spaces, unmeasured };
}
