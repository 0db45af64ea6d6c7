import { z } from 'zod';
import { condition, objectMeta } from './meta.js';
import { labelSelector, selectorMatches, selectorString, type LabelSelector } from './selector.js';
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

/**
 * A waved rollout (`spec.drover.rollout`, a drover key so Kubernetes' own fields stay valid): the
 * fleet gets a new revision wave by wave. Each wave is a cumulative node set — the first `nodes`
 * nodes, `percent` % of the eligible nodes (rounded up), or the nodes a `selector` matches — and
 * must pass its health `gate` before the next one starts. See server/controllers/waves.ts.
 */
export const rolloutWave = z
  .strictObject({
    nodes: z.number().int().min(1, 'must be at least 1').max(MAX_REPLICAS, `must be at most ${MAX_REPLICAS}`).optional(),
    percent: z.number().int('must be 1..100').min(1, 'must be 1..100').max(100, 'must be 1..100').optional(),
    selector: labelSelector.optional(),
  })
  .superRefine((w, ctx) => {
    const set = (['nodes', 'percent', 'selector'] as const).filter((k) => w[k] !== undefined);
    if (set.length !== 1) ctx.addIssue({ code: 'custom', message: set.length ? `exactly one of nodes, percent, selector (got ${set.join(' and ')})` : 'one of nodes, percent, selector is required' });
    if (w.selector && Object.keys(w.selector.matchLabels ?? {}).length + (w.selector.matchExpressions?.length ?? 0) === 0) {
      ctx.addIssue({ code: 'custom', path: ['selector'], message: 'must not be empty (it would match every node: use percent: 100)' });
    }
  });
export type RolloutWave = z.infer<typeof rolloutWave>;

export const OFFLINE_POLICIES = ['wait', 'skip', 'block'] as const;
export type OfflinePolicy = (typeof OFFLINE_POLICIES)[number];

export const GATE_DEFAULTS = { readySeconds: 30, maxFailureRatio: 0, timeoutSeconds: 600 } as const;

export const wavedRollout = z.strictObject({
  waves: z.array(rolloutWave).min(1, 'at least one wave is required').max(20, 'at most 20 waves'),
  gate: z
    .strictObject({
      readySeconds: z.number().int().min(0, 'must be 0 or more').max(86_400, 'must be at most 86400').optional(),
      maxFailureRatio: z.number().min(0, 'must be 0..1').max(1, 'must be 0..1').optional(),
      timeoutSeconds: z.number().int().min(1, 'must be at least 1').max(604_800, 'must be at most 604800').optional(),
    })
    .optional(),
  offlineNodes: z.enum(OFFLINE_POLICIES, { message: `must be one of ${OFFLINE_POLICIES.join(', ')}` }).optional(),
});
export type WavedRollout = z.infer<typeof wavedRollout>;

/** The rollout's waves, with an implicit last one of 100 % when the listed ones do not end there. */
export function effectiveWaves(cfg: WavedRollout): RolloutWave[] {
  const last = cfg.waves.at(-1);
  return last && last.percent === 100 ? cfg.waves : [...cfg.waves, { percent: 100 }];
}

/** How a wave is named for people: "1 node", "25%", "site=lab" ("2 replicas" for a Deployment's). */
export function waveLabel(w: RolloutWave | undefined, unit: 'node' | 'replica' = 'node'): string {
  if (!w) return '';
  if (w.selector) return selectorString(w.selector);
  if (w.percent !== undefined) return `${w.percent}%`;
  return `${w.nodes} ${unit}${w.nodes === 1 ? '' : 's'}`;
}

/** A DaemonSet's drover fields: the waved rollout, and `paused` (holds the current wave, as a Deployment's spec.paused). */
export const daemonSetDrover = z.strictObject({ rollout: wavedRollout.optional(), paused: z.boolean().optional() });

export const ROLLOUT_PHASES = ['Progressing', 'Paused', 'Complete', 'RolledBack', 'Failed'] as const;

/** `status.drover.rollout`: where a waved rollout stands (written by the DaemonSet controller only). */
export const wavedRolloutStatus = z.object({
  phase: z.enum(ROLLOUT_PHASES),
  /** The current wave, 0-based. */
  wave: z.number().int(),
  /** How many waves the rollout has (an implicit last 100 % wave included). */
  waves: z.number().int(),
  /** The template hash being rolled out (after a rollback: the one that failed). */
  targetRevision: z.string(),
  /** The template hash of the last rollout that completed. */
  stableRevision: z.string().optional(),
  counts: z.object({ updated: z.number().int(), ready: z.number().int(), pending: z.number().int(), offline: z.number().int(), failed: z.number().int(), total: z.number().int() }),
  message: z.string(),
  waveStartedAt: z.string().optional(),
  /** When the gate's readySeconds will have elapsed for the last pod of the wave (while waiting on it). */
  waitingUntil: z.string().optional(),
  /** Offline nodes of the current wave (the first 20), for `rollout status`. */
  offlineNodes: z.array(z.string()).optional(),
});
export type WavedRolloutStatus = z.infer<typeof wavedRolloutStatus>;

