import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { isNotFound } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';
import type { EventRecorder } from '../events/recorder.js';
import type { MetricsCache } from '../metrics/cache.js';
import { NodeConditions } from '../nodes/conditions.js';
import { condition, decideLifecycle, dueEvictions, hasLifecycleTaint, podMarks, type LifecyclePolicy } from '../nodes/lifecycle.js';
import type { NodeLiveness } from '../nodes/liveness.js';
import { lostPodStatus, withStaleFlag } from '../nodes/pod-status.js';
import { isKind, type Store } from '../store/types.js';
import { splitKey, type Controller, type ReconcileResult } from './runner.js';

export interface NodeLifecycleOptions {
  store: Store;
  events: EventRecorder;
  logger: Logger;
  /** Written by status ingest (server/nodes/registry.ts) as reports and disconnects arrive. */
  liveness: NodeLiveness;
  /** Resource use the node reported: served until the Node is deleted. */
  metrics?: MetricsCache;
  policy: LifecyclePolicy;
  /** Heartbeat period assumed for a Ready node this process has not heard yet (after a server restart). */
  assumedHeartbeatMs: number;
  /** Longest a node waits for its next look, whatever its due times say (a guard against clock steps). */
  maxRequeueMs: number;
  now: () => number;
}

function isTerminal(p: Pod): boolean {
  return p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';
}

/**
 * Node lifecycle as a controller, keyed by node: what silence means over time. A node a heartbeat
 * and a half late is marked HeartbeatLate and its pods StatusStale; after `missedHeartbeats` it turns
 * NotReady; pods of a node that is not Ready show Unknown (NodeLost); a degraded link that stayed up
 * a whole window is stable again; pods that opted in with a toleration are evicted when it expires.
 * The decisions are pure (server/nodes/lifecycle.ts); reconcile reads, decides, writes, and asks to
 * be looked at again when the next one falls due.
 */
