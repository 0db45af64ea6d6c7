import type { Node } from '../../src/api/node.js';
import type { Store } from '../store/types.js';
import type { Heartbeat, NodeLiveness } from './liveness.js';

/**
 * A Node as readers should see it: its stored status with the last heard time this process knows,
 * when that is newer. Status ingest writes a Node only when something changes (server/nodes/registry.ts),
 * so the stored `lastHeard` and Ready's `lastHeartbeatTime` are those of the last change; heartbeats and
 * MQTT pings move the time in NodeLiveness only. Only a Ready node is freshened: a node that went
 * offline or NotReady shows when it was last heard as stored (pure; the stored object is not touched).
 * A grace beat the lifecycle controller assumed after a server restart is not hearing the node: a node
 * stored as silent for 20 minutes must not read as heard at the restart.
 */
export function withLiveLastHeard(node: Node, beat: Heartbeat | undefined): Node {
  if (!beat) return node;
  const conditions = node.status?.conditions;
  const i = conditions?.findIndex((c) => c.type === 'Ready') ?? -1;
  if (i < 0 || conditions![i]!.status !== 'True') return node;
  const stored = Date.parse(node.status?.lastHeard ?? '');
  if (!Number.isNaN(stored) && stored >= beat.lastHeardMs) return node;
  const heard = new Date(beat.lastHeardMs).toISOString();
  const next = [...conditions!];
  next[i] = { ...next[i]!, lastHeartbeatTime: heard };
  return { ...node, status: { ...node.status, lastHeard: heard, conditions: next } };
}

/**
 * The store as the API and fleet views read it: Node reads carry the live last heard time (see
 * withLiveLastHeard); everything else, writes and watches included, is the store's own. Controllers
 * keep the plain store: they decide from NodeLiveness directly.
 */
export function withLiveNodes(store: Store, liveness: NodeLiveness): Store {
  const live = (n: Node): Node => withLiveLastHeard(n, liveness.heardBeat(n.metadata.name));
  const get: Store['get'] = async (kind, namespace, name) => {
    const obj = await store.get(kind, namespace, name);
    return kind === 'Node' && obj ? (live(obj as Node) as typeof obj) : obj;
  };
  const list: Store['list'] = async (kind, namespace) => {
    const res = await store.list(kind, namespace);
    return kind === 'Node' ? { ...res, items: res.items.map((n) => live(n as Node) as (typeof res.items)[number]) } : res;
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'get') return get;
      if (prop === 'list') return list;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
