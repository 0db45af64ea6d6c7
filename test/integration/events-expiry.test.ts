/**
 * Events do not pile up: they expire after the TTL (1 h by default, as Kubernetes), and no object keeps
 * more than its cap of the newest ones, whatever floods them (a crash loop, 1e9 replicas, a chatty agent).
 * Real LevelDB store, the real controller runner, the server's event recorder.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { silentLogger } from '../../src/util/logger.js';
import { eventExpiryController } from '../../server/controllers/event-expiry.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { LevelStore } from '../../server/store/level.js';
import { waitFor } from '../helpers/cluster.js';

describe('events: TTL and per-object cap', () => {
  let dir: string;
  let store: LevelStore;
  let runner: ControllerRunner | undefined;
  let nowMs: number;
  const clock = () => nowMs;

  const start = async (o: { ttlMs: number; cap?: number; resyncMs: number; now?: () => number }) => {
    const events = new EventRecorder(store, silentLogger, o.now ?? clock);
    runner = new ControllerRunner({
      store,
      logger: silentLogger,
      controllers: [eventExpiryController({ store, events, logger: silentLogger, now: o.now ?? clock, eventTtlMs: o.ttlMs, eventsPerObject: o.cap })],
      resyncMs: o.resyncMs,
    });
    await runner.start();
    return events;
  };
  const names = async () => (await store.list('Event')).items.map((e) => e.message).sort();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-events-'));
    store = await LevelStore.open({ path: join(dir, 'db') });
    nowMs = Date.parse('2026-03-01T10:00:00Z');
  });
  afterEach(async () => {
    await runner?.stop();
    runner = undefined;
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('an Event not updated for the TTL is deleted; one updated since is kept', async () => {
    const events = await start({ ttlMs: 3600_000, resyncMs: 100 });
    const pod = { kind: 'Pod', namespace: 'default', name: 'web', uid: 'u1' };
    await events.record({ involved: pod, type: 'Normal', reason: 'Pulled', message: 'old', component: 't' });
    await events.record({ involved: pod, type: 'Warning', reason: 'BackOff', message: 'repeating', component: 't' });
    nowMs += 50 * 60_000;
    // The same event again: counted into the existing one, which is touched now.
    await events.record({ involved: pod, type: 'Warning', reason: 'BackOff', message: 'repeating', component: 't' });
    nowMs += 11 * 60_000; // 61 min after the first, 11 min after the repeat
    await waitFor('the old event expired', async () => (await names()).join() === 'repeating', 10_000, 50);
    const kept = (await store.list('Event')).items[0]!;
    assert.equal(kept.count, 2);
    nowMs += 50 * 60_000;
    await waitFor('the repeated event expired too', async () => (await names()).length === 0, 10_000, 50);
  });

  test('an agent dating its Event in the future does not make it outlive the TTL', async () => {
    const events = await start({ ttlMs: 3600_000, resyncMs: 100 });
    await events.record({ involved: { kind: 'Node', name: 'edge-1' }, type: 'Normal', reason: 'Forever', message: 'from 2999', component: 'drover-agent', ts: '2999-01-01T00:00:00Z' });
    const stored = (await store.list('Event')).items[0]!;
    assert.equal(stored.lastTimestamp, new Date(nowMs).toISOString(), 'stamped with the server time');
    nowMs += 3601_000;
    await waitFor('expired', async () => (await names()).length === 0, 10_000, 50);
  });

  test('expiry is level-triggered with requeue-after: no resync needed', async () => {
    // The real clock here, and a resync period longer than the test: only the requeue can delete it.
    const events = await start({ ttlMs: 300, resyncMs: 3600_000, now: Date.now });
    await events.record({ involved: { kind: 'Node', name: 'edge-1' }, type: 'Normal', reason: 'Short', message: 'short-lived', component: 't' });
    assert.deepEqual(await names(), ['short-lived']);
    await waitFor('expired by its requeue', async () => (await names()).length === 0, 10_000, 50);
  });

  test('no object keeps more than the cap: the newest are kept, other objects untouched', async () => {
    const events = await start({ ttlMs: 3600_000, cap: 100, resyncMs: 3600_000 });
    const flooded = { kind: 'ReplicaSet', namespace: 'default', name: 'web-1', uid: 'rs1' };
    const quiet = { kind: 'Pod', namespace: 'default', name: 'calm', uid: 'p1' };
    // 130 different reasons: similar Events (one reason, many messages) would fold into one (events-aggregate).
    for (let i = 0; i < 130; i++) {
      nowMs += 1000;
      await events.record({ involved: flooded, type: 'Normal', reason: `Step${i}`, message: `Created pod: web-1-${String(i).padStart(3, '0')}`, component: 'replicaset-controller' });
    }
    for (let i = 0; i < 5; i++) await events.record({ involved: quiet, type: 'Normal', reason: 'Started', message: `calm ${i}`, component: 't' });
    const about = async (name: string) => (await store.list('Event', 'default')).items.filter((e) => e.involvedObject.name === name);
    await waitFor('capped at 100', async () => (await about('web-1')).length === 100, 10_000, 50);
    const kept = (await about('web-1')).map((e) => e.message).sort();
    assert.equal(kept[0], 'Created pod: web-1-030', 'the 30 oldest went');
    assert.equal(kept[99], 'Created pod: web-1-129');
    assert.equal((await about('calm')).length, 5);
  });
});
