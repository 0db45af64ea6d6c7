/** Indexed Jobs: one pod per index, a failed index retried, complete when every index succeeded. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pod, PodPhase } from '../../src/api/pod.js';
import { JOB_COMPLETION_INDEX, job as jobSchema, type Job } from '../../src/api/workloads.js';
import { formatIndexes, newJobPod, parseIndexes, planJob, podIndex } from '../../server/controllers/job.js';

const T0 = Date.parse('2025-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();

function mkJob(o: { completions: number; parallelism: number; backoffLimit?: number; status?: Job['status']; env?: Array<{ name: string; value: string }> }): Job {
  return jobSchema.parse({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: 'shard', namespace: 'default', uid: 'job-1' },
    spec: {
      completionMode: 'Indexed',
      completions: o.completions,
      parallelism: o.parallelism,
      backoffLimit: o.backoffLimit ?? 6,
      template: { spec: { restartPolicy: 'Never', containers: [{ name: 'a', image: 'busybox', ...(o.env ? { env: o.env } : {}) }, { name: 'b', image: 'busybox' }] } },
    },
    ...(o.status ? { status: o.status } : {}),
  });
}

let seq = 0;
function podAt(job: Job, index: number, phase: PodPhase, finishedAgoMs = 3_600_000): Pod {
  const p = newJobPod(job, index);
  seq++;
  p.metadata.name = `shard-${index}-${seq}`;
  p.metadata.uid = `pod-${seq}`;
  p.metadata.creationTimestamp = iso(T0 - 7_200_000 + seq);
  const done = phase === 'Succeeded' || phase === 'Failed';
  p.status = {
    phase,
    containerStatuses: [{ name: 'a', image: 'busybox', ready: !done, restartCount: 0, state: done ? 'terminated' : 'running', ...(done ? { finishedAt: iso(T0 - finishedAgoMs) } : {}) }],
  };
  return p;
}

describe('Indexed Job pods', () => {
  it('carry their index in annotation, label, JOB_COMPLETION_INDEX (every container) and hostname', () => {
    const job = mkJob({ completions: 3, parallelism: 3, env: [{ name: 'JOB_COMPLETION_INDEX', value: 'mine' }, { name: 'X', value: '1' }] });
    const p = newJobPod(job, 2);
    assert.equal(p.metadata.annotations?.[JOB_COMPLETION_INDEX], '2');
    assert.equal(p.metadata.labels?.[JOB_COMPLETION_INDEX], '2');
    assert.deepEqual(p.spec.containers[0]!.env, [{ name: 'JOB_COMPLETION_INDEX', value: '2' }, { name: 'X', value: '1' }]);
    assert.deepEqual(p.spec.containers[1]!.env, [{ name: 'JOB_COMPLETION_INDEX', value: '2' }]);
    assert.equal(p.spec.hostname, 'shard-2');
    // The template itself is untouched (the next pod gets its own index).
    assert.equal(job.spec.template.spec.containers[1]!.env, undefined);
    assert.equal(podIndex(p, 3), 2);
    assert.equal(podIndex(p, 2), undefined);
  });

  it('a long job name is cut so the hostname stays a DNS label', () => {
    const job = mkJob({ completions: 12, parallelism: 1 });
    job.metadata.name = `${'x'.repeat(62)}`;
    assert.equal(newJobPod(job, 11).spec.hostname, `${'x'.repeat(60)}-11`);
  });
});

describe('completedIndexes', () => {
  it('is written as Kubernetes does, and read back', () => {
    assert.equal(formatIndexes([5, 0, 1, 2, 7, 8]), '0-2,5,7-8');
    assert.equal(formatIndexes([]), '');
    assert.deepEqual([...parseIndexes('0-2,5', 10)].sort(), [0, 1, 2, 5]);
    assert.deepEqual([...parseIndexes('3-9,junk', 5)].sort(), [3, 4]);
  });
});

describe('planJob, Indexed', () => {
  it('starts the lowest indexes first, parallelism at a time', () => {
    const plan = planJob(mkJob({ completions: 5, parallelism: 2 }), [], T0);
    assert.deepEqual(plan.createIndexes, [0, 1]);
    assert.equal(plan.create, 2);
  });

  it('fills the holes: indexes neither done nor running', () => {
    const job = mkJob({ completions: 5, parallelism: 3 });
    const pods = [podAt(job, 0, 'Succeeded'), podAt(job, 1, 'Running'), podAt(job, 3, 'Succeeded')];
    const plan = planJob(job, pods, T0);
    assert.deepEqual(plan.createIndexes, [2, 4]);
    assert.equal(plan.status.completedIndexes, '0,3');
    assert.equal(plan.status.succeeded, 2);
  });

  it('a failed index is retried (after the back-off), and only that index', () => {
    const job = mkJob({ completions: 3, parallelism: 3 });
    const pods = [podAt(job, 0, 'Succeeded'), podAt(job, 1, 'Failed'), podAt(job, 2, 'Running')];
    const plan = planJob(job, pods, T0);
    assert.deepEqual(plan.createIndexes, [1]);
    assert.equal(plan.status.failed, 1);
    const soon = planJob(job, [podAt(job, 0, 'Succeeded'), podAt(job, 1, 'Failed', 1000), podAt(job, 2, 'Running')], T0);
    assert.equal(soon.create, 0);
    assert.ok(soon.requeueAfterMs! > 0);
  });

  it('two successes of one index count once: not complete until every index succeeded', () => {
    const job = mkJob({ completions: 3, parallelism: 1 });
    const pods = [podAt(job, 0, 'Succeeded'), podAt(job, 0, 'Succeeded'), podAt(job, 1, 'Succeeded')];
    const plan = planJob(job, pods, T0);
    assert.equal(plan.status.succeeded, 2);
    assert.ok(!plan.status.conditions?.some((c) => c.type === 'Complete'));
    assert.deepEqual(plan.createIndexes, [2]);
  });

  it('complete once every index succeeded; completedIndexes "0-2"', () => {
    const job = mkJob({ completions: 3, parallelism: 2 });
    const plan = planJob(job, [podAt(job, 0, 'Succeeded'), podAt(job, 1, 'Failed'), podAt(job, 1, 'Succeeded'), podAt(job, 2, 'Succeeded')], T0);
    assert.ok(plan.status.conditions?.some((c) => c.type === 'Complete' && c.status === 'True'));
    assert.equal(plan.status.completedIndexes, '0-2');
    assert.equal(plan.status.succeeded, 3);
    assert.equal(plan.create, 0);
  });

  it('a succeeded index stays counted when its pod is deleted by hand (status keeps it)', () => {
    const job = mkJob({ completions: 2, parallelism: 2, status: { active: 1, succeeded: 1, failed: 0, completedIndexes: '0' } });
    const plan = planJob(job, [podAt(job, 1, 'Running')], T0);
    assert.equal(plan.create, 0);
    assert.equal(plan.status.completedIndexes, '0');
  });

  it('surplus pods go: a second one for an index, one for an index already done, one without an index', () => {
    const job = mkJob({ completions: 3, parallelism: 3 });
    const first = podAt(job, 1, 'Running');
    const dup = podAt(job, 1, 'Running');
    const late = podAt(job, 0, 'Running');
    const noIndex = podAt(job, 2, 'Running');
    delete noIndex.metadata.annotations![JOB_COMPLETION_INDEX];
    delete noIndex.metadata.labels![JOB_COMPLETION_INDEX];
    const plan = planJob(job, [podAt(job, 0, 'Succeeded'), first, dup, late, noIndex], T0);
    assert.deepEqual(plan.delete.map((d) => d.pod.metadata.name).sort(), [dup, late, noIndex].map((p) => p.metadata.name).sort());
    assert.deepEqual(plan.createIndexes, [2]);
    assert.equal(plan.status.active, 2);
  });

  it('the backoff limit still ends it: Failed/BackoffLimitExceeded, running indexes stopped', () => {
    const job = mkJob({ completions: 3, parallelism: 3, backoffLimit: 1 });
    const plan = planJob(job, [podAt(job, 0, 'Failed'), podAt(job, 0, 'Failed'), podAt(job, 1, 'Running')], T0);
    assert.equal(plan.status.conditions?.find((c) => c.type === 'Failed')?.reason, 'BackoffLimitExceeded');
    assert.equal(plan.delete.length, 1);
    assert.equal(plan.create, 0);
  });
});
