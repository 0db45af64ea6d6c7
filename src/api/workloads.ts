import { z } from 'zod';
import { condition, objectMeta } from './meta.js';
import { labelSelector } from './selector.js';
import { intOrPercent, podTemplate } from './template.js';

/**
 * Most replicas, completions or parallelism one object may ask for. A fleet of thousands of devices
 * fits; `replicas: 1e9` (a typo or an attack) is refused here instead of making controllers create
 * and collect pods for hours.
 */
export const MAX_REPLICAS = 10_000;
const count = (min: number) => z.number().int().min(min).max(MAX_REPLICAS, `must be at most ${MAX_REPLICAS}`);

/** The count fields of each workload kind that the replica cap bounds. */
const COUNT_FIELDS: Record<string, string[]> = {
  Deployment: ['replicas'],
  ReplicaSet: ['replicas'],
  Job: ['completions', 'parallelism'],
};

/**
 * The count fields of a (validated) workload above a server's own cap (`drover server --max-replicas`,
 * at most MAX_REPLICAS), as causes naming each field, for a 422 at admission.
 */
export function countsAbove(obj: { kind: string; spec?: unknown }, max: number): Array<{ field: string; message: string }> {
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  return (COUNT_FIELDS[obj.kind] ?? [])
    .filter((f) => typeof spec[f] === 'number' && (spec[f] as number) > max)
    .map((f) => ({ field: `spec.${f}`, message: `must be at most ${max} (the server's --max-replicas)` }));
}

const selectorRequired = labelSelector.refine((s) => Object.keys(s.matchLabels ?? {}).length + (s.matchExpressions?.length ?? 0) > 0, 'must not be empty');

export const deploymentSpec = z.strictObject({
  replicas: count(0).default(1),
  selector: selectorRequired,
  template: podTemplate,
  strategy: z
    .strictObject({
      type: z.enum(['RollingUpdate', 'Recreate']).default('RollingUpdate'),
      rollingUpdate: z.strictObject({ maxSurge: intOrPercent.default('25%'), maxUnavailable: intOrPercent.default('25%') }).optional(),
    })
    .default({ type: 'RollingUpdate' }),
  revisionHistoryLimit: z.number().int().min(0).default(10),
  paused: z.boolean().optional(),
  progressDeadlineSeconds: z.number().int().min(1).default(600),
  minReadySeconds: z.number().int().min(0).default(0),
});

export const deploymentStatus = z.object({
  observedGeneration: z.number().int().optional(),
  replicas: z.number().int().default(0),
  updatedReplicas: z.number().int().default(0),
  readyReplicas: z.number().int().default(0),
  availableReplicas: z.number().int().default(0),
  unavailableReplicas: z.number().int().default(0),
  conditions: z.array(condition).optional(),
  collisionCount: z.number().int().optional(),
});

export const deployment = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Deployment'),
  metadata: objectMeta,
  spec: deploymentSpec,
  status: deploymentStatus.optional(),
});
export type Deployment = z.infer<typeof deployment>;

/** A Deployment's revision: one per distinct pod template (Kubernetes' ReplicaSet). */
export const replicaSet = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('ReplicaSet'),
  metadata: objectMeta,
  spec: z.strictObject({
    replicas: count(0).default(1),
    selector: selectorRequired,
    template: podTemplate,
    minReadySeconds: z.number().int().min(0).default(0),
  }),
  status: z
    .object({
      replicas: z.number().int().default(0),
      readyReplicas: z.number().int().default(0),
      availableReplicas: z.number().int().default(0),
      fullyLabeledReplicas: z.number().int().optional(),
      observedGeneration: z.number().int().optional(),
    })
    .optional(),
});
export type ReplicaSet = z.infer<typeof replicaSet>;

export const daemonSet = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('DaemonSet'),
  metadata: objectMeta,
  spec: z.strictObject({
    selector: selectorRequired,
    template: podTemplate,
    updateStrategy: z
      .strictObject({
        type: z.enum(['RollingUpdate', 'OnDelete']).default('RollingUpdate'),
        rollingUpdate: z.strictObject({ maxUnavailable: intOrPercent.default(1), maxSurge: intOrPercent.default(0) }).optional(),
      })
      .default({ type: 'RollingUpdate' }),
    revisionHistoryLimit: z.number().int().min(0).default(10),
    minReadySeconds: z.number().int().min(0).default(0),
  }),
  status: z
    .object({
      desiredNumberScheduled: z.number().int().default(0),
      currentNumberScheduled: z.number().int().default(0),
      numberReady: z.number().int().default(0),
      updatedNumberScheduled: z.number().int().default(0),
      numberAvailable: z.number().int().default(0),
      numberMisscheduled: z.number().int().default(0),
      observedGeneration: z.number().int().optional(),
    })
    .optional(),
});
export type DaemonSet = z.infer<typeof daemonSet>;

export const job = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Job'),
  metadata: objectMeta,
  spec: z
    .strictObject({
      completions: count(1).default(1),
      parallelism: count(0).default(1),
      backoffLimit: z.number().int().min(0).default(6),
      activeDeadlineSeconds: z.number().int().min(1).optional(),
      ttlSecondsAfterFinished: z.number().int().min(0).optional(),
      selector: labelSelector.optional(),
      manualSelector: z.boolean().optional(),
      completionMode: z.enum(['NonIndexed']).optional(),
      suspend: z.boolean().optional(),
      template: podTemplate,
    })
    .refine((s) => s.template.spec.restartPolicy === 'OnFailure' || s.template.spec.restartPolicy === 'Never', {
      message: 'must be OnFailure or Never for a Job',
      path: ['template', 'spec', 'restartPolicy'],
    }),
  status: z
    .object({
      active: z.number().int().default(0),
      succeeded: z.number().int().default(0),
      failed: z.number().int().default(0),
      startTime: z.string().optional(),
      completionTime: z.string().optional(),
      conditions: z.array(condition).optional(),
    })
    .optional(),
});
export type Job = z.infer<typeof job>;
