/**
 * The agent's event journal on a real disk: what survives a restart, what an acknowledgement removes,
 * the bound with its drop count, a torn last line, and a damaged file moved aside.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { EventJournal, JOURNAL_FILE } from '../../agent/journal.js';
import type { payloads } from '../../src/contract/index.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function freshPath(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'drover-journal-'));
  dirs.push(d);
  return join(d, JOURNAL_FILE);
}

const ev = (n: number): payloads.AgentEvent => ({
  type: 'Warning',
  reason: 'BackOff',
  message: `event ${n}`,
  ts: new Date(1_700_000_000_000 + n).toISOString(),
  involved: { kind: 'Pod', namespace: 'default', name: `p${n}` },
});

/** Opens the journal at `path` as a restarted agent would. */
async function reopen(path: string, capacity?: number): Promise<{ j: EventJournal; corrupt?: string }> {
  const j = new EventJournal({ path, ...(capacity ? { capacity } : {}) });
  const { corrupt } = await j.load();
  return { j, ...(corrupt ? { corrupt } : {}) };
}

describe('event journal on disk', () => {
  it('unsent events survive a restart; acknowledged ones do not come back', async () => {
    const path = await freshPath();
    const j = new EventJournal({ path });
    await j.load();
    for (let i = 1; i <= 5; i++) j.push(ev(i));
    const batch = j.take(3);
    assert.deepEqual(batch.events.map((e) => e.message), ['event 1', 'event 2', 'event 3']);
    batch.ack();
    await j.close();

    const { j: again } = await reopen(path);
    assert.equal(again.size, 2);
    assert.deepEqual(again.take().events.map((e) => e.message), ['event 4', 'event 5']);
    await again.close();
  });

  it('events carry their journal position, so a batch taken again (not acknowledged) repeats the same positions', async () => {
    const j = new EventJournal({ path: await freshPath() });
    await j.load();
    for (let i = 1; i <= 3; i++) j.push(ev(i));
    const first = j.take(2).events.map((e) => e.seq);
    const again = j.take(3).events.map((e) => e.seq);
    assert.deepEqual(again.slice(0, 2), first);
    assert.ok(again[2]! > again[1]! && again[1]! > again[0]!, `positions increase: ${again.join(',')}`);
    await j.close();
  });

  it('a batch taken but never acknowledged (link dropped) is sent again after a restart', async () => {
    const path = await freshPath();
    const j = new EventJournal({ path });
    await j.load();
    j.push(ev(1));
    j.push(ev(2));
    assert.equal(j.take().events.length, 2);
    await j.close();
    const { j: again } = await reopen(path);
    assert.deepEqual(again.take().events.map((e) => e.message), ['event 1', 'event 2']);
    await again.close();
  });

  it('is bounded: the oldest are dropped first and the count is kept across restarts until reported', async () => {
    const path = await freshPath();
    const j = new EventJournal({ path, capacity: 3 });
    await j.load();
    for (let i = 1; i <= 7; i++) j.push(ev(i));
    assert.equal(j.size, 3);
    assert.equal(j.droppedCount, 4);
    await j.close();

    const { j: again } = await reopen(path, 3);
    const batch = again.take();
    assert.deepEqual(batch.events.map((e) => e.message), ['event 5', 'event 6', 'event 7']);
    assert.equal(batch.dropped, 4);
    batch.ack();
    assert.equal(again.droppedCount, 0, 'a reported drop count is not reported twice');
    await again.close();
    const { j: third } = await reopen(path, 3);
    assert.equal(third.size, 0);
    assert.equal(third.droppedCount, 0);
    await third.close();
  });

  it('a torn last line (power cut mid-append) is ignored; the rest is kept', async () => {
    const path = await freshPath();
    const j = new EventJournal({ path });
    await j.load();
    j.push(ev(1));
    j.push(ev(2));
    await j.close();
    await appendFile(path, '{"seq":3,"event":{"type":"Warn');
    const { j: again, corrupt } = await reopen(path);
    assert.equal(corrupt, undefined);
    assert.deepEqual(again.take().events.map((e) => e.message), ['event 1', 'event 2']);
    // The file was rewritten without the torn tail: new appends parse.
    again.push(ev(4));
    await again.close();
    const { j: third } = await reopen(path);
    assert.deepEqual(third.take().events.map((e) => e.message), ['event 1', 'event 2', 'event 4']);
    await third.close();
  });

  it('a damaged file is moved aside and reported; the journal starts empty and keeps working', async () => {
    const path = await freshPath();
    await writeFile(path, '{"format":1,"dropped":0,"seq":0}\nthis is not json\n{"seq":1,"event":{}}\n');
    const { j, corrupt } = await reopen(path);
    assert.match(corrupt ?? '', /event journal .* is corrupt .*moved to .*corrupt-/);
    assert.equal(j.size, 0);
    const names = await readdir(join(path, '..'));
    assert.ok(names.some((n) => n.startsWith(`${JOURNAL_FILE}.corrupt-`)), `moved aside: ${names.join(', ')}`);
    j.push(ev(9));
    await j.close();
    const { j: again } = await reopen(path);
    assert.deepEqual(again.take().events.map((e) => e.message), ['event 9']);
    await again.close();
  });

  it('a journal of a newer format is not guessed at', async () => {
    const path = await freshPath();
    await writeFile(path, '{"format":99,"dropped":0,"seq":0}\n');
    const { corrupt } = await reopen(path);
    assert.match(corrupt ?? '', /unknown journal format 99/);
  });

  it('compacts once everything is delivered: the file does not grow without bound', async () => {
    const path = await freshPath();
    const j = new EventJournal({ path, capacity: 10 });
    await j.load();
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 10; i++) j.push(ev(round * 10 + i));
      j.take().ack();
    }
    await j.close();
    const lines = (await readFile(path, 'utf8')).split('\n').filter(Boolean);
    assert.ok(lines.length <= 30, `${lines.length} lines left after 200 delivered events`);
  });
});
