import { createHash } from 'node:crypto';
import { normalizeSecret, type ConfigMap, type Secret } from '../../src/api/config.js';
import type { Pod } from '../../src/api/pod.js';
import type { payloads } from '../../src/contract/index.js';
import { servicesFor, type ServiceWorld } from './services.js';

/** What a node's desired state carries, apart from the envelope (node, generation, ts). */
export type Snapshot = Pick<payloads.Desired, 'pods' | 'configMaps' | 'secrets' | 'services'>;

/** Pods that belong in a node's desired state: bound to it and not being deleted (pure). */
export function desiredPodsFor(node: string, pods: Pod[]): payloads.DesiredPod[] {
  return pods
    .filter((p) => p.spec.nodeName === node && !p.metadata.deletionTimestamp)
    .map((p) => ({
      uid: p.metadata.uid!,
      namespace: p.metadata.namespace ?? 'default',
      name: p.metadata.name,
      ...(p.metadata.labels ? { labels: p.metadata.labels } : {}),
      ...(p.metadata.annotations ? { annotations: p.metadata.annotations } : {}),
      spec: p.spec,
    }))
    .sort((a, b) => (a.namespace + '/' + a.name).localeCompare(b.namespace + '/' + b.name));
}

/** `ConfigMap/<ns>/<name>` or `Secret/<ns>/<name>`: how references are keyed. */
export function configKey(kind: 'ConfigMap' | 'Secret', namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/**
 * Every ConfigMap and Secret the pods reference, through env valueFrom, envFrom or volumes, keyed as
 * configKey does (pure). Optional references count too: the object may appear later.
 */
export function configRefs(pods: payloads.DesiredPod[]): Set<string> {
  const refs = new Set<string>();
  for (const p of pods) {
    const cm = (name: string) => refs.add(configKey('ConfigMap', p.namespace, name));
    const sec = (name: string) => refs.add(configKey('Secret', p.namespace, name));
    for (const c of p.spec.containers) {
      for (const e of c.env ?? []) {
        if (e.valueFrom?.configMapKeyRef) cm(e.valueFrom.configMapKeyRef.name);
        if (e.valueFrom?.secretKeyRef) sec(e.valueFrom.secretKeyRef.name);
      }
      for (const f of c.envFrom ?? []) {
        if (f.configMapRef) cm(f.configMapRef.name);
        if (f.secretRef) sec(f.secretRef.name);
      }
    }
    for (const v of p.spec.volumes ?? []) {
      if (v.configMap) cm(v.configMap.name);
      if (v.secret) sec(v.secret.secretName);
    }
  }
  return refs;
}

const byRef = (a: { namespace: string; name: string }, b: { namespace: string; name: string }) =>
  (a.namespace + '/' + a.name).localeCompare(b.namespace + '/' + b.name);

/**
 * A node's snapshot (pure): its pods plus only the ConfigMaps and Secrets those pods reference, so a
 * Secret never reaches a node that runs nothing using it.
 */
export function snapshotFor(node: string, pods: Pod[], configMaps: ConfigMap[], secrets: Secret[], world?: Omit<ServiceWorld, 'pods'>): Snapshot {
  const desired = desiredPodsFor(node, pods);
  const refs = configRefs(desired);
  const ns = (o: { metadata: { namespace?: string } }) => o.metadata.namespace ?? 'default';
  const services = world ? servicesFor(node, desired, { ...world, pods }) : [];
  return {
    pods: desired,
    // Absent rather than empty: the desired state of a node without Services stays as it was.
    ...(services.length ? { services } : {}),
    configMaps: configMaps
      .filter((c) => refs.has(configKey('ConfigMap', ns(c), c.metadata.name)))
      .map((c) => ({ namespace: ns(c), name: c.metadata.name, data: c.data ?? {}, ...(c.binaryData ? { binaryData: c.binaryData } : {}) }))
      .sort(byRef),
    secrets: secrets
      .filter((s) => refs.has(configKey('Secret', ns(s), s.metadata.name)))
      .map((s) => {
        // Stored Secrets are normalized already; this only guards against one written around the API.
        const n = normalizeSecret(s);
        return { namespace: ns(s), name: s.metadata.name, type: n.type, data: n.data ?? {} };
      })
      .sort(byRef),
  };
}

/** A digest of what the agent would do: equal digests mean nothing to publish. */
export function contentDigest(s: Snapshot): string {
  return createHash('sha256').update(JSON.stringify([s.pods, s.configMaps, s.secrets, s.services ?? []])).digest('hex');
}
