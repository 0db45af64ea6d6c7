import type { Command } from 'commander';
import type { ServerStatus } from '../../server/fleet/routes.js';
import { CliError } from './client.js';
import { addConnectionOptions, type CommandContext } from './context.js';
import { formatTime, humanDuration, toJson, toYaml } from './output.js';

export const SERVER_STATUS_PATH = '/drover/v1/status';

export function renderServerStatus(s: ServerStatus, server: string): string {
  const n = s.nodes;
  const lines = [
    ['Server:', server],
    ['Version:', `${s.version} (MQTT contract v${s.contract})`],
    ['Up:', `${humanDuration(s.uptimeSeconds * 1000)} (since ${formatTime(s.startedAt)})`],
    ['Store revision:', String(s.storeRevision)],
    ['Nodes:', `${n.total} (ready ${n.ready}, degraded ${n.degraded}, stale ${n.stale}, not ready ${n.notReady}, unknown ${n.unknown})`],
    ['Pods:', String(s.pods)],
    ['Workloads:', `${s.deployments} deployments, ${s.daemonSets} daemonsets`],
    ['Namespaces:', String(s.namespaces)],
    ['Broker clients:', s.brokerClients === undefined ? 'not known (external broker)' : String(s.brokerClients)],
  ];
  const w = Math.max(...lines.map((l) => l[0]!.length)) + 1;
  return lines.map(([k, v]) => `${k!.padEnd(w)}${v}\n`).join('');
}

/** `drover status`: the server itself (version, uptime, store revision, counts, broker clients). */
export function registerStatus(program: Command, ctx: CommandContext): void {
  const cmd = program.command('status').description('the server: version, uptime, store revision, counts, broker clients').option('-o, --output <format>', 'json | yaml');
  addConnectionOptions(cmd).action(async (opts: { output?: string }, command: Command) => {
    if (opts.output !== undefined && opts.output !== 'json' && opts.output !== 'yaml') throw new CliError(`--output must be json or yaml, got "${opts.output}"`);
    const client = ctx.client(command);
    const s = await client.get<ServerStatus>(SERVER_STATUS_PATH);
    if (opts.output === 'json') ctx.io.stdout(toJson(s));
    else if (opts.output === 'yaml') ctx.io.stdout(toYaml(s));
    else ctx.io.stdout(renderServerStatus(s, client.server));
  });
}
