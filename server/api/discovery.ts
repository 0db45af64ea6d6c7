/**
 * Kubernetes API discovery, built from the kind table (src/api/kinds.ts): what `kubectl api-resources`,
 * `api-versions` and every kubectl verb read first to map `deploy` onto /apis/apps/v1/.../deployments.
 * The aggregated form (apidiscovery.k8s.io/v2) is not served: answering the legacy documents with a plain
 * application/json Content-Type is what servers before 1.26 do, and kubectl falls back to them.
 */
import type { KindInfo } from '../../src/api/kinds.js';
import { compareStrings } from '../../src/util/compare.js';

/** The verbs drover serves on every kind (no deletecollection). */
const OBJECT_VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

/** Kinds `kubectl get all` lists, as Kubernetes puts them in the `all` category. */
const ALL_CATEGORY: ReadonlySet<string> = new Set(['Pod', 'Deployment', 'ReplicaSet', 'DaemonSet', 'Job', 'Service']);

export interface ApiResource {
  name: string;
  singularName: string;
  namespaced: boolean;
  kind: string;
  verbs: string[];
  shortNames?: string[];
  categories?: string[];
  group?: string;
  version?: string;
}

export interface DiscoveryOptions {
  /** Subresources served, e.g. 'pods/log' → verbs; kinds without the parent are left out. */
  subresources?: Record<string, { verbs: string[]; kind?: string; group?: string; version?: string }>;
  /** Serve metrics.k8s.io/v1beta1 (nodes, pods), as metrics-server does. */
  metrics?: boolean;
}

/** 'apps/v1' → ['apps', 'v1']; 'v1' → ['', 'v1']. */
function splitGroupVersion(gv: string): [string, string] {
  const i = gv.indexOf('/');
  return i < 0 ? ['', gv] : [gv.slice(0, i), gv.slice(i + 1)];
}

export const METRICS_GROUP_VERSION = 'metrics.k8s.io/v1beta1';

function metricsResources(): ApiResource[] {
  return [
    { name: 'nodes', singularName: '', namespaced: false, kind: 'NodeMetrics', verbs: ['get', 'list'] },
    { name: 'pods', singularName: '', namespaced: true, kind: 'PodMetrics', verbs: ['get', 'list'] },
  ];
}

/** GET /api: the core group's versions. */
export function apiVersions(serverAddress: string): Record<string, unknown> {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

/** The named groups (not the core one), in the order their kinds first appear in the table. */
function groupVersions(kinds: KindInfo[], opts: DiscoveryOptions): string[] {
  const gvs: string[] = [];
  for (const k of kinds) if (k.groupVersion.includes('/') && !gvs.includes(k.groupVersion)) gvs.push(k.groupVersion);
  if (opts.metrics) gvs.push(METRICS_GROUP_VERSION);
  return gvs;
}

/** GET /apis: every named group with its one version. */
export function apiGroupList(kinds: KindInfo[], opts: DiscoveryOptions = {}): Record<string, unknown> {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: groupVersions(kinds, opts).map((gv) => {
      const [group, version] = splitGroupVersion(gv);
      const v = { groupVersion: gv, version };
      return { name: group, versions: [v], preferredVersion: v };
    }),
  };
}

/** GET /apis/GROUP: one group. */
export function apiGroup(kinds: KindInfo[], group: string, opts: DiscoveryOptions = {}): Record<string, unknown> | undefined {
  const gv = groupVersions(kinds, opts).find((x) => splitGroupVersion(x)[0] === group);
  if (!gv) return undefined;
  const v = { groupVersion: gv, version: splitGroupVersion(gv)[1] };
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions: [v], preferredVersion: v };
}

/**
 * GET /api/v1 or /apis/GROUP/VERSION: the resources of one group version, with their subresources
 * (`pods/log`, `deployments/scale`) right after their kind as the Kubernetes API server lists them.
 * Undefined for a group version drover does not serve.
 */
export function apiResourceList(kinds: KindInfo[], groupVersion: string, opts: DiscoveryOptions = {}): Record<string, unknown> | undefined {
  let resources: ApiResource[];
  if (groupVersion === METRICS_GROUP_VERSION && opts.metrics) resources = metricsResources();
  else {
    const mine = kinds.filter((k) => k.groupVersion === groupVersion);
    if (mine.length === 0) return undefined;
    resources = [];
    for (const k of mine) {
      resources.push({
        name: k.plural,
        singularName: k.singular,
        namespaced: k.namespaced,
        kind: k.kind,
        verbs: OBJECT_VERBS,
        ...(k.shortNames.length ? { shortNames: k.shortNames } : {}),
        ...(ALL_CATEGORY.has(k.kind) ? { categories: ['all'] } : {}),
      });
      for (const [path, sub] of Object.entries(opts.subresources ?? {}).sort(([a], [b]) => compareStrings(a, b))) {
        const [parent] = path.split('/');
        if (parent !== k.plural) continue;
        resources.push({ name: path, singularName: '', namespaced: k.namespaced, kind: sub.kind ?? k.kind, verbs: sub.verbs, ...(sub.group !== undefined ? { group: sub.group, version: sub.version } : {}) });
      }
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources };
}

/**
 * The discovery document for a path, or undefined when the path is not a discovery path
 * ('/api', '/api/v1', '/apis', '/apis/apps', '/apis/apps/v1').
 */
export function discoveryDocument(kinds: KindInfo[], segments: string[], serverAddress: string, opts: DiscoveryOptions = {}): Record<string, unknown> | undefined {
  if (segments[0] === 'api') {
    if (segments.length === 1) return apiVersions(serverAddress);
    if (segments.length === 2) return apiResourceList(kinds, segments[1]!, opts);
    return undefined;
  }
  if (segments[0] === 'apis') {
    if (segments.length === 1) return apiGroupList(kinds, opts);
    if (segments.length === 2) return apiGroup(kinds, segments[1]!, opts);
    if (segments.length === 3) return apiResourceList(kinds, `${segments[1]}/${segments[2]}`, opts);
  }
  return undefined;
}
