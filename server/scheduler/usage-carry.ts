/**
 * The node usage a scheduling pass starts from, carried over from the pass before when all that happened
 * since is pods bound (kube-scheduler keeps its cache of node usage the same way, updated by binds).
 *
 * While a Deployment of 5,000 replicas is placed, its pods arrive in batches of up to 256: each pass built
 * the usage of 1,000 nodes from every bound pod again (7 % of the server's CPU). A pass now adds only the
 * pods bound since; anything else — a node changed, a pod gone, unbound, finished, moved, relabelled or given
 * other owners, a binding that failed — builds it afresh, so the usage is always what computeUsage would give.
 */
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { podGroupKey } from './cluster.js';
import { addPod, isTerminated, type NodeUsage } from './filters.js';
import { computeUsage, podKey } from './place.js';

interface Counted {
  node: string;
  labels: Pod['metadata']['labels'];
  /** Its spreading group (first owner's uid, else its labels): owner references may be edited. */
  group: string | undefined;
  /**
   * The bound pod object counted, when frozen (the object cache's): the same object in a later list is the same pod,
   * unchanged, and needs no comparing. A pass's own decisions are counted from the unbound pod, so not here.
   */
  seen?: Pod;
}

export class UsageCarry {
  private nodes: readonly Node[] = [];
  private usage: Map<string, NodeUsage> | undefined;
  /** Pods the usage holds, by key: the node each holds and the labels it was counted with. */
  private readonly counted = new Map<string, Counted>();
  /** Passes that started from the carried usage (tests and benchmarks). */
  carried = 0;

  /**
   * The usage of the bound, non-terminated pods of `pods` on `nodes`, leaving out the pods of `batch`
   * (about to be placed; keyed as place.ts's podKey). It is the caller's until the next call: `placed` adds the pass's decisions.
   */
  usageFor(nodes: Node[], pods: readonly Pod[], batch: ReadonlySet<string>): Map<string, NodeUsage> {
    if (this.usage && sameNodes(this.nodes, nodes)) {
      const added = this.addedSince(pods, batch, this.usage);
      if (added) {
        for (const p of added) this.placed(p, p.spec.nodeName!);
        this.carried++;
        return this.usage;
      }
    }
    // Forgotten first: if computeUsage throws (a quantity it cannot parse), the next call builds afresh again.
    this.clear();
    const holding = pods.filter((p) => !batch.has(podKey(p)));
    const usage = computeUsage({ nodes, pods: holding });
    for (const p of holding) if (holds(p, usage)) this.counted.set(podKey(p), counted(p, p.spec.nodeName!, p));
    this.nodes = nodes;
    this.usage = usage;
    return usage;
  }

  /** A decision of the pass (or a pod bound since the last one): `pod` counts on `node` from now on. */
  placed(pod: Pod, node: string): void {
    addPod(this.usage!.get(node)!, pod);
    this.counted.set(podKey(pod), counted(pod, node, pod.spec.nodeName === node ? pod : undefined));
  }

  /** Forgets the usage (nothing waits: no memory held at rest). */
  clear(): void {
    this.usage = undefined;
    this.nodes = [];
    this.counted.clear();
  }

  /** The pods bound since the usage was made, or undefined when anything else changed. */
  private addedSince(pods: readonly Pod[], batch: ReadonlySet<string>, usage: Map<string, NodeUsage>): Pod[] | undefined {
    const added: Pod[] = [];
    let still = 0;
    for (const p of pods) {
      const key = podKey(p);
      const was = this.counted.get(key);
      if (batch.has(key)) {
        if (was) return undefined;
        continue;
      }
      if (was && was.seen === p) {
        still++;
        continue;
      }
      const now = holds(p, usage);
      if (!was) {
        if (now) added.push(p);
        continue;
      }
      if (!now || was.node !== p.spec.nodeName || !sameLabels(was.labels, p.metadata.labels) || was.group !== podGroupKey(p)) return undefined;
      // Unchanged as far as the usage goes: next time this object is known at a glance. (If the pass gives up on
      // the carried usage below, the counts are built afresh anyway.)
      if (Object.isFrozen(p)) was.seen = p;
      still++;
    }
    // A counted pod missing from the list is gone.
    return still === this.counted.size ? added : undefined;
  }
}

function counted(p: Pod, node: string, bound?: Pod): Counted {
  return { node, labels: p.metadata.labels, group: podGroupKey(p), ...(bound && Object.isFrozen(bound) ? { seen: bound } : {}) };
}

/** Whether computeUsage counts the pod: bound to a node it knows, not finished. */
function holds(p: Pod, usage: Map<string, NodeUsage>): boolean {
  return !!p.spec.nodeName && !isTerminated(p) && usage.has(p.spec.nodeName);
}

function sameNodes(a: readonly Node[], b: readonly Node[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameLabels(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  if (a === b) return true;
  const ka = a ? Object.keys(a) : [];
  const kb = b ? Object.keys(b) : [];
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (a![k] !== b?.[k]) return false;
  return true;
}
