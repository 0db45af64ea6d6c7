import { z } from 'zod';
import { objectMeta } from './meta.js';

export const namespace = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Namespace'),
  metadata: objectMeta,
  spec: z.strictObject({ finalizers: z.array(z.string()).optional() }).optional(),
  status: z.object({ phase: z.enum(['Active', 'Terminating']).default('Active') }).optional(),
});
export type Namespace = z.infer<typeof namespace>;
