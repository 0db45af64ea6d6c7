import { z } from 'zod';
import { podSpec } from './pod.js';

/** A pod template's metadata: Kubernetes writes `creationTimestamp: null` into generated templates. */
export const templateMeta = z.strictObject({
  name: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  creationTimestamp: z.null().optional(),
});

export const podTemplate = z.strictObject({
  metadata: templateMeta.default({}),
  spec: podSpec,
});
export type PodTemplate = z.infer<typeof podTemplate>;

/** "25%" or 1: counts relative to a replica total, rounded as Kubernetes does per field. */
export const intOrPercent = z.union([z.number().int().min(0), z.string().regex(/^[0-9]+%$/, 'must be an integer or a percentage like "25%"')]);
export type IntOrPercent = z.infer<typeof intOrPercent>;

export function resolveIntOrPercent(v: IntOrPercent | undefined, total: number, roundUp: boolean, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === 'number') return v;
  const pct = Number(v.slice(0, -1)) / 100;
  return roundUp ? Math.ceil(pct * total) : Math.floor(pct * total);
}
