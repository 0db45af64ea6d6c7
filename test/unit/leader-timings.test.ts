/** Leader election options are refused as controller-runtime refuses them, naming the flag. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LeaderElection, defaultIdentity, leaderTimings } from '../../server/leader/election.js';
import { ValidationError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/logger.js';

test("controller-runtime's defaults: 15 s lease, 10 s renew deadline, 2 s retry period", () => {
  assert.deepEqual(leaderTimings({}), { leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 });
});

test('a renew deadline not shorter than the lease is refused: a leader could act after its lease ended', () => {
  assert.throws(() => leaderTimings({ leaseDurationSeconds: 10, renewDeadlineSeconds: 10 }), (e: unknown) => e instanceof ValidationError && /leader-elect-renew-deadline: must be less than the lease duration \(10 s\)/.test(e.message));
  assert.throws(() => leaderTimings({ leaseDurationSeconds: 5, renewDeadlineSeconds: 8 }), /leader-elect-renew-deadline/);
});

test('a renew deadline within 1.2 retry periods is refused: no room for a second renewal', () => {
  assert.throws(() => leaderTimings({ leaseDurationSeconds: 15, renewDeadlineSeconds: 2, retryPeriodSeconds: 2 }), /leader-elect-renew-deadline: must be more than 1\.2 x the retry period/);
});

test('fractional, zero, negative and NaN timings are refused naming each flag', () => {
  assert.throws(() => leaderTimings({ leaseDurationSeconds: 7.5 }), /leader-elect-lease-duration: must be a whole number of seconds >= 2, got 7\.5/);
  assert.throws(() => leaderTimings({ retryPeriodSeconds: 0 }), /leader-elect-retry-period: must be > 0/);
  assert.throws(() => leaderTimings({ renewDeadlineSeconds: -1 }), /leader-elect-renew-deadline: must be > 0/);
  assert.throws(() => leaderTimings({ leaseDurationSeconds: Number.NaN }), /leader-elect-lease-duration/);
});

test('an election without endpoints, identity or a rooted key is refused before it connects', () => {
  assert.throws(() => new LeaderElection({ identity: 'x', logger: silentLogger }), /endpoints: names no etcd endpoint/);
  assert.throws(() => new LeaderElection({ endpoints: ['http://127.0.0.1:1'], identity: '', logger: silentLogger }), /identity: must not be empty/);
  assert.throws(() => new LeaderElection({ endpoints: ['http://127.0.0.1:1'], identity: 'x', name: 'drover/leader', logger: silentLogger }), /name: must start with '\/'/);
});

test('a follower fence never holds; identities differ per process start', () => {
  const e = new LeaderElection({ endpoints: ['http://127.0.0.1:1'], identity: 'x', logger: silentLogger });
  assert.equal(e.fence(), undefined);
  assert.equal(e.fenceCompare().create_revision, '-1');
  assert.equal(e.isLeader(), false);
  assert.notEqual(defaultIdentity(), defaultIdentity());
  return e.close();
});
