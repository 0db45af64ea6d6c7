import type { Command } from 'commander';
import { registerApply } from './apply.js';
import { makeContext, type CliIo } from './context.js';
import { registerCreate } from './create.js';
import { registerDelete } from './delete.js';
import { registerDescribe } from './describe.js';
import { registerGet } from './get.js';
import { registerLogs } from './logs.js';

export type { CliIo } from './context.js';
export { CliError } from './client.js';

/**
 * Add the kubectl-like verbs (get, apply, create, delete, describe, logs) to `program`. They are
 * HTTP clients of the drover API and throw CliError (one-line message) on failure; the caller
 * prints `error: <message>` and sets the exit status. Subcommands are created with
 * program.command(), so settings such as exitOverride() made on `program` beforehand carry over.
 */
export function registerCliCommands(program: Command, io: CliIo): void {
  const ctx = makeContext(io);
  registerGet(program, ctx);
  registerApply(program, ctx);
  registerCreate(program, ctx);
  registerDelete(program, ctx);
  registerDescribe(program, ctx);
  registerLogs(program, ctx);
}
