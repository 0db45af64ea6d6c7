/**
 * The endpoints controller: keeps each Service's EndpointSlices equal to desiredSlices(service, pods,
 * nodes) (server/services/slices.ts). Keyed by Service ("ns/name"). A pod's change queues the Services
 * that select it now and those that listed it before (a relabelled pod leaves its old Service at once); a
 * node's change queues the Services with endpoints on it (NotReady takes them out of service); a change
 * to a slice drover manages queues its Service (a slice edited or deleted by hand is put back).
 */
import type { ApiObject } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { SERVICE_NAME_LABEL, type EndpointSlice, type Service } from '../../src/api/service.js';
import { isNotFound } from '../../src/util/errors.js';
import { desiredSlices, managedSlicesOf, sameSlice, selects } from '../services/slices.js';
import { isKind } from '../store/types.js';
import type { ControllerDeps } from './deps.js';
import { keyOf, splitKey, type Controller } from './runner.js';
import { validStored } from './valid-stored.js';

export function endpointsController(deps: ControllerDeps): Controller {
  const { store, logger } = deps;
  const log = logger.child({ controller: 'endpoints' });
  const valid = validStored(deps, 'endpoints-controller');
  /** Services seen (key → the Service), so a pod's change finds the Services selecting it without a store read. */
  const services = new Map<string, Service>();
  /** Per Service, the pods and nodes its slices listed at its last reconcile. */
  const listed = new Map<string, { pods: Set<string>; nodes: Set<string> }>();

  function servicesFor(pod: Pod): string[] {
    const out = new Set<string>();
    for (const [k, s] of services) if (selects(s, pod)) out.add(k);
    const pk = keyOf(pod);
    for (const [k, l] of listed) if (l.pods.has(pk)) out.add(k);
    return [...out];
  }

  async function removeSlices(namespace: string, slices: EndpointSlice[]): Promise<void> {
    for (const s of slices) {
      try {
        await store.delete('EndpointSlice', namespace, s.metadata.name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
  }

  return {
    name: 'endpoints',
    kind: 'Service',
    watches: [
      {
        kind: 'Service',
        keys: (o, type) => {
          if (type === 'DELETED') services.delete(keyOf(o));
          else if (isKind(o, 'Service')) services.set(keyOf(o), o);
          return [];
        },
      },
      { kind: 'Pod', keys: (o) => (isKind(o, 'Pod') ? servicesFor(o) : []) },
      {
        kind: 'Node',
        keys: (o: ApiObject) => [...listed].filter(([, l]) => l.nodes.has(o.metadata.name)).map(([k]) => k),
      },
      {
        kind: 'EndpointSlice',
        keys: (o) => {
          const svc = o.metadata.labels?.[SERVICE_NAME_LABEL];
          return svc ? [`${o.metadata.namespace ?? ''}/${svc}`] : [];
        },
      },
    ],
    async reconcile(key) {
      const { namespace, name } = splitKey(key);
      const raw = await store.get('Service', namespace, name);
      const existing = managedSlicesOf(name, (await store.list('EndpointSlice', namespace)).items);
      const svc = raw ? await valid('Service', raw) : undefined;
      if (!raw) {
        services.delete(key);
        listed.delete(key);
        await removeSlices(namespace, existing);
        return;
      }
      if (!svc) return;
      services.set(key, svc);
      const pods = (await store.list('Pod', namespace)).items as Pod[];
      const nodes = (await store.list('Node')).items as Node[];
      const want = desiredSlices(svc, pods, nodes);
      listed.set(key, {
        pods: new Set(want.flatMap((s) => s.endpoints.map((e) => `${namespace}/${e.targetRef?.name ?? ''}`))),
        nodes: new Set(want.flatMap((s) => s.endpoints.map((e) => e.nodeName ?? ''))),
      });
      const byName = new Map(existing.map((s) => [s.metadata.name, s]));
      for (const s of want) {
        const cur = byName.get(s.metadata.name);
        byName.delete(s.metadata.name);
        if (!cur) {
          await store.create(s);
          log.debug({ service: key, slice: s.metadata.name, endpoints: s.endpoints.length }, 'endpoint slice created');
        } else if (!sameSlice(cur, s)) {
          // Replaces the stored slice with what the pods say now; a concurrent write makes this a conflict and a retry.
          await store.update({ ...s, metadata: { ...cur.metadata, labels: s.metadata.labels, ownerReferences: s.metadata.ownerReferences } });
        }
      }
      await removeSlices(namespace, [...byName.values()]);
    },
  };
}
