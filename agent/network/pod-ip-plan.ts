/**
 * Bridge pods' addresses picked by the agent before their containers start, so that status.podIP is
 * known to the downward API (env) and stays the same across container restarts, as in Kubernetes.
 *
 * The agent reads the runtime's bridge subnet once, picks each bridge pod an address in it (from a
 * hash of the pod uid, skipping the network, gateway and broadcast addresses and every address it
 * knows is taken), and hands it to the pod's first container (`--ip`); the others get the runtime's
 * own. The address is also a label of that container, so an agent restart finds it again in `list()`.
 * A run refused because the address is in use marks it taken; another is picked on the next pass.
 */
import { createHash } from 'node:crypto';
import { isIPv4 } from '../../src/api/service.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { ipToNumber, numberToIp, parseCidr } from '../../src/net/ipv4.js';
import { identityOf } from '../engine/naming.js';
import type { BridgeSubnet, RuntimeContainer } from '../runtime/types.js';

/** The label on a pod's first container carrying the address the agent picked for the pod. */
export const POD_IP_LABEL = 'drover.io/pod-ip';

/** The usable host addresses of an IPv4 subnet, as 32-bit numbers (first..last inclusive), minus the gateway. */
export interface AddressRange {
  first: number;
  last: number;
  gateway?: number;
}

/**
 * The host addresses of an IPv4 subnet ("10.88.0.0/16"): network and broadcast addresses left out.
 * Throws for an IPv6 subnet, a malformed one, or one too small to hold a pod (/31, /32).
 */
export function addressRange(s: BridgeSubnet): AddressRange {
  const cidr = parseCidr(s.subnet);
  const gateway = s.gateway && isIPv4(s.gateway) ? ipToNumber(s.gateway) : undefined;
  return { first: cidr.network + 1, last: cidr.network + cidr.size - 2, ...(gateway !== undefined ? { gateway } : {}) };
}

/**
 * The address for a pod (pure): from a hash of its uid, so the same pod lands on the same address
 * after an agent restart that lost its plan, then the next free one up (wrapping). Undefined when
 * every address is taken.
 */
export function pickAddress(range: AddressRange, uid: string, taken: ReadonlySet<string>): string | undefined {
  const count = range.last - range.first + 1;
  const start = createHash('sha256').update(uid).digest().readUInt32BE(0) % count;
  for (let i = 0; i < count; i++) {
    const n = range.first + ((start + i) % count);
    if (n === range.gateway) continue;
    const ip = numberToIp(n);
    if (!taken.has(ip)) return ip;
  }
  return undefined;
}

/** Whether an address lies in the range (an address recovered from a label of another subnet does not). */
export function inRange(range: AddressRange, ip: string): boolean {
  if (!isIPv4(ip)) return false;
  const n = ipToNumber(ip);
  return n >= range.first && n <= range.last && n !== range.gateway;
}

/** The pod addresses recorded in the containers' labels (pure): pod uid → address. */
export function addressesFromLabels(current: RuntimeContainer[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of current) {
    const ip = c.labels[POD_IP_LABEL];
    const id = identityOf(c);
    if (ip && id) out.set(id.pod.uid, ip);
  }
  return out;
}

/**
 * The address a run or start was refused for, when it failed because that address is in use: podman
 * (netavark) says "IPAM error: requested ip address X is already allocated to container ID ...", CNI's
 * host-local (nerdctl) "requested IP address X is not available in range set ...".
 */
export function addressTakenIn(message: string): string | undefined {
  const m = /requested ip address (\S+) (?:is already allocated|is not available in range set)/i.exec(message);
  return m?.[1];
}

/**
 * The agent's plan of bridge pod addresses. Only update() reads the runtime's picture; ip() is what
 * the run requests and the downward API ask.
 */
export class PodIPPlan {
  private range: AddressRange | undefined;
  private readonly planned = new Map<string, string>();
  /** Addresses a run was refused for: not picked again while this agent runs (or until none is left). */
  private readonly refused = new Set<string>();

  /** Whether the agent picks addresses at all (it knows the bridge subnet). */
  get enabled(): boolean {
    return this.range !== undefined;
  }

  /** Sets the bridge subnet; throws when addresses cannot be picked in it (IPv6, too small). */
  setSubnet(s: BridgeSubnet): void {
    this.range = addressRange(s);
  }

  ip(uid: string): string | undefined {
    return this.planned.get(uid);
  }

  /** The run for this address was refused (in use): the pod that had it gets another on the next update. */
  markTaken(ip: string): void {
    this.refused.add(ip);
  }

  /**
   * Brings the plan up to date with the desired pods and the containers the runtime has: an address
   * recorded in a label wins (agent restart), a planned one is kept, a pod without one gets one. A pod
   * whose first container exists without the label (started before the agent picked addresses) has
   * none: its address is the runtime's, read after start. `inUse` are addresses seen on containers.
   */
  update(pods: DesiredPod[], current: RuntimeContainer[], inUse: Iterable<string> = []): void {
    const range = this.range;
    if (!range) return;
    const bridge = pods.filter((p) => !p.spec.hostNetwork && p.spec.containers.length > 0);
    const uids = new Set(bridge.map((p) => p.uid));
    for (const uid of this.planned.keys()) if (!uids.has(uid)) this.planned.delete(uid);

    const labelled = addressesFromLabels(current);
    // A running container holds its address whatever this agent thinks of it.
    const holding = addressesFromLabels(current.filter((c) => c.state === 'running'));
    const base = new Set<string>([...inUse, ...labelled.values()]);
    const firstWithoutLabel = new Set<string>();
    for (const c of current) {
      const id = identityOf(c);
      if (!id || c.labels[POD_IP_LABEL]) continue;
      const pod = bridge.find((p) => p.uid === id.pod.uid);
      if (pod && pod.spec.containers[0]!.name === id.container) firstWithoutLabel.add(pod.uid);
    }
    const usable = (ip: string | undefined): ip is string => ip !== undefined && inRange(range, ip) && !this.refused.has(ip);

    // Addresses that stay come first, so a pod getting a new one cannot take another's.
    const keep = new Map<string, string>();
    for (const p of bridge) {
      const fromLabel = labelled.get(p.uid);
      const planned = this.planned.get(p.uid);
      if (holding.has(p.uid)) keep.set(p.uid, holding.get(p.uid)!);
      else if (usable(fromLabel)) keep.set(p.uid, fromLabel);
      else if (firstWithoutLabel.has(p.uid)) continue;
      else if (usable(planned) && planned !== fromLabel) keep.set(p.uid, planned);
    }
    for (const ip of keep.values()) base.add(ip);
    this.planned.clear();
    for (const [uid, ip] of keep) this.planned.set(uid, ip);

    for (const p of bridge) {
      if (this.planned.has(p.uid) || firstWithoutLabel.has(p.uid)) continue;
      let ip = pickAddress(range, p.uid, new Set([...base, ...this.refused]));
      if (ip === undefined && this.refused.size) {
        // Every free address was refused once: those refusals may be stale (their holders gone).
        this.refused.clear();
        ip = pickAddress(range, p.uid, base);
      }
      if (ip === undefined) continue;
      this.planned.set(p.uid, ip);
      base.add(ip);
    }
  }
}
