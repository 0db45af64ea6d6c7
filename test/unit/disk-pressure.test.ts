/**
 * The agent's disk-pressure rule (agent/images/disk.ts), pure: a filesystem is under pressure when its
 * free space is below max(10 % of it, 2 × the bytes of the images queued to fetch), and the message
 * says which and why. Then the ImageManager's look with real statfs on a real directory: an image
 * queued that the disk cannot hold twice brings the pressure (a node event, listeners told), and it
 * clears when that image is no longer wanted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { diskPressure, measureSpaces, type FsSpace } from '../../agent/images/disk.js';
import { ImageManager } from '../../agent/images/manager.js';
import { payloads } from '../../src/contract/index.js';
import type { AgentEvent, Status } from '../../src/contract/payloads.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { recordingReporter } from '../helpers/reporter.js';

const GB = 1e9;
const fs = (freeBytes: number, totalBytes = 100 * GB, label = 'state dir', path = '/var/lib/drover'): FsSpace => ({ label, path, totalBytes, freeBytes });

test('pressure below 10 % free, or below twice what is queued, on any filesystem; the message names it and why', () => {
  assert.deepEqual(diskPressure([fs(11 * GB)], 0), { pressure: false, message: 'state dir /var/lib/drover: 11.0 GB free of 100.0 GB' });
  assert.deepEqual(diskPressure([fs(9 * GB)], 0), { pressure: true, message: 'state dir /var/lib/drover: 9.0 GB free of 100.0 GB, below 10.0 GB (10 % of the filesystem)' });
  // 20 GB free is plenty by the 10 % rule, not for a queued 12 GB image (24 GB needed).
  assert.equal(diskPressure([fs(20 * GB)], 9 * GB).pressure, false);
  assert.deepEqual(diskPressure([fs(20 * GB)], 12 * GB), { pressure: true, message: 'state dir /var/lib/drover: 20.0 GB free of 100.0 GB, below 24.0 GB (2 × the 12.0 GB of images queued to fetch)' });
  // Either filesystem is enough: the state dir fine, podman's graphroot short.
  const both = diskPressure([fs(50 * GB), fs(300e6, 4 * GB, 'image store', '/var/lib/containers/storage')], 100e6);
  assert.equal(both.pressure, true);
  assert.equal(both.message, 'state dir /var/lib/drover: 50.0 GB free of 100.0 GB; image store /var/lib/containers/storage: 300.0 MB free of 4.0 GB, below 400.0 MB (10 % of the filesystem)');
  assert.deepEqual(diskPressure([], 5 * GB), { pressure: false, message: 'no filesystem could be measured' });
});

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-disk-pressure-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('measureSpaces: one filesystem counted once; a directory not there is named, not fatal', async () => {
  const { spaces, unmeasured } = await measureSpaces([{ label: 'state dir', path: dir }, { label: 'image store', path: tmpdir() }, { label: 'gone', path: join(dir, 'nope') }]);
  const real = await statfs(dir);
  assert.equal(spaces.length, 1, 'both directories on one filesystem');
  assert.equal(spaces[0]!.totalBytes, real.blocks * real.bsize);
  assert.match(unmeasured.join(), /nope: ENOENT/);
});

test('the manager: an image queued that the disk cannot hold twice brings pressure (node event, listeners told); no longer wanted, it clears', async () => {
  const stateDir = await mkdtemp(join(dir, 'state-'));
  const events: AgentEvent[] = [];
  const m = new ImageManager({
    stateDir,
    runtime: new FakeRuntime(),
    fetcher: () => assert.fail('nothing is fetched: mayFetch is false'),
    mayFetch: () => false,
    node: 'edge-1',
    emit: (e) => events.push({ ts: '', ...e }),
    refreshMs: 60_000,
  });
  let told = 0;
  m.onChange(() => told++);
  await m.start();
  try {
    await m.checkDisk();
    const free = (await statfs(stateDir)).bavail * (await statfs(stateDir)).bsize;
    // A machine with under 10 % free would be under pressure already: the rest says nothing there.
    if (m.diskPressure()!.pressure) return;
    assert.equal(events.length, 0, 'no pressure at the first look: no event');
    const huge = Math.ceil(free / 2) + 1_000_000_000;
    m.setDesired([{ name: 'localhost/huge:1', digest: `sha256:${'a'.repeat(64)}`, size: huge }]);
    const toldBefore = told;
    await m.checkDisk();
    assert.equal(m.diskPressure()!.pressure, true);
    assert.match(m.diskPressure()!.message, /^state dir .*: [\d.]+ [MG]B free of [\d.]+ [MG]B, below [\d.]+ [MG]B \(2 × the [\d.]+ GB of images queued to fetch\)$/);
    assert.ok(told > toldBefore, 'the reporter is told');
    assert.deepEqual(events.map((e) => [e.type, e.reason, e.involved.name]), [['Warning', 'NodeHasDiskPressure', 'edge-1']]);
    m.setDesired([]);
    await m.checkDisk();
    assert.equal(m.diskPressure()!.pressure, false);
    assert.deepEqual(events.map((e) => e.reason), ['NodeHasDiskPressure', 'NodeHasNoDiskPressure']);
  } finally {
    await m.stop();
  }
});

test('the reporter carries diskPressure in the status (accepted by the contract, a long message cut); a change of it alone is sent', () => {
  let disk: Status['diskPressure'] = { pressure: false, message: 'state dir /d: 50.0 GB free of 100.0 GB' };
  const { reporter, sent } = recordingReporter({ digests: () => [], transfers: () => [], diskPressure: () => disk });
  reporter.update({ observedGeneration: 1, pods: [], runtimeHealthy: true });
  assert.deepEqual(sent[0]?.diskPressure, disk);
  disk = { pressure: true, message: 'y'.repeat(10_000) };
  reporter.imagesChanged();
  assert.equal(sent.length, 2);
  const parsed = payloads.status.parse(JSON.parse(JSON.stringify(sent[1])));
  assert.equal(parsed.diskPressure?.pressure, true);
  assert.ok(parsed.diskPressure!.message.length < 10_000);
  reporter.stop();
});
