/**
 * `drover datastore ...` for the datastore tests: through the real program (src/program.ts, as the
 * binary runs it) once it registers the datastore commands; until then through the same register
 * function on a program built as buildProgram builds it, with the same error line and exit code.
 */
import { Command, CommanderError } from 'commander';
import { buildProgram, loadCliVerbs } from '../../src/program.js';
import { registerDatastoreCommands } from '../../src/cli/datastore.js';
import { datastoreTools } from '../../server/store/transfer.js';
import { errorMessage } from '../../src/util/errors.js';
import { drover, type Run } from './cli.js';

const wired = buildProgram({ stdout: () => {}, stderr: () => {} }, await loadCliVerbs()).commands.some((c) => c.name() === 'datastore');

export async function datastoreCli(args: string[]): Promise<Run> {
  if (wired) return drover({}, args);
  let stdout = '';
  let stderr = '';
  const io = { stdout: (s: string) => void (stdout += s), stderr: (s: string) => void (stderr += s) };
  const program = new Command('drover').exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  registerDatastoreCommands(program, io, { defaultDataDir: '/nonexistent/drover-default-data-dir', tools: async () => datastoreTools() });
  try {
    await program.parseAsync(args, { from: 'user' });
    return { code: 0, stdout, stderr };
  } catch (err) {
    if (err instanceof CommanderError) return { code: err.exitCode, stdout, stderr };
    stderr += `error: ${errorMessage(err).split('\n')[0]}\n`;
    return { code: 1, stdout, stderr };
  }
}
