#!/usr/bin/env node
/** The one entry point: runs the drover program on this process's argv and io, and exits with its code. */
import { runProgram } from './program.js';

void runProgram(process.argv.slice(2)).then((code) => {
  // Server and agent keep running (their signal handlers exit); a CLI verb is done.
  if (code !== undefined) process.exit(code);
});
