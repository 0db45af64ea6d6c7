import type { Command } from 'commander';
import { kindInfo, objectPath } from '../api/kinds.js';
import type { Pod } from '../api/pod.js';
import { ApiClient, CliError } from './client.js';
import { parseSelector } from '../api/selector.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, eachObject, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { sleep } from './watch.js';

interface LogsOptions {
  container?: string;
  tail?: string;
  namespace?: string;
  follow?: boolean;
  selector?: string;
  prefix?: boolean;
  previous?: boolean;
  since?: string;
  sinceTime?: string;
  timestamps?: boolean;
}

/** kubectl's default --tail with -l: ten lines per pod, so a wide selector does not flood the terminal. */
export const SELECTOR_TAIL = 10;

/** kubectl's `--since=5m` / `--since=1h30m` → whole seconds (at least 1). */
export function parseSince(v: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(v.trim());
  const secs = m && v.trim() ? Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) : NaN;
  if (!Number.isFinite(secs) || secs <= 0) throw new CliError(`invalid --since "${v}": use a duration such as 30s, 5m or 1h30m`);
  return secs;
}

/** What the log request asks beyond container and tail: the API's own query parameters. */
export function logQuery(opts: Pick<LogsOptions, 'previous' | 'since' | 'sinceTime' | 'timestamps'>): Record<string, string | number | undefined> {
  if (opts.since !== undefined && opts.sinceTime !== undefined) throw new CliError('at most one of --since and --since-time may be given');
  if (opts.sinceTime !== undefined && Number.isNaN(Date.parse(opts.sinceTime))) throw new CliError(`invalid --since-time "${opts.sinceTime}": use an RFC 3339 time such as 2024-05-01T10:00:00Z`);
  return {
    previous: opts.previous ? 'true' : undefined,
    sinceSeconds: opts.since !== undefined ? parseSince(opts.since) : undefined,
    sinceTime: opts.sinceTime,
    timestamps: opts.timestamps ? 'true' : undefined,
  };
}

/** `[pod/web/main] ` before each line, as kubectl --prefix writes it. */
export function prefixLines(text: string, prefix: string): string {
  if (!text) return '';
  const { lines, partial } = splitLines(text);
  return [...lines, ...(partial ? [partial] : [])].map((l) => `${prefix}${l}\n`).join('');
}

/** `--tail` as kubectl takes it: a count of lines, -1 meaning all. */
export function parseTail(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < -1) throw new CliError(`invalid --tail "${v}": expected a number of lines (or -1 for all)`);
  return Number(v) === -1 ? undefined : Number(v);
}

/** Complete lines of a log text (a last line without its newline is still being written). */
export function splitLines(text: string): { lines: string[]; partial: string } {
  const parts = text.split('\n');
  const partial = parts.pop() ?? '';
  return { lines: parts, partial };
}

/**
 * Follow state: the log endpoint returns the whole log each poll, so what is new is what lies past
 * the lines already printed. A log that got shorter was replaced (container re-created): print it
 * from the start. A partial last line waits until its newline arrives.
 */
export class LogFollower {
  private seen = 0;

  /** The first fetch: everything, or its last `tail` lines. */
  start(text: string, tail?: number): string {
    const { lines } = splitLines(text);
    this.seen = lines.length;
    const shown = tail === undefined ? lines : tail === 0 ? [] : lines.slice(-tail);
    return shown.map((l) => `${l}\n`).join('');
  }

  /** A later fetch: only the complete lines not printed yet. */
  next(text: string): string {
    const { lines } = splitLines(text);
    if (lines.length < this.seen) this.seen = 0;
    const fresh = lines.slice(this.seen);
    this.seen = lines.length;
    return fresh.map((l) => `${l}\n`).join('');
  }

  /** The last fetch: new lines plus an unterminated last line, which will not be finished now. */
  finish(text: string): string {
    const { partial } = splitLines(text);
    return this.next(text) + (partial ? `${partial}\n` : '');
  }
}

const POLL_MS = 1000;

/** The container a log without -c comes from (the pod's first), for --prefix. */
async function onlyContainer(client: ApiClient, ns: string, name: string): Promise<string> {
  const pod = await client.getOptional<Pod>(objectPath(kindInfo('Pod'), ns, name));
  return pod?.spec?.containers?.[0]?.name ?? '';
}

