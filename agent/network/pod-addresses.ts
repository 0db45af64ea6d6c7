/**
 * Pod addresses for status.podIP. A pod whose address the agent picked (pod-ip-plan.ts) reports it
 * while the first container, which holds it, runs: its label says which, no inspect needed. Otherwise
 * (a runtime whose bridge subnet is unknown, a pod started before) the address is the one the runtime
 * gave: `podman ps` does not print addresses, so each running container is inspected once, when first
 * seen, and its address kept for as long as the container exists.
 *
 * Limit: drover runs each container of a pod as its own runtime container, each with its own address on
 * the bridge; the pod's address is that of its first container (in spec order) that has one. A Service
 * port served by a pod's second container is not reachable through the pod IP until the containers
 * of a pod share one network namespace.
 */
import type { PodReport } from '../../src/contract/payloads.js';
import { errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { Matching } from '../engine/match.js';
import type { ContainerRuntime, RuntimeContainer } from '../runtime/types.js';
import { POD_IP_LABEL } from './pod-ip-plan.js';

export class PodAddresses {
  private readonly byId = new Map<string, string>();

  constructor(private readonly runtime: Pick<ContainerRuntime, 'inspect'>, private readonly logger: Logger) {}

  /** Inspects running containers not seen before and forgets the ones gone. */
  async refresh(current: RuntimeContainer[]): Promise<void> {
    const present = new Set(current.map((c) => c.id));
    for (const id of this.byId.keys()) if (!present.has(id)) this.byId.delete(id);
    for (const c of current) {
      const picked = c.labels[POD_IP_LABEL];
      if (picked && c.state === 'running') this.byId.set(c.id, picked);
    }
    const fresh = current.filter((c) => c.state === 'running' && !this.byId.has(c.id));
    await Promise.all(
      fresh.map(async (c) => {
        try {
          const seen = await this.runtime.inspect(c.id);
          // A host-network container has no address of its own: the server gives it the node's.
          if (seen?.ip) this.byId.set(c.id, seen.ip);
        } catch (err) {
          // Looked at again at the next reconcile; the pod is reported without an address meanwhile.
          this.logger.warn({ container: c.name, err: errorMessage(err) }, 'cannot read the container address');
        }
      }),
    );
  }

  ip(id: string): string | undefined {
    return this.byId.get(id);
  }

  /** Every address seen on a container: taken for the agent's own picks. */
  inUse(): string[] {
    return [...this.byId.values()];
  }
}

/**
 * The reports with podIP set from the pods' containers (pure): the address the agent picked while the
 * first container holding it runs, else the first container in spec order with an address.
 */
export function withPodIPs(reports: PodReport[], matches: Pick<Matching, 'pods'>, ip: (containerId: string) => string | undefined): PodReport[] {
  const byUid = new Map(matches.pods.map((m) => [m.pod.uid, m]));
  return reports.map((r) => {
    const m = byUid.get(r.uid);
    if (!m || m.pod.spec.hostNetwork) return r;
    const first = m.containers[0]?.kept;
    const picked = first?.state === 'running' ? first.labels[POD_IP_LABEL] : undefined;
    if (picked) return { ...r, podIP: picked };
    for (const c of m.containers) {
      const addr = c.kept?.state === 'running' ? ip(c.kept.id) : undefined;
      if (addr) return { ...r, podIP: addr };
    }
    return r;
  });
}
