/**
 * `drover node approve|revoke|list`: the node credentials the server keeps (server/identity).
 * approve lets a pending node in (or a revoked name join again); revoke cuts a node off at once.
 */
import type { Command } from 'commander';
import { CliError } from './client.js';
import { addConnectionOptions, type CommandContext } from './context.js';

const NODES_PATH = '/drover/v1/nodes';

interface NodeCredentialInfo {
  node: string;
  state: 'pending' | 'approved' | 'revoked';
  serial?: string;
  notAfter?: string;
  tokenId?: string;
}

function nodeName(name: string): string {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) throw new CliError(`invalid node name "${name}": a DNS subdomain (lower-case letters, digits, '-' and '.')`);
  return name;
}

function table(items: NodeCredentialInfo[]): string {
  const rows = [['NAME', 'STATE', 'CERT EXPIRES', 'JOIN TOKEN'], ...items.map((n) => [n.node, n.state, n.notAfter ?? '-', n.tokenId ?? '-'])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('')).join('\n') + '\n';
}

export function registerNodeAdmin(program: Command, ctx: CommandContext): void {
  const node = program.command('node').description('Approve, revoke and list node credentials (each node joins with its own certificate)');
  addConnectionOptions(node.command('approve').description('Let a pending node in (server --require-approval), or let a revoked node name join again').argument('<name>')).action(
    async (name: string, _o: unknown, cmd: Command) => {
      const r = await ctx.client(cmd).create<NodeCredentialInfo>(`${NODES_PATH}/${encodeURIComponent(nodeName(name))}/approve`, {});
      ctx.io.stdout(r.serial ? `node ${name} approved\n` : `node ${name} may join again (with a join token)\n`);
    },
  );
  addConnectionOptions(
    node.command('revoke').description("Revoke a node's certificate: its MQTT session is cut at once, its retained topics cleared and its Node deleted").argument('<name>'),
  ).action(async (name: string, _o: unknown, cmd: Command) => {
    await ctx.client(cmd).create<NodeCredentialInfo>(`${NODES_PATH}/${encodeURIComponent(nodeName(name))}/revoke`, {});
    ctx.io.stdout(`node ${name} revoked\n`);
  });
  addConnectionOptions(node.command('list').description('List node credentials (state, certificate expiry)')).action(async (_o: unknown, cmd: Command) => {
    const { items } = await ctx.client(cmd).get<{ items: NodeCredentialInfo[] }>(`${NODES_PATH}/`);
    if (!items.length) {
      ctx.io.stderr('No nodes have joined.\n');
      return;
    }
    ctx.io.stdout(table(items));
  });
}