async function follow(ctx: CommandContext, client: ApiClient, ns: string, name: string, container: string | undefined, tail: number | undefined, extra: Record<string, string | number | undefined> = {}): Promise<void> {
  const podKind = kindInfo('Pod');
  const podPath = objectPath(podKind, ns, name);
  const pod = await client.getOptional<Pod>(podPath);
  if (!pod) throw notFound(podKind, name);
  // A fixed start, not a sliding window: with the same sinceSeconds on every poll, lines ageing out of the
  // window would read to the follower as lines replaced (new ones skipped, or the window printed again).
  if (extra.sinceSeconds !== undefined) extra = { ...extra, sinceTime: new Date(Date.now() - Number(extra.sinceSeconds) * 1000).toISOString(), sinceSeconds: undefined };
  const fetchLog = () => client.getText(`${podPath}/log`, { container, ...extra });
  const f = new LogFollower();
  ctx.io.stdout(f.start(await fetchLog(), tail));
  const signal = ctx.interrupted();
  for (;;) {
    await sleep(POLL_MS, signal);
    if (signal.aborted) return;
    const cur = await client.getOptional<Pod>(podPath);
    // Gone, or replaced by another pod of the same name: this log has ended.
    if (!cur || (pod.metadata.uid && cur.metadata.uid !== pod.metadata.uid)) return;
    let text: string;
    try {
      text = await fetchLog();
    } catch (err) {
      // The node may be briefly unreachable; the pod's end is noticed above.
      if (err instanceof CliError && (err.code >= 500 || err.code === 404)) continue;
      throw err;
    }
    const phase = cur.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') {
      ctx.io.stdout(f.finish(text));
      return;
    }
    ctx.io.stdout(f.next(text));
  }
}

export function registerLogs(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('logs')
    .description("print a pod container's logs, fetched from its node")
    .argument('[pod]', 'pod name (or pod/NAME); or none with -l')
    .option('-c, --container <name>', 'container name (defaults to the only container)')
    .option('--tail <lines>', 'only the last N lines (with -l: 10 unless given)')
    .option('-f, --follow', 'keep printing new lines until the pod ends or Ctrl-C')
    .option('-l, --selector <selector>', "the logs of every pod whose labels match, e.g. 'app in (web,api)'")
    .option('--prefix', 'begin each line with [pod/NAME/CONTAINER]')
    .option('-p, --previous', "the previous instance of the container (after a restart)")
    .option('--since <duration>', 'only lines newer than this, e.g. 30s, 5m, 1h')
    .option('--since-time <time>', 'only lines after this RFC 3339 time')
    .option('--timestamps', 'begin each line with its RFC 3339 timestamp')
    .option('-n, --namespace <namespace>', 'namespace of the pod', DEFAULT_NAMESPACE);
  addConnectionOptions(cmd).action(async (podArg: string | undefined, opts: LogsOptions, command: Command) => {
    const podKind = kindInfo('Pod');
    const extra = logQuery(opts);
    if (opts.selector !== undefined) {
      if (podArg !== undefined) throw new CliError('only one of a pod name and a selector (-l) may be given');
      if (opts.follow) throw new CliError('-f with -l is not supported: follow one pod at a time');
      parseSelector(opts.selector);
      const tailLines = opts.tail === undefined ? SELECTOR_TAIL : parseTail(opts.tail);
      const client = ctx.client(command);
      const ns = opts.namespace || DEFAULT_NAMESPACE;
      const pods = ((await client.get<{ items?: Pod[] }>(objectPath(podKind, ns), { labelSelector: opts.selector }))?.items ?? []).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      if (!pods.length) {
        ctx.io.stderr(`No resources found in ${ns} namespace.\n`);
        return;
      }
      await eachObject(pods, async (p) => {
        const containers = opts.container ? [opts.container] : (p.spec?.containers ?? []).map((c) => c.name);
        for (const c of containers) {
          const text = await client.getText(`${objectPath(podKind, ns, p.metadata.name)}/log`, { container: c, tailLines, ...extra });
          ctx.io.stdout(opts.prefix ? prefixLines(text, `[pod/${p.metadata.name}/${c}] `) : text);
        }
      });
      return;
    }
    if (podArg === undefined) throw new CliError('expected a pod name, or -l SELECTOR');
    let name = podArg;
    if (podArg.includes('/')) {
      const [target] = parseResourceArgs([podArg]);
      if (target!.kind.kind !== 'Pod') throw new CliError(`logs are only available for pods, not ${target!.kind.plural}`);
      name = target!.name!;
    }
    const tailLines = parseTail(opts.tail);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    if (opts.follow) return follow(ctx, client, ns, name, opts.container, tailLines, extra);
    const text = await client.getText(`${objectPath(podKind, ns, name)}/log`, {
      container: opts.container,
      tailLines,
      ...extra,
    });
    ctx.io.stdout(opts.prefix ? prefixLines(text, `[pod/${name}/${opts.container ?? (await onlyContainer(client, ns, name))}] `) : text);
  });
}
