import type { ResourceQuota } from '../../src/api/config.js';
import type { ApiObject } from '../../src/api/meta.js';
import type { Pod } from '../../src/api/pod.js';
import { formatCpu, formatMemory, parseCpu, parseMemory } from '../../src/api/quantity.js';
import { isKind } from '../store/types.js';

type Usage = Record<string, number>;

const CPU_KEYS = new Set(['requests.cpu', 'limits.cpu', 'cpu']);
const MEMORY_KEYS = new Set(['requests.memory', 'limits.memory', 'memory']);
const COUNT_KIND: Record<string, string> = {
  pods: 'Pod',
  'count/pods': 'Pod',
  configmaps: 'ConfigMap',
  'count/configmaps': 'ConfigMap',
  secrets: 'Secret',
  'count/secrets': 'Secret',
  'count/deployments.apps': 'Deployment',
  'count/jobs.batch': 'Job',
  'count/daemonsets.apps': 'DaemonSet',
};

function terminated(p: Pod): boolean {
  return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
}

/** What one object adds to each quota key (pure). Requests default to limits, as in Kubernetes. */
export function usageOf(obj: ApiObject): Usage {
  const u: Usage = {};
  for (const [key, kind] of Object.entries(COUNT_KIND)) if (obj.kind === kind) u[key] = 1;
  if (isKind(obj, 'Pod')) {
    const pod = obj;
    if (terminated(pod)) return {};
    let rc = 0, rm = 0, lc = 0, lm = 0;
    for (const c of pod.spec.containers) {
      const req = c.resources?.requests;
      const lim = c.resources?.limits;
      const cpuReq = req?.cpu ?? lim?.cpu;
      const memReq = req?.memory ?? lim?.memory;
      if (cpuReq !== undefined) rc += parseCpu(cpuReq);
      if (memReq !== undefined) rm += parseMemory(memReq);
      if (lim?.cpu !== undefined) lc += parseCpu(lim.cpu);
      if (lim?.memory !== undefined) lm += parseMemory(lim.memory);
    }
    Object.assign(u, { 'requests.cpu': rc, cpu: rc, 'requests.memory': rm, memory: rm, 'limits.cpu': lc, 'limits.memory': lm });
  }
  return u;
}

function parseHard(key: string, v: string | number): number {
  if (CPU_KEYS.has(key)) return parseCpu(v);
  if (MEMORY_KEYS.has(key)) return parseMemory(v);
  return Number(v);
}

function fmt(key: string, n: number): string {
  if (CPU_KEYS.has(key)) return formatCpu(n);
  if (MEMORY_KEYS.has(key)) return formatMemory(n);
  return String(n);
}

/**
 * The first quota the new object would exceed, as Kubernetes words it, or undefined if it fits.
 * `existing` are the namespace's current objects of the kinds quotas count.
 */
export function quotaViolation(obj: ApiObject, quotas: ResourceQuota[], existing: ApiObject[]): string | undefined {
  const adds = usageOf(obj);
  for (const q of quotas) {
    const over: string[] = [];
    const used: string[] = [];
    const limited: string[] = [];
    for (const [key, hardRaw] of Object.entries(q.spec.hard)) {
      const add = adds[key];
      if (!add) continue;
      const hard = parseHard(key, hardRaw);
      // Every existing object counts: this is asked for creates only, and a uid in a create's body (the store
      // gives it a new one) must not hide an existing object from the count.
      const cur = existing.reduce((s, o) => s + (usageOf(o)[key] ?? 0), 0);
      if (cur + add > hard) {
        over.push(`${key}=${fmt(key, add)}`);
        used.push(`${key}=${fmt(key, cur)}`);
        limited.push(`${key}=${fmt(key, hard)}`);
      }
    }
    if (over.length) return `exceeded quota: ${q.metadata.name}, requested: ${over.join(',')}, used: ${used.join(',')}, limited: ${limited.join(',')}`;
  }
  return undefined;
}

export const QUOTA_COUNTED_KINDS = [...new Set(Object.values(COUNT_KIND))];
