/**
 * How each field of drover's kinds merges, as Kubernetes' own types say it: the `patchStrategy` /
 * `patchMergeKey` struct tags (strategic merge patch) and the `+listType` / `+listMapKey` /
 * `+structType=atomic` markers (server-side apply), taken from k8s.io/api core/v1, apps/v1, batch/v1
 * types.go and apimachinery meta/v1 types.go. One table serves the strategic merge patch, server-side
 * apply and the OpenAPI documents (x-kubernetes-patch-merge-key), so they cannot disagree.
 *
 * The table is sparse: a field it does not name merges as Kubernetes' untagged fields do (an object
 * field by field, a list replaced whole, a scalar replaced).
 */

/** One field's merge rules; `fields` describes an object value, `items` the elements of a list. */
export interface FieldMerge {
  /** Strategic merge patch: 'merge' merges a list (by mergeKey, or as a set of scalars without one). */
  strategy?: 'merge' | 'retainKeys' | 'merge,retainKeys';
  /** Strategic merge patch: the key that identifies an element of a merged list of objects. */
  mergeKey?: string;
  /** Server-side apply: the keys of an associative list (`+listMapKey`); absent for other lists. */
  listMapKeys?: string[];
  /** Values Kubernetes defaults a list-map key to when an element leaves it out (ports' protocol). */
  keyDefaults?: Record<string, unknown>;
  /** Server-side apply: a list of scalars merged as a set (`+listType=set`). */
  set?: boolean;
  /** Server-side apply: owned and replaced as one value (`+structType=atomic`, `+listType=atomic`). */
  atomic?: boolean;
  fields?: Record<string, FieldMerge>;
  items?: FieldMerge;
}

/** The patch metadata as OpenAPI publishes it (x-kubernetes-patch-strategy / -merge-key). */
export interface PatchMeta {
  strategy?: 'merge' | 'retainKeys' | 'merge,retainKeys';
  mergeKey?: string;
}

const keyedByName = (items?: FieldMerge): FieldMerge => ({ strategy: 'merge', mergeKey: 'name', listMapKeys: ['name'], ...(items ? { items } : {}) });

// LocalObjectReference, ObjectFieldSelector, ConfigMapKeySelector, SecretKeySelector, ResourceFieldSelector
// and LabelSelector are `+structType=atomic` in Kubernetes.
const ATOMIC: FieldMerge = { atomic: true };

const objectMeta: FieldMerge = {
  fields: {
    ownerReferences: { strategy: 'merge', mergeKey: 'uid', listMapKeys: ['uid'] },
    finalizers: { strategy: 'merge', set: true },
  },
};

const envVar: FieldMerge = {
  fields: { valueFrom: { fields: { fieldRef: ATOMIC, resourceFieldRef: ATOMIC, configMapKeyRef: ATOMIC, secretKeyRef: ATOMIC } } },
};

const container: FieldMerge = {
  fields: {
    ports: { strategy: 'merge', mergeKey: 'containerPort', listMapKeys: ['containerPort', 'protocol'], keyDefaults: { protocol: 'TCP' } },
    env: keyedByName(envVar),
    volumeMounts: { strategy: 'merge', mergeKey: 'mountPath', listMapKeys: ['mountPath'] },
    volumeDevices: { strategy: 'merge', mergeKey: 'devicePath', listMapKeys: ['devicePath'] },
  },
};

const podSpec: FieldMerge = {
  fields: {
    volumes: { strategy: 'merge,retainKeys', mergeKey: 'name', listMapKeys: ['name'] },
    containers: keyedByName(container),
    initContainers: keyedByName(container),
    ephemeralContainers: keyedByName(container),
    imagePullSecrets: keyedByName(),
    hostAliases: { strategy: 'merge', mergeKey: 'ip', listMapKeys: ['ip'] },
    topologySpreadConstraints: { strategy: 'merge', mergeKey: 'topologyKey', listMapKeys: ['topologyKey', 'whenUnsatisfiable'] },
    schedulingGates: keyedByName(),
    resourceClaims: { strategy: 'merge,retainKeys', mergeKey: 'name', listMapKeys: ['name'] },
  },
};

const conditionsByType: FieldMerge = { strategy: 'merge', mergeKey: 'type', listMapKeys: ['type'] };

const podTemplate: FieldMerge = { fields: { metadata: objectMeta, spec: podSpec } };

const workload = (spec: Record<string, FieldMerge> = {}): Record<string, FieldMerge> => ({
  metadata: objectMeta,
  spec: { fields: { selector: ATOMIC, template: podTemplate, ...spec } },
  status: { fields: { conditions: conditionsByType } },
});

const metadataOnly: Record<string, FieldMerge> = { metadata: objectMeta };

/** The root of each kind (kinds not listed have only the metadata rules). */
const KIND_FIELDS: Record<string, Record<string, FieldMerge>> = {
  Pod: {
    metadata: objectMeta,
    spec: podSpec,
    status: {
      fields: {
        conditions: conditionsByType,
        podIPs: { strategy: 'merge', mergeKey: 'ip', listMapKeys: ['ip'] },
        hostIPs: { strategy: 'merge', mergeKey: 'ip', listMapKeys: ['ip'] },
      },
    },
  },
  Deployment: workload({ strategy: { strategy: 'retainKeys' } }),
  ReplicaSet: workload(),
  DaemonSet: workload(),
  Job: workload(),
  Node: {
    metadata: objectMeta,
    spec: { fields: { podCIDRs: { strategy: 'merge', set: true } } },
    status: { fields: { conditions: conditionsByType, addresses: { strategy: 'merge', mergeKey: 'type', listMapKeys: ['type'] } } },
  },
  Namespace: { metadata: objectMeta, status: { fields: { conditions: conditionsByType } } },
  Service: {
    metadata: objectMeta,
    spec: { fields: { ports: { strategy: 'merge', mergeKey: 'port', listMapKeys: ['port', 'protocol'], keyDefaults: { protocol: 'TCP' } }, selector: ATOMIC } },
    status: { fields: { conditions: conditionsByType } },
  },
};

/** The merge rules of a kind's root object. */
export function kindMerge(kind: string): FieldMerge {
  return { fields: KIND_FIELDS[kind] ?? metadataOnly };
}

/** The rules of one field of an object node (an empty rule set for fields the table does not name). */
export function fieldMerge(node: FieldMerge | undefined, field: string): FieldMerge {
  return node?.fields?.[field] ?? {};
}

/** The rules of a list's elements. */
export function itemMerge(node: FieldMerge | undefined): FieldMerge {
  return node?.items ?? {};
}

/**
 * Every field of a kind that has a patch strategy, as dotted paths from the root with "[]" for list
 * elements (`spec.template.spec.containers[].ports`): what the OpenAPI documents mark with
 * x-kubernetes-patch-strategy and x-kubernetes-patch-merge-key.
 */
export function patchMetaPaths(kind: string): Record<string, PatchMeta> {
  const out: Record<string, PatchMeta> = {};
  const walk = (node: FieldMerge, path: string): void => {
    for (const [name, f] of Object.entries(node.fields ?? {})) {
      const p = path ? `${path}.${name}` : name;
      if (f.strategy) out[p] = { strategy: f.strategy, ...(f.mergeKey ? { mergeKey: f.mergeKey } : {}) };
      walk(f, p);
      if (f.items) walk(f.items, `${p}[]`);
    }
  };
  walk(kindMerge(kind), '');
  return out;
}
