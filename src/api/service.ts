import { z } from 'zod';
import { DNS_LABEL, objectMeta } from './meta.js';

/*
 * Services and EndpointSlices as Kubernetes has them (core v1, discovery.k8s.io/v1), for what drover
 * implements: ClusterIP, NodePort and headless Services over TCP and UDP. LoadBalancer and ExternalName
 * are refused rather than accepted with a warning: a LoadBalancer would sit with EXTERNAL-IP <pending>
 * forever (there is no cloud or ServiceLB behind drover) and an ExternalName needs a cluster DNS server
 * answering CNAMEs, which drover's name resolution (host entries) cannot give. A clear 422 naming
 * spec.type, and what to use instead, costs the user one line; a Service that silently does nothing
 * costs them an evening.
 */

/** The Service CIDR drover allocates cluster IPs from unless the server is told otherwise (k3s's). */
export const DEFAULT_SERVICE_CIDR = '10.43.0.0/16';
/** Kubernetes' default NodePort range. */
export const DEFAULT_NODE_PORT_RANGE = { min: 30000, max: 32767 } as const;

/** The label that ties an EndpointSlice to its Service (Kubernetes' name for it). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** The label saying which controller manages an EndpointSlice; drover leaves slices it does not manage alone. */
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const MANAGED_BY_DROVER = 'endpointslice-controller.drover.io';

/** An IANA service name as a named targetPort must be: at most 15 characters, lower case, a letter in it. */
const PORT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export function isPortName(s: string): boolean {
  return s.length <= 15 && PORT_NAME.test(s) && /[a-z]/.test(s) && !s.includes('--');
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;
export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

const portNumber = z.number({ error: 'expected a port number' }).int('must be a whole number').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

export const serviceProtocol = z.enum(['TCP', 'UDP'], {
  error: (i) => (i.input === 'SCTP' ? 'SCTP is not implemented by drover; use TCP or UDP' : 'must be TCP or UDP'),
});

export const servicePort = z.strictObject({
  name: z.string().regex(DNS_LABEL, 'must be a DNS label (lower case letters, digits and "-")').max(63).optional(),
  protocol: serviceProtocol.default('TCP'),
  /** Accepted for manifests that carry it; drover forwards bytes and does not look at the protocol. */
  appProtocol: z.string().optional(),
  port: portNumber,
  /** The pod's port: a number, or the name of a containerPort of the selected pods. Defaults to port. */
  targetPort: z
    .union([portNumber, z.string().refine(isPortName, 'must be a port number or a container port name (at most 15 lower case letters, digits and "-")')])
    .optional(),
  nodePort: portNumber.optional(),
});
export type ServicePort = z.infer<typeof servicePort>;

const serviceType = z.string().superRefine((t, ctx) => {
  if (t === 'ClusterIP' || t === 'NodePort') return;
  const why: Record<string, string> = {
    LoadBalancer: 'drover does not implement LoadBalancer Services (there is no load balancer behind it); use type NodePort: every node forwards the nodePort to the Service',
    ExternalName: 'drover does not implement ExternalName Services (it runs no cluster DNS server to answer the CNAME); give the pods the external name directly',
  };
  ctx.addIssue({ code: 'custom', message: why[t] ?? `"${t}" is not a Service type; use ClusterIP or NodePort` });
});

export const serviceSpec = z
  .strictObject({
    type: serviceType.default('ClusterIP'),
    /** Pods whose labels include all of these are the Service's endpoints; no selector, no endpoints managed by drover. */
    selector: z.record(z.string(), z.string()).optional(),
    ports: z.array(servicePort).optional(),
    /** An IPv4 address in the service CIDR, "None" for a headless Service, or empty/absent to have one allocated. */
    clusterIP: z.string().optional(),
    clusterIPs: z.array(z.string()).optional(),
    // Accepted so Kubernetes manifests (and `kubectl get -o yaml` output) apply; drover acts on none of them.
    sessionAffinity: z.enum(['None', 'ClientIP']).optional(),
    sessionAffinityConfig: z.object({}).passthrough().optional(),
    externalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
    internalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
    ipFamilies: z.array(z.literal('IPv4', { error: 'drover implements IPv4 Services only' })).optional(),
    ipFamilyPolicy: z.enum(['SingleStack', 'PreferDualStack', 'RequireDualStack']).optional(),
    publishNotReadyAddresses: z.boolean().optional(),
  })
  .superRefine((s, ctx) => {
    const headless = s.clusterIP === 'None';
    if (s.clusterIP !== undefined && s.clusterIP !== '' && !headless && !isIPv4(s.clusterIP)) {
      ctx.addIssue({ code: 'custom', path: ['clusterIP'], message: `must be an IPv4 address, "None" (headless) or empty (allocated), got "${s.clusterIP}"` });
    }
    if (headless && s.type === 'NodePort') {
      ctx.addIssue({ code: 'custom', path: ['clusterIP'], message: 'may not be "None" for a NodePort Service' });
    }
    if (s.ipFamilyPolicy === 'RequireDualStack') {
      ctx.addIssue({ code: 'custom', path: ['ipFamilyPolicy'], message: 'drover implements IPv4 Services only; use SingleStack' });
    }
    const ports = s.ports ?? [];
    if (ports.length === 0 && !headless) {
      ctx.addIssue({ code: 'custom', path: ['ports'], message: 'required: at least one port (only a headless Service, clusterIP: None, may have none)' });
    }
    const names = new Set<string>();
    const pairs = new Set<string>();
    const nodePorts = new Set<string>();
    ports.forEach((p, i) => {
      if (ports.length > 1 && !p.name) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: 'required when a Service has more than one port' });
      if (p.name) {
        if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `duplicate port name "${p.name}"` });
        names.add(p.name);
      }
      const pair = `${p.port}/${p.protocol}`;
      if (pairs.has(pair)) ctx.addIssue({ code: 'custom', path: ['ports', i], message: `duplicate port ${pair}` });
      pairs.add(pair);
      if (p.nodePort !== undefined) {
        if (s.type !== 'NodePort') ctx.addIssue({ code: 'custom', path: ['ports', i, 'nodePort'], message: `may not be set when spec.type is ${s.type} (use type NodePort)` });
        const np = `${p.nodePort}/${p.protocol}`;
        if (nodePorts.has(np)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'nodePort'], message: `duplicate nodePort ${np}` });
        nodePorts.add(np);
      }
    });
    if (s.clusterIPs && s.clusterIPs.length > 0) {
      if (s.clusterIPs.length > 1) ctx.addIssue({ code: 'custom', path: ['clusterIPs'], message: 'drover implements IPv4 Services only: at most one address' });
      else if (s.clusterIP && s.clusterIP !== s.clusterIPs[0]) ctx.addIssue({ code: 'custom', path: ['clusterIPs', 0], message: `must equal spec.clusterIP (${s.clusterIP})` });
    }
  });
