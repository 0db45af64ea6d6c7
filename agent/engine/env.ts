/**
 * Container environment, resolved as the kubelet does it (pure): envFrom sources first, in order, then
 * `env` entries (later ones win), each `value` expanded for $(VAR) references to variables defined
 * before it. ConfigMaps and Secrets come from the node's desired state (ConfigLookup); a missing
 * required one is a ConfigError, which the plan and the reports turn into CreateContainerConfigError.
 */
import type { Container } from '../../src/api/pod.js';
import { parseCpu, parseMemory } from '../../src/api/quantity.js';
import type { Desired, DesiredPod, DesiredService } from '../../src/contract/payloads.js';
import { errorMessage } from '../../src/util/errors.js';

/** The container cannot be configured from what the node has (missing ConfigMap, key, Secret...). */
export class ConfigError extends Error {
  readonly reason = 'CreateContainerConfigError';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** ConfigMaps and Secrets as the agent holds them. Secret values are decoded; binary ConfigMap data too. */
export interface ConfigLookup {
  configMap(namespace: string, name: string): { data: Record<string, string>; binaryData: Record<string, Buffer> } | undefined;
  secret(namespace: string, name: string): { data: Record<string, Buffer> } | undefined;
}

/** A lookup over the ConfigMaps and Secrets of a desired snapshot (none when there is no snapshot). */
export function configLookup(d?: Partial<Pick<Desired, 'configMaps' | 'secrets'>>): ConfigLookup {
  const cms = new Map((d?.configMaps ?? []).map((c) => [`${c.namespace}/${c.name}`, c]));
  const secrets = new Map((d?.secrets ?? []).map((s) => [`${s.namespace}/${s.name}`, s]));
  const decode = (r: Record<string, string> | undefined) => Object.fromEntries(Object.entries(r ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
  return {
    configMap(namespace, name) {
      const c = cms.get(`${namespace}/${name}`);
      return c ? { data: c.data ?? {}, binaryData: decode(c.binaryData) } : undefined;
    },
    secret(namespace, name) {
      const s = secrets.get(`${namespace}/${name}`);
      return s ? { data: decode(s.data) } : undefined;
    },
  };
}

/** What building a container's runtime request needs beyond the pod itself. */
export interface RunContext {
  config?: ConfigLookup;
  /** The agent's state directory: emptyDir, configMap and secret volumes live below it. */
  stateDir?: string;
  /** The node's primary address (fieldRef status.hostIP; probes of host-network pods). */
  hostIP?: string;
  /** Why a pod's volume could not be prepared on the host, if it could not (VolumeManager). */
  volumeError?: (podUid: string, volume: string) => string | undefined;
  /**
   * The address a bridge-networked pod will have (fieldRef status.podIP), known before its containers
   * start when the agent picks it; undefined while it has none.
   */
  podIP?: (podUid: string) => string | undefined;
  /** What the node offers (resourceFieldRef limits.* of a container without that limit, as the kubelet does). */
  allocatable?: { cpuMilli: number; memoryBytes: number };
  /** The Services the node knows (desired state): their names go into containers' /etc/hosts. */
  services?: DesiredService[];
}

const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/**
 * Kubernetes' $(VAR) expansion: `$(NAME)` becomes NAME's value when NAME is defined, and stays as
 * written otherwise; `$$` is an escaped `$`.
 */
export function expandVars(s: string, vars: Record<string, string>): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch !== '$' || i + 1 >= s.length) {
      out += ch;
      continue;
    }
    const next = s[i + 1]!;
    if (next === '$') {
      out += '$';
      i += 1;
    } else if (next === '(') {
      const close = s.indexOf(')', i + 2);
      if (close < 0) {
        out += s.slice(i);
        break;
      }
      const name = s.slice(i + 2, close);
      out += Object.hasOwn(vars, name) ? vars[name] : s.slice(i, close + 1);
      i = close;
    } else {
      out += ch;
    }
  }
  return out;
}

