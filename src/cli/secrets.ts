import type { Command } from 'commander';
import type { CliIo } from './context.js';

/** What `rotate-key` reports (server/secrets/rotate.ts RotateKeyResult). */
export interface RotateKeyReport {
  keyId: string;
  droppedKeys: string[];
  objects: number;
  logEntries: number;
  plaintext: number;
}

export interface SecretsCommandDeps {
  defaultDataDir: string;
  /** Loaded on demand by the entry point: the server's modules are not the CLI's to import. */
  rotateKey(dataDir: string): Promise<RotateKeyReport>;
}

/**
 * `drover secrets rotate-key --data-dir DIR`: works on the server's data dir directly, with the server
 * stopped (it refuses, saying so, while the server holds the store).
 */
export function registerSecretsCommands(program: Command, io: Pick<CliIo, 'stdout' | 'stderr'>, deps: SecretsCommandDeps): void {
  const secrets = program.command('secrets').description('manage the encryption of Secrets at rest (run on the server machine)');
  secrets
    .command('rotate-key')
    .description('add a new encryption key, re-encrypt every Secret with it, then drop the old keys (server stopped)')
    .option('--data-dir <dir>', 'server data directory', deps.defaultDataDir)
    .action(async (o: { dataDir: string }) => {
      const r = await deps.rotateKey(o.dataDir);
      const dropped = r.droppedKeys.length ? `; dropped old key(s) ${r.droppedKeys.join(', ')}` : '';
      io.stdout(
        `secrets key rotated: ${r.keyId} is the primary key; re-encrypted ${r.objects} Secret(s) and ${r.logEntries} change-log entr${r.logEntries === 1 ? 'y' : 'ies'}` +
          ` (${r.plaintext} were plaintext)${dropped}\n`,
      );
    });
}
