import type { Command } from 'commander';
import { kindInfo, objectPath } from '../api/kinds.js';
import type { Pod } from '../api/pod.js';
import { ApiClient, CliError } from './client.js';
import { addConnectionOptions, DEFAULT_NAMESPACE, notFound, parseResourceArgs, type CommandContext } from './context.js';
import { sleep } from './watch.js';

interface LogsOptions {
  container?: string;
  tail?: string;
  namespace?: string;
  follow?: boolean;
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

async function follow(ctx: CommandContext, client: ApiClient, ns: string, name: string, container: string | undefined, tail: number | undefined): Promise<void> {
  const podKind = kindInfo('Pod');
  const podPath = objectPath(podKind, ns, name);
  const pod = await client.getOptional<Pod>(podPath);
  if (!pod) throw notFound(podKind, name);
  const fetchLog = () => client.getText(`${podPath}/log`, { container });
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
    .argument('<pod>', 'pod name (or pod/NAME)')
    .option('-c, --container <name>', 'container name (defaults to the only container)')
    .option('--tail <lines>', 'only the last N lines')
    .option('-f, --follow', 'keep printing new lines until the pod ends or Ctrl-C')
    .option('-n, --namespace <namespace>', 'namespace of the pod', DEFAULT_NAMESPACE);
  addConnectionOptions(cmd).action(async (podArg: string, opts: LogsOptions, command: Command) => {
    const podKind = kindInfo('Pod');
    let name = podArg;
    if (podArg.includes('/')) {
      const [target] = parseResourceArgs([podArg]);
      if (target!.kind.kind !== 'Pod') throw new CliError(`logs are only available for pods, not ${target!.kind.plural}`);
      name = target!.name!;
    }
    const tailLines = parseTail(opts.tail);
    const client = ctx.client(command);
    const ns = opts.namespace || DEFAULT_NAMESPACE;
    if (opts.follow) return follow(ctx, client, ns, name, opts.container, tailLines);
    const text = await client.getText(`${objectPath(podKind, ns, name)}/log`, {
      container: opts.container,
      tailLines,
    });
    ctx.io.stdout(text);
  });
}
