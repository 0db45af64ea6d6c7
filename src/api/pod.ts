import { z } from 'zod';
import { condition, objectMeta } from './meta.js';
import { isQuantity } from './quantity.js';
import { labelSelector } from './selector.js';

const quantity = z
  .union([z.string(), z.number()])
  .refine((v) => isQuantity(v), 'must be a quantity such as "500m", "1", "128Mi" or "1Gi"');

export const resourceList = z.strictObject({ cpu: quantity.optional(), memory: quantity.optional() });

const keyRef = z.strictObject({ name: z.string({ error: 'required' }).min(1, 'required'), key: z.string({ error: 'required' }).min(1, 'required'), optional: z.boolean().optional() });

/** The downward API fields the agent fills in (agent/engine/env.ts); `metadata.labels['k']` and `metadata.annotations['k']` too. */
export const FIELD_REF_PATHS = ['metadata.name', 'metadata.namespace', 'metadata.uid', 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.podIP'] as const;
const SUBSCRIPTED_FIELD_PATH = /^metadata\.(labels|annotations)\[(['"])[^'"]+\2\]$/;

/** resourceFieldRef resources drover resolves (cpu and memory only: it has no ephemeral-storage accounting). */
export const RESOURCE_FIELD_REFS = ['limits.cpu', 'limits.memory', 'requests.cpu', 'requests.memory'] as const;

const fieldRef = z.strictObject({
  fieldPath: z.string({ error: 'required' }).refine((p) => (FIELD_REF_PATHS as readonly string[]).includes(p) || SUBSCRIPTED_FIELD_PATH.test(p), {
    // Kubernetes' wording for a fieldPath it does not support, with the list drover does.
    error: (iss) => `Unsupported value: ${JSON.stringify(iss.input)}: supported values: ${[...FIELD_REF_PATHS, "metadata.labels['KEY']", "metadata.annotations['KEY']"].map((v) => JSON.stringify(v)).join(', ')}`,
  }),
  apiVersion: z.literal('v1', { error: (iss) => `Unsupported value: ${JSON.stringify(iss.input)}: supported values: "v1"` }).optional(),
});

export const resourceFieldRef = z.strictObject({
  containerName: z.string().optional(),
  resource: z.enum(RESOURCE_FIELD_REFS),
  divisor: quantity.refine((v) => Number(typeof v === 'number' ? v : (/^[0-9.]+/.exec(v.trim())?.[0] ?? '0')) > 0, 'must be greater than zero').optional(),
});

export const envVar = z
  .strictObject({
    name: z.string({ error: 'required' }).min(1, 'required').regex(/^[-._a-zA-Z][-._a-zA-Z0-9]*$/, 'invalid environment variable name'),
    value: z.string().optional(),
    valueFrom: z
      .strictObject({
        configMapKeyRef: keyRef.optional(),
        secretKeyRef: keyRef.optional(),
        fieldRef: fieldRef.optional(),
        resourceFieldRef: resourceFieldRef.optional(),
      })
      .refine((v) => [v.configMapKeyRef, v.secretKeyRef, v.fieldRef, v.resourceFieldRef].filter(Boolean).length === 1, {
        message: 'exactly one of configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef must be set',
      })
      .optional(),
  })
  .refine((e) => !(e.value !== undefined && e.valueFrom), { message: 'may not have both value and valueFrom', path: ['valueFrom'] });
export type EnvVar = z.infer<typeof envVar>;

export const envFromSource = z.strictObject({
  prefix: z.string().optional(),
  configMapRef: z.strictObject({ name: z.string(), optional: z.boolean().optional() }).optional(),
  secretRef: z.strictObject({ name: z.string(), optional: z.boolean().optional() }).optional(),
});

export const volumeMount = z.strictObject({
  name: z.string({ error: 'required' }),
  mountPath: z.string({ error: 'required' }).startsWith('/', 'must be an absolute path'),
  readOnly: z.boolean().optional(),
  subPath: z.string().optional(),
  mountPropagation: z.string().optional(),
});

const portRef = z.union([z.number().int().min(1).max(65535), z.string()]);

export const probe = z.strictObject({
  exec: z.strictObject({ command: z.array(z.string()).min(1) }).optional(),
  httpGet: z
    .strictObject({
      path: z.string().default('/'),
      port: portRef,
      host: z.string().optional(),
      scheme: z.enum(['HTTP', 'HTTPS']).default('HTTP'),
      httpHeaders: z.array(z.strictObject({ name: z.string(), value: z.string() })).optional(),
    })
    .optional(),
  tcpSocket: z.strictObject({ port: portRef, host: z.string().optional() }).optional(),
  initialDelaySeconds: z.number().int().min(0).default(0),
  periodSeconds: z.number().int().min(1).default(10),
  timeoutSeconds: z.number().int().min(1).default(1),
  successThreshold: z.number().int().min(1).default(1),
  failureThreshold: z.number().int().min(1).default(3),
  terminationGracePeriodSeconds: z.number().int().optional(),
}).refine((p) => [p.exec, p.httpGet, p.tcpSocket].filter(Boolean).length === 1, { message: 'exactly one of exec, httpGet or tcpSocket is required' });
export type Probe = z.infer<typeof probe>;

/** drover extension: a host device node passed into the container (serial ports, GPIO, video). */
export const device = z.strictObject({
  hostPath: z.string().startsWith('/dev/', 'must be under /dev/'),
  containerPath: z.string().optional(),
  permissions: z.string().regex(/^[rwm]+$/, 'must be made of r, w, m').optional(),
});

export const containerPort = z.strictObject({
  name: z.string().optional(),
  containerPort: z.number({ error: 'required' }).int().min(1).max(65535),
  hostPort: z.number().int().min(1).max(65535).optional(),
  hostIP: z.string().optional(),
  protocol: z.enum(['TCP', 'UDP']).default('TCP'),
});

export const container = z.strictObject({
  name: z
    .string({ error: 'required' })
    .min(1, 'required')
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label'),
  image: z.string({ error: 'required' }).min(1, 'required'),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  workingDir: z.string().optional(),
  env: z.array(envVar).optional(),
  envFrom: z.array(envFromSource).optional(),
  ports: z.array(containerPort).optional(),
  resources: z.strictObject({ requests: resourceList.optional(), limits: resourceList.optional() }).optional(),
  volumeMounts: z.array(volumeMount).optional(),
  livenessProbe: probe.optional(),
  readinessProbe: probe.optional(),
  startupProbe: probe.optional(),
  imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).optional(),
  devices: z.array(device).optional(),
});
export type Container = z.infer<typeof container>;

export const volume = z
  .strictObject({
    name: z.string({ error: 'required' }).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label'),
    hostPath: z.strictObject({ path: z.string().startsWith('/', 'must be an absolute path'), type: z.string().optional() }).optional(),
    emptyDir: z.strictObject({ medium: z.string().optional(), sizeLimit: quantity.optional() }).optional(),
    configMap: z
      .strictObject({
        name: z.string(),
        items: z.array(z.strictObject({ key: z.string(), path: z.string(), mode: z.number().int().optional() })).optional(),
        optional: z.boolean().optional(),
        defaultMode: z.number().int().optional(),
      })
      .optional(),
    secret: z
      .strictObject({
        secretName: z.string(),
        items: z.array(z.strictObject({ key: z.string(), path: z.string(), mode: z.number().int().optional() })).optional(),
        optional: z.boolean().optional(),
        defaultMode: z.number().int().optional(),
      })
      .optional(),
  })
  .refine((v) => [v.hostPath, v.emptyDir, v.configMap, v.secret].filter(Boolean).length <= 1, { message: 'only one volume source (hostPath, emptyDir, configMap, secret) may be set' });
export type Volume = z.infer<typeof volume>;

export const toleration = z.strictObject({
  key: z.string().optional(),
  operator: z.enum(['Exists', 'Equal']).default('Equal'),
  value: z.string().optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
  tolerationSeconds: z.number().int().optional(),
});
export type Toleration = z.infer<typeof toleration>;

export const nodeSelectorRequirement = z.strictObject({
  key: z.string(),
  operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']),
  values: z.array(z.string()).optional(),
});
export const nodeSelectorTerm = z.strictObject({
  matchExpressions: z.array(nodeSelectorRequirement).optional(),
  matchFields: z.array(nodeSelectorRequirement).optional(),
});
export type NodeSelectorTerm = z.infer<typeof nodeSelectorTerm>;

export const podAffinityTerm = z.strictObject({
  labelSelector: labelSelector.optional(),
  namespaces: z.array(z.string()).optional(),
  topologyKey: z.string({ error: 'required' }).min(1, 'required'),
});
export type PodAffinityTerm = z.infer<typeof podAffinityTerm>;

const podAffinityRules = z.strictObject({
  requiredDuringSchedulingIgnoredDuringExecution: z.array(podAffinityTerm).optional(),
  preferredDuringSchedulingIgnoredDuringExecution: z.array(z.strictObject({ weight: z.number().int().min(1).max(100), podAffinityTerm })).optional(),
});

export const affinity = z.strictObject({
  nodeAffinity: z
    .strictObject({
      requiredDuringSchedulingIgnoredDuringExecution: z.strictObject({ nodeSelectorTerms: z.array(nodeSelectorTerm).min(1) }).optional(),
      preferredDuringSchedulingIgnoredDuringExecution: z.array(z.strictObject({ weight: z.number().int().min(1).max(100), preference: nodeSelectorTerm })).optional(),
    })
    .optional(),
  podAffinity: podAffinityRules.optional(),
  podAntiAffinity: podAffinityRules.optional(),
});
export type Affinity = z.infer<typeof affinity>;

export const podSpec = z
  .strictObject({
    containers: z.array(container, { error: 'required' }).min(1, 'at least one container is required'),
    restartPolicy: z.enum(['Always', 'OnFailure', 'Never']).default('Always'),
    nodeSelector: z.record(z.string(), z.string()).optional(),
    nodeName: z.string().optional(),
    terminationGracePeriodSeconds: z.number().int().min(0).default(10),
    hostNetwork: z.boolean().optional(),
    volumes: z.array(volume).optional(),
    tolerations: z.array(toleration).optional(),
    affinity: affinity.optional(),
    activeDeadlineSeconds: z.number().int().min(1).optional(),
    /** The container's host name (Kubernetes: the pod name when unset); Indexed Job pods get JOB-INDEX. */
    hostname: z.string().max(63, 'must be no more than 63 characters').regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label').optional(),
    subdomain: z.string().max(63, 'must be no more than 63 characters').regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label').optional(),
  })
  .superRefine((spec, ctx) => {
    const seen = new Set<string>();
    spec.containers.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'name'], message: `duplicate container name "${c.name}"` });
      seen.add(c.name);
    });
    // Two volumes of one name would share one directory on the device: a writable emptyDir and a
    // configMap the root agent writes into, through links the pod planted (as Kubernetes: refused).
    const vols = new Set<string>();
    (spec.volumes ?? []).forEach((v, i) => {
      if (vols.has(v.name)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'name'], message: `duplicate volume name "${v.name}"` });
      vols.add(v.name);
    });
    const names = new Set(spec.containers.map((c) => c.name));
    spec.containers.forEach((c, i) => {
      (c.env ?? []).forEach((e, j) => {
        const ref = e.valueFrom?.resourceFieldRef;
        if (ref?.containerName !== undefined && !names.has(ref.containerName)) {
          ctx.addIssue({ code: 'custom', path: ['containers', i, 'env', j, 'valueFrom', 'resourceFieldRef', 'containerName'], message: `container "${ref.containerName}" is not in this pod` });
        }
      });
      const paths = new Set<string>();
      (c.volumeMounts ?? []).forEach((m, j) => {
        if (!vols.has(m.name)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'volumeMounts', j, 'name'], message: `volume "${m.name}" is not defined in spec.volumes` });
        if (paths.has(m.mountPath)) ctx.addIssue({ code: 'custom', path: ['containers', i, 'volumeMounts', j, 'mountPath'], message: `duplicate mountPath "${m.mountPath}"` });
        paths.add(m.mountPath);
      });
    });
  });