export function nodeLifecycleController(o: NodeLifecycleOptions): Controller {
  const conditions = new NodeConditions({ store: o.store, events: o.events, component: 'node-lifecycle', now: o.now });
  /** Per node, the podMarks key its pods were last brought in line with. */
  const podsMarked = new Map<string, string>();

  async function applyDecision(node: Node, nowMs: number): Promise<{ wrote: boolean; nextAtMs?: number }> {
    const name = node.metadata.name;
    let beat = o.liveness.beat(name);
    if (!beat && condition(node, 'Ready')?.status === 'True') {
      beat = o.liveness.assume(name, { lastHeardMs: nowMs, periodMs: o.assumedHeartbeatMs, bootId: node.status?.nodeInfo?.bootID ?? '' });
    }
    if (condition(node, 'LinkDegraded')?.status === 'True') o.liveness.flaps.assumeDegraded(name);
    const d = decideLifecycle({ node, beat, lastDisconnectMs: o.liveness.flaps.lastDisconnectMs(name), nowMs, policy: o.policy });
    let wrote = false;
    if (d.late?.set) {
      // The period is the heartbeat's, or two keepalives where the server hears the agent's pings (registry.ts livenessPeriodSeconds).
      const message = `no status or ping for ${Math.round((nowMs - d.late.lastHeardMs) / 1000)}s (expected every ${Math.round(d.late.periodMs / 1000)}s): what this node last reported may be out of date`;
      wrote = await conditions.set(name, { type: 'HeartbeatLate', status: 'True', reason: 'NoRecentStatus', message }, new Date(d.late.lastHeardMs).toISOString());
      if (wrote) await conditions.event(name, 'Warning', 'HeartbeatLate', `Node ${name}: ${message}`);
    } else if (d.late) {
      wrote = await conditions.set(name, { type: 'HeartbeatLate', status: 'False', reason: 'StatusReceived', message: 'status reports arriving' });
    }
    if (d.notReady) {
      await conditions.ready(name, d.notReady, 'Warning');
      wrote = true;
    }
    if (d.linkStable) {
      o.liveness.flaps.stable(name);
      if (await conditions.set(name, { type: 'LinkDegraded', status: 'False', reason: 'LinkStable', message: 'link stable again' })) {
        await conditions.event(name, 'Normal', 'LinkStable', `Node ${name}: link stable again`);
      }
      wrote = true;
    }
    return { wrote, nextAtMs: d.nextAtMs };
  }

  /** Brings one pod in line with its node: lost (Unknown, nothing ready) and/or flagged stale. */
  async function markPod(p: Pod, node: Node, marks: ReturnType<typeof podMarks>, now: string): Promise<void> {
    const name = node.metadata.name;
    // The stored time is that of the node's last change; what this process heard since is in memory.
    const storedMs = node.status?.lastHeard ? Date.parse(node.status.lastHeard) : undefined;
    const beatMs = o.liveness.beat(name)?.lastHeardMs;
    const heardMs = beatMs !== undefined && (storedMs === undefined || beatMs > storedMs) ? beatMs : storedMs;
    const staleMessage = marks.stale ? `node ${name} has not reported for ${heardMs === undefined ? '?' : Math.round((o.now() - heardMs) / 1000)}s: this status may be out of date` : undefined;
    try {
      await o.store.patch('Pod', p.metadata.namespace ?? 'default', p.metadata.name, (pod) => {
        if (pod.metadata.uid !== p.metadata.uid || pod.spec.nodeName !== name || isTerminal(pod)) return undefined;
        let status = pod.status;
        let changed = false;
        if (marks.lost && status?.phase !== 'Unknown') {
          status = lostPodStatus(status, name, marks.lost);
          changed = true;
        }
        const flagged = status?.conditions?.some((c) => c.type === 'StatusStale');
        // Flagged once per lateness, not rewritten with a newer age on every look.
        const next = staleMessage && flagged ? undefined : withStaleFlag(status, staleMessage, now);
        if (next) {
          status = next;
          changed = true;
        }
        if (!changed) return undefined;
        pod.status = status;
        return pod;
      });
    } catch (err) {
      // Deleted meanwhile: nothing left to mark.
      if (!isNotFound(err)) throw err;
    }
  }

  async function evict(pod: Pod, node: Node): Promise<void> {
    const ns = pod.metadata.namespace ?? 'default';
    try {
      // At the version decided on: a pod that changed since is looked at again (a ConflictError retries the key).
      await o.store.delete('Pod', ns, pod.metadata.name, { resourceVersion: pod.metadata.resourceVersion });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    o.logger.info({ pod: `${ns}/${pod.metadata.name}`, node: node.metadata.name }, 'pod evicted from unreachable node');
    await o.events.record({
      involved: { kind: 'Pod', namespace: ns, name: pod.metadata.name, uid: pod.metadata.uid },
      type: 'Warning',
      reason: 'TaintManagerEviction',
      message: `Evicting pod from node ${node.metadata.name}: its toleration of ${node.spec?.taints?.map((t) => t.key).join(', ')} expired`,
      component: 'node-lifecycle',
    });
  }

  async function reconcile(key: string): Promise<ReconcileResult | void> {
    const { name } = splitKey(key);
    let node = await o.store.get('Node', '', name);
    if (!node) {
      // Deleted: what this process holds of it goes too (`top nodes` stops listing it).
      o.liveness.forget(name);
      o.metrics?.forgetNode(name);
      podsMarked.delete(name);
      return;
    }
    const nowMs = o.now();
    const decided = await applyDecision(node, nowMs);
    if (decided.wrote) {
      node = await o.store.get('Node', '', name);
      if (!node) return;
    }
    let pods: Pod[] | undefined;
    const podsOfNode = async () => (pods ??= (await o.store.list('Pod')).items.filter((p) => p.spec.nodeName === name));
    const marks = podMarks(node);
    const seen = podsMarked.get(name);
    // First look in this process at a node with nothing to mark: its pods' next reports say the rest.
    if (marks.key !== seen && (seen !== undefined || marks.lost || marks.stale)) {
      const now = new Date(nowMs).toISOString();
      for (const p of await podsOfNode()) await markPod(p, node, marks, now);
    }
    podsMarked.set(name, marks.key);
    let nextAtMs = decided.nextAtMs;
    if (hasLifecycleTaint(node)) {
      const ev = dueEvictions(node, await podsOfNode(), nowMs);
      for (const pod of ev.due) await evict(pod, node);
      if (ev.nextAtMs !== undefined) nextAtMs = nextAtMs === undefined ? ev.nextAtMs : Math.min(nextAtMs, ev.nextAtMs);
    }
    if (nextAtMs === undefined) return;
    return { requeueAfterMs: Math.min(Math.max(0, nextAtMs - nowMs), o.maxRequeueMs) };
  }

  return {
    name: 'node-lifecycle',
    kind: 'Node',
    // Only pods that can be evicted matter here: a new one on a tainted node has its own due time.
    watches: [
      {
        kind: 'Pod',
        keys: (obj) => (isKind(obj, 'Pod') && obj.spec?.nodeName && obj.spec.tolerations?.some((t) => t.tolerationSeconds !== undefined) ? [`/${obj.spec.nodeName}`] : []),
      },
    ],
    reconcile,
  };
}
