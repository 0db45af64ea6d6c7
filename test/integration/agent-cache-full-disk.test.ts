/**
 * The agent's state directory on a full disk (a tiny tmpfs, filled up): a new desired state is still
 * applied, the failure is reported, the old cache file stays intact, and a later save works once
 * there is room again.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { TargetState } from '../../agent/target.js';
import type { payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';

const desired = (generation: number, pods: number): payloads.Desired => ({
  node: 'edge-full',
  generation,
  ts: new Date().toISOString(),
  configMaps: [],
  secrets: [],
  pods: Array.from({ length: pods }, (_, i) => ({
    uid: `uid-${generation}-${i}`,
    namespace: 'default',
    name: `p${i}`,
    spec: { containers: [{ name: 'main', image: 'localhost/app:1', command: ['sh', '-c', 'x'.repeat(200)] }], restartPolicy: 'Always' },
  })) as never,
});

describe('desired-state cache on a full disk (tmpfs)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-full-'));
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  });
  after(async () => {
    await execa('umount', [dir]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  test('a snapshot that cannot be saved is applied anyway and reported; the old cache stays readable', async () => {
    const target = new TargetState(dir, silentLogger);
    assert.equal(await target.accept(desired(1, 1)), true);
    assert.equal(target.saveError, undefined);
    const before = await readFile(join(dir, 'desired.json'), 'utf8');

    // Fill the disk, then send a snapshot too big for what is left.
    await writeFile(join(dir, 'filler'), Buffer.alloc(60 * 1024)).catch(() => {});
    assert.equal(await target.accept(desired(2, 40)), true, 'applied although it could not be saved');
    assert.equal(target.desired?.generation, 2);
    assert.match(target.saveError ?? '', /ENOSPC|no space/i);
    assert.equal(await readFile(join(dir, 'desired.json'), 'utf8'), before, 'the previous cache is intact');

    // Room again: the next snapshot is saved and a restarted agent reads it.
    await rm(join(dir, 'filler'));
    assert.equal(await target.accept(desired(3, 2)), true);
    assert.equal(target.saveError, undefined);
    const reloaded = await new TargetState(dir, silentLogger).load('edge-full');
    assert.equal(reloaded.desired?.generation, 3);
    assert.equal(reloaded.corrupt, undefined);
  });
});
