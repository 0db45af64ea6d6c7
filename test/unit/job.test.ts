import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pod, PodPhase } from '../../src/api/pod.js';
import { job as jobSchema, type Job } from '../../src/api/workloads.js';
import { CONTROLLER_UID_LABEL, JOB_NAME_LABEL, jobBackoffDelay, newJobPod, planJob } from '../../server/controllers/job.js';

const T0 = Date.parse('2025-01-01T00:00:00Z');
const JOB_UID = 'job-uid-1';
const iso = (ms: number) => new Date(ms).toISOString();

function mkJob(o: { completions?: number; parallelism?: number; backoffLimit?: number; restartPolicy?: 'Never' | 'OnFailure'; activeDeadlineSeconds?: number; ttl?: number; suspend?: boolean; status?: Job['status'] } = {}): Job {
  return jobSchema.parse({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'pi', namespace: 'default', uid: JOB_UID },
    spec: {
      ...(o.completions !== undefined ? { completions: o.completions } : {}),
      ...(o.parallelism !== undefined ? { parallelism: o.parallelism } : {}),
      ...(o.backoffLimit !== undefined ? { backoffLimit: o.backoffLimit } : {}),
      ...(o.activeDeadlineSeconds !== undefined ? { activeDeadlineSeconds: o.activeDeadlineSeconds } : {}),
      ...(o.ttl !== undefined ? { ttlSecondsAfterFinished: o.ttl } : {}),
      ...(o.suspend !== undefined ? { suspend: o.suspend } : {}),
      template: { metadata: { labels: { app: 'pi' } }, spec: { restartPolicy: o.restartPolicy ?? 'Never', containers: [{ name: 'main', image: 'busybox', command: ['echo', 'done'] }] } },
    },
    ...(o.status ? { status: o.status } : {}),
  });
}

let seq = 0;
function jobPod(job: Job, phase: PodPhase, restarts = 0, o: { ready?: boolean; created?: number } = {}): Pod {
  const p = newJobPod(job);
  seq += 1;
  p.metadata.name = `pi-${seq}`;
  p.metadata.uid = `pod-${seq}`;
  p.metadata.creationTimestamp = iso(o.created ?? T0 + seq);
  p.status = {
    phase,
    conditions: [{ type: 'Ready', status: o.ready ? 'True' : 'False' }],
    containerStatuses: [{ name: 'main', image: 'busybox', ready: !!o.ready, restartCount: restarts, state: phase === 'Running' ? 'running' : 'terminated' }],
  };
  return p;
}

/** Feeds a plan's status back into the Job, as the controller's write would. */
function withStatus(job: Job, status: Job['status']): Job {
  return { ...job, status };
}

describe('newJobPod', () => {
  it('labels and owner reference', () => {
    const p = newJobPod(mkJob());
    assert.deepEqual(p.metadata.labels, { app: 'pi', [JOB_NAME_LABEL]: 'pi', [CONTROLLER_UID_LABEL]: JOB_UID });
    assert.deepEqual(p.metadata.ownerReferences, [{ apiVersion: 'batch/v1', kind: 'Job', name: 'pi', uid: JOB_UID, controller: true, blockOwnerDeletion: true }]);
    assert.equal(p.spec.restartPolicy, 'Never');
    assert.equal(p.spec.nodeName, undefined);
    assert.equal(p.status?.phase, 'Pending');
  });
});

