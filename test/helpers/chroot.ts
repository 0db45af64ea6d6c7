/**
 * A throwaway device root for running install.sh at the REAL paths (/usr/local/bin, /etc/drover,
 * /etc/systemd/system ...), with nothing of this machine writable in it: a private mount namespace in
 * which a tmpfs is the root's every writable part, the host's /usr is bound in read-only (with a tmpfs
 * /usr/local over it, and Node hidden), /dev is the host's and /proc a new one. A holder process keeps
 * the namespace alive; each command enters it (nsenter) and chroots. When the holder ends (close(), or
 * this test process dying: it reads our stdin) the namespace and every mount in it are gone, and on the
 * host the root was only ever an empty directory.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';

/** The test's own files in the root (the stand-ins' calls, traces, offline downloads), on a tmpfs of its own that listings leave out. */
const TEST_DIR = '/.test';
const CALLS = `${TEST_DIR}/calls.log`;
const STEP = `${TEST_DIR}/step.sh`;
const TRACE = `${TEST_DIR}/failed-syscalls.log`;

/** A systemd device's PATH, /usr/local first (where the stand-in systemctl is). */
export const DEVICE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Node and its tools: /usr is this machine's, and the binary must work without them. */
const NODE_TOOLS = ['node', 'nodejs', 'npm', 'npx', 'corepack'];

/** systemd cannot run here: a systemctl that records its calls; no unit is ever active. */
const SYSTEMCTL = `#!/bin/sh
printf '%s\\n' "systemctl $*" >> ${CALLS}
[ "$1" = is-active ] && exit 3
exit 0
`;

/** Runs inside the new mount namespace, on this machine's paths: builds the root in $1, then holds it. */
const SETUP = `set -eu
R=$1
EMPTY=$2
# Everything writable in the device is this tmpfs (or the ones below): nothing of the host's.
mount -t tmpfs -o mode=0755,size=768m drover-chroot "$R"
mkdir -p "$R/usr" "$R/dev" "$R/proc" "$R/etc/systemd/system" "$R/var/lib" "$R/var/log" "$R/var/tmp" "$R/run" "$R/tmp" "$R/root" "$R${TEST_DIR}"
chmod 1777 "$R/tmp" "$R/var/tmp"
chmod 0700 "$R/root"
# Debian 12's merged /usr.
ln -s usr/bin "$R/bin"
ln -s usr/sbin "$R/sbin"
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
# Nothing runs in the root unless this machine's /usr is read-only there.
awk -v m="$R/usr" '$5 == m && $6 ~ /^ro(,|$)/ { ro = 1 } END { exit !ro }' /proc/self/mountinfo || { echo "$R/usr is not read-only" >&2; exit 1; }
mount -t tmpfs -o mode=0755,size=512m drover-usr-local "$R/usr/local"
for d in bin etc games include lib man sbin share src; do mkdir "$R/usr/local/$d"; done
# Node's own files covered by an empty one; the links to them (nodejs, npm...) then lead nowhere runnable.
for t in ${NODE_TOOLS.join(' ')}; do
  if [ -f "/usr/bin/$t" ] && [ ! -L "/usr/bin/$t" ]; then mount --bind "$EMPTY" "$R/usr/bin/$t"; fi
done
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755,size=256m drover-test "$R${TEST_DIR}"
: > "$R${CALLS}"
# What a Debian device's /etc has that the installer's tools read: os-release (the link into /usr/lib it
# is) and the alternatives (awk is /etc/alternatives/awk), then curl's and id's files.
cp -P /etc/os-release "$R/etc/"
cp -a /etc/alternatives "$R/etc/"
for f in passwd group nsswitch.conf hosts host.conf resolv.conf; do
  if [ -e "/etc/$f" ]; then cp -L "/etc/$f" "$R/etc/$f"; fi
done
cat > "$R/usr/local/sbin/systemctl" <<'EOF'
${SYSTEMCTL}EOF
chmod 0755 "$R/usr/local/sbin/systemctl"
# "ready" comes from inside the chroot: once it is read, /proc/PID/root is the device's root.
exec chroot "$R" /bin/sh -c 'echo ready; exec cat'
`;

export interface ChrootRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Entry {
  type: 'file' | 'dir' | 'link' | 'other';
  mode: number;
  uid: number;
  gid: number;
  /** A file's sha256, a link's target. */
  content?: string;
}

export interface Chroot {
  /** The root as this process sees it (through the holder's /proc/PID/root), to read files and modes. */
  root: string;
  /** `sh -c script` inside the root, as root, with a device's environment plus `env`. */
  run(script: string, env?: Record<string, string>): Promise<ChrootRun>;
  /**
   * As run(), every process of it traced (strace -f): `readOnly` lists the system calls that failed
   * with EROFS, i.e. every attempt to write the host's /usr (the root's one read-only mount), even one
   * whose failure the script ignored. Undefined where strace is not installed.
   */
  runTraced(script: string, env?: Record<string, string>): Promise<ChrootRun & { readOnly?: string[] }>;
  /** Every entry a program in the root can write, by path: all but /usr (save /usr/local), /dev, /proc and the test's own dir. */
  listing(): Promise<Map<string, Entry>>;
  /** Makes a directory of the root read-only (a read-only bind of itself), as on a device whose /etc is; resolves with the undo. */
  readOnly(dir: string): Promise<() => Promise<void>>;
  /** The stand-ins' calls since the last clearCalls(). */
  calls(): Promise<string[]>;
  clearCalls(): Promise<void>;
  close(): Promise<void>;
}

