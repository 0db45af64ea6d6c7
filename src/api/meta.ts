import { z } from 'zod';

/** RFC 1123 label / subdomain as Kubernetes uses for names. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const name = z
  .string({ error: 'required' })
  .min(1, 'required')
  .max(253, 'must be no more than 253 characters')
  .regex(DNS_SUBDOMAIN, 'must consist of lower case alphanumeric characters, "-" or ".", and start and end with an alphanumeric character');

const labelKey = z.string().regex(/^([a-z0-9A-Z.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/, 'invalid label key');
const labelValue = z.string().regex(/^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/, 'invalid label value');

export const ownerReference = z.strictObject({
  apiVersion: z.string(),
  kind: z.string(),
  name: z.string(),
  uid: z.string(),
  controller: z.boolean().optional(),
  blockOwnerDeletion: z.boolean().optional(),
});

/** Server-side apply's record of which manager set which fields (server/api/apply.ts writes it). */
export const managedFieldsEntry = z.strictObject({
  manager: z.string().max(128).optional(),
  operation: z.enum(['Apply', 'Update']).optional(),
  apiVersion: z.string().optional(),
  time: z.string().optional(),
  fieldsType: z.literal('FieldsV1').optional(),
  fieldsV1: z.record(z.string(), z.unknown()).optional(),
  subresource: z.string().optional(),
});

export const objectMeta = z.strictObject({
  name,
  namespace: z.string().regex(DNS_LABEL, 'must be a DNS label').optional(),
  labels: z.record(labelKey, labelValue).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().int().optional(),
  // `kubectl create --dry-run -o yaml` writes `creationTimestamp: null`; Kubernetes ignores it.
  creationTimestamp: z.preprocess((v) => (v === null ? undefined : v), z.string().optional()),
  deletionTimestamp: z.string().optional(),
  ownerReferences: z.array(ownerReference).optional(),
  managedFields: z.array(managedFieldsEntry).optional(),
});

export type ObjectMeta = z.infer<typeof objectMeta>;

export const condition = z.strictObject({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
  lastHeartbeatTime: z.string().optional(),
  lastUpdateTime: z.string().optional(),
});
export type Condition = z.infer<typeof condition>;

/** Every stored object has this shape: the kind-specific schemas refine spec and status. */
export interface ApiObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [k: string]: unknown;
}
