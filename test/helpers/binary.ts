/**
 * The single-binary builds (dist/bin/drover-linux-ARCH, `npm run build:binary`; test/run.sh builds them
 * when they are missing or older than the sources), and how to run one as a device would: copied alone
 * into an empty directory, with no Node on PATH, foreign arches under qemu-user.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BIN_DIR = fileURLToPath(new URL('../../dist/bin/', import.meta.url));

/** PATH a device's service manager gives a process (no /usr/local, where a developer's Node may live). */
const SERVICE_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const NODE_TOOLS = new Set(['node', 'nodejs', 'npm', 'npx', 'corepack']);

let devicePath: string | undefined;

/**
 * SERVICE_PATH minus Node: one directory of links to every command in it but node, npm and friends
 * (Node sits in /usr/bin here, beside podman, so the directories themselves cannot be dropped). A mount
 * namespace that covers /usr/bin/node would hide it harder, but podman's network namespaces are bind
 * mounts that then exist only inside it, and its containers cannot be handled from outside.
 */
export function deviceSearchPath(): string {
  if (devicePath) return devicePath;
  const dir = mkdtempSync(join(tmpdir(), 'drover-device-path-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const d of SERVICE_PATH) {
    if (!existsSync(d)) continue;
    for (const name of readdirSync(d)) {
      if (NODE_TOOLS.has(name) || existsSync(join(bin, name))) continue;
      symlinkSync(join(d, name), join(bin, name));
    }
  }
  return (devicePath = bin);
}

export type Arch = 'amd64' | 'arm64' | 'arm';

/** Emulators for foreign arches, with the cross libc they load from (Debian's *-cross packages). */
const QEMU: Record<Exclude<Arch, 'amd64'>, { emulator: string; sysroot: string }> = {
  arm64: { emulator: 'qemu-aarch64-static', sysroot: '/usr/aarch64-linux-gnu' },
  arm: { emulator: 'qemu-arm-static', sysroot: '/usr/arm-linux-gnueabihf' },
};

export async function binaryPath(arch: Arch): Promise<string> {
  const file = join(BIN_DIR, `drover-linux-${arch}`);
  try {
    await access(file, constants.X_OK);
  } catch {
    throw new Error(`${file} is missing: run \`npm run build:binary\` (test/run.sh does it when the sources changed)`);
  }
  return file;
}

/** argv that runs `bin ARGS` as a device of its arch would: natively for amd64, under qemu-user for the others. */
export function deviceArgv(arch: Arch, bin: string, args: string[]): string[] {
  return arch === 'amd64' ? [bin, ...args] : [QEMU[arch].emulator, '-L', QEMU[arch].sysroot, bin, ...args];
}

/** Environment of a service started by systemd: nothing inherited from this test process, no Node on PATH. */
export function deviceEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: deviceSearchPath(), HOME: home, LANG: 'C.UTF-8', ...extra };
}

export function spawnDevice(arch: Arch, bin: string, args: string[], opts: { cwd: string; env: Record<string, string> }): ChildProcessWithoutNullStreams {
  const [cmd, ...rest] = deviceArgv(arch, bin, args);
  return spawn(cmd!, rest, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs a short-lived binary command (CLI verbs) as a device would; resolves with its exit code and output. */
export function runDevice(arch: Arch, bin: string, args: string[], opts: { cwd: string; env: Record<string, string>; input?: string; timeoutMs?: number }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnDevice(arch, bin, args, opts);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`drover ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 60_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** A long-running binary process (server, agent) with its output kept for assertions and failure messages. */
export interface DeviceProcess {
  child: ChildProcessWithoutNullStreams;
  output(): string;
  /** Resolves once the output matches `re`; rejects if the process exits first or after `timeoutMs`. */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed). */
  stop(graceMs?: number): Promise<number | null>;
}

export function startDevice(arch: Arch, bin: string, args: string[], opts: { cwd: string; env: Record<string, string> }): DeviceProcess {
  const child = spawnDevice(arch, bin, args, opts);
  child.stdin.end();
  let out = '';
  let exited: number | null | undefined;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    wake();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
    wake();
  });
  const closed = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      exited = code;
      wake();
      resolve(code);
    }),
  );
  return {
    child,
    output: () => out,
    waitForOutput(re, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(out)) return done(() => resolve());
          if (exited !== undefined) return done(() => reject(new Error(`process exited (${exited}) before printing ${re}:\n${out}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`no ${re} within ${timeoutMs} ms:\n${out}`))), timeoutMs);
        const done = (fn: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          fn();
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 15_000) {
      if (exited !== undefined) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await closed;
      clearTimeout(timer);
      return code;
    },
  };
}
