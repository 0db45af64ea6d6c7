import { z } from 'zod';
import { condition, objectMeta } from './meta.js';

export const nodeStatus = z.object({
  capacity: z.object({ cpu: z.string(), memory: z.string(), pods: z.string() }).optional(),
  allocatable: z.object({ cpu: z.string(), memory: z.string(), pods: z.string() }).optional(),
  conditions: z.array(condition).optional(),
  nodeInfo: z
    .object({
      architecture: z.string(),
      operatingSystem: z.string(),
      osImage: z.string(),
      kernelVersion: z.string(),
      containerRuntimeVersion: z.string(),
      agentVersion: z.string(),
      contractVersion: z.number().int(),
      bootID: z.string(),
      cpuModel: z.string().optional(),
    })
    .optional(),
  addresses: z.array(z.object({ type: z.string(), address: z.string() })).optional(),
  /** ISO time the server last heard from the agent (presence, hello or status). */
  lastHeard: z.string().optional(),
  images: z.array(z.string()).optional(),
  /** Digests of the server's image archives the agent has loaded (issue 15: `drover get images` shows where each is). */
  imageDigests: z.array(z.string()).optional(),
  /** The agent's image transfers in progress or failed (bytes / total), for `rollout status` and `describe node`. */
  imageTransfers: z.array(z.object({ digest: z.string(), name: z.string(), bytes: z.number(), total: z.number(), state: z.string(), message: z.string().optional() })).optional(),
  /** Host device nodes the agent found (e.g. /dev/ttyUSB0), for pods that ask for devices. */
  devices: z.array(z.string()).optional(),
  /** Usage reported by the agent, for `drover top`. */
  usage: z.object({ cpuMilli: z.number(), memoryBytes: z.number(), ts: z.string() }).optional(),
});
export type NodeStatus = z.infer<typeof nodeStatus>;

export const taint = z.strictObject({
  key: z.string({ error: 'required' }).min(1, 'required'),
  value: z.string().optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']),
  timeAdded: z.string().optional(),
});
export type Taint = z.infer<typeof taint>;

export const nodeSpec = z.strictObject({
  unschedulable: z.boolean().optional(),
  taints: z.array(taint).optional(),
});

export const node = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Node'),
  metadata: objectMeta,
  spec: nodeSpec.default({}),
  status: nodeStatus.optional(),
});
export type Node = z.infer<typeof node>;

export function nodeReady(n: Node): boolean {
  return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
}
