/**
 * The store on a full disk (a small tmpfs, filled up): writes in flight together fail, each with the
 * cause, and nothing acknowledged before is lost; reads keep working; once there is room again the next
 * write gets the next revision, and every acknowledged write (before and after) is there after a restart.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { LevelStore } from '../../server/store/level.js';
import type { WatchEvent } from '../../server/store/types.js';
import type { ApiObject } from '../../src/api/meta.js';
import { StoreError } from '../../src/util/errors.js';

/** `bytes` of annotation make the object too big for the slack left in LevelDB's last page. */
const pod = (name: string, bytes = 0): ApiObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', annotations: { pad: 'x'.repeat(bytes) } },
  spec: { containers: [{ name: 'c', image: 'nginx' }] },
});

test('full disk: concurrent writes fail with the cause, nothing stored is lost, writes resume with the next revision once there is room', { timeout: 60_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-store-full-'));
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]);
  const path = join(dir, 'db');
  let current: LevelStore | undefined;
  t.after(async () => {
    // The store first: the mount stays busy while LevelDB holds its files.
    await current?.close();
    await execa('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });
  let store = (current = await LevelStore.open({ path }));

  const before = await Promise.all(Array.from({ length: 20 }, (_, i) => store.create(pod(`ok-${i}`, 1000))));
  const rev = store.revision();
  assert.equal(rev, 20);
  const events: WatchEvent[] = [];
  const w = store.watch(rev, (e) => events.push(e));
  t.after(() => w.close());

  // Fill the disk to 16 KiB of room: enough for one small write, not for the group behind it.
  const free0 = await statfs(dir);
  await writeFile(join(dir, 'filler'), Buffer.alloc(free0.bavail * free0.bsize - 16 * 1024));

  // The create goes to disk alone at once; the seven patches of the same object are decided while
  // its batch is written (they read it from the decided writes, no disk read in between), so they
  // share the next batch, 7 x 2 x 16 KiB, which the disk has no room for.
  const grp = store.create(pod('grp'));
  const patches = Array.from({ length: 7 }, (_, i) =>
    store.patch('Pod', 'default', 'grp', (o) => ({ ...o, metadata: { ...o.metadata, annotations: { [`pad${i}`]: 'x'.repeat(16 * 1024) } } })),
  );
  const created = await grp;
  assert.equal(created.metadata.resourceVersion, String(rev + 1), 'the small write before the group fits');
  for (const [i, r] of (await Promise.allSettled(patches)).entries()) {
    assert.equal(r.status, 'rejected', `patch ${i} was acknowledged on a full disk`);
    const err = (r as PromiseRejectedResult).reason as Error;
    assert.ok(err instanceof StoreError, `patch ${i}: ${String(err)}`);
    assert.match(err.message, new RegExp(`revision ${rev + 2 + i} \\(/registry/Pod/default/grp\\).*no space left on device`, 'i'));
  }
  assert.equal(store.revision(), rev + 1, 'failed writes take no revision');
  assert.deepEqual(events.map((e) => e.revision), [rev + 1], 'no watch event for a write that failed');
  assert.deepEqual((await store.get('Pod', 'default', 'grp'))!.metadata.annotations, { pad: '' }, 'the object is as its last durable write left it');

  // Still full: writes are refused with the reason, reads of what is stored keep working.
  await assert.rejects(store.create(pod('still-full', 16 * 1024)), (err: unknown) => err instanceof StoreError && /bytes free .*no space left on device/i.test(err.message));
  assert.equal((await store.get('Pod', 'default', 'ok-7'))?.metadata.resourceVersion, before[7]!.metadata.resourceVersion);
  assert.equal((await store.list('Pod')).items.length, 21);
  assert.equal(await store.get('Pod', 'default', 'still-full'), undefined);

  // Room again: the next writes work, with the next revision.
  await rm(join(dir, 'filler'));
  const [after, patched] = await Promise.all([
    store.create(pod('after-room')),
    store.patch('Pod', 'default', 'ok-3', (o) => ({ ...o, metadata: { ...o.metadata, labels: { patched: 'yes' } } })),
  ]);
  assert.equal(after.metadata.resourceVersion, String(rev + 2));
  assert.equal(patched!.metadata.resourceVersion, String(rev + 3));
  assert.deepEqual(events.map((e) => `${e.revision} ${e.object.metadata.name}`), [`${rev + 1} grp`, `${rev + 2} after-room`, `${rev + 3} ok-3`]);

  // After a restart: everything acknowledged, before the failure and after it, and none of the failed.
  await store.close();
  store = current = await LevelStore.open({ path });
  assert.equal(store.revision(), rev + 3);
  const names = (await store.list('Pod')).items.map((o) => o.metadata.name);
  assert.deepEqual(names.sort(), [...before.map((o) => o.metadata.name), 'grp', 'after-room'].sort());
  assert.deepEqual((await store.get('Pod', 'default', 'ok-3'))!.metadata.labels, { patched: 'yes' });
  assert.deepEqual((await store.get('Pod', 'default', 'grp'))!.metadata.annotations, { pad: '' });
  assert.equal((await store.create(pod('next'))).metadata.resourceVersion, String(rev + 4));
});