describe('planJob', () => {
  it('starts min(parallelism, completions) pods and records startTime', () => {
    const plan = planJob(mkJob({ completions: 5, parallelism: 2 }), [], T0);
    assert.equal(plan.create, 2);
    assert.deepEqual(plan.status, { active: 2, succeeded: 0, failed: 0, startTime: iso(T0) });
    assert.deepEqual(plan.events, []);
    assert.equal(planJob(mkJob({ completions: 1, parallelism: 3 }), [], T0).create, 1);
  });

  it('creates only what is missing: completions − succeeded − active, capped by parallelism', () => {
    const job = withStatus(mkJob({ completions: 3, parallelism: 2 }), { active: 2, succeeded: 0, failed: 0, startTime: iso(T0) });
    const pods = [jobPod(job, 'Succeeded'), jobPod(job, 'Running')];
    const plan = planJob(job, pods, T0 + 1000);
    assert.equal(plan.create, 1);
    assert.deepEqual(plan.status, { active: 2, succeeded: 1, failed: 0, startTime: iso(T0) });
    // Two succeeded, one running: nothing to add.
    assert.equal(planJob(job, [jobPod(job, 'Succeeded'), jobPod(job, 'Succeeded'), jobPod(job, 'Running')], T0).create, 0);
  });

  it('ignores pods it does not own', () => {
    const job = mkJob();
    const stranger = jobPod(job, 'Succeeded');
    stranger.metadata.ownerReferences = [{ apiVersion: 'batch/v1', kind: 'Job', name: 'pi', uid: 'older-uid', controller: true }];
    assert.equal(planJob(job, [stranger], T0).create, 1);
  });

  it('completes when succeeded >= completions: condition, completionTime, event; idempotent afterwards', () => {
    const job = withStatus(mkJob({ completions: 2 }), { active: 1, succeeded: 1, failed: 0, startTime: iso(T0) });
    const pods = [jobPod(job, 'Succeeded'), jobPod(job, 'Succeeded')];
    const plan = planJob(job, pods, T0 + 5000);
    assert.equal(plan.create, 0);
    assert.equal(plan.status.succeeded, 2);
    assert.equal(plan.status.active, 0);
    assert.equal(plan.status.completionTime, iso(T0 + 5000));
    assert.deepEqual(plan.status.conditions, [{ type: 'Complete', status: 'True', lastTransitionTime: iso(T0 + 5000) }]);
    assert.deepEqual(plan.events.map((e) => e.reason), ['Completed']);
    assert.equal(plan.deleteJob, false);
    assert.equal(plan.requeueAfterMs, undefined);
    const again = planJob(withStatus(job, plan.status), pods, T0 + 9000);
    assert.deepEqual(again.status, plan.status);
    assert.deepEqual(again.events, []);
    assert.equal(again.create, 0);
  });

  it('Never: a failed pod is replaced until failures exceed backoffLimit, then Failed/BackoffLimitExceeded', () => {
    const job = withStatus(mkJob({ backoffLimit: 2 }), { active: 1, succeeded: 0, failed: 0, startTime: iso(T0) });
    const f1 = jobPod(job, 'Failed');
    const f2 = jobPod(job, 'Failed');
    const f3 = jobPod(job, 'Failed');
    const end = (p: Pod, at: number) => {
      p.status!.containerStatuses![0]!.finishedAt = iso(at);
      return p;
    };
    end(f1, T0);
    // Kubernetes' back-off: the replacement waits 10 s after the first failure, 20 s after the second.
    let plan = planJob(job, [f1], T0 + 1000);
    assert.equal(plan.create, 0);
    assert.equal(plan.status.failed, 1);
    assert.equal(plan.requeueAfterMs, 9000);
    plan = planJob(job, [f1], T0 + 10_000);
    assert.equal(plan.create, 1);
    end(f2, T0 + 15_000);
    plan = planJob(job, [f1, f2], T0 + 30_000);
    assert.equal(plan.create, 0);
    assert.equal(plan.requeueAfterMs, 5000);
    assert.equal(planJob(job, [f1, f2], T0 + 35_000).create, 1);
    // A configured base (server option) scales the whole sequence.
    assert.equal(planJob(job, [f1, f2], T0 + 17_000, { backoffBaseMs: 1000 }).create, 1);
    plan = planJob(job, [f1, f2, f3], T0 + 2000);
    assert.equal(plan.create, 0);
    assert.equal(plan.status.failed, 3);
    assert.equal(plan.status.active, 0);
    assert.deepEqual(plan.status.conditions, [
      { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastTransitionTime: iso(T0 + 2000) },
    ]);
    assert.equal(plan.status.completionTime, undefined);
    assert.deepEqual(plan.events.map((e) => [e.type, e.reason]), [['Warning', 'BackoffLimitExceeded']]);
  });

  it('back-off delay doubles per failure and stops at 6 minutes', () => {
    assert.deepEqual([0, 1, 2, 3, 6, 7, 50].map((n) => jobBackoffDelay(n)), [0, 10_000, 20_000, 40_000, 320_000, 360_000, 360_000]);
  });

  it('failing: active pods are deleted (parallel job)', () => {
    const job = withStatus(mkJob({ completions: 4, parallelism: 2, backoffLimit: 0 }), { active: 2, succeeded: 0, failed: 0, startTime: iso(T0) });
    const running = jobPod(job, 'Running');
    const plan = planJob(job, [jobPod(job, 'Failed'), running], T0);
    assert.deepEqual(plan.delete.map((d) => d.pod.metadata.name), [running.metadata.name]);
    assert.equal(plan.status.active, 0);
    assert.equal(plan.create, 0);
  });

  it('OnFailure: container restarts of active pods count against backoffLimit', () => {
    const job = withStatus(mkJob({ restartPolicy: 'OnFailure', backoffLimit: 3 }), { active: 1, succeeded: 0, failed: 0, startTime: iso(T0) });
    assert.equal(planJob(job, [jobPod(job, 'Running', 2)], T0).status.conditions, undefined);
    const plan = planJob(job, [jobPod(job, 'Running', 3)], T0);
    assert.equal(plan.status.conditions?.[0]?.reason, 'BackoffLimitExceeded');
    assert.equal(plan.delete.length, 1);
    // backoffLimit 0: the first restart is too many.
    const strict = withStatus(mkJob({ restartPolicy: 'OnFailure', backoffLimit: 0 }), { active: 1, succeeded: 0, failed: 0, startTime: iso(T0) });
    assert.equal(planJob(strict, [jobPod(strict, 'Running', 1)], T0).status.conditions?.[0]?.reason, 'BackoffLimitExceeded');
    assert.equal(planJob(strict, [jobPod(strict, 'Running', 0)], T0).status.conditions, undefined);
  });

  it('activeDeadlineSeconds: requeues until the deadline, then Failed/DeadlineExceeded', () => {
    const job = withStatus(mkJob({ activeDeadlineSeconds: 30 }), { active: 1, succeeded: 0, failed: 0, startTime: iso(T0) });
    const running = jobPod(job, 'Running');
    const before = planJob(job, [running], T0 + 10_000);
    assert.equal(before.requeueAfterMs, 20_000);
    assert.equal(before.status.conditions, undefined);
    const after = planJob(job, [running], T0 + 30_000);
    assert.equal(after.status.conditions?.[0]?.reason, 'DeadlineExceeded');
    assert.deepEqual(after.delete.map((d) => d.pod.metadata.name), [running.metadata.name]);
    assert.deepEqual(after.events.map((e) => e.reason), ['DeadlineExceeded']);
  });

  it('ttlSecondsAfterFinished: requeue until due, then delete the Job', () => {
    const job = withStatus(mkJob({ ttl: 60 }), { active: 0, succeeded: 0, failed: 0, startTime: iso(T0) });
    const pods = [jobPod(job, 'Succeeded')];
    const done = planJob(job, pods, T0 + 1000);
    assert.equal(done.deleteJob, false);
    assert.equal(done.requeueAfterMs, 60_000);
    const fin = withStatus(job, done.status);
    assert.equal(planJob(fin, pods, T0 + 30_000).requeueAfterMs, 31_000);
    assert.equal(planJob(fin, pods, T0 + 61_000).deleteJob, true);
    // ttl 0: deleted as soon as it finishes.
    assert.equal(planJob(withStatus(mkJob({ ttl: 0 }), { active: 1, succeeded: 0, failed: 0, startTime: iso(T0) }), pods, T0).deleteJob, true);
  });

  it('a finished Job creates nothing more; counters never go down', () => {
    const job = withStatus(mkJob({ completions: 3 }), {
      active: 0,
      succeeded: 3,
      failed: 1,
      startTime: iso(T0),
      completionTime: iso(T0 + 1),
      conditions: [{ type: 'Complete', status: 'True', lastTransitionTime: iso(T0 + 1) }],
    });
    const plan = planJob(job, [], T0 + 100);
    assert.equal(plan.create, 0);
    assert.deepEqual(plan.status, job.status);
  });

  it('lowered parallelism deletes the surplus, not-ready and newest first', () => {
    const job = withStatus(mkJob({ completions: 10, parallelism: 1 }), { active: 3, succeeded: 0, failed: 0, startTime: iso(T0) });
    const oldReady = jobPod(job, 'Running', 0, { ready: true, created: T0 });
    const newReady = jobPod(job, 'Running', 0, { ready: true, created: T0 + 10 });
    const notReady = jobPod(job, 'Pending', 0, { created: T0 - 10 });
    const plan = planJob(job, [oldReady, newReady, notReady], T0);
    assert.deepEqual(plan.delete.map((d) => d.pod.metadata.name).sort(), [newReady.metadata.name, notReady.metadata.name].sort());
    assert.equal(plan.status.active, 1);
  });

  it('suspend: active pods are deleted and none created', () => {
    const job = withStatus(mkJob({ suspend: true }), { active: 1, succeeded: 0, failed: 0 });
    const plan = planJob(job, [jobPod(job, 'Running')], T0);
    assert.equal(plan.create, 0);
    assert.equal(plan.delete.length, 1);
    assert.equal(plan.status.startTime, undefined);
  });
});
