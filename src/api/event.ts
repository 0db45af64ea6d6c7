import { z } from 'zod';
import { objectMeta } from './meta.js';

export const objectReference = z.object({
  kind: z.string(),
  namespace: z.string().optional(),
  name: z.string(),
  uid: z.string().optional(),
});

/** Something a user wants to see in `describe`: scheduling decisions, container starts, failures. */
export const event = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Event'),
  metadata: objectMeta,
  involvedObject: objectReference,
  type: z.enum(['Normal', 'Warning']),
  reason: z.string(),
  message: z.string(),
  source: z.object({ component: z.string(), host: z.string().optional() }),
  firstTimestamp: z.string(),
  lastTimestamp: z.string(),
  count: z.number().int().min(1),
});
export type Event = z.infer<typeof event>;
