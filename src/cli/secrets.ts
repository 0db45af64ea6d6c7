import type { Command } from 'commander';
import type { CliIo } from './context.js';

/** What `rotate-key` reports (server/secrets/rotate.ts RotateKeyResult). */
export interface RotateKeyReport {
  keyId: string;
  droppedKeys: string[];
  objects: number;
  logEntries: number;
  plaintext: number;
  /** What the operator must do next (etcd: copy the keyring to every other server), one line each. */
  notes?: string[];
}

export interface SecretsCommandDeps {
  defaultDataDir: string;
  /** Loaded on demand by the entry point: the server's modules are not the CLI's to import. */
  rotateKey(dataDir: string, datastore: { datastoreEndpoint?: string; datastoreCafile?: string; datastoreCertfile?: string; datastoreKeyfile?: string }): Promise<RotateKeyReport>;
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
    .option('--datastore-endpoint <urls>', "the server keeps its state in etcd (the server's flag): rotate the Secrets there, every server on it stopped")
    .option('--datastore-cafile <file>', "PEM CA the etcd members' certificates are checked against")
    .option('--datastore-certfile <file>', 'PEM client certificate presented to etcd')
    .option('--datastore-keyfile <file>', 'PEM key of that client certificate (keep it 0600)')
    .action(async (o: { dataDir: string; datastoreEndpoint?: string; datastoreCafile?: string; datastoreCertfile?: string; datastoreKeyfile?: string }) => {
      const { dataDir, ...datastore } = o;
      const r = await deps.rotateKey(dataDir, datastore);
      const dropped = r.droppedKeys.length ? `; dropped old key(s) ${r.droppedKeys.join(', ')}` : '';
      io.stdout(
        `secrets key rotated: ${r.keyId} is the primary key; re-encrypted ${r.objects} Secret(s) and ${r.logEntries} change-log entr${r.logEntries === 1 ? 'y' : 'ies'}` +
          ` (${r.plaintext} were plaintext)${dropped}\n`,
      );
      for (const n of r.notes ?? []) io.stdout(`note: ${n}\n`);
    });
}