export type ServiceSpec = z.infer<typeof serviceSpec>;

export const service = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Service'),
  metadata: objectMeta,
  spec: serviceSpec,
  status: z.object({ loadBalancer: z.object({}).passthrough().optional() }).optional(),
});
export type Service = z.infer<typeof service>;

/** A Service whose cluster IP is "None": its name resolves to its pods, there is no virtual address to forward. */
export function isHeadless(s: Pick<Service, 'spec'>): boolean {
  return s.spec.clusterIP === 'None';
}

export const endpointConditions = z.strictObject({
  ready: z.boolean().optional(),
  serving: z.boolean().optional(),
  terminating: z.boolean().optional(),
});

export const objectReference = z.strictObject({
  kind: z.string().optional(),
  namespace: z.string().optional(),
  name: z.string().optional(),
  uid: z.string().optional(),
  apiVersion: z.string().optional(),
  resourceVersion: z.string().optional(),
});

export const endpoint = z.strictObject({
  addresses: z.array(z.string().refine(isIPv4, 'must be an IPv4 address')).min(1, 'at least one address').max(100),
  conditions: endpointConditions.default({}),
  hostname: z.string().optional(),
  nodeName: z.string().optional(),
  zone: z.string().optional(),
  targetRef: objectReference.optional(),
});
export type Endpoint = z.infer<typeof endpoint>;

export const endpointPort = z.strictObject({
  name: z.string().optional(),
  protocol: serviceProtocol.default('TCP'),
  port: portNumber.optional(),
  appProtocol: z.string().optional(),
});
export type EndpointPort = z.infer<typeof endpointPort>;

/** Kubernetes caps a slice at 1000 endpoints (100 by default); so does drover. */
export const MAX_ENDPOINTS_PER_SLICE = 1000;

export const endpointSlice = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('EndpointSlice'),
  metadata: objectMeta,
  addressType: z.literal('IPv4', { error: 'drover implements IPv4 endpoints only (addressType: IPv4)' }),
  endpoints: z.array(endpoint).max(MAX_ENDPOINTS_PER_SLICE, `at most ${MAX_ENDPOINTS_PER_SLICE} endpoints in one slice`).default([]),
  ports: z.array(endpointPort).max(100).optional(),
});
export type EndpointSlice = z.infer<typeof endpointSlice>;
