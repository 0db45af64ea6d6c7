/**
 * Job controller: runs pods until `completions` of them succeeded, at most `parallelism` at a time;
 * gives up after more than `backoffLimit` failures or after `activeDeadlineSeconds`. Finished pods
 * are kept (their logs stay readable) until the Job goes, by hand or `ttlSecondsAfterFinished`;
 * the garbage collector then removes them through their ownerReferences.
 *
 * Indexed Jobs (`completionMode: Indexed`): each pod runs one index 0..completions-1, named in its
 * annotation and label batch.kubernetes.io/job-completion-index, its JOB_COMPLETION_INDEX env and its
 * hostname JOB-INDEX; a failed index gets a new pod (after the back-off), and the Job is complete when
 * every index has succeeded once. status.completedIndexes lists them as Kubernetes does ("0-2,5").
 *
 * `planJob` is the pure decision (tested with plain values); the controller only does I/O.
 */
import type { Condition } from '../../src/api/meta.js';
import type { Pod } from '../../src/api/pod.js';
import { JOB_COMPLETION_INDEX, type Job } from '../../src/api/workloads.js';
import { jsonEqual } from '../../src/util/canonical-json.js';
import { isNotFound } from '../../src/util/errors.js';
import type { ControllerDeps } from './deps.js';
import { isOwnedBy, newOwnedPod, podReady, podWriter } from './pods.js';
import { type Controller, ownerKeys, splitKey } from './runner.js';
import { validStored } from './valid-stored.js';
import { PodWriteSteps } from './still-wanted.js';

export type JobStatus = NonNullable<Job['status']>;

export const JOB_NAME_LABEL = 'job-name';
export const CONTROLLER_UID_LABEL = 'controller-uid';

export interface JobEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface JobPlan {
  /** How many new pods to create. */
  create: number;
  /** Indexed Jobs: the index of each pod to create (as many as `create`), lowest first. */
  createIndexes?: number[];
  /** Pods to delete (active pods of a finished Job, or above parallelism). */
  delete: Array<{ pod: Pod; reason: string }>;
  status: JobStatus;
  /** Events for transitions decided in this pass (Completed, BackoffLimitExceeded, DeadlineExceeded). */
  events: JobEvent[];
  /** ttlSecondsAfterFinished has run out: delete the Job itself. */
  deleteJob: boolean;
  requeueAfterMs?: number;
}

function condTrue(conds: Condition[] | undefined, type: string): Condition | undefined {
  return conds?.find((c) => c.type === type && c.status === 'True');
}

function creationMs(p: Pod): number {
  const t = p.metadata.creationTimestamp ? Date.parse(p.metadata.creationTimestamp) : NaN;
  return Number.isFinite(t) ? t : 0;
}

/** Container restarts of a pod (OnFailure: each one is a failed run). */
export function podRestarts(p: Pod): number {
  return (p.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0);
}

/**
 * The pod a Job runs (name left empty; the controller fills it in). For an Indexed Job, `index` is
 * written where Kubernetes puts it: annotation and label, JOB_COMPLETION_INDEX in every container
 * (a plain value: the agent needs nothing more to run it), hostname JOB-INDEX.
 */
export function newJobPod(job: Job, index?: number): Pod {
  const uid = job.metadata.uid ?? '';
  const labels: Record<string, string> = { [JOB_NAME_LABEL]: job.metadata.name, [CONTROLLER_UID_LABEL]: uid };
  if (index !== undefined) labels[JOB_COMPLETION_INDEX] = String(index);
  const pod = newOwnedPod(job.spec.template, { apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, namespace: job.metadata.namespace, uid }, labels);
  if (index === undefined) return pod;
  pod.metadata.annotations = { ...pod.metadata.annotations, [JOB_COMPLETION_INDEX]: String(index) };
  for (const c of pod.spec.containers) {
    // Kubernetes puts its own first; a user's variable of the same name is dropped, as the kubelet's later entry would win anyway.
    c.env = [{ name: 'JOB_COMPLETION_INDEX', value: String(index) }, ...(c.env ?? []).filter((e) => e.name !== 'JOB_COMPLETION_INDEX')];
  }
  // A DNS label: Kubernetes cuts the job name to leave room for "-INDEX".
  pod.spec.hostname ??= `${job.metadata.name.slice(0, 63 - String(index).length - 1).replace(/[-.]+$/, '')}-${index}`;
  return pod;
}

