/**
 * The spec hash stored on every container (label drover.io/spec-hash). The plan compares it with the
 * hash of the desired spec: equal means "leave the container alone", which is what lets an agent
 * that reconnects, restarts or receives a re-published desired state never restart a healthy
 * workload. So the hash covers exactly what the runtime is asked to run, normalised (quantities in
 * bytes and millicores, env as a map), and nothing else: restart policy, requests, probes, labels and
 * the container name change nothing in a running container.
 *
 * It is computed from the pod spec, never from values resolved on the node: an env var taken from a
 * ConfigMap enters as its reference, a volume as its definition. So, as in Kubernetes, a changed
 * ConfigMap or Secret does not restart running containers (their volume files are updated in place);
 * only a changed pod template does. For a container with literal env only and no mounts or devices
 * the hash is the same as before those existed, so agent upgrades do not re-create containers.
 *
 * Changing what goes into the hash re-creates every container on agent upgrade; do it deliberately.
 */
import { createHash } from 'node:crypto';
import type { Container } from '../../src/api/pod.js';
import { parseCpu, parseMemory } from '../../src/api/quantity.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { canonicalJson } from '../../src/util/canonical-json.js';
import type { PortMapping, RunSpec } from '../runtime/types.js';
import { devicesFor } from './volume-layout.js';

/**
 * The fields whose change requires a new container: RunSpec's, with env values that come from the
 * node (ConfigMap, Secret, fieldRef) given as their references, plus the declared envFrom sources and
 * mounts (each with its volume's definition). Absent or empty optional fields hash as before they
 * existed.
 */
export type RecreateFields = Omit<RunSpec, 'name' | 'labels' | 'env' | 'mounts'> & {
  env: Record<string, string | object>;
  envFrom?: unknown[];
  mounts?: unknown[];
};

function portOrder(a: PortMapping, b: PortMapping): number {
  const ka = canonicalJson(a);
  const kb = canonicalJson(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * sha256 hex of the canonical recreate fields, first 16 characters. Given a RunSpec, its resolved env
 * and mounts are hashed as they are: that equals the label plan.ts puts on the container only when
 * nothing in it came from the node (see containerSpecHash below).
 */
export function specHash(spec: RecreateFields | RunSpec): string {
  const fields: RecreateFields = {
    image: spec.image,
    // An empty command/args means "image default" in Kubernetes, the same as absent.
    command: spec.command?.length ? spec.command : undefined,
    args: spec.args?.length ? spec.args : undefined,
    env: spec.env,
    workingDir: spec.workingDir || undefined,
    // Port order in a manifest carries no meaning; publishing the same set must not re-create.
    ports: [...spec.ports].sort(portOrder),
    memoryBytes: spec.memoryBytes,
    cpuMilli: spec.cpuMilli,
    hostNetwork: spec.hostNetwork || undefined,
    envFrom: 'envFrom' in spec && spec.envFrom?.length ? spec.envFrom : undefined,
    mounts: spec.mounts?.length ? spec.mounts : undefined,
    // Devices are a set: their order means nothing.
    devices: spec.devices?.length ? [...spec.devices].sort((a, b) => (canonicalJson(a) < canonicalJson(b) ? -1 : 1)) : undefined,
  };
  return createHash('sha256').update(canonicalJson(fields)).digest('hex').slice(0, 16);
}

export function findContainer(pod: DesiredPod, container: string): Container {
  const c = pod.spec.containers.find((x) => x.name === container);
  if (!c) throw new Error(`pod ${pod.namespace}/${pod.name} has no container "${container}"`);
  return c;
}

/**
 * The recreate fields of one container, from the pod spec alone: nothing resolved on the node enters
 * (see spec-hash.ts). Throws on quantities that cannot be parsed.
 */
export function recreateFields(pod: DesiredPod, c: Container): RecreateFields {
  const env: Record<string, string | object> = {};
  // Later entries win, as in Kubernetes; a reference stands for its value.
  for (const e of c.env ?? []) env[e.name] = e.valueFrom ?? e.value ?? '';
  const limits = c.resources?.limits;
  const volumes = pod.spec.volumes ?? [];
  return {
    image: c.image,
    command: c.command?.length ? c.command : undefined,
    args: c.args?.length ? c.args : undefined,
    env,
    envFrom: c.envFrom?.length ? c.envFrom : undefined,
    workingDir: c.workingDir || undefined,
    ports: (c.ports ?? []).map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort, hostIP: p.hostIP, protocol: p.protocol })),
    // Limits only: requests are a scheduling hint, the runtime enforces nothing for them.
    memoryBytes: limits?.memory !== undefined ? parseMemory(limits.memory) : undefined,
    cpuMilli: limits?.cpu !== undefined ? parseCpu(limits.cpu) : undefined,
    hostNetwork: pod.spec.hostNetwork || undefined,
    mounts: (c.volumeMounts ?? [])
      .map((m) => ({ mountPath: m.mountPath, readOnly: m.readOnly || undefined, subPath: m.subPath || undefined, volume: volumes.find((v) => v.name === m.name) }))
      .sort((a, b) => (a.mountPath < b.mountPath ? -1 : a.mountPath > b.mountPath ? 1 : 0)),
    devices: devicesFor(c),
  };
}

/** The spec hash of a pod's container, from its spec alone (pure; throws on unusable quantities). */
export function containerSpecHash(pod: DesiredPod, container: string): string {
  return specHash(recreateFields(pod, findContainer(pod, container)));
}
