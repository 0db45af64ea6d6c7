import type { ApiObject } from '../../src/api/meta.js';
import type { Role } from './tokens.js';

/** Set on a Secret whose values were hidden from the caller, so `-o yaml` says so. */
export const REDACTED_ANNOTATION = 'drover.io/redacted';

/**
 * A Secret as a caller without the admin role sees it: every key kept, every value replaced by
 * asterisks of the same decoded length (what `kubectl describe secret` tells anyway), so `describe`
 * still prints sizes while no value leaves the server. Other kinds, and admins, get the object unchanged.
 */
export function redactFor(role: Role, obj: ApiObject): ApiObject {
  if (role === 'admin' || obj.kind !== 'Secret') return obj;
  const out: ApiObject = { ...obj, metadata: { ...obj.metadata, annotations: { ...obj.metadata.annotations, [REDACTED_ANNOTATION]: `values hidden from the ${role} role` } } };
  for (const field of ['data', 'stringData'] as const) {
    const values = obj[field];
    if (!values || typeof values !== 'object') continue;
    out[field] = Object.fromEntries(
      Object.entries(values as Record<string, unknown>).map(([k, v]) => {
        const size = typeof v !== 'string' ? 0 : field === 'data' ? Buffer.from(v, 'base64').length : Buffer.byteLength(v);
        const mask = '*'.repeat(size);
        return [k, field === 'data' ? Buffer.from(mask).toString('base64') : mask];
      }),
    );
  }
  return out;
}
