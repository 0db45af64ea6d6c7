import type { Command } from 'commander';
import { CliError } from './client.js';
import { addConnectionOptions, parseDuration, type CommandContext } from './context.js';
import { renderTable } from './output.js';
import type { TokenInfo } from '../api/tokens.js';

/** The server's token route (server/auth/routes.ts). */
const TOKENS_PATH = '/drover/v1/tokens';

/** Join tokens live a day unless told otherwise, as k3s's `token create`; `--ttl 0` means never. */
export const DEFAULT_JOIN_TTL = '24h';

/** "24h", "30m", "7d", "3600" (seconds), "0" (never) → seconds, undefined for never. */
export function parseTtl(v: string): number | undefined {
  const s = v.trim();
  if (s === '0') return undefined;
  const days = /^(\d+)d$/.exec(s);
  const ms = days ? Number(days[1]) * 86_400_000 : parseDuration(s);
  if (ms < 1000 || ms % 1000 !== 0) throw new CliError(`invalid --ttl "${v}": use whole seconds or more, e.g. 90s, 30m, 24h, 7d (0: never expires)`);
  return ms / 1000;
}

/** "zone=a,role=gw" → {zone: 'a', role: 'gw'}; the server checks the label syntax. */
export function parseLabelList(v: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of v.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CliError(`invalid --labels entry "${part}": expected KEY=VALUE`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** The `token list` table; never a secret (the server has none to give). */
export function tokenTable(items: TokenInfo[], now: number): string {
  const rows = items.map((t) => {
    const expires = t.revoked ? 'revoked' : t.expiresAt && Date.parse(t.expiresAt) <= now ? 'expired' : (t.expiresAt ?? '<never>');
    const uses = t.type === 'api' ? '' : t.usesLeft === undefined ? '<unlimited>' : t.usesLeft === 0 ? 'used up' : String(t.usesLeft);
    const labels = Object.entries(t.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',');
    return [t.id, t.type, t.role ?? '', uses, expires, labels, t.description ?? ''];
  });
  return renderTable(['ID', 'TYPE', 'ROLE', 'USES', 'EXPIRES', 'LABELS', 'DESCRIPTION'], rows);
}

interface CreateOptions {
  ttl?: string;
  uses?: string;
  labels?: string;
  description?: string;
  role?: string;
}

export function registerTokenCommands(program: Command, ctx: CommandContext): void {
  const token = program.command('token').description('Manage join tokens (for agents) and API tokens (for people and tools)');

  addConnectionOptions(
    token
      .command('create')
      .description(`Create a join token (default) or, with --role, an API token; the token is printed once`)
      .option('--ttl <duration>', `lifetime, e.g. 30m, 24h, 7d; 0 for never (join tokens: ${DEFAULT_JOIN_TTL}; API tokens: never)`)
      .option('--uses <n>', 'join token: how many agents may join with it (default: unlimited until it expires)')
      .option('--labels <k=v,...>', 'join token: labels every node that joins with it gets (set by the server, not the agent)')
      .option('--description <text>', 'what the token is for, shown by `token list`')
      .option('--role <role>', 'create an API token with this role: admin or view'),
  ).action(async (opts: CreateOptions, cmd: Command) => {
    const api = opts.role !== undefined;
    if (api && (opts.uses !== undefined || opts.labels !== undefined)) throw new CliError('--uses and --labels are for join tokens; an API token (--role) has neither');
    if (api && opts.role !== 'admin' && opts.role !== 'view') throw new CliError(`invalid --role "${opts.role}": admin or view`);
    const ttlSeconds = parseTtl(opts.ttl ?? (api ? '0' : DEFAULT_JOIN_TTL));
    let uses: number | undefined;
    if (opts.uses !== undefined) {
      uses = Number(opts.uses);
      if (!/^\d+$/.test(opts.uses) || uses < 1) throw new CliError(`invalid --uses "${opts.uses}": a whole number of at least 1`);
    }
    const body = api
      ? { type: 'api', role: opts.role, ttlSeconds, description: opts.description }
      : { type: 'join', ttlSeconds, uses, labels: opts.labels === undefined ? undefined : parseLabelList(opts.labels), description: opts.description };
    const created = await ctx.client(cmd).create<{ id: string; token: string }>(TOKENS_PATH, body);
    // Only the token on stdout, so `TOKEN=$(drover token create)` works; the id (for revoke) on stderr.
    ctx.io.stdout(`${created.token}\n`);
    ctx.io.stderr(`token ${created.id} created; it is shown only now\n`);
  });

  addConnectionOptions(token.command('list').description('List tokens (never their secrets)')).action(async (_opts: unknown, cmd: Command) => {
    const { items } = await ctx.client(cmd).get<{ items: TokenInfo[] }>(TOKENS_PATH);
    if (!items.length) {
      ctx.io.stderr('No tokens found.\n');
      return;
    }
    ctx.io.stdout(tokenTable(items, Date.now()));
  });

  addConnectionOptions(token.command('revoke').description('Revoke a token at once (agents that already joined keep their own credential)').argument('<id>', 'the token id (`token list`)')).action(
    async (id: string, _opts: unknown, cmd: Command) => {
      // Given the whole token by mistake: only its id goes on the wire.
      const tokenId = id.replace(/^K10[0-9a-f]*::/, '').split('.')[0]!;
      await ctx.client(cmd).delete(`${TOKENS_PATH}/${encodeURIComponent(tokenId)}`);
      ctx.io.stdout(`token ${tokenId} revoked\n`);
    },
  );
}
