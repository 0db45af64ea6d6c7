/**
 * The `drover` program for the end-to-end CLI tests: in this process (the same program src/main.ts
 * runs, on its own io: no 1 s of tsx start-up per call), or as the real binary (src/main.ts via tsx)
 * in a child process; and the checks they make on a finished run.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProgram } from '../../src/program.js';

export const ROOT = new URL('../..', import.meta.url).pathname;

/**
 * A config path that does not exist (in a directory nobody creates): the developer's own
 * ~/.drover/config must not leak in. A test may still point DROVER_CONFIG elsewhere through `env`.
 */
const NO_CONFIG = join(tmpdir(), `drover-cli-test-${process.pid}-${randomUUID()}`, 'no-config');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `drover ARGS` with `env` on top of this process's environment; the caller reads its output. */
export function spawnDrover(env: Record<string, string>, args: string[]): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, DROVER_CONFIG: NO_CONFIG, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/**
 * Runs `drover ARGS` to the end in this process, `input` on its stdin (empty by default): the same
 * program, parsing, output and exit codes as the binary, with `env` on top of this process's environment.
 */
export async function drover(env: Record<string, string>, args: string[], input?: string): Promise<Run> {
  let stdout = '';
  let stderr = '';
  // Never aborted: without a signal, long-running verbs would add SIGINT handlers to this process.
  const signal = new AbortController().signal;
  const code = await runProgram(args, {
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    env: { ...process.env, DROVER_CONFIG: NO_CONFIG, ...env },
    stdin: async () => input ?? '',
    signal,
  });
  return { code: code ?? 0, stdout, stderr };
}

/** Runs the real binary `drover ARGS` to the end in a child process, `input` on its stdin (empty by default). */
export function droverProcess(env: Record<string, string>, args: string[], input?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawnDrover(env, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Exit 0. */
export function ok(r: Run, label = ''): Run {
  assert.equal(r.code, 0, `${label} exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** Exit 1 with exactly one line on stderr, `error: ...`, matching `re`. */
export function fails(r: Run, re: RegExp): Run {
  assert.equal(r.code, 1, `expected exit 1, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('Warning: '));
  assert.equal(lines.length, 1, `expected one error line, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, re);
  return r;
}

/** A printed table as rows of cells (columns are separated by two or more spaces). */
export function rows(table: string): string[][] {
  return table.trimEnd().split('\n').map((l) => l.split(/\s{2,}/));
}