/** Labels as Kubernetes' error messages print them (Go's %#v of a map, keys sorted). */
function goMap(labels: Record<string, string> | undefined): string {
  const entries = Object.keys(labels ?? {}).sort().map((k) => `${JSON.stringify(k)}:${JSON.stringify(labels![k])}`);
  return `map[string]string{${entries.join(', ')}}`;
}

/**
 * A controller whose selector does not match its own template's labels would create pods it never
 * counts, forever. Refused at create and update, with Kubernetes' wording (apps/v1 and batch/v1
 * validation), on the spec's `template.metadata.labels`.
 */
export function selectorMatchesTemplate(spec: { selector?: LabelSelector; template: { metadata?: { labels?: Record<string, string> } } }, ctx: z.RefinementCtx): void {
  if (!spec.selector) return;
  const labels = spec.template.metadata?.labels;
  if (selectorMatches(spec.selector, labels)) return;
  ctx.addIssue({ code: 'custom', path: ['template', 'metadata', 'labels'], message: `Invalid value: ${goMap(labels)}: \`selector\` does not match template \`labels\`` });
}

const selectorRequired = labelSelector.refine((s) => Object.keys(s.matchLabels ?? {}).length + (s.matchExpressions?.length ?? 0) > 0, 'must not be empty');

const deploymentSpecFields = z.strictObject({
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
  /**
   * A waved rollout of a Deployment: its pods are not tied to nodes, so a wave is a count of replicas
   * of the new revision (`nodes: N` → N replicas, `percent` → % of spec.replicas); see deploymentSpecRules.
   */
  drover: z.strictObject({ rollout: wavedRollout.optional() }).optional(),
});

/** What a Deployment's waved rollout cannot have: node selectors, an offline-node policy, Recreate. */
export const deploymentSpec = deploymentSpecFields.superRefine((spec, ctx) => {
  selectorMatchesTemplate(spec, ctx);
  const r = spec.drover?.rollout;
  if (!r) return;
  r.waves.forEach((w, i) => {
    if (w.selector) ctx.addIssue({ code: 'custom', path: ['drover', 'rollout', 'waves', i, 'selector'], message: "a Deployment's pods are not tied to nodes: use nodes or percent (replicas of the new revision); selector waves are for DaemonSets" });
  });
  if (r.offlineNodes !== undefined) ctx.addIssue({ code: 'custom', path: ['drover', 'rollout', 'offlineNodes'], message: "applies to DaemonSets only (a Deployment's pods are rescheduled, not tied to a node)" });
  if (spec.strategy.type === 'Recreate') ctx.addIssue({ code: 'custom', path: ['drover', 'rollout'], message: 'needs strategy.type RollingUpdate (Recreate replaces every pod at once)' });
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
  /** The waved rollout's progress (written by the Deployment controller only). */
  drover: z.object({ rollout: wavedRolloutStatus.optional() }).optional(),
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
  }).superRefine(selectorMatchesTemplate),
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
    drover: daemonSetDrover.optional(),
  }).superRefine(selectorMatchesTemplate),
  status: z
    .object({
      /**
       * The waved rollout's progress, and the template of the last revision that completed: a
       * DaemonSet has no ReplicaSet history to roll back to, and status is the one place a user's
       * PUT or apply does not overwrite (the API keeps the stored status), so it survives edits.
       */
      drover: z.object({ rollout: wavedRolloutStatus.optional(), stableTemplate: podTemplate.optional() }).optional(),
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

/** batch/v1: which index an Indexed Job's pod runs (annotation, and label as Kubernetes 1.28+ also sets). */
export const JOB_COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';

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
      /** Indexed: each pod runs one index 0..completions-1 (JOB_COMPLETION_INDEX), done when every index succeeded. */
      completionMode: z.enum(['NonIndexed', 'Indexed']).optional(),
      suspend: z.boolean().optional(),
      template: podTemplate,
    })
    .superRefine((s, ctx) => {
      if (s.template.spec.restartPolicy !== 'OnFailure' && s.template.spec.restartPolicy !== 'Never') {
        ctx.addIssue({ code: 'custom', path: ['template', 'spec', 'restartPolicy'], message: 'must be OnFailure or Never for a Job' });
      }
      selectorMatchesTemplate(s, ctx);
    }),
  status: z
    .object({
      active: z.number().int().default(0),
      succeeded: z.number().int().default(0),
      failed: z.number().int().default(0),
      /** Indexed Jobs: the indexes that succeeded, as Kubernetes writes them ("0-2,5"). */
      completedIndexes: z.string().optional(),
      startTime: z.string().optional(),
      completionTime: z.string().optional(),
      conditions: z.array(condition).optional(),
    })
    .optional(),
});
export type Job = z.infer<typeof job>;
