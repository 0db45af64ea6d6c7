import type { Command } from 'commander';
import type { BucketCounts, FleetStatus, NodeBucket } from '../../server/fleet/summary.js';
import { sleep } from '../util/backoff.js';
import { errorMessage } from '../util/errors.js';
import { CliError, type ApiClient } from './client.js';
import { addConnectionOptions, parseDuration, type CommandContext } from './context.js';
import { humanDuration, renderTable, toJson, toYaml } from './output.js';

export const FLEET_STATUS_PATH = '/drover/v1/fleet/status';

const BUCKET_LABEL: Record<NodeBucket, string> = { ready: 'Ready', degraded: 'Degraded', stale: 'Stale', notReady: 'NotReady', unknown: 'Unknown' };
const BUCKETS: NodeBucket[] = ['ready', 'degraded', 'stale', 'notReady', 'unknown'];
/** Rows per section on the one screen; the rest is summed up in a "+N more" line. */
const ROWS = { sites: 8, versions: 5, runtimes: 4, namespaces: 6, rollouts: 6, attention: 8 };

function age(seconds: number | undefined): string {
  return seconds === undefined ? '-' : humanDuration(seconds * 1000);
}

function more(total: number, shown: number, what: string): string {
  return total > shown ? `  ... +${total - shown} more ${what}\n` : '';
}

function indent(table: string): string {
  return table.replace(/^(?=.)/gm, '  ');
}

function counts(m: Record<string, number>): string {
  const parts = Object.entries(m).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join('   ') : '-';
}

/** Pod phases in one order on every line, so the columns of the eye line up. */
const PHASE_ORDER = ['Running', 'Pending', 'Succeeded', 'Failed', 'Unknown'];

function phases(m: Record<string, number>): string {
  const known = PHASE_ORDER.filter((p) => m[p]).map((p) => `${p} ${m[p]}`);
  const other = Object.keys(m).filter((p) => !PHASE_ORDER.includes(p)).sort().map((p) => `${p} ${m[p]}`);
  return [...known, ...other].join('   ') || '-';
}

/**
 * The fleet on one screen (about 50 lines whatever its size): nodes by state with the oldest
 * last-heard per state, by arch, by site, agent versions with skew, runtimes, pods, workloads,
 * rollouts in progress, and the nodes that need attention, worst first.
 */
