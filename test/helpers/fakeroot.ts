/**
 * A throwaway root for running install.sh for real: INSTALL_DROVER_ROOT prefixes every path it
 * writes, and PATH is a directory of links to the host's tools minus the ones a test hides (podman,
 * systemctl, ...) plus stand-ins that record how they were called (systemctl, rc-update, apt-get ...).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const INSTALL_SH = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'install.sh');

const HOST_BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Host tools a device may lack; hidden unless a test asks for them. */
const HIDDEN_BY_DEFAULT = ['podman', 'nerdctl', 'systemctl', 'openrc-run', 'rc-update', 'rc-service', 'apt-get', 'dnf', 'yum', 'apk', 'zypper', 'drover'];

/** A stand-in that appends "NAME ARGS..." to the calls log and answers with `body` (sh). */
export function recorder(name: string, body = 'exit 0'): string {
  return `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> "$FAKEROOT_CALLS"\n${body}\n`;
}

export interface FakeRoot {
  /** INSTALL_DROVER_ROOT. */
  root: string;
  /** The tool directory that is the whole PATH. */
  bin: string;
  /** TMPDIR of the runs, to check nothing is left in it. */
  tmp: string;
  /** Where stand-ins record their calls. */
  callsFile: string;
  /** Adds (or replaces) an executable in the tool dir. */
  tool(name: string, script: string): Promise<void>;
  /** Removes a tool from PATH. */
  hide(name: string): Promise<void>;
  calls(): Promise<string[]>;
  clearCalls(): Promise<void>;
  /** Runs install.sh (or another script) with PATH = the tool dir and INSTALL_DROVER_ROOT = root. */
  run(args: string[], env?: Record<string, string>, script?: string): Promise<RunResult>;
  /** Every file and directory under root, relative, with type, mode and content hash. */
  tree(): Promise<Map<string, TreeEntry>>;
  /** Entries left in TMPDIR. */
  tmpLeft(): Promise<string[]>;
  cleanup(): Promise<void>;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TreeEntry {
  type: 'file' | 'dir' | 'link';
  mode: number;
  sha256?: string;
}

/**
 * A fake root with the host's tools linked in, minus `hide` and the usual device-optional ones unless
 * `show`n. `busybox`: a small device's userland instead, every tool (sh included) a busybox applet,
 * plus the host tools named in `show` (curl, say).
 */
export async function makeFakeRoot(o: { show?: string[]; hide?: string[]; busybox?: boolean } = {}): Promise<FakeRoot> {
  const base = await mkdtemp(join(tmpdir(), 'drover-fakeroot-'));
  const root = join(base, 'root');
  const bin = join(base, 'bin');
  const tmp = join(base, 'tmp');
  const callsFile = join(base, 'calls.log');
  await Promise.all([mkdir(root), mkdir(bin), mkdir(tmp)]);
  await writeFile(callsFile, '');
  const hidden = new Set([...HIDDEN_BY_DEFAULT.filter((n) => !(o.show ?? []).includes(n)), ...(o.hide ?? [])]);
  const linked = new Set<string>();
  if (o.busybox) {
    const { stdout } = await execFileP('busybox', ['--list']);
    for (const applet of stdout.split('\n').filter(Boolean)) {
      if (hidden.has(applet)) continue;
      linked.add(applet);
      await symlink('/usr/bin/busybox', join(bin, applet));
    }
    for (const name of o.show ?? []) {
      if (linked.has(name)) continue;
      linked.add(name);
      await symlink(await hostTool(name), join(bin, name));
    }
  }
  for (const dir of o.busybox ? [] : HOST_BIN_DIRS) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      if (hidden.has(name) || linked.has(name)) continue;
      linked.add(name);
      await symlink(join(dir, name), join(bin, name));
    }
  }
  const fr: FakeRoot = {
    root,
    bin,
    tmp,
    callsFile,
    async tool(name, script) {
      await rm(join(bin, name), { force: true });
      await writeFile(join(bin, name), script);
      await chmod(join(bin, name), 0o755);
    },
    async hide(name) {
      await rm(join(bin, name), { force: true });
    },
    async calls() {
      return (await readFile(callsFile, 'utf8')).split('\n').filter(Boolean);
    },
    async clearCalls() {
      await writeFile(callsFile, '');
    },
    run: (args, env = {}, script = INSTALL_SH) =>
      runScript(join(bin, 'sh'), script, args, { PATH: bin, HOME: join(base, 'home'), TMPDIR: tmp, INSTALL_DROVER_ROOT: root, FAKEROOT_CALLS: callsFile, ...env }),
    tree: () => treeOf(root),
    async tmpLeft() {
      return readdir(tmp);
    },
    async cleanup() {
      await rm(base, { recursive: true, force: true });
    },
  };
  return fr;
}

const execFileP = promisify(execFile);

/** Where the host keeps a tool. */
async function hostTool(name: string): Promise<string> {
  for (const dir of HOST_BIN_DIRS) if (await exists(join(dir, name))) return join(dir, name);
  throw new Error(`no ${name} on this machine`);
}

async function runScript(shell: string, script: string, args: string[], env: Record<string, string>): Promise<RunResult> {
  try {
    // The tool dir's sh: dash on Debian, busybox ash for a busybox root (the POSIX shells install.sh is written for).
    const { stdout, stderr } = await execFileP(shell, [script, ...args], { env, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    // A non-zero exit is a result to look at; a shell that could not start is the test's failure.
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function treeOf(root: string): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const st = await lstat(p);
      const rel = '/' + relative(root, p);
      const mode = st.mode & 0o7777;
      if (st.isSymbolicLink()) out.set(rel, { type: 'link', mode, sha256: await readlink(p) });
      else if (st.isDirectory()) {
        out.set(rel, { type: 'dir', mode });
        await walk(p);
      } else out.set(rel, { type: 'file', mode, sha256: createHash('sha256').update(await readFile(p)).digest('hex') });
    }
  };
  await walk(root);
  return out;
}

/** The files (not directories) of a tree. */
export function filesOf(tree: Map<string, TreeEntry>): string[] {
  return [...tree].filter(([, e]) => e.type !== 'dir').map(([p]) => p);
}

/** A small stand-in for the drover binary: a script that prints its version (install.sh runs `--version`). */
export function standInBinary(version: string): string {
  return `#!/bin/sh\n# stand-in for drover's single binary\nif [ "$1" = --version ]; then echo '${version}'; exit 0; fi\necho 'drover stand-in ${version}' "$@"\n`;
}

/** The [ERROR] lines of a run's stderr. */
export function errorLines(r: RunResult): string[] {
  return r.stderr.split('\n').filter((l) => l.startsWith('[ERROR]'));
}

export async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
