/**
 * The audit log on disk: JSON lines, 0600, rotated by size to audit.log.1 … audit.log.N with the
 * oldest dropped, flags checked. Written past the limit through the real rotating-file-stream.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuditLog, parseAuditSize, type AuditEntry } from '../../server/audit/log.js';
import { ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'drover-audit-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const record = (i: number) => ({ who: { kind: 'token' as const, tokenId: 'abc123', role: 'admin', remote: '127.0.0.1' }, verb: 'create', resource: { kind: 'pods', namespace: 'default', name: `pod-${i}` }, result: 201 });

async function lines(file: string): Promise<AuditEntry[]> {
  return (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

describe('audit log', () => {
  it('rotates by size: written past the limit, the old records move to audit.log.1 and the oldest files are dropped', async () => {
    const dir = join(root, 'rotate');
    const log = await AuditLog.open({ dataDir: dir, logger: silentLogger, maxSize: '2K', maxFiles: 2 });
    // ~150 bytes a record: 200 records are ~30 KB, many times the 2 KB limit.
    for (let i = 0; i < 200; i++) {
      log.write(record(i));
      // Let the stream notice its size between writes, as a server's requests would.
      if (i % 5 === 4) await new Promise((r) => setImmediate(r));
    }
    await log.close();
    const files = (await readdir(dir)).sort();
    assert.deepEqual(files, ['audit.log', 'audit.log.1', 'audit.log.2'], 'maxFiles 2 keeps two rotated files');
    for (const f of files) {
      const st = await stat(join(dir, f));
      assert.equal(st.mode & 0o777, 0o600, f);
      assert.ok(st.size < 4096, `${f} is ${st.size} bytes, far past the 2K limit`);
    }
    const current = await lines(join(dir, 'audit.log'));
    const older = await lines(join(dir, 'audit.log.1'));
    const oldest = await lines(join(dir, 'audit.log.2'));
    assert.ok(older.length > 0 && oldest.length > 0);
    // Oldest file first: the records read in order, end with the last one written, and the first
    // ones went with the file rotated out.
    const order = [...oldest, ...older, ...current].map((e) => Number(e.resource.name!.slice(4)));
    assert.deepEqual(order, [...order].sort((a, b) => a - b));
    assert.equal(new Set(order).size, order.length);
    assert.equal(order.at(-1), 199);
    assert.ok(order[0]! > 0, 'nothing was dropped');
    assert.deepEqual(Object.keys(older[0]!), ['ts', 'who', 'verb', 'resource', 'result']);
  });

  it('a reason is one bounded line, and a token in it keeps only its id', async () => {
    const dir = join(root, 'scrub');
    const log = await AuditLog.open({ dataDir: dir, logger: silentLogger });
    const token = `q1w2e3.${'S'.repeat(32)}`;
    log.write({ ...record(1), result: 404, reason: `token "${token}" not found\nforged: line`, resource: { kind: 'route', path: `/drover/v1/tokens/${token}` } });
    log.write({ ...record(2), result: 422, reason: 'x'.repeat(5000) });
    // Glued to other text (an unknown field named after it): still cut to its id.
    log.write({ ...record(3), result: 422, reason: `invalid ConfigMap: bogus${token}: unknown field` });
    await log.close();
    const text = await readFile(join(dir, 'audit.log'), 'utf8');
    assert.equal(text.split('\n').filter(Boolean).length, 3, 'a newline in a reason forged a record');
    assert.ok(!text.includes('S'.repeat(32)));
    const [a, b, c] = await lines(join(dir, 'audit.log'));
    assert.equal(c!.reason, 'invalid ConfigMap: bogusq1w2e3.<redacted>: unknown field');
    assert.equal(a!.resource.path, '/drover/v1/tokens/q1w2e3.<redacted>');
    assert.ok(b!.reason!.length <= 301);
  });

  it('an existing audit.log readable by others is tightened to 0600; bad flags name themselves', async () => {
    const dir = join(root, 'loose');
    await AuditLog.open({ dataDir: dir, logger: silentLogger }).then((l) => l.close());
    await writeFile(join(dir, 'audit.log'), '', { mode: 0o644 });
    const { chmod } = await import('node:fs/promises');
    await chmod(join(dir, 'audit.log'), 0o644);
    const log = await AuditLog.open({ dataDir: dir, logger: silentLogger });
    await log.close();
    assert.equal((await stat(join(dir, 'audit.log'))).mode & 0o777, 0o600);
    assert.equal(parseAuditSize('10M'), '10M');
    for (const bad of ['10', '10MB', '-1M', '0M', 'big']) {
      assert.throws(() => parseAuditSize(bad), (e: unknown) => e instanceof ValidationError && e.causes[0]!.field === 'audit-log-max-size', bad);
    }
    await assert.rejects(AuditLog.open({ dataDir: dir, logger: silentLogger, maxFiles: 0 }), /audit-log-max-files/);
  });
});
