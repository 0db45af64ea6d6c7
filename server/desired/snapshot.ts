import { createHash } from 'node:crypto';
import { normalizeSecret, type ConfigMap, type Secret } from '../../src/api/config.js';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { SERVICE_NAME_LABEL, type EndpointSlice, type Service } from '../../src/api/service.js';
import type { payloads } from '../../src/contract/index.js';
import type { DesiredImage } from '../../src/contract/images.js';
import type { Store } from '../store/types.js';
import { NO_IMAGES, podImages, prefetchImages, type ImageCatalog } from './image-catalog.js';
import { servicesFor, type ServiceWorld } from './services.js';
import { compareStrings } from '../../src/util/compare.js';

/** What a node's desired state carries, apart from the envelope (node, generation, ts). */
export type Snapshot = Pick<payloads.Desired, 'pods' | 'configMaps' | 'secrets' | 'services' | 'images' | 'imageBandwidth'>;

/**
 * The server's images a node is to have (pure): those its pods run, then those a rollout asked it to
 * fetch ahead (PREFETCH_ANNOTATION on a pod about to be replaced), each once, by name. Images the server
 * does not serve are left to the device's own pull.
 */
export function imagesFor(pods: payloads.DesiredPod[], catalog: ImageCatalog): DesiredImage[] {
  const out = new Map<string, DesiredImage>();
  const add = (name: string, prefetch: boolean) => {
    if (out.has(name)) return;
    const served = catalog.byName(name);
    if (served) out.set(name, { name, digest: served.digest, size: served.size, ...(prefetch ? { prefetch: true } : {}) });
  };
  for (const p of pods) for (const name of podImages(p.spec)) add(name, false);
  for (const p of pods) for (const name of prefetchImages(p.annotations)) add(name, true);
  return [...out.values()].sort((a, b) => compareStrings(a.name, b.name));
}

/**
 * The pod spec without what only the scheduler reads: where the pod may go (node selector, affinity,
 * tolerations) means nothing once it is bound. A DaemonSet pod's six default tolerations were 40 % of a
 * one-pod desired state (1.1 KB); Node's TLS keeps each connection's buffers at the size of the largest
 * message it wrote, so the fleet's memory follows these bytes too. The agent's spec hash never covered them.
 */
function agentSpec(spec: Pod['spec']): Pod['spec'] {
  if (!spec.tolerations && !spec.affinity && !spec.nodeSelector) return spec;
  const { tolerations: _t, affinity: _a, nodeSelector: _n, ...rest } = spec;
  return rest;
}

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
      spec: agentSpec(p.spec),
    }))
    .sort((a, b) => compareStrings(a.namespace + '/' + a.name, b.namespace + '/' + b.name));
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
  compareStrings(a.namespace + '/' + a.name, b.namespace + '/' + b.name);

/**
 * A node's snapshot (pure): its pods plus only the ConfigMaps and Secrets those pods reference, so a
 * Secret never reaches a node that runs nothing using it.
 */
