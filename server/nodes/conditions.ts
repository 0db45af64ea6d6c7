import type { Condition } from '../../src/api/meta.js';
import type { Node } from '../../src/api/node.js';
import { isNotFound } from '../../src/util/errors.js';
import type { EventRecorder } from '../events/recorder.js';
import type { Store } from '../store/types.js';
import { lifecycleTaints } from './lifecycle.js';

/** `c` in the list, replacing its type; lastTransitionTime moves only when the status changes (pure). */
export function setCondition(conds: Condition[] | undefined, c: Condition, now: string): Condition[] {
  const list = [...(conds ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const prev = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...c,
    lastHeartbeatTime: now,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now,
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export const TAINT_DISK_PRESSURE = 'node.kubernetes.io/disk-pressure';

/**
 * The Node condition DiskPressure and the taint node.kubernetes.io/disk-pressure:NoSchedule as the
 * agent reports its disk (Kubernetes' names): edits `n` in place and says whether anything changed.
 * Only the pressure itself counts as a change, not the free bytes in the message, so a node with a
 * steady disk costs no store write. A taint set by hand with another effect is left alone.
 */
export function applyDiskPressure(n: Node, p: { pressure: boolean; message: string }, now: string): boolean {
  const status = p.pressure ? 'True' : 'False';
  const prev = n.status?.conditions?.find((c) => c.type === 'DiskPressure');
  const tainted = (n.spec?.taints ?? []).some((t) => t.key === TAINT_DISK_PRESSURE && t.effect === 'NoSchedule');
  if (prev?.status === status && tainted === p.pressure) return false;
  const cond: Condition = { type: 'DiskPressure', status, reason: p.pressure ? 'KubeletHasDiskPressure' : 'KubeletHasNoDiskPressure', message: p.message };
  n.status = { ...n.status, conditions: setCondition(n.status?.conditions, cond, now) };
  const others = (n.spec?.taints ?? []).filter((t) => !(t.key === TAINT_DISK_PRESSURE && t.effect === 'NoSchedule'));
  const taints = p.pressure ? [...others, { key: TAINT_DISK_PRESSURE, effect: 'NoSchedule' as const, timeAdded: now }] : others;
  n.spec = { ...n.spec, taints };
  if (!taints.length) delete n.spec.taints;
  return true;
}

/**
 * Writes Node conditions for status ingest and the lifecycle controller alike. A Node deleted
 * meanwhile is not an error: there is nothing left to describe (the writes resolve false).
 */
export class NodeConditions {
  constructor(private readonly deps: { store: Store; events: EventRecorder; component: string; now: () => number }) {}

  private iso(): string {
    return new Date(this.deps.now()).toISOString();
  }

  /**
   * Sets Ready (with the taints that follow it, and lastHeard when it is True); records a
   * NodeReady/NodeNotReady event when its status changed. A contract mismatch stays until a new hello.
   * Returns whether the status changed.
   */
  async ready(name: string, ready: Condition, eventType?: 'Normal' | 'Warning'): Promise<boolean> {
    const now = this.iso();
    let changed = false;
    await this.patch(name, (n) => {
      const prev = n.status?.conditions?.find((c) => c.type === 'Ready');
      if (prev?.reason === 'ContractVersionMismatch') return false;
      changed = prev?.status !== ready.status;
      const taints = lifecycleTaints(ready, n.spec?.taints, now);
      n.spec = { ...n.spec, taints };
      if (!taints.length) delete n.spec.taints;
      n.status = { ...n.status, conditions: setCondition(n.status?.conditions, ready, now), lastHeard: ready.status === 'True' ? now : n.status?.lastHeard };
      return true;
    });
    if (changed && eventType) {
      await this.event(name, eventType, ready.status === 'True' ? 'NodeReady' : 'NodeNotReady', `Node ${name} status is now: ${ready.reason}${ready.message ? ` (${ready.message})` : ''}`);
    }
    return changed;
  }

  /** Sets one condition (and lastHeard, when given); false when the Node is gone. */
  set(name: string, c: Condition, lastHeard?: string): Promise<boolean> {
    const now = this.iso();
    return this.patch(name, (n) => {
      n.status = { ...n.status, conditions: setCondition(n.status?.conditions, c, now), ...(lastHeard ? { lastHeard } : {}) };
      return true;
    });
  }

  event(name: string, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    return this.deps.events.record({ involved: { kind: 'Node', name }, type, reason, message, component: this.deps.component });
  }

  /** `edit` changes the Node in place and says whether to write it. */
  private async patch(name: string, edit: (n: Node) => boolean): Promise<boolean> {
    try {
      const written = await this.deps.store.patch('Node', '', name, (n) => (edit(n) ? n : undefined));
      return written !== undefined;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }
}
