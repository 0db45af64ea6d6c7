/** `drover broker acl`: the Mosquitto ACL files of external broker mode (nodes and server; operators). */
import type { Command } from 'commander';
import { mosquittoAcl, mosquittoOperatorAcl, SERVER_CLIENT_ID } from '../contract/topics.js';
import type { CliIo } from './context.js';

export function registerBrokerCommands(program: Command, io: Pick<CliIo, 'stdout'>): void {
  const broker = program.command('broker').description('Configure an external MQTT broker');
  broker
    .command('acl')
    .description('Print a Mosquitto ACL file: the certificate listener (require_certificate true, use_identity_as_username true), or with --operators the operators\' password_file listener')
    .option('--operators', 'the ACL of the operators\' listener: publish commands, read their own replies, the fleet summary and node states')
    .action((opts: { operators?: boolean }) => io.stdout(opts.operators ? mosquittoOperatorAcl() : mosquittoAcl(SERVER_CLIENT_ID)));
}
