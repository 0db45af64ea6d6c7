/**
 * A ReplicaSet creating thousands of pods records "Created pod: …" for each: similar Events fold into one
 * combined Event with the count, and records made while its write is in flight share one write. Real LevelDB.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EventRecorder } from '../../server/events/recorder.js';
import { COMBINED_PREFIX } from '../../server/events/aggregate.js';
import { LevelStore } from '../../server/store/level.js';
import { silentLogger } from '../../src/util/logger.js';

let dir: string;
let store: LevelStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-events-aggregate-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('500 pods created: ten Events about the ReplicaSet, counts summing to 500, far fewer writes than records', async () => {
  const events = new EventRecorder(store, silentLogger);
  const rs = { kind: 'ReplicaSet', namespace: 'default', name: 'web-1', uid: 'rs1' };
  const rev0 = store.revision();
  // As the controller does: batches of pods side by side, each create emitting without waiting.
  for (let b = 0; b < 500; b += 100) {
    for (let i = b; i < b + 100; i++) events.emit({ involved: rs, type: 'Normal', reason: 'SuccessfulCreate', message: `Created pod: web-1-${i}`, component: 'replicaset-controller' });
    await new Promise((r) => setTimeout(r, 5));
  }
  await events.drain();
  const about = (await store.list('Event', 'default')).items.filter((e) => e.involvedObject.uid === 'rs1');
  assert.equal(about.length, 10, about.map((e) => e.message).join('\n'));
  assert.equal(about.reduce((n, e) => n + e.count, 0), 500);
  const combined = about.filter((e) => e.message.startsWith(COMBINED_PREFIX));
  assert.equal(combined.length, 1);
  assert.equal(combined[0]!.count, 491);
  assert.equal(combined[0]!.reason, 'SuccessfulCreate');
  assert.match(combined[0]!.message, /Created pod: web-1-\d+$/);
  const writes = store.revision() - rev0;
  assert.ok(writes < 100, `${writes} store writes for 500 records`);
});

test('a crash loop still counts into its own Event; an Event made meanwhile by another server is counted into', async () => {
  const events = new EventRecorder(store, silentLogger);
  const pod = { kind: 'Pod', namespace: 'default', name: 'loop', uid: 'p1' };
  await Promise.all(Array.from({ length: 30 }, () => events.record({ involved: pod, type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container', component: 'drover-agent' })));
  const other = new EventRecorder(store, silentLogger);
  await other.record({ involved: pod, type: 'Warning', reason: 'BackOff', message: 'Back-off restarting failed container', component: 'drover-agent' });
  const mine = (await store.list('Event', 'default')).items.filter((e) => e.involvedObject.uid === 'p1');
  assert.equal(mine.length, 1);
  assert.equal(mine[0]!.count, 31);
  assert.equal(mine[0]!.message, 'Back-off restarting failed container');
});

test('an Event deleted after it was written (expired) is made again by the next record, counting from it', async () => {
  const events = new EventRecorder(store, silentLogger);
  const pod = { kind: 'Pod', namespace: 'default', name: 'again', uid: 'p2' };
  const record = () => events.record({ involved: pod, type: 'Normal', reason: 'Pulled', message: 'Image pulled', component: 'drover-agent' });
  await record();
  await record();
  const [first] = (await store.list('Event', 'default')).items.filter((e) => e.involvedObject.uid === 'p2');
  assert.equal(first!.count, 2);
  await store.delete('Event', 'default', first!.metadata.name);
  await record();
  const now = (await store.list('Event', 'default')).items.filter((e) => e.involvedObject.uid === 'p2');
  assert.equal(now.length, 1);
  assert.equal(now[0]!.count, 1);
  assert.equal(now[0]!.metadata.name, first!.metadata.name);
});
