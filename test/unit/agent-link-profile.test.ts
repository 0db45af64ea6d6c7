import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import type { payloads } from '../../src/contract/index.js';
import { ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';
import { AGENT_DEFAULTS, linkSettings, type AgentConfig } from '../../agent/config.js';
import { EventJournal } from '../../agent/journal.js';
import { Reporter } from '../../agent/reporter.js';

test('link profiles: cellular stretches keepalive and heartbeat and batches events; explicit flags win', () => {
  assert.deepEqual(linkSettings('default'), { keepaliveSeconds: AGENT_DEFAULTS.keepaliveSeconds, heartbeatSeconds: AGENT_DEFAULTS.heartbeatSeconds, eventBatchSeconds: 0, compressDesired: false, reconnectMaxSeconds: AGENT_DEFAULTS.reconnectMaxSeconds });
  assert.deepEqual(linkSettings('cellular'), { keepaliveSeconds: 1200, heartbeatSeconds: 3600, eventBatchSeconds: 60, compressDesired: true, reconnectMaxSeconds: 30 });
  assert.deepEqual(linkSettings('cellular', { keepaliveSeconds: 120, heartbeatSeconds: undefined }), { keepaliveSeconds: 120, heartbeatSeconds: 3600, eventBatchSeconds: 60, compressDesired: true, reconnectMaxSeconds: 30 });
  assert.equal(linkSettings('cellular', { reconnectMaxSeconds: 10 }).reconnectMaxSeconds, 10, '--reconnect-max wins over the profile');
});

test('link profiles: an unknown profile or an unusable period is refused naming the flag', () => {
  assert.throws(() => linkSettings('satellite'), (e: unknown) => e instanceof ValidationError && /--link-profile/.test(e.message) && /satellite/.test(e.message) && /cellular/.test(e.message));
  assert.throws(() => linkSettings('toString'), ValidationError, 'an inherited property is no profile');
  assert.throws(() => linkSettings('cellular', { keepaliveSeconds: 70_000 }), (e: unknown) => e instanceof ValidationError && /--keepalive/.test(e.message));
  assert.throws(() => linkSettings('default', { keepaliveSeconds: 1.5 }), (e: unknown) => e instanceof ValidationError && /--keepalive/.test(e.message));
  assert.throws(() => linkSettings('default', { reconnectMaxSeconds: -1 }), (e: unknown) => e instanceof ValidationError && /--reconnect-max/.test(e.message));
  assert.throws(() => linkSettings('default', { heartbeatSeconds: 0 }), (e: unknown) => e instanceof ValidationError && /--heartbeat/.test(e.message));
  assert.throws(() => linkSettings('default', { heartbeatSeconds: Number.NaN }), (e: unknown) => e instanceof ValidationError && /--heartbeat/.test(e.message));
});

function reporterWith(eventBatchSeconds: number) {
  const batches: payloads.Events[] = [];
  const link = {
    connected: true,
    publishEvents: async (e: payloads.Events) => {
      batches.push(e);
      return true;
    },
  };
  const cfg = { node: 'edge-1', heartbeatSeconds: 30, keepaliveSeconds: 15, eventBatchSeconds, labels: {} } as unknown as AgentConfig;
  const reporter = new Reporter({ cfg, link: link as never, runtime: {} as never, hardware: {} as never, bootId: 'b', logger: silentLogger, journal: new EventJournal(), nodeIP: () => undefined, runtimeVersion: () => 'x', now: () => 0 });
  return { reporter, batches };
}
const ev = (reason: string) => ({ type: 'Normal' as const, reason, message: reason, involved: { kind: 'Node', name: 'edge-1' } });

test('events go out at once on the default profile, and as one batch per window on a batching one', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const now = reporterWith(0);
    now.reporter.emit(ev('A'));
    await Promise.resolve();
    assert.equal(now.batches.length, 1, 'sent without waiting');

    const batched = reporterWith(60);
    for (const r of ['A', 'B', 'C']) batched.reporter.emit(ev(r));
    await Promise.resolve();
    assert.equal(batched.batches.length, 0, 'nothing sent before the window ends');
    mock.timers.tick(60_000);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.equal(batched.batches.length, 1, 'one publish for the window');
    assert.deepEqual(batched.batches[0]!.events.map((e) => e.reason), ['A', 'B', 'C']);
    batched.reporter.emit(ev('D'));
    batched.reporter.stop();
    mock.timers.tick(60_000);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.equal(batched.batches.length, 1, 'stopped: the waiting event stays in the journal for the next run');
  } finally {
    mock.timers.reset();
  }
});
