/**
 * Fields drover accepts (they are valid Kubernetes, and a manifest written for Kubernetes must apply
 * unchanged) but does not act on: one message per field, naming its path and what drover does
 * instead. The API sends them as `Warning: 299 - "..."` headers (kubectl prints them), drover's CLI
 * as `Warning: ...` lines; both get them through parseObject's `warnings`.
 *
 * The list follows what the agent, scheduler and controllers read (agent/engine/*, agent/volume-manager.ts,
 * agent/probes/*, server/scheduler/*, server/controllers/*): a field lands here when nothing reads it.
 * Fields outside the schemas (securityContext, initContainers...) are stripped before validation
 * with their own warning (src/api/validate.ts).
 */

type Obj = Record<string, unknown>;

function isRecord(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Where the pod spec sits in each kind that carries one. */
const POD_SPEC_AT: Record<string, string[]> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
};

function podSpecWarnings(spec: Obj, at: string): string[] {
  const out: string[] = [];
  const ignored = (path: string, why: string) => out.push(`${at}.${path}: ignored by drover (${why})`);

  if (spec.activeDeadlineSeconds !== undefined) ignored('activeDeadlineSeconds', "pods are not stopped after a deadline; a Job's own spec.activeDeadlineSeconds is applied");
  if (spec.subdomain !== undefined) ignored('subdomain', 'pods get no DNS records of their own');
  // hostNetwork containers share the node's UTS namespace: the agent passes --hostname to the others only.
  if (spec.hostname !== undefined && spec.hostNetwork === true) ignored('hostname', "a hostNetwork pod has the node's host name");

  list(spec.containers).forEach((c, i) => {
    if (!isRecord(c)) return;
    const cat = `containers[${i}]`;
    list(c.volumeMounts).forEach((m, j) => {
      const p = isRecord(m) ? m.mountPropagation : undefined;
      // None is what drover does (a private bind mount); anything else would need shared mounts.
      if (p !== undefined && p !== 'None') out.push(`${at}.${cat}.volumeMounts[${j}].mountPropagation: ${String(p)} is ignored by drover (mounts are private)`);
    });
    const rp = isRecord(c.readinessProbe) ? c.readinessProbe : undefined;
    if (rp?.terminationGracePeriodSeconds !== undefined) ignored(`${cat}.readinessProbe.terminationGracePeriodSeconds`, 'a failing readiness probe does not kill the container');
  });

  list(spec.volumes).forEach((v, i) => {
    const e = isRecord(v) && isRecord(v.emptyDir) ? v.emptyDir : undefined;
    if (!e) return;
    if (e.medium !== undefined && e.medium !== '') out.push(`${at}.volumes[${i}].emptyDir.medium: ${String(e.medium)} is ignored by drover (emptyDir lives on the node's disk)`);
    if (e.sizeLimit !== undefined) ignored(`volumes[${i}].emptyDir.sizeLimit`, 'emptyDir size is not limited');
  });
  return out;
}

/** Service fields drover's Service accepts but its forwarding does not act on (src/api/service.ts, agent/network/*). */
function serviceWarnings(spec: Obj): string[] {
  const out: string[] = [];
  if (spec.sessionAffinity === 'ClientIP') out.push('spec.sessionAffinity: ClientIP is ignored by drover (each connection picks an endpoint)');
  if (spec.sessionAffinityConfig !== undefined) out.push('spec.sessionAffinityConfig: ignored by drover (no session affinity)');
  if (spec.externalTrafficPolicy === 'Local') out.push('spec.externalTrafficPolicy: Local is ignored by drover (NodePort traffic may go to any node\'s endpoints)');
  if (spec.internalTrafficPolicy === 'Local') out.push('spec.internalTrafficPolicy: Local is ignored by drover (traffic may go to any node\'s endpoints)');
  list(spec.ports).forEach((p, i) => {
    if (isRecord(p) && p.appProtocol !== undefined) out.push(`spec.ports[${i}].appProtocol: ignored by drover`);
  });
  return out;
}

/**
 * One message per field of `obj` drover accepts but ignores, e.g.
 * `spec.containers[0].volumeMounts[0].mountPropagation: Bidirectional is ignored by drover (mounts are private)`.
 * Pure; anything that is not an object of a known kind gives none.
 */
export function ignoredFields(obj: unknown): string[] {
  if (!isRecord(obj) || typeof obj.kind !== 'string') return [];
  const spec = isRecord(obj.spec) ? obj.spec : undefined;
  const out: string[] = [];
  if (obj.kind === 'Service' && spec) out.push(...serviceWarnings(spec));
  // 10 is the schema's default: the CLI sends objects with defaults applied, so only another value is the user's.
  if (obj.kind === 'DaemonSet' && spec?.revisionHistoryLimit !== undefined && spec.revisionHistoryLimit !== 10) {
    out.push('spec.revisionHistoryLimit: ignored by drover (a DaemonSet keeps only its last completed template for rollback)');
  }
  const at = POD_SPEC_AT[obj.kind];
  if (at) {
    let podSpec: unknown = obj;
    for (const k of at) podSpec = isRecord(podSpec) ? podSpec[k] : undefined;
    if (isRecord(podSpec)) out.push(...podSpecWarnings(podSpec, at.join('.')));
  }
  return out;
}