export type PodSpec = z.infer<typeof podSpec>;

export const containerStatus = z.object({
  name: z.string(),
  image: z.string(),
  containerID: z.string().optional(),
  ready: z.boolean(),
  restartCount: z.number().int(),
  state: z.enum(['waiting', 'running', 'terminated']),
  reason: z.string().optional(),
  message: z.string().optional(),
  exitCode: z.number().int().optional(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
export type ContainerStatus = z.infer<typeof containerStatus>;

export const podPhase = z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']);
export type PodPhase = z.infer<typeof podPhase>;

export const podStatus = z.object({
  phase: podPhase.default('Pending'),
  conditions: z.array(condition).optional(),
  containerStatuses: z.array(containerStatus).optional(),
  message: z.string().optional(),
  reason: z.string().optional(),
  hostIP: z.string().optional(),
  /** The pod's address: its own on the bridge network (the agent's report), the node's with hostNetwork. */
  podIP: z.string().optional(),
  podIPs: z.array(z.object({ ip: z.string() })).optional(),
  hostIPs: z.array(z.object({ ip: z.string() })).optional(),
  startTime: z.string().optional(),
  /** When the agent last reported this pod; lets a reader tell a current status from a stale one. */
  lastReportTime: z.string().optional(),
});
export type PodStatus = z.infer<typeof podStatus>;

export const pod = z.strictObject({
  apiVersion: z.string(),
  kind: z.literal('Pod'),
  metadata: objectMeta,
  spec: podSpec,
  status: podStatus.optional(),
});
export type Pod = z.infer<typeof pod>;
