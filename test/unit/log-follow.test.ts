import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FollowerLimit, followLog, linesAfter, stampNanos, stampedLines, type FollowFetch } from '../../server/api/log-follow.js';
import { TooManyRequestsError } from '../../src/util/errors.js';

const T = (s: string) => `2026-11-28T03:00:${s}Z`;

describe('log follow', () => {
  it('reads RFC 3339 stamps to the nanosecond, with offsets', () => {
    assert.equal(stampNanos('2026-11-28T03:00:01.5Z')! - stampNanos('2026-11-28T03:00:01Z')!, 500_000_000n);
    assert.equal(stampNanos('2026-11-28T03:00:01.000000001Z')! - stampNanos('2026-11-28T03:00:01Z')!, 1n);
    assert.equal(stampNanos('2026-11-28T04:00:01+01:00'), stampNanos('2026-11-28T03:00:01Z'));
    assert.equal(stampNanos('yesterday'), undefined);
  });

  it('a re-read from the last second skips exactly the lines already sent, equal stamps included', () => {
    const first = stampedLines(`${T('01.1')} a\n${T('02.5')} b\n${T('02.5')} c\n`);
    const one = linesAfter(first, undefined);
    assert.deepEqual(one.fresh.map((l) => l.raw), [`${T('01.1')} a\n`, `${T('02.5')} b\n`, `${T('02.5')} c\n`]);
    // The runtime's --since 03:00:02 returns b and c again, then a third line of the same time and a later one.
    const again = stampedLines(`${T('02.5')} b\n${T('02.5')} c\n${T('02.5')} c\n${T('03.0')} d\n`);
    const two = linesAfter(again, one.cursor);
    assert.deepEqual(two.fresh.map((l) => l.raw), [`${T('02.5')} c\n`, `${T('03.0')} d\n`]);
    assert.deepEqual(linesAfter(again, two.cursor).fresh, []);
  });

  it('streams the log, then only new lines, strips stamps unless asked, and ends with the pod', async () => {
    const reads: FollowFetch[] = [];
    const logs = [`${T('01.0')} one\n`, `${T('01.0')} one\n${T('02.0')} two\n`, `${T('02.0')} two\n${T('03.0')} three\n`, `${T('03.0')} three\n${T('04.0')} four\n`];
    const states: Array<'running' | 'ended'> = ['running', 'running', 'ended'];
    let out = '';
    await followLog({
      timestamps: false,
      fetch: async (f) => {
        reads.push(f);
        return logs[reads.length - 1]!;
      },
      podState: async () => states.shift() ?? 'ended',
      write: (c) => void (out += c),
      sleep: async () => undefined,
      closed: () => false,
    });
    assert.equal(out, 'one\ntwo\nthree\nfour\n');
    assert.deepEqual(reads.map((r) => r.sinceTime), [undefined, T('01'), T('02'), T('03')]);
  });

  it('stops when the client leaves or the pod is gone; a failed read is tried again', async () => {
    let out = '';
    let n = 0;
    let closed = false;
    const errors: unknown[] = [];
    await followLog({
      timestamps: true,
      fetch: async () => {
        n++;
        if (n === 2) throw new Error('node unreachable');
        if (n === 3) closed = true;
        return `${T(`0${n}.0`)} line${n}\n`;
      },
      podState: async () => 'running',
      write: (c) => void (out += c),
      sleep: async () => undefined,
      closed: () => closed,
      onFetchError: (e) => errors.push(e),
    });
    assert.equal(out, `${T('01.0')} line1\n${T('03.0')} line3\n`);
    assert.equal(errors.length, 1);
    let gone = '';
    await followLog({ timestamps: false, fetch: async () => `${T('01.0')} x\n`, podState: async () => 'gone', write: (c) => void (gone += c), sleep: async () => undefined, closed: () => false });
    assert.equal(gone, 'x\n');
  });
});

describe('FollowerLimit: log follows held per identity', () => {
  it('a token past its limit is refused with 429 naming the limit; another token is not affected; a release frees a place once', () => {
    const limit = new FollowerLimit(2);
    const a1 = limit.acquire('token/ci');
    limit.acquire('token/ci');
    assert.throws(
      () => limit.acquire('token/ci'),
      (e: unknown) => e instanceof TooManyRequestsError && e.code === 429 && /at most 2 at once/.test(e.message),
    );
    const b = limit.acquire('token/ops');
    assert.equal(limit.held('token/ops'), 1);
    a1();
    a1();
    assert.equal(limit.held('token/ci'), 1, 'a second release of the same follow frees nothing more');
    limit.acquire('token/ci');
    assert.throws(() => limit.acquire('token/ci'), TooManyRequestsError);
    b();
    assert.equal(limit.held('token/ops'), 0);
  });
});
