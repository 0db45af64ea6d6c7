/** `drover broker acl`: the Mosquitto ACL file of the per-node rules, for external broker mode. */
import type { Command } from 'commander';
import { mosquittoAcl } from '../contract/topics.js';
import type { CliIo } from './context.js';

/** CN of the server's own MQTT client certificate (server/pki/pki.ts). */
const SERVER_USER = 'drover-server';

export function registerBrokerCommands(program: Command, io: Pick<CliIo, 'stdout'>): void {
  const broker = program.command('broker').description('Configure an external MQTT broker');
  broker
    .command('acl')
    .description('Print a Mosquitto ACL file (use with require_certificate true and use_identity_as_username true)')
    .action(() => io.stdout(mosquittoAcl(SERVER_USER)));
}
