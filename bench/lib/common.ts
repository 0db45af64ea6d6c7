/**
 * Small helpers shared by the benchmarks: argument parsing, percentiles, /proc readings of another
 * process, and writing a result file next to the others in bench/results/.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';

/** `--name value` / `--flag` from argv; numbers stay strings (callers convert). */
export function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) out.set(a.slice(2), argv[++i]!);
    else out.set(a.slice(2), 'true');
  }
  return out;
}

export function numArg(args: Map<string, string>, name: string, dflt: number): number {
  const v = args.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${name} expects a number, got "${v}"`);
  return n;
}

/** Nearest-rank percentile of an unsorted list (p in 0..100). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const round = (n: number, digits = 0): number => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

export { freePort } from '../../test/helpers/http.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** VmRSS and VmHWM (peak) of a process, and RSS's anonymous and file-backed parts, in MiB; undefined once it is gone. */
export function procMemory(pid: number): { rssMiB: number; hwmMiB: number; anonMiB: number; fileMiB: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024, anonMiB: kb('RssAnon') / 1024, fileMiB: kb('RssFile') / 1024 };
}

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on every Linux this runs on

/** utime + stime of a process in ms (its own threads, not its children). */
export function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised comm (which may contain spaces): state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
}

/** Direct children of a process: pid, command name and RSS (e.g. the esbuild service tsx starts). */
export function procChildren(pid: number): Array<{ pid: number; comm: string; rssMiB: number }> {
  const out: Array<{ pid: number; comm: string; rssMiB: number }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(d), comm, rssMiB: round(procMemory(Number(d))?.rssMiB ?? NaN, 1) });
    } catch {
      // raced with an exiting process
    }
  }
  return out;
}

export function machine(): Record<string, unknown> {
  const c = cpus();
  // The load average says how much of the 2 shared cores the run really had.
  return { cores: c.length, cpuModel: c[0]?.model, memoryMiB: Math.round(totalmem() / 2 ** 20), platform: process.platform, arch: process.arch, loadAverage: loadavg().map((l) => Math.round(l * 100) / 100) };
}

/** Writes bench/results/<name>.json with date, node version and machine, then the bench's own fields. */
export function writeResult(name: string, body: Record<string, unknown>): string {
  const dir = new URL('../results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const file = new URL(`${name}.json`, dir);
  writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), node: process.version, machine: machine(), ...body }, null, 2) + '\n');
  return file.pathname;
}

/**
 * The node flags the server runs with as installed (install.sh's SERVER_NODE_OPTIONS, scripts/up.sh): the
 * benchmarks start their server processes the same way unless told otherwise (--server-node-args="").
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/**
 * The environment the server runs with as installed (install.sh's SERVER_MALLOC_TUNABLES, scripts/up.sh): glibc's
 * malloc gives freed memory back sooner. --server-env "K=V …" replaces it ("" for none).
 */
export const SERVER_ENV: Readonly<Record<string, string>> = { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0' };

/** --server-env "K=V K2=V2" as an environment; SERVER_ENV when not given. */
export function serverEnv(args: Map<string, string>): Record<string, string> {
  const given = args.get('server-env');
  if (given === undefined) return { ...SERVER_ENV };
  return Object.fromEntries(given.split(' ').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** --server-node-args as a list of flags; SERVER_NODE_FLAGS when not given. */
export function serverNodeArgs(args: Map<string, string>): string[] {
  const given = args.get('server-node-args');
  return given === undefined ? [...SERVER_NODE_FLAGS] : given.split(' ').filter(Boolean);
}
