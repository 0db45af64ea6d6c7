/**
 * `GET .../pods/NAME/log?follow=true` (kubectl logs -f): the log as it is, then new lines as the
 * container writes them, until the pod ends, is deleted, or the client hangs up. The agent answers
 * a log request once (over MQTT, no stream), so the server asks again every second for what came
 * after the last line it sent, by the lines' own times (the runtime's --timestamps): nothing is
 * sent twice and nothing skipped, whatever the log's length.
 */
import { TooManyRequestsError } from '../../src/util/errors.js';

/** One poll's log request: always with timestamps (the cursor), the rest as the client asked. */
export interface FollowFetch {
  /** RFC 3339 time of the last line sent, truncated to the second; absent on the first fetch. */
  sinceTime?: string;
  first: boolean;
}

export interface FollowDeps {
  /** The log with RFC 3339 timestamps on every line, from sinceTime on (inclusive) when given. */
  fetch(f: FollowFetch): Promise<string>;
  /** 'running' while the log may grow; 'ended' once the pod finished (one last fetch), 'gone' when it is no more. */
  podState(): Promise<'running' | 'ended' | 'gone'>;
  write(chunk: string): void;
  /** Resolves after `ms`, or at once when the client is gone. */
  sleep(ms: number): Promise<void>;
  /** True once the client hung up. */
  closed(): boolean;
  /** Whether the client asked for timestamps (otherwise they are cut off before writing). */
  timestamps: boolean;
  /** A fetch failed (node briefly unreachable): the follow goes on; the caller may log it. */
  onFetchError?(err: unknown): void;
  pollMs?: number;
}

/** A stamped line's time as nanoseconds since the epoch (RFC 3339 with up to 9 fraction digits). */
export function stampNanos(stamp: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(stamp);
  if (!m) return undefined;
  const secs = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(secs)) return undefined;
  return BigInt(secs) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

interface Line {
  at: bigint;
  stamp: string;
  /** The whole line as the runtime gave it (stamp, space, text, newline). */
  raw: string;
}

/** Splits a stamped log into lines; a line without a stamp (a continuation) keeps the previous line's time. */
export function stampedLines(text: string): Line[] {
  const out: Line[] = [];
  let prev: { at: bigint; stamp: string } = { at: -1n, stamp: '' };
  for (const raw of text.match(/[^\n]*\n|[^\n]+$/g) ?? []) {
    const sp = raw.indexOf(' ');
    const at = sp > 0 ? stampNanos(raw.slice(0, sp)) : undefined;
    if (at !== undefined) prev = { at, stamp: raw.slice(0, sp) };
    out.push({ ...prev, raw });
  }
  return out;
}

/**
 * The cursor: the time of the last line sent and how many lines of that exact time were sent, so a
 * re-read from that time (inclusive) skips exactly those.
 */
export interface Cursor {
  at: bigint;
  sentAtLast: number;
}

/** The lines of a re-read that come after the cursor, and the cursor after them (pure). */
export function linesAfter(lines: Line[], cur: Cursor | undefined): { fresh: Line[]; cursor: Cursor | undefined } {
  let cursor = cur;
  const fresh: Line[] = [];
  let skipAtLast = cur?.sentAtLast ?? 0;
  for (const l of lines) {
    if (cur && l.at < cur.at) continue;
    if (cur && l.at === cur.at && skipAtLast > 0) {
      skipAtLast--;
      continue;
    }
    fresh.push(l);
    cursor = cursor && cursor.at === l.at ? { at: l.at, sentAtLast: cursor.sentAtLast + 1 } : { at: l.at, sentAtLast: 1 };
  }
  return { fresh, cursor };
}

/** RFC 3339 of a nanosecond time, truncated to the second (what every runtime's --since takes). */
function secondOf(at: bigint): string {
  return new Date(Number(at / 1_000_000_000n) * 1000).toISOString().replace('.000Z', 'Z');
}

function unstamped(l: Line): string {
  const sp = l.raw.indexOf(' ');
  return sp > 0 && l.raw.slice(0, sp) === l.stamp ? l.raw.slice(sp + 1) : l.raw;
}

/** Streams the log until the pod ends or is gone, or the client leaves. The first fetch's errors are the caller's. */
export async function followLog(d: FollowDeps): Promise<void> {
  const send = (lines: Line[]) => {
    if (lines.length) d.write(lines.map((l) => (d.timestamps ? l.raw : unstamped(l))).join(''));
  };
  let { fresh, cursor } = linesAfter(stampedLines(await d.fetch({ first: true })), undefined);
  send(fresh);
  for (;;) {
    await d.sleep(d.pollMs ?? 1000);
    if (d.closed()) return;
    const state = await d.podState();
    if (state === 'gone') return;
    let text: string;
    try {
      text = await d.fetch({ first: false, ...(cursor ? { sinceTime: secondOf(cursor.at) } : {}) });
    } catch (err) {
      if (state === 'ended') return;
      d.onFetchError?.(err);
      continue;
    }
    ({ fresh, cursor } = linesAfter(stampedLines(text), cursor));
    send(fresh);
    if (state === 'ended') return;
  }
}

/** `kubectl logs -f` streams one identity may hold at once: each asks its pod's node once a second. */
export const FOLLOWERS_PER_IDENTITY = 8;

/**
 * Counts the open log follows per identity (a token's name): each one polls a node over MQTT every
 * second for as long as its client stays connected, so a token that opens many would load the nodes
 * and the link; past the limit a new follow is refused with 429 before anything is asked.
 */
export class FollowerLimit {
  private readonly open = new Map<string, number>();

  constructor(private readonly max = FOLLOWERS_PER_IDENTITY) {}

  /** Takes a place for `identity`, or throws TooManyRequestsError; call the returned release once, when the follow ends. */
  acquire(identity: string): () => void {
    const n = this.open.get(identity) ?? 0;
    if (n >= this.max) throw new TooManyRequestsError(`${identity} already follows ${n} pod logs (at most ${this.max} at once): stop one (Ctrl-C) or read without -f`);
    this.open.set(identity, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(identity) ?? 1) - 1;
      if (left > 0) this.open.set(identity, left);
      else this.open.delete(identity);
    };
  }

  /** Follows open now for `identity`. */
  held(identity: string): number {
    return this.open.get(identity) ?? 0;
  }
}