/** The completion index of an Indexed Job's pod (its annotation), or undefined when absent or out of range. */
export function podIndex(p: Pod, completions: number): number | undefined {
  const v = p.metadata.annotations?.[JOB_COMPLETION_INDEX] ?? p.metadata.labels?.[JOB_COMPLETION_INDEX];
  if (v === undefined || !/^(0|[1-9][0-9]*)$/.test(v)) return undefined;
  const n = Number(v);
  return n < completions ? n : undefined;
}

/** Sorted indexes as Kubernetes writes status.completedIndexes: "0-2,5,7-8". */
export function formatIndexes(indexes: Iterable<number>): string {
  const sorted = [...new Set(indexes)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : String(sorted[i]));
    i = j + 1;
  }
  return parts.join(',');
}

/** The indexes of a completedIndexes string below `completions`; what does not parse is skipped. */
export function parseIndexes(text: string | undefined, completions: number): Set<number> {
  const out = new Set<number>();
  for (const part of (text ?? '').split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (!m) continue;
    const from = Number(m[1]);
    const to = Math.min(Number(m[2] ?? m[1]), completions - 1);
    for (let i = from; i <= to; i++) out.add(i);
  }
  return out;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Kubernetes' pod failure back-off: 10 s, doubled per failure, at most 6 min. */
export const JOB_BACKOFF = { baseMs: 10_000, maxMs: 360_000 } as const;

/** How long after the `failed`-th failure a replacement pod may start. */
export function jobBackoffDelay(failed: number, baseMs: number = JOB_BACKOFF.baseMs): number {
  return failed <= 0 ? 0 : Math.min(JOB_BACKOFF.maxMs, baseMs * 2 ** Math.min(failed - 1, 20));
}

/** When a failed pod stopped: its containers' finish time, else its creation. */
function failedAtMs(p: Pod): number {
  const ends = (p.status?.containerStatuses ?? []).map((c) => (c.finishedAt ? Date.parse(c.finishedAt) : NaN)).filter(Number.isFinite);
  return ends.length ? Math.max(...ends) : creationMs(p);
}

/**
 * The whole decision for one Job at time `now`, from the pods in its namespace (others are
 * ignored). Pure. Failure accounting follows Kubernetes: the Job fails when more than
 * backoffLimit pods failed, or (restartPolicy OnFailure) when the container restarts of its active
 * pods reach backoffLimit (any restart when backoffLimit is 0).
 */
export function planJob(job: Job, pods: readonly Pod[], now: number, opts: { backoffBaseMs?: number } = {}): JobPlan {
  const spec = job.spec;
  const prev: Partial<JobStatus> = job.status ?? {};
  const indexed = spec.completionMode === 'Indexed';
  const own = pods.filter((p) => isOwnedBy(p, job.metadata.uid) && !p.metadata.deletionTimestamp);
  const succeededPods = own.filter((p) => p.status?.phase === 'Succeeded');
  const failedPods = own.filter((p) => p.status?.phase === 'Failed');
  let active = own.filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
  const del: JobPlan['delete'] = [];
  // Indexed: what counts is which indexes succeeded (once each), kept in status so a pod deleted by hand still counts.
  const doneIndexes = indexed ? parseIndexes(prev.completedIndexes, spec.completions) : new Set<number>();
  if (indexed) {
    for (const p of succeededPods) {
      const i = podIndex(p, spec.completions);
      if (i !== undefined) doneIndexes.add(i);
    }
    // An active pod whose index already succeeded, or a second one for an index (or none at all), is surplus.
    const running = new Set<number>();
    const keep: Pod[] = [];
    for (const p of [...active].sort((a, b) => Number(podReady(b)) - Number(podReady(a)) || creationMs(a) - creationMs(b))) {
      const i = podIndex(p, spec.completions);
      if (i === undefined || doneIndexes.has(i) || running.has(i)) del.push({ pod: p, reason: i === undefined ? 'no valid completion index' : doneIndexes.has(i) ? `index ${i} already succeeded` : `second pod for index ${i}` });
      else {
        running.add(i);
        keep.push(p);
      }
    }
    active = keep;
  }
  // Counters never go down: a finished pod deleted by hand still counted.
  const succeeded = indexed ? doneIndexes.size : Math.max(prev.succeeded ?? 0, succeededPods.length);
  const failed = Math.max(prev.failed ?? 0, failedPods.length);
  const conditions = [...(prev.conditions ?? [])];
  const events: JobEvent[] = [];
  let create = 0;
  let createIndexes: number[] | undefined;
  let startTime = prev.startTime;
  let completionTime = prev.completionTime;
  let requeue: number | undefined;
  const wake = (ms: number) => {
    requeue = requeue === undefined ? ms : Math.min(requeue, ms);
  };
  const deleteActive = (reason: string) => {
    for (const p of active) del.push({ pod: p, reason });
  };
  const finish = (type: 'Complete' | 'Failed', reason?: string, message?: string) => {
    const c: Condition = { type, status: 'True', lastTransitionTime: iso(now) };
    if (reason) c.reason = reason;
    if (message) c.message = message;
    const i = conditions.findIndex((x) => x.type === type);
    if (i >= 0) conditions[i] = c;
    else conditions.push(c);
  };

  let finished = condTrue(conditions, 'Complete') ?? condTrue(conditions, 'Failed');
  if (finished) {
    deleteActive('job finished');
  } else if (spec.suspend) {
    deleteActive('job suspended');
  } else {
    startTime ??= iso(now);
    const restarts = spec.template.spec.restartPolicy === 'OnFailure' ? active.reduce((n, p) => n + podRestarts(p), 0) : 0;
    const limit = spec.backoffLimit ?? 6;
    const pastBackoff = failed > limit || (restarts > 0 && restarts >= limit);
    const deadlineMs = spec.activeDeadlineSeconds !== undefined ? Date.parse(startTime) + spec.activeDeadlineSeconds * 1000 : undefined;
    if (pastBackoff) {
      const message = 'Job has reached the specified backoff limit';
      finish('Failed', 'BackoffLimitExceeded', message);
      events.push({ type: 'Warning', reason: 'BackoffLimitExceeded', message });
      deleteActive('backoff limit exceeded');
    } else if (deadlineMs !== undefined && now >= deadlineMs) {
      const message = 'Job was active longer than specified deadline';
      finish('Failed', 'DeadlineExceeded', message);
      events.push({ type: 'Warning', reason: 'DeadlineExceeded', message });
      deleteActive('deadline exceeded');
    } else if (succeeded >= spec.completions) {
      finish('Complete');
      completionTime = iso(now);
      events.push({ type: 'Normal', reason: 'Completed', message: 'Job completed' });
      deleteActive('job complete');
    } else {
      const want = Math.max(0, Math.min(spec.parallelism, spec.completions - succeeded));
      // After a failure, replacements wait out the back-off (as in Kubernetes) instead of hammering a device.
      // Capped at now: a device clock running ahead must not postpone the retry by its error.
      const lastFailure = failedPods.length ? Math.min(now, Math.max(...failedPods.map(failedAtMs))) : undefined;
      const retryAt = lastFailure !== undefined ? lastFailure + jobBackoffDelay(failed, opts.backoffBaseMs) : now;
      if (active.length < want && now < retryAt) wake(retryAt - now);
      else if (active.length < want) {
        create = want - active.length;
        if (indexed) {
          const busy = new Set(active.map((p) => podIndex(p, spec.completions)));
          createIndexes = [];
          for (let i = 0; i < spec.completions && createIndexes.length < create; i++) if (!doneIndexes.has(i) && !busy.has(i)) createIndexes.push(i);
          create = createIndexes.length;
        }
      } else if (active.length > want) {
        // Too many (parallelism lowered): drop the not-ready ones first, then the newest.
        const ranked = [...active].sort((a, b) => Number(podReady(a)) - Number(podReady(b)) || creationMs(b) - creationMs(a));
        for (const p of ranked.slice(0, active.length - want)) del.push({ pod: p, reason: 'above parallelism' });
      }
      if (deadlineMs !== undefined) wake(deadlineMs - now);
    }
    finished = condTrue(conditions, 'Complete') ?? condTrue(conditions, 'Failed');
  }

  let deleteJob = false;
  if (finished && spec.ttlSecondsAfterFinished !== undefined) {
    const at = Date.parse(completionTime ?? finished.lastTransitionTime ?? iso(now)) + spec.ttlSecondsAfterFinished * 1000;
    if (now >= at) deleteJob = true;
    else wake(at - now);
  }

  const deletedActive = del.filter((d) => active.includes(d.pod)).length;
  const status: JobStatus = { active: active.length - deletedActive + create, succeeded, failed };
  if (indexed && doneIndexes.size) status.completedIndexes = formatIndexes(doneIndexes);
  if (startTime) status.startTime = startTime;
  if (completionTime) status.completionTime = completionTime;
  if (conditions.length) status.conditions = conditions;
  return { create, ...(createIndexes ? { createIndexes } : {}), delete: del, status, events, deleteJob, ...(requeue !== undefined ? { requeueAfterMs: Math.max(1, requeue) } : {}) };
}

const COMPONENT = 'job-controller';

export function jobController(deps: ControllerDeps): Controller {
  const { store, events, logger } = deps;
  const log = logger.child({ controller: 'job' });
  const valid = validStored({ events, logger: log }, COMPONENT);

  return {
    name: 'job',
    kind: 'Job',
    watches: [{ kind: 'Pod', keys: (o) => ownerKeys(o, 'Job') }],
    async reconcile(key, signal) {
      const { namespace, name } = splitKey(key);
      const raw = await store.get('Job', namespace, name);
      if (!raw) return; // its pods go with the garbage collector
      const job = await valid('Job', raw);
      if (!job) return;
      const involved = { kind: 'Job', namespace, name, uid: job.metadata.uid };
      const pods = (await store.list('Pod', namespace)).items;
      const plan = planJob(job, pods, deps.now(), { backoffBaseMs: deps.jobBackoffBaseMs });

      const writer = podWriter(deps, involved, COMPONENT);
      // Each pod written is a step: the Job must still be the one planned for, and a pass writes at most
      // MAX_POD_WRITES_PER_STEP pods; the rest wait for the next pass, queued at once.
      const steps = new PodWriteSteps(store, job, signal);
      let deleted = 0;
      for (const d of plan.delete) {
        if (!(await steps.next())) break;
        deleted++;
        const pn = d.pod.metadata.name;
        if (!(await writer.delete(namespace, pn))) continue;
        log.info({ job: key, pod: pn, reason: d.reason }, 'deleted job pod');
        await writer.record('Normal', 'SuccessfulDelete', `Deleted pod: ${pn}`);
      }

      let created = 0;
      while (created < plan.create && deleted === plan.delete.length && (await steps.next())) {
        const index = plan.createIndexes?.[created];
        // Kubernetes names an Indexed Job's pods JOB-INDEX-xxxxx.
        const pod = await writer.create(newJobPod(job, index), index === undefined ? name : `${name}-${index}`);
        created++;
        log.info({ job: key, pod: pod.metadata.name }, 'created job pod');
        await writer.record('Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`);
      }
      if (deleted < plan.delete.length || created < plan.create) {
        // Cut short (a batch done, or the Job changed or went): the status is the next pass's to write.
        if (steps.stopped) log.info({ job: key, why: steps.stopped }, 'job reconcile stopped');
        return steps.exhausted ? { requeueAfterMs: 0 } : undefined;
      }

      if (!jsonEqual(raw.status ?? {}, plan.status)) {
        const written = await store
          .patch('Job', namespace, name, (cur) => {
            if (cur.metadata.uid !== job.metadata.uid || jsonEqual(cur.status ?? {}, plan.status)) return undefined;
            cur.status = plan.status;
            return cur;
          })
          .catch((err) => {
            if (isNotFound(err)) return undefined;
            throw err;
          });
        // Transition events once, with the write that made the transition.
        if (written) for (const e of plan.events) await events.record({ involved, ...e, component: COMPONENT });
      }

      if (plan.deleteJob) {
        await store.delete('Job', namespace, name).catch((err) => {
          if (!isNotFound(err)) throw err;
        });
        log.info({ job: key }, 'deleted finished job (ttlSecondsAfterFinished)');
        return;
      }
      return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
    },
  };
}
