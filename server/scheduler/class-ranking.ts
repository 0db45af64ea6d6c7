/**
 * The best node for each of a run of interchangeable pods (the replicas of one template) without
 * filtering and scoring the fleet again for each.
 *
 * Placing a replica changes the standing of one node only, the node it lands on, as long as every check
 * that still depends on placed pods reads that node alone (resources, host ports, devices) or the
 * replica's own group on it and in its zone (spreading). So the feasible nodes are ranked once, in tiers
 * of nodes that spreading scores alike (the same count of the group on the node, the same zone), each
 * tier ordered by what the node-local scorers say: within a tier the order is the order of their final
 * scores, and the best node of the fleet is the best of the tiers' heads, whose final scores are computed
 * as a full scan would (so a pod landing in a zone, which moves the spreading score of the zone's every
 * node, moves its tiers' heads alike and reorders nothing within them). A node that took a pod (of this class or any other)
 * is ranked again from the batch's change log before the next decision; its old entry is dropped when it
 * comes to the head (a lazy heap: tinyqueue has no removal).
 *
 * 5,000 replicas on 1,000 nodes then cost one ranking of the fleet per pass and a few nodes per pod,
 * instead of 420 nodes per pod (kube-scheduler's adaptive share), and each replica goes to the best node
 * of the whole fleet rather than of the share examined.
 */
import TinyQueue from 'tinyqueue';

/** Where a node stands for the class now. */
export interface Standing {
  /** Orders nodes within a tier (higher first): the node's final score but for the tier's common part. */
  local: number;
  /** Nodes of one tier differ in final score by their `local` only. */
  tier: string | number;
}

/** What the ranking asks about the fleet's nodes, by index. */
export interface RankedFleet {
  readonly size: number;
  name(i: number): string;
  /** Undefined when the node does not fit the class now. */
  standing(i: number): Standing | undefined;
  /** The node's final score now, as a full scan compares it. */
  score(i: number): number;
}

interface Entry {
  i: number;
  local: number;
  /** The node's ranking version when the entry was made: an older one is stale. */
  version: number;
}

export class ClassRanking {
  private readonly tiers = new Map<string | number, TinyQueue<Entry>>();
  private readonly versions: Uint32Array;
  private readonly compare: (a: Entry, b: Entry) => number;
  /** How much of the change log is ranked in. */
  private seen: number;

  /**
   * `changes` is the batch's log of node indices that took a pod, appended by the caller after every
   * decision: nodes in it are ranked again before the next answer.
   */
  constructor(
    private readonly fleet: RankedFleet,
    private readonly changes: readonly number[],
  ) {
    this.versions = new Uint32Array(fleet.size);
    this.seen = changes.length;
    // Equal scores go to the lexically smallest name, as in a full scan.
    this.compare = (a, b) => b.local - a.local || compareNames(fleet.name(a.i), fleet.name(b.i));
    const byTier = new Map<string | number, Entry[]>();
    for (let i = 0; i < fleet.size; i++) {
      const s = fleet.standing(i);
      if (!s) continue;
      let list = byTier.get(s.tier);
      if (!list) byTier.set(s.tier, (list = []));
      list.push({ i, local: s.local, version: 0 });
    }
    for (const [tier, list] of byTier) this.tiers.set(tier, new TinyQueue(list, this.compare));
  }

  /** The index of the best node for the next pod of the class, or undefined when none fits. */
  best(): number | undefined {
    for (; this.seen < this.changes.length; this.seen++) this.rerank(this.changes[this.seen]!);
    let best: number | undefined;
    let bestScore = 0;
    for (const [tier, q] of this.tiers) {
      let head = q.peek();
      while (head && head.version !== this.versions[head.i]) {
        q.pop();
        head = q.peek();
      }
      if (!head) {
        this.tiers.delete(tier);
        continue;
      }
      const score = this.fleet.score(head.i);
      if (best === undefined || score > bestScore || (score === bestScore && compareNames(this.fleet.name(head.i), this.fleet.name(best)) < 0)) {
        best = head.i;
        bestScore = score;
      }
    }
    return best;
  }

  private rerank(i: number): void {
    const version = (this.versions[i] = this.versions[i]! + 1);
    const s = this.fleet.standing(i);
    if (!s) return;
    let q = this.tiers.get(s.tier);
    if (!q) this.tiers.set(s.tier, (q = new TinyQueue<Entry>([], this.compare)));
    q.push({ i, local: s.local, version });
  }
}

/** By code point, never by locale: the same inputs always give the same node. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
