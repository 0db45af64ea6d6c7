#!/usr/bin/env node
/** The one entry point: runs the drover program on this process's argv and io, and exits with its code. */
import { applyAgentV8Flags } from '../agent/v8-flags.js';

// `drover agent` on a small device: V8's lite mode before any of the agent's code is compiled (not the
// server: its API is CPU-bound). node takes no V8 flags from a single binary's argv, nor --lite-mode from NODE_OPTIONS.
// Not under a module loader (`node --import tsx`, tests and benchmarks from source): its hooks have compiled code
// before this line, and V8 crashes (SIGSEGV) when lite mode comes after that.
const loader = /--(import|loader|experimental-loader|require)\b|(^|\s)-r\b/;
const underLoader = process.execArgv.some((a) => loader.test(a)) || loader.test(process.env.NODE_OPTIONS ?? '');
if (process.argv[2] === 'agent' && !underLoader) applyAgentV8Flags();

void import('./program.js')
  .then(({ runProgram }) => runProgram(process.argv.slice(2)))
  .then((code) => {
    // Server and agent keep running (their signal handlers exit); a CLI verb is done.
    if (code !== undefined) process.exit(code);
  });
