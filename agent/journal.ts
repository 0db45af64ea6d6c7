import { randomUUID } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { payloads } from '../src/contract/index.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';
import { silentLogger } from '../src/util/logger.js';
import { ensurePrivateDir } from '../src/util/private-fs.js';
import { moveAside, readStateFile, writeFileAtomic } from './state-file.js';

/** The journal's file name in the agent's state directory. */
export const JOURNAL_FILE = 'events.jsonl';

/** On-disk format of the journal file; a newer agent must keep reading older ones. */
export const JOURNAL_FORMAT = 1;

/** An event message longer than this is cut: one runaway message must not make a batch too big to send. */
const MAX_MESSAGE_CHARS = 4096;

/**
 * One line of the journal file (JSON Lines, append-only between compactions):
 * - `{"format":1,"dropped":N,"seq":S}` header, first line, written by a compaction: N events were
 *   dropped unsent so far, S is the sequence number of the last event ever assigned;
 * - `{"seq":S,"event":{...}}` an event, S increasing by one per event;
 * - `{"ack":S,"dropped":N}` every event up to S reached the server; N events are still counted as
 *   dropped (the drops reported with that batch are no longer counted).
 */
type Line = { format: number; dropped: number; seq: number } | { seq: number; event: payloads.AgentEvent } | { ack: number; dropped: number };

interface Entry {
  seq: number;
  event: payloads.AgentEvent;
}

export interface JournalOptions {
  /** The journal file; without one the journal lives in memory only. */
  path?: string;
  /** Events kept at most; beyond that the oldest are dropped and counted. */
  capacity?: number;
  logger?: Logger;
}

export interface JournalBatch {
  events: payloads.AgentEvent[];
  dropped: number;
  /** The batch reached the server: forget it (on disk too). */
  ack(): void;
}

/**
 * Events waiting to reach the server. Bounded: when the link is down for long, the oldest events
 * are dropped first and counted, and the count is reported so the loss is visible.
 *
 * With a path, the journal is persistent: every event is appended to a JSON Lines file before it is
 * sent, and an `ack` line is appended once a batch is delivered, so events of an offline period
 * survive an agent restart (or a power cut, up to the last write). Replaying the lines applies the
 * same bounded rules as the live journal, so both agree. The file is compacted (rewritten atomically:
 * temp file, fsync, rename, fsync of the directory) when everything was delivered or it grew past
 * twice the capacity. A torn last line (power cut mid-append) is ignored; any other damage moves
 * the file aside and is reported, never fatal.
 */
export class EventJournal {
  private entries: Entry[] = [];
  private dropped = 0;
  private seq = 0;
  /**
   * Names this run of the journal for the server, which records an event only when its seq is past
   * the last one seen from the same id: a batch delivered twice is recorded once.
   */
  readonly id = randomUUID();
  /** Lines in the file since the last compaction. */
  private lines = 0;
  private readonly capacity: number;
  private readonly path: string | undefined;
  private readonly logger: Logger;
  private pending: string[] = [];
  private compactWanted = false;
  private writer: Promise<void> = Promise.resolve();
  private writing = false;
  private fh: FileHandle | undefined;
  private diskBroken = false;
  /** Highest event sequence number read back by load(). */
  private lastReplayed = 0;

  constructor(opts: JournalOptions | number = {}) {
    const o = typeof opts === 'number' ? { capacity: opts } : opts;
    this.capacity = o.capacity ?? 1000;
    this.path = o.path;
    this.logger = o.logger ?? silentLogger;
  }

  /** Events waiting to be sent. */
  get size(): number {
    return this.entries.length;
  }

  /** Events dropped unsent (journal full) and not reported yet. */
  get droppedCount(): number {
    return this.dropped;
  }

  /**
   * Reads the journal file back (events of an earlier run that did not reach the server). Returns a
   * message when the file was damaged and moved aside; the journal then starts empty.
   */
  async load(): Promise<{ corrupt?: string }> {
    if (!this.path) return {};
    // A compaction interrupted by a power cut leaves its temp file: the journal itself is intact.
    const { text, unreadable } = await readStateFile(this.path, this.logger);
    if (unreadable) return this.moveAside(unreadable);
    if (text === undefined) return {};
    const rows = text.split('\n');
    // Every complete line ends with "\n": whatever follows the last one is a torn append.
    const torn = rows.pop();
    try {
      for (const row of rows) this.replay(JSON.parse(row) as Line);
    } catch (err) {
      this.entries = [];
      this.dropped = 0;
      this.seq = 0;
      return this.moveAside(errorMessage(err));
    }
    this.lines = rows.length;
    if (torn) this.logger.warn({ path: this.path }, 'event journal: incomplete last line ignored (interrupted write)');
    // Start from a clean file: drops the torn tail and the delivered events.
    this.compactWanted = true;
    this.schedule();
    await this.writer;
    return {};
  }

  private moveAside(reason: string): Promise<{ corrupt: string }> {
    return moveAside(this.path!, 'event journal', reason, this.logger);
  }


