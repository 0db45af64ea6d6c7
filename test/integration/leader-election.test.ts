/**
 * Leader election on a real etcd 3.4 (Debian's, started by test/helpers/etcd.ts): one leader at a time,
 * a clean stop hands over within a retry period, a kill -9 of the leader's process within the lease
 * duration, a leader cut off from etcd stops acting within its renew deadline, before anyone else
 * may start, and a leader whose lease is revoked or whose key is deleted behind its back learns it at its
 * next renewal (its fenced writes failing meanwhile). Leadership intervals are recorded with wall-clock times by every participant and checked
 * never to overlap. Timings: lease 6 s, renew deadline 4 s, retry period 1 s (test/helpers/leader.ts).
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Etcd3 } from 'etcd3';
import { LeaderElection } from '../../server/leader/election.js';
import { startEtcd, startEtcdCluster } from '../helpers/etcd.js';
import { LeadershipLog, recordedElection, spawnLeaderChild, testTimings } from '../helpers/leader.js';

const { leaseDurationSeconds: LEASE, renewDeadlineSeconds: RENEW, retryPeriodSeconds: RETRY } = testTimings;
/** The machine is shared and loaded: bounds are the behaviour's own plus this much. */
const SLACK_MS = 5_000;

/** One etcd with server-a leading on it (recorded in the log), and a plain client to act behind its back. */
async function etcdWithLeader(t: TestContext) {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const log = new LeadershipLog();
  const a = recordedElection(log, { endpoints: etcd.endpoints, name: '/drover/leader', identity: 'server-a' });
  t.after(() => a.close());
  await log.until('A to lead', () => log.current() === 'server-a', 20_000);
  const client = new Etcd3({ hosts: etcd.endpoints });
  t.after(() => client.close());
  return { etcd, log, a, client };
}

test('two servers on one etcd: exactly one leads, the other names it; close() of the leader hands over within a retry period', { timeout: 60_000 }, async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const log = new LeadershipLog();
  // Stopping the leader's work takes a while (controllers finishing a pass): the resignation must wait for it.
  const slowStop = () => new Promise<void>((r) => setTimeout(r, 800));
  const a = recordedElection(log, { endpoints: etcd.endpoints, name: '/drover/leader', identity: 'server-a', onStoppedLeading: slowStop });
  const b = recordedElection(log, { endpoints: etcd.endpoints, name: '/drover/leader', identity: 'server-b', onStoppedLeading: slowStop });
  t.after(() => Promise.all([a.close(), b.close()]));

  await log.until('a leader', () => log.current() !== undefined, 20_000);
  const [leader, other] = log.current() === 'server-a' ? [a, b] : [b, a];
  // Several retry periods: the follower keeps trying and must keep failing.
  await log.until('the follower to see the leader', () => other.leader() === leader.identity, 10_000);
  await new Promise((r) => setTimeout(r, 3 * RETRY * 1000));
  assert.equal(log.intervals.length, 1, `leadership changed hands without cause: ${JSON.stringify(log.intervals)}`);
  assert.equal(leader.isLeader(), true);
  assert.equal(other.isLeader(), false);
  assert.equal(other.fence(), undefined, 'a follower has no fence');
  assert.equal(leader.status().leader, leader.identity);

  const closed = Date.now();
  await leader.close();
  await log.until('the other server to lead', () => log.current() === other.identity, 20_000);
  const failoverMs = log.open(other.identity)!.start - closed;
  t.diagnostic(`failover after close(): ${failoverMs} ms (retry period ${RETRY} s, 800 ms of stop work first)`);
  assert.ok(failoverMs <= 800 + RETRY * 1000 + SLACK_MS, `the other led ${failoverMs} ms after close(), more than the retry period (${RETRY} s) + ${SLACK_MS} ms`);
  assert.ok(failoverMs < LEASE * 1000, `close() did not resign: the other waited ${failoverMs} ms, as long as the lease (${LEASE} s)`);
  log.assertNoOverlap();
});