export async function makeChroot(): Promise<Chroot> {
  const base = await mkdtemp(join(tmpdir(), 'drover-chroot-'));
  const rootDir = join(base, 'root');
  const empty = join(base, 'empty');
  const setup = join(base, 'setup.sh');
  await writeFile(empty, '', { mode: 0o644 });
  await writeFile(setup, SETUP);
  await mkdir(rootDir);

  const holder = spawn('/usr/bin/unshare', ['--mount', '--propagation', 'private', '/bin/sh', setup, rootDir, empty], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => holder.on('close', () => resolve()));
  const pid = holder.pid!;
  const root = `/proc/${pid}/root`;
  try {
    await ready(holder);
    // This machine has no /.test: seen there, it is the device's root (what the test writes goes only there).
    await stat(join(root, TEST_DIR, 'calls.log'));
  } catch (err) {
    holder.kill('SIGKILL');
    await exited;
    await rm(base, { recursive: true, force: true });
    throw err;
  }

  const ch: Chroot = {
    root,
    run: (script, env = {}) =>
      new Promise((resolve, reject) => {
        execFile(
          '/usr/bin/nsenter',
          ['--target', String(pid), '--mount', '--', '/usr/sbin/chroot', rootDir, '/bin/sh', '-c', `cd / && ${script}`],
          { env: { PATH: DEVICE_PATH, HOME: '/root', LANG: 'C.UTF-8', ...env }, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 },
          (err, stdout, stderr) => {
            if (!err) return resolve({ code: 0, stdout, stderr });
            // A non-zero exit is a result to look at; nsenter or chroot not starting is the test's failure.
            const code = (err as { code?: unknown }).code;
            if (typeof code !== 'number') return reject(err);
            resolve({ code, stdout, stderr });
          },
        );
      }),
    async runTraced(script, env = {}) {
      if (!existsSync('/usr/bin/strace')) return ch.run(script, env);
      // The script goes through a file: the trace wraps exactly it, and argv needs no quoting.
      await writeFile(join(root, STEP), script);
      await rm(join(root, TRACE), { force: true });
      const r = await ch.run(`strace -f -qq -Z --seccomp-bpf -e signal=none -e trace=%file,fchmod,fchown,ftruncate,fsetxattr -o ${TRACE} /bin/sh ${STEP}`, env);
      const failed = await readFile(join(root, TRACE), 'utf8');
      return { ...r, readOnly: failed.split('\n').filter((l) => l.includes('EROFS')) };
    },
    listing: () => listing(root),
    async readOnly(dir) {
      const target = join(rootDir, dir);
      await inNamespace(pid, ['/bin/sh', '-c', 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', 'sh', target]);
      return () => inNamespace(pid, ['/bin/umount', target]);
    },
    async calls() {
      return (await readFile(join(root, CALLS), 'utf8')).split('\n').filter(Boolean);
    },
    async clearCalls() {
      await writeFile(join(root, CALLS), '');
    },
    async close() {
      holder.stdin.end();
      const timer = setTimeout(() => holder.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      // On this side the root was an empty directory all along: the mounts lived in the namespace only.
      await rm(base, { recursive: true, force: true });
    },
  };
  return ch;
}

/** A command in the namespace, outside the root (mount and umount are this machine's). */
function inNamespace(pid: number, argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('/usr/bin/nsenter', ['--target', String(pid), '--mount', '--', ...argv], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }, (err, _stdout, stderr) =>
      err ? reject(new Error(`${argv.join(' ')} in the chroot's namespace failed: ${stderr}`, { cause: err })) : resolve(),
    );
  });
}

function ready(holder: ChildProcessWithoutNullStreams): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    holder.stderr.on('data', (d: Buffer) => (err += d.toString()));
    holder.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
    holder.on('close', (code) => reject(new Error(`building the chroot failed (exit ${code}):\n${err}`)));
    holder.on('error', reject);
  });
}

const SKIPPED = new Set(['/usr', '/dev', '/proc', TEST_DIR]);

async function listing(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(join(root, dir))).sort()) {
      const path = dir === '/' ? `/${name}` : `${dir}/${name}`;
      if (SKIPPED.has(path)) {
        // /usr is the host's, bound read-only; its /usr/local is the device's own (a tmpfs).
        if (path === '/usr') await add('/usr/local');
        continue;
      }
      await add(path);
    }
  };
  const add = async (path: string): Promise<void> => {
    const full = join(root, path);
    const st = await lstat(full);
    const e: Entry = { type: 'other', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (st.isSymbolicLink()) Object.assign(e, { type: 'link', content: await readlink(full) });
    else if (st.isFile()) Object.assign(e, { type: 'file', content: await sha256File(full) });
    else if (st.isDirectory()) e.type = 'dir';
    out.set(path, e);
    if (e.type === 'dir') await walk(path);
  };
  await walk('/');
  return out;
}

export async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(p), h);
  return h.digest('hex');
}

/** What changed from one listing to the next: paths added, removed, and changed (type, mode, owner or content). */
export function diff(before: Map<string, Entry>, after: Map<string, Entry>): { added: string[]; removed: string[]; changed: string[] } {
  const added = [...after.keys()].filter((p) => !before.has(p));
  const removed = [...before.keys()].filter((p) => !after.has(p));
  const changed = [...after.keys()].filter((p) => before.has(p) && JSON.stringify(before.get(p)) !== JSON.stringify(after.get(p)));
  return { added, removed, changed };
}