  private replay(line: Line): void {
    if (typeof line !== 'object' || line === null) throw new Error('a line is not an object');
    if ('format' in line) {
      if (typeof line.format !== 'number' || line.format > JOURNAL_FORMAT) throw new Error(`unknown journal format ${String(line.format)}`);
      this.dropped = nonNegative(line.dropped);
      this.seq = Math.max(this.seq, nonNegative(line.seq));
    } else if ('event' in line) {
      const seq = nonNegative(line.seq);
      const event = payloads.agentEvent.parse(line.event);
      // A line seen twice (a write retried after an error) counts once.
      if (seq <= this.lastReplayed) return;
      this.lastReplayed = seq;
      this.add({ seq, event });
      this.seq = Math.max(this.seq, seq);
    } else if ('ack' in line) {
      this.forget(nonNegative(line.ack));
      this.dropped = nonNegative(line.dropped);
    } else {
      throw new Error(`unknown journal line ${JSON.stringify(line).slice(0, 100)}`);
    }
  }

  private add(entry: Entry): void {
    this.entries.push(entry);
    if (this.entries.length > this.capacity) {
      const over = this.entries.length - this.capacity;
      this.dropped += over;
      this.entries.splice(0, over);
    }
  }

  private forget(throughSeq: number): void {
    const i = this.entries.findIndex((e) => e.seq > throughSeq);
    this.entries = i < 0 ? [] : this.entries.slice(i);
  }

  push(e: payloads.AgentEvent): void {
    const event = e.message.length > MAX_MESSAGE_CHARS ? { ...e, message: `${e.message.slice(0, MAX_MESSAGE_CHARS)}…` } : e;
    const entry = { seq: ++this.seq, event };
    this.add(entry);
    this.append({ seq: entry.seq, event });
  }

  /** Up to `max` of the oldest events (and the drop count) for sending; nothing is removed before `ack`. */
  take(max = 200): JournalBatch {
    const batch = this.entries.slice(0, max);
    const dropped = this.dropped;
    const last = batch.at(-1)?.seq ?? 0;
    return {
      events: batch.map((b) => ({ ...b.event, seq: b.seq })),
      dropped,
      ack: () => {
        this.forget(last);
        // Drops counted while the batch was on its way are still to be reported.
        this.dropped = Math.max(0, this.dropped - dropped);
        this.append({ ack: last, dropped: this.dropped });
        if (this.entries.length === 0 || this.lines > 2 * this.capacity) this.compactWanted = true;
      },
    };
  }

  /** Resolves once everything pushed or acknowledged so far is on disk. */
  async flush(): Promise<void> {
    await this.writer;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.closeFile();
  }

  /** Closes the append handle; a failed close loses nothing (every append was fsynced), so it is logged only. */
  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch((err: unknown) => this.logger.warn({ err: errorMessage(err), path: this.path }, 'cannot close the event journal'));
  }

  private append(line: Line): void {
    if (!this.path) return;
    this.pending.push(`${JSON.stringify(line)}\n`);
    this.schedule();
  }

  /** One writer at a time; lines pushed meanwhile go out together in the next write. */
  private schedule(): void {
    if (!this.path || this.writing) return;
    this.writing = true;
    this.writer = this.writer.then(async () => {
      try {
        while (this.pending.length > 0 || this.compactWanted) {
          if (this.compactWanted) {
            // The snapshot and clearing the pending lines happen together: lines pushed while the
            // compaction is written are appended after it.
            this.compactWanted = false;
            this.pending = [];
            await this.compact(this.snapshot());
          } else {
            const chunk = this.pending.join('');
            const n = this.pending.length;
            this.pending = [];
            await this.writeLines(chunk, n);
          }
        }
      } catch (err) {
        if (!this.diskBroken) this.logger.error({ err: errorMessage(err), path: this.path }, 'cannot write the event journal; offline events are kept in memory only');
        this.diskBroken = true;
        this.pending = [];
        await this.closeFile();
        // The next compaction rewrites the whole file from memory, which heals it.
        this.compactWanted = true;
      } finally {
        this.writing = false;
      }
    });
  }

  private async writeLines(chunk: string, n: number): Promise<void> {
    if (!this.fh) {
      await ensurePrivateDir(dirname(this.path!), this.logger);
      this.fh = await open(this.path!, 'a', 0o600);
      // A journal made by an older version may be looser than `open` asks for (it does not change modes).
      await this.fh.chmod(0o600);
    }
    await this.fh.appendFile(chunk);
    await this.fh.sync();
    this.lines += n;
    this.diskBroken = false;
  }

  /** The whole journal as file content: a header and the events not delivered yet. */
  private snapshot(): { body: string; lines: number } {
    const header: Line = { format: JOURNAL_FORMAT, dropped: this.dropped, seq: this.seq };
    const lines = [header, ...this.entries.map((e): Line => ({ seq: e.seq, event: e.event }))];
    return { body: lines.map((l) => `${JSON.stringify(l)}\n`).join(''), lines: lines.length };
  }

  private async compact({ body, lines }: { body: string; lines: number }): Promise<void> {
    const path = this.path!;
    await this.closeFile();
    await writeFileAtomic(path, body, this.logger);
    this.lines = lines;
    this.diskBroken = false;
  }
}

function nonNegative(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new Error(`bad number ${String(n)} in journal`);
  return n;
}