test('kill -9 of the process holding leadership: the other leads within the lease duration, never both at once', { timeout: 60_000 }, async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.stop());
  const log = new LeadershipLog();
  const child = await spawnLeaderChild(log, { endpoints: etcd.endpoints, name: '/drover/leader', identity: 'child' });
  t.after(() => child.kill());
  await log.until('the child to lead', () => log.current() === 'child', 20_000);
  // Only now the in-process candidate: it must wait, then take over from the dead child.
  const parent = recordedElection(log, { endpoints: etcd.endpoints, name: '/drover/leader', identity: 'parent' });
  t.after(() => parent.close());
  await log.until('the parent to see the child lead', () => parent.leader() === 'child', 10_000);
  assert.equal(parent.isLeader(), false);

  const killedAt = await child.kill();
  await log.until('the parent to lead', () => log.current() === 'parent', (LEASE + RETRY) * 1000 + 20_000);
  const failoverMs = log.open('parent')!.start - killedAt;
  t.diagnostic(`failover after kill -9: ${failoverMs} ms (lease ${LEASE} s, retry period ${RETRY} s)`);
  assert.ok(failoverMs <= (LEASE + RETRY) * 1000 + SLACK_MS, `the parent led ${failoverMs} ms after the kill, more than lease + retry period + ${SLACK_MS} ms`);
  log.assertNoOverlap();
});

test("the leader's etcd member stops answering (SIGSTOP, a partition): it stops acting within the renew deadline, the other leads after the lease, a write fenced by the old term fails", { timeout: 60_000 }, async (t) => {
  const cluster = await startEtcdCluster(3);
  t.after(() => cluster.stop());
  const [m0, m1] = cluster.members;
  const log = new LeadershipLog();
  // Each election talks to one member only: pausing m0 cuts A off while B and the quorum carry on.
  const a = recordedElection(log, { endpoints: [m0!.endpoint], name: '/drover/leader', identity: 'server-a' });
  t.after(() => a.close());
  await log.until('A to lead', () => log.current() === 'server-a', 20_000);
  const b = recordedElection(log, { endpoints: [m1!.endpoint], name: '/drover/leader', identity: 'server-b' });
  t.after(() => b.close());
  await log.until('B to see A lead', () => b.leader() === 'server-a', 10_000);
  const staleFence = a.fenceCompare();
  const lastRenewal = Date.parse(a.status().renewTime!);

  const cutAt = Date.now();
  m0!.pause();
  t.after(() => m0!.resume());
  await log.until('A to stop leading', () => log.open('server-a') === undefined, (RENEW + LEASE) * 1000 + 20_000);
  const aInterval = log.intervals.find((i) => i.who === 'server-a')!;
  const stepDownMs = aInterval.end! - lastRenewal;
  t.diagnostic(`A stopped ${aInterval.end! - cutAt} ms after the cut, ${stepDownMs} ms after its last renewal (renew deadline ${RENEW} s): ${aInterval.reason}`);
  assert.match(aInterval.reason ?? '', /renew deadline/);
  // The rule that makes the takeover safe: stop before the lease (counted from the last renewal) can end.
  assert.ok(stepDownMs < LEASE * 1000, `A stopped ${stepDownMs} ms after its last renewal: not before its ${LEASE} s lease could expire`);
  assert.equal(a.isLeader(), false);
  assert.equal(a.fence(), undefined);

  await log.until('B to lead', () => log.current() === 'server-b', (LEASE + RETRY) * 1000 + 20_000);
  const takeoverMs = log.open('server-b')!.start - cutAt;
  t.diagnostic(`B led ${takeoverMs} ms after the cut (lease ${LEASE} s; a raft leader change in etcd renews every lease once)`);
  assert.ok(takeoverMs <= (LEASE + RETRY) * 1000 + 2 * SLACK_MS, `B led ${takeoverMs} ms after the cut`);
  log.assertNoOverlap();

  // Fencing, as the old leader would try it: a write carrying its old term's compare is refused by etcd;
  // the new leader's goes through.
  const etcd = new Etcd3({ hosts: [m1!.endpoint] });
  t.after(() => etcd.close());
  const write = (compare: ReturnType<LeaderElection['fenceCompare']>, value: string) => etcd.kv.txn({ compare: [compare], success: [{ request_put: { key: Buffer.from('/drover/fenced'), value: Buffer.from(value) } }], failure: [] });
  assert.equal((await write(staleFence, 'old leader')).succeeded, false, 'a write fenced by the lost term went through');
  assert.equal((await write(b.fenceCompare(), 'new leader')).succeeded, true);
  assert.equal((await write(a.fenceCompare(), 'old leader, no term')).succeeded, false, 'a follower fence must never hold');
  assert.equal(await etcd.get('/drover/fenced').string(), 'new leader');

  // Back on the network, A follows B instead of leading again.
  m0!.resume();
  await log.until('A to see B lead', () => a.leader() === 'server-b', 30_000);
  await new Promise((r) => setTimeout(r, 2 * RETRY * 1000));
  assert.equal(a.isLeader(), false);
  log.assertNoOverlap();
});