export function renderFleetStatus(s: FleetStatus): string {
  const n = s.nodes;
  const filters = Object.entries(s.filters).map(([k, v]) => `${k}=${v}`).join(' ');
  let out = `FLEET  ${n.total} node${n.total === 1 ? '' : 's'}${filters ? ` (${filters})` : ''}   as of ${new Date(s.generatedAt).toISOString().slice(11, 19)}Z   stale after ${humanDuration(s.staleAfterSeconds * 1000)} silent\n`;
  const stateRows = BUCKETS.map((b) => {
    const o = n.oldestLastHeard[b];
    return [BUCKET_LABEL[b], String(n.byState[b]), n.total ? `${Math.round((n.byState[b] / n.total) * 100)}%` : '-', o ? `${age(o.ageSeconds)} (${o.node})` : '-'];
  });
  out += '\n' + indent(renderTable(['STATE', 'NODES', 'SHARE', 'OLDEST LAST-HEARD'], stateRows));
  if (n.neverHeard) out += `  ${n.neverHeard} node(s) never heard from\n`;
  out += `\n  ARCH      ${counts(n.byArch)}\n`;

  const sites = Object.entries(n.bySite);
  if (sites.length) {
    const podsOf = (site: string) => {
      const m = s.pods.bySite[site] ?? {};
      return `${m.Running ?? 0}/${Object.values(m).reduce((a, b) => a + b, 0)}`;
    };
    const rows = sites.slice(0, ROWS.sites).map(([site, c]: [string, BucketCounts & { total: number }]) => [site, String(c.total), ...BUCKETS.map((b) => String(c[b])), podsOf(site)]);
    out += '\n' + indent(renderTable(['SITE', 'NODES', 'READY', 'DEGRADED', 'STALE', 'NOTREADY', 'UNKNOWN', 'PODS RUNNING'], rows)) + more(sites.length, ROWS.sites, 'sites');
  }

  const skew = n.skewedNodes ? `   ${n.skewedNodes} node(s) skewed` : '';
  out += `\n  AGENT VERSIONS (server ${s.serverVersion}${n.majorityAgentVersion ? `, most nodes ${n.majorityAgentVersion}` : ''})${skew}\n`;
  for (const v of n.agentVersions.slice(0, ROWS.versions)) out += `    ${v.version.padEnd(14)} ${String(v.nodes).padStart(7)}${v.skew ? '   SKEW' : ''}\n`;
  out += more(n.agentVersions.length, ROWS.versions, 'versions');
  out += `  RUNTIMES  ${n.runtimes.slice(0, ROWS.runtimes).map((r) => `${r.runtime}${r.version ? ` ${r.version}` : ''}: ${r.nodes}`).join('   ') || '-'}\n`;
  out += more(n.runtimes.length, ROWS.runtimes, 'runtimes');

  out += `\n  PODS      ${s.pods.total} total   ${phases(s.pods.byPhase)}\n`;
  const w = s.workloads;
  out += `  WORKLOADS ${w.healthy} healthy   ${w.unhealthy} not healthy\n`;
  // Namespaces with workloads or pods, those with something not healthy first.
  const namespaces = [...new Set([...Object.keys(w.byNamespace), ...Object.keys(s.pods.byNamespace)])];
  const nsRows = namespaces
    .map((ns) => ({ ns, c: w.byNamespace[ns] ?? { healthy: 0, unhealthy: 0 } }))
    .sort((a, b) => b.c.unhealthy - a.c.unhealthy || a.ns.localeCompare(b.ns))
    .slice(0, ROWS.namespaces)
    .map(({ ns, c }) => [ns, String(c.healthy), String(c.unhealthy), phases(s.pods.byNamespace[ns] ?? {})]);
  if (nsRows.length) out += indent(renderTable(['NAMESPACE', 'WORKLOADS OK', 'NOT OK', 'PODS'], nsRows)) + more(namespaces.length, ROWS.namespaces, 'namespaces');
  for (const u of w.unhealthyList.slice(0, 3)) out += `    not healthy: ${u.kind.toLowerCase()}/${u.name} -n ${u.namespace}  ${u.ready}/${u.desired} ready\n`;

  if (s.rollouts.length) {
    const rows = s.rollouts.slice(0, ROWS.rollouts).map((r) => [
      `${r.kind.toLowerCase()}/${r.name}`, r.namespace, r.type === 'waves' ? `${r.wave ?? '?'}/${r.waves ?? '?'}` : '-', r.phase, `${r.updated}/${r.desired}`, `${r.ready}/${r.desired}`, r.message ?? '',
    ]);
    out += `\n  ROLLOUTS IN PROGRESS (${s.rollouts.length})\n` + indent(renderTable(['WORKLOAD', 'NAMESPACE', 'WAVE', 'PHASE', 'UPDATED', 'READY', 'MESSAGE'], rows)) + more(s.rollouts.length, ROWS.rollouts, 'rollouts');
  } else out += '\n  ROLLOUTS IN PROGRESS: none\n';

  if (n.listTotal) {
    const rows = n.list.slice(0, ROWS.attention).map((e) => [e.name, BUCKET_LABEL[e.bucket], age(e.lastHeardAgeSeconds), e.site, e.reasons.join(',')]);
    out += `\n  NEEDS ATTENTION (${n.listTotal}, worst first)\n` + indent(renderTable(['NODE', 'STATE', 'LAST-HEARD', 'SITE', 'WHY'], rows)) + more(n.listTotal, Math.min(ROWS.attention, n.list.length), 'nodes (drover fleet status --state STATE -o json)');
  }
  return out;
}

interface FleetOptions {
  selector?: string;
  site?: string;
  state?: string;
  output?: string;
  watch?: boolean;
  interval?: string;
  nodes?: string;
}

function fetchStatus(client: ApiClient, opts: FleetOptions): Promise<FleetStatus> {
  return client.get<FleetStatus>(FLEET_STATUS_PATH, { labelSelector: opts.selector, site: opts.site, state: opts.state, nodes: opts.nodes });
}

/** ANSI: alternate screen, hide cursor / show cursor, leave alternate screen; home, clear to end of line / of screen. */
const TERM = { enter: '\x1b[?1049h\x1b[?25l', leave: '\x1b[?25h\x1b[?1049l', home: '\x1b[H', eol: '\x1b[K', eos: '\x1b[J' } as const;

