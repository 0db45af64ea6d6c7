/**
 * Requests the server relays from a user (`drover logs`, `drover exec`), answered from the runtime.
 */
import type { payloads } from '../src/contract/index.js';
import { LOG_OPTIONS } from '../src/contract/payloads.js';
import { epochMs } from './engine/match.js';
import { LABELS } from './engine/naming.js';
import type { ContainerRuntime, LogOptions, RuntimeContainer } from './runtime/types.js';
import { compareStrings } from '../src/util/compare.js';

type LogsRequest = Extract<payloads.Request, { op: 'logs' }>;

/**
 * Where the previous instance of a container's log lies (pure). Kubernetes' "previous" is the last
 * terminated run. The agent restarts a container in place (one container, one log for all its runs):
 * - a running container that ran before: its log up to the end of the run before (podman keeps that
 *   end in finishedAt: `keepsLastRunEnd`; with nerdctl the current run's start stands in, and an
 *   empty answer means there was none);
 * - an exited container (restarting, or done): that run, which is the last terminated one;
 * - a container replaced by a new one (spec change) and still kept: the old container's whole log.
 * Earlier runs of the same container come along: the runtime keeps no boundary between them.
 * `older` is the newest other container of the same pod container, if any.
 */
export function previousLog(current: RuntimeContainer, older: RuntimeContainer | undefined, keepsLastRunEnd: boolean): { id: string; until?: string; emptyIsNone?: boolean } | undefined {
  if (current.state === 'running' || current.state === 'paused' || current.state === 'stopping') {
    const end = epochMs(current.exact?.finishedAt);
    const start = epochMs(current.exact?.startedAt);
    if (keepsLastRunEnd && end) return { id: current.id, until: runsBoundary(end, start) };
    if (older) return { id: older.id };
    return !keepsLastRunEnd && start ? { id: current.id, until: new Date(start - RUN_START_SLACK_MS).toISOString(), emptyIsNone: true } : undefined;
  }
  if (current.state === 'exited') return { id: current.id };
  return older ? { id: older.id } : undefined;
}

/**
 * How far a run's recorded times may miss its log lines' times: podman records a run's end to the
 * millisecond at best (its last lines may carry a later time by a fraction of one) and its start a few
 * milliseconds after the process began printing. Two runs lie at least the agent's exit settle
 * (750 ms) apart, so the cut goes halfway into the gap, at most this far from the end.
 */
const RUN_END_SLACK_MS = 500;
const RUN_START_SLACK_MS = 250;

/** The time between the end of one run and the start of the next where the log is cut (ISO, ms). */
export function runsBoundary(endMs: number, nextStartMs: number): string {
  const gap = nextStartMs > endMs ? nextStartMs - endMs : 2 * RUN_END_SLACK_MS;
  return new Date(endMs + Math.min(RUN_END_SLACK_MS, Math.floor(gap / 2))).toISOString();
}

/** The runtime's log options for a request (pure); `now` is the agent's clock, as the log's times are. */
export function logOptions(req: Pick<LogsRequest, 'tail' | 'sinceSeconds' | 'sinceTime' | 'timestamps'>, now: number): LogOptions {
  const since = req.sinceSeconds !== undefined ? new Date(now - req.sinceSeconds * 1000).toISOString() : req.sinceTime;
  return {
    ...(req.tail !== undefined ? { tail: req.tail } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(req.timestamps ? { timestamps: true } : {}),
  };
}

/** The last `n` lines of a log (all of it when n is undefined); a last line without newline counts. */
export function lastLines(text: string, n: number | undefined): string {
  if (n === undefined) return text;
  if (n === 0) return '';
  const lines = text.split(/(?<=\n)/);
  return lines.slice(Math.max(0, lines.length - n)).join('');
}

/** The first `limit` bytes of a log (kubectl --limit-bytes); a character cut in two is dropped. */
export function limitBytes(text: string, limit: number | undefined): string {
  if (limit === undefined) return text;
  const buf = Buffer.from(text);
  if (buf.length <= limit) return text;
  return buf.subarray(0, limit).toString().replace(/\uFFFD$/, '');
}

export class RequestHandler {
  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly now: () => number = Date.now,
  ) {}

  async handle(req: payloads.Request): Promise<payloads.Response> {
    // The newest container of the pod first (a replaced one may stay until cleanup).
    const all = await this.runtime.list({ [LABELS.managed]: 'true' });
    const found = all
      .filter((x) => x.labels[LABELS.namespace] === req.namespace && x.labels[LABELS.pod] === req.pod && (!req.uid || x.labels[LABELS.podUid] === req.uid) && (!req.container || x.labels[LABELS.container] === req.container))
      .sort((a, b) => compareStrings(b.createdAt ?? '', a.createdAt ?? ''));
    const c = found[0];
    const what = `pod ${req.namespace}/${req.pod}${req.container ? ` container ${req.container}` : ''}`;
    if (!c) return { ok: false, error: { code: 'NotFound', message: `no container for ${what} on this node (not started yet?)` } };
    switch (req.op) {
      case 'logs':
        return this.logs(req, c, found[1]);
      case 'exec': {
        if (c.state !== 'running') return { ok: false, error: { code: 'Conflict', message: `cannot exec in ${what}: the container is ${c.state}, not running` } };
        const r = await this.runtime.exec(c.id, req.command, req.timeoutSeconds * 1000);
        return { ok: true, data: { exitCode: r.exitCode, output: r.output, timedOut: r.timedOut } satisfies payloads.ExecResult };
      }
    }
  }

  private async logs(req: LogsRequest, listed: RuntimeContainer, older: RuntimeContainer | undefined): Promise<payloads.Response> {
    const honoured = LOG_OPTIONS.filter((o) => req[o] !== undefined && req[o] !== false);
    const opts = logOptions(req, this.now());
    let id = listed.id;
    if (req.previous) {
      // The exact times (list() cuts them to the second; two runs may end and start within one).
      const current = (await this.runtime.inspect(listed.id)) ?? listed;
      const prev = previousLog(current, older, this.runtime.keepsLastRunEnd === true);
      const none = { ok: false, error: { code: 'BadRequest', message: `previous terminated container "${req.container ?? listed.labels[LABELS.container]}" in pod "${req.pod}" not found` }, honoured };
      if (!prev) return none;
      id = prev.id;
      let text: string;
      if (prev.until) {
        // podman cuts the last lines before it applies --until (`--tail 1 --until T` is empty when a
        // later run printed): the agent cuts them itself.
        const { tail, ...rest } = opts;
        text = lastLines(await this.runtime.logs(id, { ...rest, until: prev.until }), tail);
      } else {
        text = await this.runtime.logs(id, opts);
      }
      if (prev.emptyIsNone && text === '') return none;
      return { ok: true, data: limitBytes(text, req.limitBytes), honoured };
    }
    return { ok: true, data: limitBytes(await this.runtime.logs(id, opts), req.limitBytes), honoured };
  }
}