test("the leader's lease revoked behind its back (etcdctl lease revoke): it learns at its next renewal and steps down, the other leads", { timeout: 60_000 }, async (t) => {
  const { etcd, log, a, client } = await etcdWithLeader(t);
  const b = recordedElection(log, { endpoints: etcd.endpoints, name: '/drover/leader', identity: 'server-b' });
  t.after(() => b.close());
  await log.until('B to see A lead', () => b.leader() === 'server-a', 10_000);

  const fence = a.fenceCompare();
  const revokedAt = Date.now();
  await client.leaseClient.leaseRevoke({ ID: a.fence()!.leaseId });
  // Until its next renewal A still believes it leads: that window is what fencing is for. Its writes fail at once.
  const w = await client.kv.txn({ compare: [fence], success: [{ request_put: { key: Buffer.from('/drover/fenced'), value: Buffer.from('a') } }], failure: [] });
  assert.equal(w.succeeded, false, "a write fenced by a revoked lease's term went through");
  await log.until('A to stop leading', () => log.open('server-a') === undefined, RENEW * 1000 + 20_000);
  const aInterval = log.intervals.find((i) => i.who === 'server-a')!;
  t.diagnostic(`A stopped ${aInterval.end! - revokedAt} ms after the revocation: ${aInterval.reason}`);
  // Learnt from etcd at its next renewal (a retry period), not from the renew deadline running out.
  assert.match(aInterval.reason ?? '', /lease expired or was revoked|no longer this term/);
  assert.ok(aInterval.end! - revokedAt <= RETRY * 1000 + SLACK_MS, `A went on leading ${aInterval.end! - revokedAt} ms after its lease was revoked`);
  await log.until('B to lead', () => log.current() === 'server-b', 20_000);
});

test('the leader key deleted by hand (etcdctl del): the leader learns at its next renewal, steps down, and a new term begins with a new fence', { timeout: 60_000 }, async (t) => {
  const { log, a, client } = await etcdWithLeader(t);
  const first = a.fence()!;
  const deletedAt = Date.now();
  await client.delete().key('/drover/leader');
  await log.until('A to stop leading', () => log.open('server-a') === undefined, RENEW * 1000 + 20_000);
  const ended = log.intervals[0]!;
  t.diagnostic(`A stopped ${ended.end! - deletedAt} ms after the delete: ${ended.reason}`);
  assert.match(ended.reason ?? '', /no longer this term/);
  // Alone, A campaigns again: a new term, never the old fence.
  await log.until('A to lead again', () => log.current() === 'server-a', 20_000);
  assert.notEqual(a.fence()!.createRevision, first.createRevision);
  assert.notEqual(a.fence()!.leaseId, first.leaseId);
  log.assertNoOverlap();
});