/** A frame drawn over the previous one in place: each line cleared to its end, then the rest of the screen. */
export function frame(text: string): string {
  return TERM.home + text.replace(/\n/g, `${TERM.eol}\n`) + TERM.eos;
}

/**
 * `--watch`: redraws every interval until interrupted. In a terminal it draws on the alternate screen,
 * in place, and gives the terminal back as it was on Ctrl-C; otherwise it prints each changed frame.
 * When a fetch fails the last frame stays, marked with how old it is and why: never shown as current.
 */
async function watchStatus(ctx: CommandContext, client: ApiClient, opts: FleetOptions, intervalMs: number, tty: boolean): Promise<void> {
  const signal = ctx.interrupted();
  let last: { text: string; atMs: number } | undefined;
  let printed = '';
  if (tty) ctx.io.stdout(TERM.enter);
  try {
    while (!signal.aborted) {
      let text: string;
      try {
        const s = await fetchStatus(client, opts);
        last = { text: renderFleetStatus(s), atMs: Date.now() };
        text = last.text;
      } catch (err) {
        if (signal.aborted) break;
        // A broken filter or token will not mend itself: stop with its error.
        if (err instanceof CliError && err.code >= 400 && err.code < 500) throw err;
        const why = `STALE: last update ${last ? humanDuration(Date.now() - last.atMs) + ' ago' : 'never'}; ${errorMessage(err)}\n`;
        text = why + (last ? last.text.replace(/^FLEET /, 'FLEET (stale) ') : '');
      }
      if (tty) ctx.io.stdout(frame(text));
      else {
        // Not a terminal (a pipe, a log): a frame only when more than its clock line changed.
        const body = text.replace(/ {3}as of \S+ {3}/, ' ');
        if (body !== printed) ctx.io.stdout((printed ? '\n' : '') + text);
        printed = body;
      }
      await sleep(intervalMs, signal);
    }
  } finally {
    if (tty) ctx.io.stdout(TERM.leave);
  }
}

/**
 * Whether the verb's output is a terminal: the io's own say (CliIo.isTTY, when the entry point gives
 * it), else this process's stdout (piped under test runners and scripts).
 */
function isTerminal(ctx: CommandContext): boolean {
  const said = (ctx.io as { isTTY?: boolean }).isTTY;
  return said ?? process.stdout.isTTY === true;
}

export function registerFleet(program: Command, ctx: CommandContext): void {
  const fleet = program.command('fleet').description('the fleet as a whole');
  const status = fleet
    .command('status')
    .description('nodes by state with last-heard ages, arch, site, agent versions (skew), runtimes, workloads and rollouts in progress, on one screen')
    .option('-l, --selector <selector>', 'only nodes with these labels, e.g. site=north,tier!=test')
    .option('--site <site>', 'only nodes of this site (label `site`, else `topology.kubernetes.io/zone`)')
    .option('--state <state>', 'only nodes in this state: ready, degraded, stale, notready, unknown')
    .option('-o, --output <format>', 'json | yaml (the whole status, for scripts)')
    .option('--nodes <which>', 'with -o json|yaml: attention (nodes not ready, at most 50; default) or all')
    .option('-w, --watch', 'redraw in place until Ctrl-C')
    .option('--interval <duration>', 'with --watch: how often to fetch again', '2s');
  addConnectionOptions(status).action(async (opts: FleetOptions, command: Command) => {
    if (opts.output !== undefined && opts.output !== 'json' && opts.output !== 'yaml') throw new CliError(`--output must be json or yaml, got "${opts.output}"`);
    if (opts.nodes !== undefined && opts.nodes !== 'attention' && opts.nodes !== 'all') throw new CliError(`--nodes must be attention or all, got "${opts.nodes}"`);
    if (opts.watch && opts.output) throw new CliError('--watch redraws the table; leave out -o (or poll with -o json)');
    const client = ctx.client(command);
    if (opts.watch) return watchStatus(ctx, client, opts, parseDuration(opts.interval ?? '2s'), isTerminal(ctx));
    const s = await fetchStatus(client, opts);
    if (opts.output === 'json') ctx.io.stdout(toJson(s));
    else if (opts.output === 'yaml') ctx.io.stdout(toYaml(s));
    else ctx.io.stdout(renderFleetStatus(s));
  });
}

