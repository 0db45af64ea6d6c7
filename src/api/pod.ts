import { z } from 'zod';
import { condition, objectMeta } from './meta.js';
import { isQuantity } from './quantity.js';

const quantity = z
  .union([z.string(), z.number()])
  .refine((v) => isQuantity(v), 'must be a quantity such as "500m", "1", "128Mi" or "1Gi"');

export const resourceList = z.strictObject({ cpu: quantity.optional(), memory: quantity.optional() });

export const envVar = z.strictObject({
  name: z.string({ error: 'required' }).min(1, 'required').regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, 'invalid environment variable name'),
  value: z.string().default(''),
});

export const containerPort = z.strictObject({
  name: z.string().optional(),
  containerPort: z.number({ error: 'required' }).int().min(1).max(65535),
  hostPort: z.number().int().min(1).max(65535).optional(),
  hostIP: z.string().optional(),
  protocol: z.enum(['TCP', 'UDP']).default('TCP'),
});

export const container = z.strictObject({
  name: z
    .string({ error: 'required' })
    .min(1, 'required')
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label'),
  image: z.string({ error: 'required' }).min(1, 'required'),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  workingDir: z.string().optional(),
  env: z.array(envVar).optional(),
  ports: z.array(containerPort).optional(),
  resources: z.strictObject({ requests: resourceList.optional(), limits: resourceList.optional() }).optional(),
});
export type Container = z.infer<typeof container>;

export const podSpec = z
  .strictObject({
    containers: z.array(container, { error: 'required' }).min(1, 'at least one container is required'),
    restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).default('Always'),
    nodeSelector: z.record(z.string(), z.string()).optional(),
    nodeName: z.string().optional(),
    terminationGracePeriodSeconds: z.number().int().min(0).default(10),
    hostNetwork: z.boolean().optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.containers.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: `duplicate container name "${c.name}"` });
      seen.add(c.name);
    });
  });
export type PodSpec = z.infer<typeof podSpec>;

export const containerStatus = z.object({
  name: z.string(),
  image: z.string(),
  containerID: z.string().optional(),
  ready: z.boolean(),
  restartCount: z.number().int(),
  state: z.enum(['waiting', 'running', 'terminated']),
  reason: z.string().optional(),
  message: z.string().optional(),
  exitCode: z.number().int().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
export type ContainerStatus = z.infer<typeof containerStatus>;

export const podPhase = z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']);
export type PodPhase = z.infer<typeof podPhase>;

export const podStatus = z.object({
  phase: podPhase.default('Pending'),
  conditions: z.array(condition).optional(),
  containerStatuses: z.array(containerStatus).optional(),
  message: z.string().optional(),
  reason: z.string().optional(),
  hostIP: z.string().optional(),
  startTime: z.string().optional(),
  /** When the agent last reported this pod; lets a reader tell a current status from a stale one. */
  lastReportTime: z.string().optional(),
});
export type PodStatus = z.infer<typeof podStatus>;

export const pod = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Pod'),
  metadata: objectMeta,
  spec: podSpec,
  status: podStatus.optional(),
});
export type Pod = z.infer<typeof pod>;