export function snapshotFor(node: string, pods: Pod[], configMaps: ConfigMap[], secrets: Secret[], world?: Omit<ServiceWorld, 'pods'>, catalog: ImageCatalog = NO_IMAGES): Snapshot {
  const desired = desiredPodsFor(node, pods);
  const refs = configRefs(desired);
  const ns = (o: { metadata: { namespace?: string } }) => o.metadata.namespace ?? 'default';
  const services = world ? servicesFor(node, desired, { ...world, pods }) : [];
  const images = imagesFor(desired, catalog);
  return {
    pods: desired,
    // Absent rather than empty: the desired state of a node without Services (or served images) stays as it was.
    ...(services.length ? { services } : {}),
    ...(images.length ? { images } : {}),
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
  return createHash('sha256').update(JSON.stringify([s.pods, s.configMaps, s.secrets, s.services ?? [], s.images ?? [], s.imageBandwidth ?? 0])).digest('hex');
}

/**
 * Reads what a node's snapshot needs besides its own pods, object by object, each at most once per
 * publishing pass: the ConfigMaps and Secrets its pods reference, the Services and EndpointSlices of their
 * namespaces, and the nodes and pods those endpoints name. A change then costs reads in proportion to the
 * nodes it concerns, not a list of every pod, Secret and Node in the cluster.
 */
export class PassReader {
  private readonly cache = new Map<string, Promise<unknown>>();

  constructor(private readonly store: Pick<Store, 'get' | 'list'>) {}

  private once<T>(key: string, read: () => Promise<T>): Promise<T> {
    let p = this.cache.get(key) as Promise<T> | undefined;
    if (!p) {
      p = read();
      this.cache.set(key, p);
    }
    return p;
  }

  get<K extends 'ConfigMap' | 'Secret' | 'Node' | 'Pod'>(kind: K, namespace: string, name: string) {
    return this.once(`get/${kind}/${namespace}/${name}`, () => this.store.get(kind, namespace, name));
  }

  list<K extends 'Service' | 'EndpointSlice'>(kind: K, namespace: string) {
    return this.once(`list/${kind}/${namespace}`, async () => (await this.store.list(kind, namespace)).items);
  }
}

/**
 * A node's snapshot from its own pods (the publisher's index) and what `r` reads for them; the same
 * result as snapshotFor over the whole cluster.
 */
export async function snapshotOf(node: string, nodePods: Pod[], r: PassReader, catalog: ImageCatalog = NO_IMAGES): Promise<Snapshot> {
  const desired = desiredPodsFor(node, nodePods);
  const refs = [...configRefs(desired)];
  const objects = await Promise.all(
    refs.map(async (key) => {
      const [kind, namespace, ...rest] = key.split('/') as ['ConfigMap' | 'Secret', string, ...string[]];
      return r.get(kind, namespace, rest.join('/'));
    }),
  );
  const configMaps = objects.filter((o): o is ConfigMap => o?.kind === 'ConfigMap');
  const secrets = objects.filter((o): o is Secret => o?.kind === 'Secret');
  let world: Omit<ServiceWorld, 'pods'> | undefined;
  // Pods of other nodes that endpoints name (their hostPorts); desiredPodsFor keeps only the node's own.
  let remotePods: Pod[] = [];
  const namespaces = [...new Set(desired.map((p) => p.namespace))];
  if (namespaces.length) {
    const services = (await Promise.all(namespaces.map((ns) => r.list('Service', ns)))).flat() as Service[];
    const slices = (await Promise.all(namespaces.map((ns) => r.list('EndpointSlice', ns)))).flat() as EndpointSlice[];
    // Only slices of those Services matter: their endpoints' nodes (addresses) and pods (hostPorts).
    const named = new Set(services.map((svc) => `${svc.metadata.namespace ?? 'default'}/${svc.metadata.name}`));
    const used = slices.filter((sl) => named.has(`${sl.metadata.namespace ?? 'default'}/${sl.metadata.labels?.[SERVICE_NAME_LABEL]}`));
    const nodeNames = new Set<string>();
    const podKeys = new Set<string>();
    for (const sl of used) {
      for (const e of sl.endpoints) {
        if (e.nodeName && e.nodeName !== node) nodeNames.add(e.nodeName);
        if (e.targetRef?.name) podKeys.add(`${sl.metadata.namespace ?? 'default'}/${e.targetRef.name}`);
      }
    }
    const nodes = (await Promise.all([...nodeNames].map((n) => r.get('Node', '', n)))).filter((n): n is Node => n !== undefined);
    remotePods = (
      await Promise.all(
        [...podKeys].map((k) => {
          const [ns, name] = k.split('/') as [string, string];
          return r.get('Pod', ns, name);
        }),
      )
    ).filter((p): p is Pod => p !== undefined && p.spec.nodeName !== node);
    world = { services, slices: used, nodes };
  }
  return snapshotFor(node, [...nodePods, ...remotePods], configMaps, secrets, world, catalog);
}
