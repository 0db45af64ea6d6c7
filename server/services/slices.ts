import { createHash } from 'node:crypto';
import { nodeReady, type Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { isIPv4, MANAGED_BY_DROVER, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL, type Endpoint, type EndpointPort, type EndpointSlice, type Service, type ServicePort } from '../../src/api/service.js';
import { compareStrings } from '../../src/util/compare.js';

/** The pod's address as its node reported it (status.podIP); undefined until it has one. */
export function podIPOf(p: Pod): string | undefined {
  const ip = (p.status as { podIP?: unknown } | undefined)?.podIP;
  return typeof ip === 'string' && isIPv4(ip) ? ip : undefined;
}

function podReady(p: Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Does this Service select this pod (same namespace, every selector label)? A Service without selector selects none. */
export function selects(svc: Service, p: Pod): boolean {
  const sel = svc.spec.selector;
  return !!sel && Object.keys(sel).length > 0 && (svc.metadata.namespace ?? 'default') === (p.metadata.namespace ?? 'default') && matches(sel, p.metadata.labels);
}

/**
 * The pod's port for a Service port: a number as given (or the Service port when none is), a name
 * looked up among the pod's container ports of the same protocol; undefined when the pod has no such name.
 */
export function resolveTargetPort(sp: ServicePort, p: Pod): number | undefined {
  const t = sp.targetPort ?? sp.port;
  if (typeof t === 'number') return t;
  for (const c of p.spec.containers) {
    for (const cp of c.ports ?? []) if (cp.name === t && (cp.protocol ?? 'TCP') === sp.protocol) return cp.containerPort;
  }
  return undefined;
}

const isReadyNode = (n: Node | undefined) => n !== undefined && nodeReady(n);

const shortHash = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 5);

/**
 * The EndpointSlices a Service should have (pure): one endpoint per selected pod that has an address and
 * is not finished, `ready` only when the pod is Ready, not terminating and its node is Ready (a node gone
 * NotReady or Unknown takes its endpoints out of service at once, whatever its pods last said). Pods that
 * resolve named ports to different numbers are in different slices, as in Kubernetes; a slice holds at
 * most `maxPerSlice` endpoints. Names are stable (from the service and its port numbers), so a
 * reconcile updates slices in place.
 */
export function desiredSlices(svc: Service, pods: Pod[], nodes: Node[], maxPerSlice = MAX_ENDPOINTS_PER_SLICE): EndpointSlice[] {
  if (!svc.spec.selector || Object.keys(svc.spec.selector).length === 0) return [];
  const ns = svc.metadata.namespace ?? 'default';
  const nodeByName = new Map(nodes.map((n) => [n.metadata.name, n]));
  const groups = new Map<string, { ports: EndpointPort[]; endpoints: Endpoint[] }>();
  const candidates = pods
    .filter((p) => selects(svc, p) && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed' && podIPOf(p) !== undefined)
    .sort((a, b) => compareStrings(a.metadata.name, b.metadata.name));
  for (const p of candidates) {
    const ports: EndpointPort[] = [];
    for (const sp of svc.spec.ports ?? []) {
      const port = resolveTargetPort(sp, p);
      if (port !== undefined) ports.push({ name: sp.name ?? '', protocol: sp.protocol, port });
    }
    // A Service with ports none of which this pod has: nothing of it to reach (a headless one lists it anyway).
    if ((svc.spec.ports?.length ?? 0) > 0 && ports.length === 0) continue;
    const terminating = !!p.metadata.deletionTimestamp;
    const serving = podReady(p) && isReadyNode(nodeByName.get(p.spec.nodeName ?? ''));
    const endpoint: Endpoint = {
      addresses: [podIPOf(p)!],
      conditions: { ready: (serving || svc.spec.publishNotReadyAddresses === true) && !terminating, serving, terminating },
      ...(p.spec.nodeName ? { nodeName: p.spec.nodeName } : {}),
      targetRef: { kind: 'Pod', namespace: ns, name: p.metadata.name, ...(p.metadata.uid ? { uid: p.metadata.uid } : {}) },
    };
    const key = JSON.stringify(ports);
    const g = groups.get(key) ?? { ports, endpoints: [] };
    g.endpoints.push(endpoint);
    groups.set(key, g);
  }
  const slices: EndpointSlice[] = [];
  for (const [key, g] of [...groups].sort(([a], [b]) => compareStrings(a, b))) {
    for (let i = 0; i * maxPerSlice < g.endpoints.length; i++) {
      slices.push(sliceObject(svc, `${svc.metadata.name}-${shortHash(key)}${i > 0 ? `-${i}` : ''}`, g.ports, g.endpoints.slice(i * maxPerSlice, (i + 1) * maxPerSlice)));
    }
  }
  // No endpoints at all: one empty slice says so (kubectl get endpointslices shows it with no endpoints).
  if (slices.length === 0) {
    const ports = (svc.spec.ports ?? []).map((sp) => ({ name: sp.name ?? '', protocol: sp.protocol, ...(typeof sp.targetPort === 'number' || sp.targetPort === undefined ? { port: sp.targetPort ?? sp.port } : {}) }));
    slices.push(sliceObject(svc, `${svc.metadata.name}-${shortHash('')}`, ports, []));
  }
  return slices;
}

function sliceObject(svc: Service, name: string, ports: EndpointPort[], endpoints: Endpoint[]): EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace: svc.metadata.namespace ?? 'default',
      labels: { [SERVICE_NAME_LABEL]: svc.metadata.name, [MANAGED_BY_LABEL]: MANAGED_BY_DROVER },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid ?? '', controller: true, blockOwnerDeletion: true }],
    },
    addressType: 'IPv4',
    endpoints,
    ports,
  };
}

/** Slices drover manages for a Service (by its labels), among the slices of its namespace. */
export function managedSlicesOf(serviceName: string, slices: EndpointSlice[]): EndpointSlice[] {
  return slices.filter((s) => s.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_DROVER && s.metadata.labels?.[SERVICE_NAME_LABEL] === serviceName);
}

/** Equal in what a reader acts on: endpoints, ports, labels and owner. */
export function sameSlice(a: EndpointSlice, b: EndpointSlice): boolean {
  const view = (s: EndpointSlice) => JSON.stringify([s.endpoints, s.ports ?? [], s.metadata.labels ?? {}, s.metadata.ownerReferences ?? []]);
  return view(a) === view(b);
}
