import type { Command } from 'commander';
import { GLOBAL_OPTIONS, inheritGlobalOptions } from './globals.js';
import { registerApiResources } from './api-resources.js';
import { registerApply } from './apply.js';
import { registerCompletion } from './completion.js';
import { makeContext, type CliIo } from './context.js';
import { registerCreate } from './create.js';
import { registerDelete } from './delete.js';
import { registerDescribe } from './describe.js';
import { registerNodeCommands } from './drain.js';
import { registerGet } from './get.js';
import { registerKubeconfig } from './kubeconfig.js';
import { registerLabelCommands } from './label.js';
import { registerEdit } from './edit.js';
import { registerExec } from './exec.js';
import { registerExplain } from './explain.js';
import { registerFleet } from './fleet.js';
import { registerLogs } from './logs.js';
import { registerRollout } from './rollout.js';
import { registerScale } from './scale.js';
import { registerSet } from './set.js';
import { registerStatus } from './status.js';
import { registerTop } from './top.js';
import { registerTokenCommands } from './token.js';
import { registerNodeAdmin } from './node-admin.js';
import { registerImage } from './image.js';
import { registerImageLoad } from './image-load.js';
import { registerVersion } from './version.js';

export type { CliIo } from './context.js';
export { CliError } from './client.js';

/**
 * Add the kubectl-like verbs (get, apply, create, delete, describe, logs, label, annotate, scale, set image,
 * rollout, cordon/uncordon/drain, top, fleet status, status, version, api-resources, completion) to `program`. They are HTTP
 * clients of the drover API and throw CliError (one-line message) on failure; the caller prints
 * `error: <message>` and sets the exit status. Subcommands are created with program.command(), so
 * settings such as exitOverride() made on `program` beforehand carry over.
 */
export function registerCliCommands(program: Command, io: CliIo): void {
  const ctx = makeContext(io);
  // kubectl's habit: `drover --server U -n prod get pods` as well as `drover get pods -n prod`.
  for (const [flags, description] of GLOBAL_OPTIONS) program.option(flags, description);
  program.hook('preAction', inheritGlobalOptions);
  registerGet(program, ctx);
  registerApply(program, ctx);
  registerCreate(program, ctx);
  registerDelete(program, ctx);
  registerDescribe(program, ctx);
  registerLogs(program, ctx);
  registerExec(program, ctx);
  registerLabelCommands(program, ctx);
  registerScale(program, ctx);
  registerSet(program, ctx);
  registerRollout(program, ctx);
  registerNodeCommands(program, ctx);
  registerTokenCommands(program, ctx);
  registerNodeAdmin(program, ctx);
  // `image load` runs on a device (no server needed): the airgap path.
  registerImageLoad(registerImage(program, ctx), ctx);
  registerTop(program, ctx);
  registerFleet(program, ctx);
  registerStatus(program, ctx);
  registerVersion(program, ctx);
  registerApiResources(program, ctx);
  registerKubeconfig(program, ctx);
  registerExplain(program, ctx);
  registerEdit(program, ctx);
  registerCompletion(program, ctx);
}
