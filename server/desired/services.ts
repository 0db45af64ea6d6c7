import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { isHeadless, SERVICE_NAME_LABEL, type EndpointSlice, type Service } from '../../src/api/service.js';
import type { payloads } from '../../src/contract/index.js';
import { compareStrings } from '../../src/util/compare.js';

/** What a node's Services are computed from, besides its own pods. */
export interface ServiceWorld {
  services: Service[];
  slices: EndpointSlice[];
  nodes: Node[];
  /** Every pod (for the hostPorts of endpoints on other nodes). */
  pods: Pod[];
}

const nodeIP = (n: Node) => n.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;

/** The hostPort the pod publishes its container port on, if any. */
function hostPortOf(p: Pod | undefined, containerPort: number, protocol: string): number | undefined {
  for (const c of p?.spec.containers ?? []) {
    for (const cp of c.ports ?? []) if (cp.containerPort === containerPort && (cp.protocol ?? 'TCP') === protocol && cp.hostPort) return cp.hostPort;
  }
  return undefined;
}

/**
 * The Services a node's pods could use, each port with the ready endpoints this node can reach (pure).
 * Only Services of the namespaces the node's pods run in, so a node learns nothing of other tenants' and a
 * node without pods gets none. Headless Services have no address to forward and are left out. A pod on
 * another node is reached through that node: its address and the pod's hostPort, or the Service's
 * nodePort (the other node forwards its nodePort to its own pods); pod addresses are per node (every
 * node's podman bridge is 10.88.0.0/16), so a remote pod IP means nothing here. A remote endpoint with
 * neither (a ClusterIP Service whose pod publishes no hostPort) is left out: not reachable from here.
 */
export function servicesFor(node: string, nodePods: payloads.DesiredPod[], w: ServiceWorld): payloads.DesiredService[] {
  const namespaces = new Set(nodePods.map((p) => p.namespace));
  if (namespaces.size === 0) return [];
  const ips = new Map(w.nodes.map((n) => [n.metadata.name, nodeIP(n)]));
  const podByKey = new Map(w.pods.map((p) => [`${p.metadata.namespace ?? 'default'}/${p.metadata.name}`, p]));
  const out: payloads.DesiredService[] = [];
  for (const svc of w.services) {
    const ns = svc.metadata.namespace ?? 'default';
    if (!namespaces.has(ns) || isHeadless(svc) || !svc.spec.clusterIP) continue;
    const slices = w.slices.filter((s) => (s.metadata.namespace ?? 'default') === ns && s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name);
    const ports = (svc.spec.ports ?? []).map((sp) => {
      const backends: payloads.DesiredBackend[] = [];
      for (const slice of slices) {
        const target = slice.ports?.find((p) => (p.name ?? '') === (sp.name ?? '') && p.protocol === sp.protocol)?.port;
        if (target === undefined) continue;
        for (const e of slice.endpoints) {
          // Kubernetes: an absent ready condition means ready.
          if (e.conditions.ready === false || !e.addresses[0]) continue;
          if (e.nodeName === node) {
            backends.push({ ip: e.addresses[0], port: target, local: true });
            continue;
          }
          const via = e.nodeName ? ips.get(e.nodeName) : undefined;
          if (!via) continue;
          const ref = e.targetRef?.name ? podByKey.get(`${ns}/${e.targetRef.name}`) : undefined;
          const hostPort = hostPortOf(ref, target, sp.protocol);
          const remotePort = hostPort ?? (svc.spec.type === 'NodePort' ? sp.nodePort : undefined);
          if (remotePort !== undefined) backends.push({ ip: via, port: remotePort, local: false });
        }
      }
      backends.sort((a, b) => compareStrings(`${a.ip}:${a.port}`, `${b.ip}:${b.port}`));
      return { ...(sp.name ? { name: sp.name } : {}), protocol: sp.protocol, port: sp.port, ...(sp.nodePort !== undefined ? { nodePort: sp.nodePort } : {}), backends };
    });
    out.push({ namespace: ns, name: svc.metadata.name, clusterIP: svc.spec.clusterIP, ports });
  }
  return out.sort((a, b) => compareStrings(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`));
}
