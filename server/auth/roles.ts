import type { Role } from './tokens.js';

/**
 * What a caller asks to do. The HTTP API maps methods onto these (GET one → get, GET many → list,
 * ?watch → watch, POST → create, PUT → update, DELETE → delete, pods/log → logs, pods/exec → exec);
 * MQTT commands will map theirs the same way, so one table decides for every door.
 */
export type Verb = 'get' | 'list' | 'watch' | 'logs' | 'create' | 'update' | 'delete' | 'exec';

export const READ_VERBS: ReadonlySet<Verb> = new Set(['get', 'list', 'watch', 'logs']);

/** The object a verb is about; `resource` is the plural (pods, secrets, tokens, nodes, metrics). */
export interface Resource {
  resource: string;
  namespace?: string;
  name?: string;
}

export type Decision = { allowed: true } | { allowed: false; reason: string };

/** Resources only `admin` may touch at all, reads included: listing tokens shows who can get in. */
const ADMIN_ONLY_RESOURCES: ReadonlySet<string> = new Set(['tokens']);

const RANK: Record<Role, number> = { view: 0, admin: 1 };

export function describeResource(r: Resource): string {
  return `${r.resource}${r.name ? ` "${r.name}"` : ''}${r.namespace ? ` in namespace ${r.namespace}` : ''}`;
}

/**
 * The one authorization rule of drover. `view` may read (get, list, watch, logs; Secrets come back
 * redacted, see server/auth/redact.ts) but not change anything, exec, or manage tokens; `admin`
 * may do everything. Pure: no I/O, no HTTP.
 */
export function authorize(identity: { role: Role; tokenId?: string }, verb: Verb, resource: Resource): Decision {
  if (identity.role === 'admin') return { allowed: true };
  const who = `${identity.tokenId ? `token ${identity.tokenId} ` : ''}(role ${identity.role})`;
  if (ADMIN_ONLY_RESOURCES.has(resource.resource)) {
    return { allowed: false, reason: `${who} may not ${verb} ${describeResource(resource)}: ${resource.resource} are managed by the admin role only` };
  }
  if (identity.role === 'view' && READ_VERBS.has(verb)) return { allowed: true };
  return { allowed: false, reason: `${who} may not ${verb} ${describeResource(resource)}: the ${identity.role} role may only get, list, watch and read logs` };
}

/** For routes that state the least role they need (ExtraRoute.access) rather than a verb. */
export function hasRole(identity: { role: Role; tokenId?: string }, minimum: Role, action: string): Decision {
  if (RANK[identity.role] >= RANK[minimum]) return { allowed: true };
  return { allowed: false, reason: `${identity.tokenId ? `token ${identity.tokenId} ` : ''}(role ${identity.role}) may not ${action}: it needs the ${minimum} role` };
}
