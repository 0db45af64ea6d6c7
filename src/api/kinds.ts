import type { z } from 'zod';
import { NotFoundError } from '../util/errors.js';
import { configMap, resourceQuota, secret, type ConfigMap, type ResourceQuota, type Secret } from './config.js';
import { event, type Event } from './event.js';
import { namespace, type Namespace } from './namespace.js';
import { node, type Node } from './node.js';
import { pod, type Pod } from './pod.js';
import { endpointSlice, service, type EndpointSlice, type Service } from './service.js';
import { daemonSet, deployment, job, replicaSet, type DaemonSet, type Deployment, type Job, type ReplicaSet } from './workloads.js';

/** The object type of each kind. */
export interface KindMap {
  Pod: Pod;
  Node: Node;
  Namespace: Namespace;
  Event: Event;
  ConfigMap: ConfigMap;
  Secret: Secret;
  ResourceQuota: ResourceQuota;
  Deployment: Deployment;
  ReplicaSet: ReplicaSet;
  DaemonSet: DaemonSet;
  Job: Job;
  Service: Service;
  EndpointSlice: EndpointSlice;
}

export type KnownKind = keyof KindMap;

/** Each kind's schema, typed by what it produces (the KINDS rows below hold the same schemas). */
const SCHEMAS: { [K in KnownKind]: z.ZodType<KindMap[K]> } = {
  Pod: pod,
  Node: node,
  Namespace: namespace,
  Event: event,
  ConfigMap: configMap,
  Secret: secret,
  ResourceQuota: resourceQuota,
  Deployment: deployment,
  ReplicaSet: replicaSet,
  DaemonSet: daemonSet,
  Job: job,
  Service: service,
  EndpointSlice: endpointSlice,
};

export function schemaOf<K extends KnownKind>(kind: K): z.ZodType<KindMap[K]> {
  return SCHEMAS[kind];
}

/**
 * The table of object kinds: how each is named in URLs and on the command line, whether it lives in a
 * namespace, and its schema. Adding a kind means adding a row here.
 */
export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  /** API group path prefix: '/api/v1' for the core group. */
  groupVersion: string;
  /** apiVersion values accepted in manifests (Kubernetes' and drover's own). */
  apiVersions: string[];
  schema: z.ZodType;
}

export const KINDS: KindInfo[] = [
  { kind: 'Pod', plural: 'pods', singular: 'pod', shortNames: ['po'], namespaced: true, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: pod },
  { kind: 'Node', plural: 'nodes', singular: 'node', shortNames: ['no'], namespaced: false, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: node },
  { kind: 'Namespace', plural: 'namespaces', singular: 'namespace', shortNames: ['ns'], namespaced: false, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: namespace },
  { kind: 'Event', plural: 'events', singular: 'event', shortNames: ['ev'], namespaced: true, groupVersion: 'v1', apiVersions: ['v1', 'events.k8s.io/v1', 'drover.io/v1'], schema: event },
  { kind: 'ConfigMap', plural: 'configmaps', singular: 'configmap', shortNames: ['cm'], namespaced: true, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: configMap },
  { kind: 'Secret', plural: 'secrets', singular: 'secret', shortNames: [], namespaced: true, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: secret },
  { kind: 'ResourceQuota', plural: 'resourcequotas', singular: 'resourcequota', shortNames: ['quota'], namespaced: true, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: resourceQuota },
  { kind: 'Deployment', plural: 'deployments', singular: 'deployment', shortNames: ['deploy'], namespaced: true, groupVersion: 'apps/v1', apiVersions: ['apps/v1', 'drover.io/v1'], schema: deployment },
  { kind: 'ReplicaSet', plural: 'replicasets', singular: 'replicaset', shortNames: ['rs'], namespaced: true, groupVersion: 'apps/v1', apiVersions: ['apps/v1', 'drover.io/v1'], schema: replicaSet },
  { kind: 'DaemonSet', plural: 'daemonsets', singular: 'daemonset', shortNames: ['ds'], namespaced: true, groupVersion: 'apps/v1', apiVersions: ['apps/v1', 'drover.io/v1'], schema: daemonSet },
  { kind: 'Job', plural: 'jobs', singular: 'job', shortNames: [], namespaced: true, groupVersion: 'batch/v1', apiVersions: ['batch/v1', 'drover.io/v1'], schema: job },
  { kind: 'Service', plural: 'services', singular: 'service', shortNames: ['svc'], namespaced: true, groupVersion: 'v1', apiVersions: ['v1', 'drover.io/v1'], schema: service },
  { kind: 'EndpointSlice', plural: 'endpointslices', singular: 'endpointslice', shortNames: [], namespaced: true, groupVersion: 'discovery.k8s.io/v1', apiVersions: ['discovery.k8s.io/v1', 'drover.io/v1'], schema: endpointSlice },
];

export function kindByName(name: string): KindInfo | undefined {
  const n = name.toLowerCase();
  return KINDS.find((k) => k.kind.toLowerCase() === n || k.plural === n || k.singular === n || k.shortNames.includes(n));
}

export function kindInfo(kind: string): KindInfo {
  const k = KINDS.find((x) => x.kind === kind);
  if (!k) throw new NotFoundError(`kind ${kind}`);
  return k;
}

/** The HTTP path of a collection or one object, Kubernetes style. */
export function objectPath(k: KindInfo, namespace: string | undefined, name?: string): string {
  const base = k.groupVersion === 'v1' ? '/api/v1' : `/apis/${k.groupVersion}`;
  const ns = k.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${k.plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
}
