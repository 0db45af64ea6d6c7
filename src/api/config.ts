import { z } from 'zod';
import { objectMeta } from './meta.js';

const key = z.string().regex(/^[-._a-zA-Z0-9]+$/, 'keys must consist of alphanumeric characters, "-", "_" or "."');

export const configMap = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('ConfigMap'),
  metadata: objectMeta,
  data: z.record(key, z.string()).optional(),
  binaryData: z.record(key, z.string().base64('must be base64')).optional(),
  immutable: z.boolean().optional(),
});
export type ConfigMap = z.infer<typeof configMap>;

/**
 * Secrets as Kubernetes has them: `data` is base64, `stringData` is plain text merged into `data`
 * on write (see normalizeSecret) and never stored.
 */
export const secret = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Secret'),
  metadata: objectMeta,
  type: z.string().default('Opaque'),
  data: z.record(key, z.string().base64('must be base64')).optional(),
  stringData: z.record(key, z.string()).optional(),
  immutable: z.boolean().optional(),
});
export type Secret = z.infer<typeof secret>;

export function normalizeSecret<T extends Secret>(s: T): T {
  if (!s.stringData) return s;
  const data = { ...s.data };
  for (const [k, v] of Object.entries(s.stringData)) data[k] = Buffer.from(v, 'utf8').toString('base64');
  const out = { ...s, data };
  delete out.stringData;
  return out;
}

/** Per-namespace limits; `hard` keys as Kubernetes names them. */
export const resourceQuota = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('ResourceQuota'),
  metadata: objectMeta,
  spec: z.strictObject({
    hard: z.record(
      z.enum(['pods', 'requests.cpu', 'requests.memory', 'limits.cpu', 'limits.memory', 'cpu', 'memory', 'configmaps', 'secrets', 'count/pods', 'count/deployments.apps', 'count/jobs.batch', 'count/daemonsets.apps', 'count/configmaps', 'count/secrets']),
      z.union([z.string(), z.number()]),
    ),
  }),
  status: z.object({ hard: z.record(z.string(), z.string()).optional(), used: z.record(z.string(), z.string()).optional() }).optional(),
});
export type ResourceQuota = z.infer<typeof resourceQuota>;
