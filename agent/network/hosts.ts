/**
 * Service names inside containers, as host entries (pure): `<svc>.<ns>.svc` and
 * `<svc>.<ns>.svc.cluster.local` for every Service the node knows, and the short `<svc>` for those of the
 * pod's own namespace, each to its cluster IP. Given to podman as `--add-host` when a container is
 * created (podman writes them into the container's /etc/hosts).
 *
 * Limits (no resolver is run): entries are fixed at container creation, so a Service created after the
 * pod is not found by name until the container is created again (its cluster IP works at once);
 * headless Services have no entry (no cluster IP; their pods' addresses are per node); no search
 * domains, so `<svc>.<ns>` alone does not resolve.
 */
import type { DesiredService } from '../../src/contract/payloads.js';
import { compareStrings } from '../../src/util/compare.js';

export const CLUSTER_DOMAIN = 'cluster.local';

export interface HostEntry {
  name: string;
  ip: string;
}

export function serviceHosts(services: DesiredService[], podNamespace: string): HostEntry[] {
  const out: HostEntry[] = [];
  for (const s of [...services].sort((a, b) => compareStrings(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`))) {
    if (s.namespace === podNamespace) out.push({ name: s.name, ip: s.clusterIP });
    out.push({ name: `${s.name}.${s.namespace}.svc`, ip: s.clusterIP }, { name: `${s.name}.${s.namespace}.svc.${CLUSTER_DOMAIN}`, ip: s.clusterIP });
  }
  return out;
}

/** podman's `--add-host name:ip` arguments. */
export function addHostArgs(hosts: HostEntry[]): string[] {
  return hosts.flatMap((h) => ['--add-host', `${h.name}:${h.ip}`]);
}
