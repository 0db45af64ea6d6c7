import { posix } from 'node:path';
import { POD_SPEC_PATH } from '../../src/api/validate.js';
import { ForbiddenError, ValidationError, type FieldCause } from '../../src/util/errors.js';
import type { Role } from '../auth/tokens.js';

/** The namespace label that lets admins run pods with host access there; `default` does not carry it. */
export const PRIVILEGED_LABEL = 'drover.io/privileged';

export interface PodSecurityPolicy {
  /**
   * hostPath volumes under these directories are allowed anywhere (absolute, no `..`). Default empty:
   * every hostPath needs a privileged namespace, since a hostPath on an edge device is root on it.
   */
  allowedHostPaths: string[];
}

export const DEFAULT_POD_SECURITY: PodSecurityPolicy = { allowedHostPaths: [] };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks and normalises the allow-list given on the command line (`--allowed-host-paths /srv/data,/var/lib/app`). */
export function parseAllowedHostPaths(list: string[]): string[] {
  const causes: FieldCause[] = [];
  const out = list.map((p, i) => {
    if (!p.startsWith('/') || p.split('/').some((s) => s === '..')) causes.push({ field: `allowed-host-paths[${i}]`, message: `must be an absolute path without "..", got "${p}"` });
    const n = posix.normalize(p).replace(/\/+$/, '');
    if (n === '') causes.push({ field: `allowed-host-paths[${i}]`, message: 'allowing "/" would allow every hostPath; label a namespace drover.io/privileged=true instead' });
    return n;
  });
  if (causes.length) throw new ValidationError(causes, 'invalid flag');
  return out;
}

/** Whether `path` lies in one of the allowed directories, compared after resolving `.` and `..` segments. */
export function hostPathAllowed(path: string, allowed: string[]): boolean {
  if (!path.startsWith('/')) return false;
  const n = posix.normalize(path).replace(/\/+$/, '') || '/';
  return allowed.some((a) => n === a || n.startsWith(`${a}/`));
}

/**
 * Every field of an object that asks for host access: hostNetwork, hostPID, hostIPC, hostPath volumes
 * outside the allow-list, a subPath into a writable volume (emptyDir, hostPath), devices, privileged
 * containers, added capabilities. Pure; runs on the
 * request body as sent, before fields drover ignores (hostPID, securityContext) are stripped,
 * because asking for privilege where it is not allowed is refused rather than silently dropped.
 */
export function privilegedFields(kind: string, body: unknown, policy: PodSecurityPolicy): FieldCause[] {
  const path = POD_SPEC_PATH[kind];
  if (!path) return [];
  let spec: unknown = body;
  for (const k of path) spec = isRecord(spec) ? spec[k] : undefined;
  if (!isRecord(spec)) return [];
  const at = path.join('.');
  const out: FieldCause[] = [];
  for (const f of ['hostNetwork', 'hostPID', 'hostIPC'] as const) {
    if (spec[f] === true) out.push({ field: `${at}.${f}`, message: `shares the host's ${f === 'hostNetwork' ? 'network' : f === 'hostPID' ? 'process' : 'IPC'} namespace` });
  }
  if (Array.isArray(spec.volumes)) {
    spec.volumes.forEach((v, i) => {
      if (!isRecord(v) || !isRecord(v.hostPath)) return;
      const p = v.hostPath.path;
      if (typeof p === 'string' && hostPathAllowed(p, policy.allowedHostPaths)) return;
      out.push({ field: `${at}.volumes[${i}].hostPath`, message: `mounts ${JSON.stringify(p)} from the host${policy.allowedHostPaths.length ? ` (allowed without it: ${policy.allowedHostPaths.join(', ')})` : ''}` });
    });
  }
  // Volumes a container can write: a link made there by one container is followed on the host when the agent
  // bind-mounts a subPath of it (Kubernetes CVE-2017-1002101; review F0). Until the agent resolves subPaths
  // without following links, a subPath into them needs what hostPath needs.
  const writable = new Set(
    (Array.isArray(spec.volumes) ? spec.volumes : []).filter((v) => isRecord(v) && typeof v.name === 'string' && (isRecord(v.emptyDir) || isRecord(v.hostPath))).map((v) => (v as { name: string }).name),
  );
  for (const list of ['initContainers', 'containers'] as const) {
    const cs = spec[list];
    if (!Array.isArray(cs)) continue;
    cs.forEach((c, i) => {
      if (!isRecord(c)) return;
      const cat = `${at}.${list}[${i}]`;
      if (Array.isArray(c.volumeMounts)) {
        c.volumeMounts.forEach((m, j) => {
          if (isRecord(m) && typeof m.subPath === 'string' && m.subPath !== '' && writable.has(m.name as string)) {
            out.push({ field: `${cat}.volumeMounts[${j}].subPath`, message: `mounts a path inside volume "${String(m.name)}", which a container can turn into a link to anywhere on the host` });
          }
        });
      }
      if (Array.isArray(c.devices) && c.devices.length) out.push({ field: `${cat}.devices`, message: 'passes host devices in' });
      const sc = c.securityContext;
      if (!isRecord(sc)) return;
      if (sc.privileged === true) out.push({ field: `${cat}.securityContext.privileged`, message: 'is a privileged container' });
      if (isRecord(sc.capabilities) && Array.isArray(sc.capabilities.add) && sc.capabilities.add.length) {
        out.push({ field: `${cat}.securityContext.capabilities.add`, message: 'adds capabilities' });
      }
    });
  }
  return out;
}

export interface PodSecurityRequest {
  kind: string;
  /** The plural, for the message (`pods "web" is forbidden: ...`). */
  plural: string;
  name: string;
  namespace: string;
  /** The request body as sent. */
  body: unknown;
  /** Labels of the target namespace (undefined if it does not exist: treated as unlabelled). */
  namespaceLabels: Record<string, string> | undefined;
  role: Role;
  policy: PodSecurityPolicy;
}

/**
 * The pod security switch: host access needs the admin role AND a namespace labelled
 * drover.io/privileged=true. Applied at API admission to Pods and to pod templates, so a controller
 * never holds a template whose pods would be refused. Throws a ForbiddenError naming each field.
 */
export function assertPodSecurity(r: PodSecurityRequest): void {
  const fields = privilegedFields(r.kind, r.body, r.policy);
  if (!fields.length) return;
  const nsOk = r.namespaceLabels?.[PRIVILEGED_LABEL] === 'true';
  const roleOk = r.role === 'admin';
  if (nsOk && roleOk) return;
  const needs = [...(roleOk ? [] : ['the admin role']), ...(nsOk ? [] : [`a namespace labelled ${PRIVILEGED_LABEL}=true`])].join(' and ');
  const why = [...(roleOk ? [] : [`the caller has the ${r.role} role`]), ...(nsOk ? [] : [`namespace ${r.namespace} is not labelled ${PRIVILEGED_LABEL}=true`])].join(' and ');
  throw new ForbiddenError(`${r.plural} "${r.name}" is forbidden: ${fields.map((f) => `${f.field}: needs ${needs} (it ${f.message})`).join('; ')}; ${why}`);
}