/** `metadata.labels['k']` / `metadata.annotations['k']` (quotes single or double, as Kubernetes accepts). */
const SUBSCRIPTED = /^metadata\.(labels|annotations)\[(['"])(.*)\2\]$/;

function fieldValue(pod: DesiredPod, fieldPath: string, node: string, ctx: RunContext): string {
  const sub = SUBSCRIPTED.exec(fieldPath);
  if (sub) {
    // As the kubelet: an absent key is an empty value, not an error (a server older than the agent sends none).
    return (sub[1] === 'labels' ? pod.labels : pod.annotations)?.[sub[3]!] ?? '';
  }
  switch (fieldPath) {
    case 'metadata.name':
      return pod.name;
    case 'metadata.namespace':
      return pod.namespace;
    case 'metadata.uid':
      return pod.uid;
    case 'spec.nodeName':
      return pod.spec.nodeName ?? node;
    case 'status.hostIP':
      return ctx.hostIP ?? '';
    case 'status.podIP': {
      if (pod.spec.hostNetwork) return ctx.hostIP ?? '';
      // An agent that cannot pick bridge addresses (its runtime does not tell the bridge subnet) learns
      // the address only once the container runs: too late for its env. Retried at every pass.
      if (!ctx.podIP) throw new ConfigError('fieldRef "status.podIP" is only supported with hostNetwork on this agent (its container runtime does not tell its bridge subnet)');
      const ip = ctx.podIP(pod.uid);
      // Retried on the next pass, when the agent has picked the pod's address.
      if (!ip) throw new ConfigError('fieldRef "status.podIP": the pod has no IP address yet');
      return ip;
    }
    case 'spec.serviceAccountName':
      return 'default';
    default:
      throw new ConfigError(`unsupported fieldRef fieldPath "${fieldPath}" (drover supports ${SUPPORTED_FIELD_PATHS.join(', ')})`);
  }
}

/** What fieldRef may name on drover (the API refuses others at admission, src/api/pod.ts). */
const SUPPORTED_FIELD_PATHS = ['metadata.name', 'metadata.namespace', 'metadata.uid', "metadata.labels['KEY']", "metadata.annotations['KEY']", 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.podIP'];

type ResourceRef = { containerName?: string; resource: string; divisor?: string | number };

/**
 * A resourceFieldRef as the kubelet resolves it: the quantity divided by the divisor, rounded up
 * (limits.cpu with the default divisor 1 → whole cores). A missing limit is the node's allocatable;
 * a missing request is the limit, or 0.
 */
function resourceValue(pod: DesiredPod, c: Container, ref: ResourceRef, ctx: RunContext): string {
  const target = ref.containerName ? pod.spec.containers.find((x) => x.name === ref.containerName) : c;
  if (!target) throw new ConfigError(`resourceFieldRef: container "${ref.containerName}" not found in the pod`);
  const [kind, res] = ref.resource.split('.') as ['limits' | 'requests', 'cpu' | 'memory'];
  const isCpu = res === 'cpu';
  if ((kind !== 'limits' && kind !== 'requests') || (res !== 'cpu' && res !== 'memory')) {
    throw new ConfigError(`unsupported resourceFieldRef resource "${ref.resource}" (drover supports limits.cpu, limits.memory, requests.cpu, requests.memory)`);
  }
  const limit = target.resources?.limits?.[res];
  const request = target.resources?.requests?.[res];
  try {
    const parse = isCpu ? parseCpu : parseMemory;
    let amount: number;
    if (kind === 'limits') {
      if (limit !== undefined) amount = parse(limit);
      else if (ctx.allocatable) amount = isCpu ? ctx.allocatable.cpuMilli : ctx.allocatable.memoryBytes;
      else throw new ConfigError(`resourceFieldRef "${ref.resource}": container "${target.name}" has no ${res} limit and the node's allocatable ${res} is not known`);
    } else {
      amount = request !== undefined ? parse(request) : limit !== undefined ? parse(limit) : 0;
    }
    const divisor = ref.divisor === undefined ? (isCpu ? 1000 : 1) : parse(ref.divisor);
    if (!(divisor > 0)) throw new ConfigError(`resourceFieldRef "${ref.resource}": divisor must be above 0`);
    return String(Math.ceil(amount / divisor));
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`resourceFieldRef "${ref.resource}": ${errorMessage(err)}`);
  }
}

/** The container's environment with every reference resolved; throws ConfigError. */
export function resolveEnv(pod: DesiredPod, c: Container, node: string, ctx: RunContext = {}): Record<string, string> {
  const env: Record<string, string> = {};
  const ns = pod.namespace;

  for (const src of c.envFrom ?? []) {
    const prefix = src.prefix ?? '';
    let entries: Array<[string, string]> = [];
    if (src.configMapRef) {
      const cm = ctx.config?.configMap(ns, src.configMapRef.name);
      if (!cm) {
        if (src.configMapRef.optional) continue;
        throw new ConfigError(`configmap "${src.configMapRef.name}" not found`);
      }
      entries = Object.entries(cm.data);
    } else if (src.secretRef) {
      const s = ctx.config?.secret(ns, src.secretRef.name);
      if (!s) {
        if (src.secretRef.optional) continue;
        throw new ConfigError(`secret "${src.secretRef.name}" not found`);
      }
      entries = Object.entries(s.data).map(([k, v]) => [k, v.toString('utf8')]);
    }
    // Keys that are no valid variable name are skipped, as the kubelet does.
    for (const [k, v] of entries) if (ENV_NAME.test(prefix + k)) env[prefix + k] = v;
  }

  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (!from) {
      env[e.name] = expandVars(e.value ?? '', env);
      continue;
    }
    if (from.configMapKeyRef) {
      const ref = from.configMapKeyRef;
      const cm = ctx.config?.configMap(ns, ref.name);
      const v = cm?.data[ref.key];
      if (v !== undefined) env[e.name] = v;
      else if (!ref.optional) throw new ConfigError(cm ? `couldn't find key ${ref.key} in ConfigMap ${ns}/${ref.name}` : `configmap "${ref.name}" not found`);
    } else if (from.secretKeyRef) {
      const ref = from.secretKeyRef;
      const s = ctx.config?.secret(ns, ref.name);
      const v = s?.data[ref.key];
      if (v !== undefined) env[e.name] = v.toString('utf8');
      else if (!ref.optional) throw new ConfigError(s ? `couldn't find key ${ref.key} in Secret ${ns}/${ref.name}` : `secret "${ref.name}" not found`);
    } else if (from.fieldRef) {
      env[e.name] = fieldValue(pod, from.fieldRef.fieldPath, node, ctx);
    } else if (from.resourceFieldRef) {
      env[e.name] = resourceValue(pod, c, from.resourceFieldRef, ctx);
    }
  }
  return env;
}
