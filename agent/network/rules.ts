/**
 * kube-proxy's iptables mode, sized for a device (pure): the rules that forward each Service's
 * ClusterIP:port, and each nodePort, to the ready backends the server resolved for this node, written
 * as one `iptables-restore --noflush` input over chains drover owns (DROVER-*), so a sync replaces all
 * of drover's rules at once and touches nothing else.
 *
 *   nat PREROUTING (containers on the bridge) and OUTPUT (the host) → DROVER-SERVICES
 *     -d CLUSTERIP -p PROTO --dport PORT → DROVER-SVC-<hash>: random pick among the backends, DNAT
 *     --dst-type LOCAL → DROVER-NODEPORTS: -p PROTO --dport NODEPORT → DROVER-NP-<hash>: local backends only
 *       (a remote node sends its share here; forwarding it again could loop)
 *   nat POSTROUTING → DROVER-POSTROUTING: masquerade what drover translated, so a pod answering a pod on the
 *     same bridge answers through the host (the reply would otherwise skip the reverse translation)
 *   filter FORWARD and OUTPUT → DROVER-FILTER: a Service port with no ready backend is rejected at once
 *     (connection refused) instead of leaving the client waiting; translated connections are accepted
 */
import { createHash } from 'node:crypto';
import type { DesiredBackend, DesiredService } from '../../src/contract/payloads.js';
import { compareStrings } from '../../src/util/compare.js';

/** The mark of connections drover translated (kube-proxy uses 0x4000, podman's netavark 0x2000). */
export const MASQ_MARK = '0x8000/0x8000';

export const CHAINS = {
  services: 'DROVER-SERVICES',
  nodePorts: 'DROVER-NODEPORTS',
  postrouting: 'DROVER-POSTROUTING',
  filter: 'DROVER-FILTER',
} as const;

/** Where drover's top chains hang from the built-in ones: [table, built-in chain, drover chain]. */
export const HOOKS: ReadonlyArray<readonly ['nat' | 'filter', string, string]> = [
  ['nat', 'PREROUTING', CHAINS.services],
  ['nat', 'OUTPUT', CHAINS.services],
  ['nat', 'POSTROUTING', CHAINS.postrouting],
  ['filter', 'FORWARD', CHAINS.filter],
  ['filter', 'OUTPUT', CHAINS.filter],
];

/** A per-port chain name: iptables allows 28 characters; the hash keeps names stable across syncs. */
function chainName(prefix: 'DROVER-SVC-' | 'DROVER-NP-', key: string): string {
  return prefix + createHash('sha256').update(key).digest('base64url').replace(/[-_]/g, 'x').slice(0, 28 - prefix.length).toUpperCase();
}

/** A comment iptables accepts: no quotes or newlines, at most 256 characters. */
function comment(s: string): string {
  return `-m comment --comment "${s.replace(/["\\\n\r]/g, '').slice(0, 200)}"`;
}

/** DNAT rules spreading new connections evenly: the i-th of n is taken with probability 1/(n-i). */
function spread(chain: string, proto: string, backends: DesiredBackend[]): string[] {
  return backends.map((b, i) => {
    const left = backends.length - i;
    const pick = left > 1 ? `-m statistic --mode random --probability ${(1 / left).toFixed(5)} ` : '';
    // A DNAT to a port needs the protocol in the same rule.
    return `-A ${chain} -p ${proto} ${pick}-j DNAT --to-destination ${b.ip}:${b.port}`;
  });
}

export interface RulePlan {
  /** The iptables-restore input (nat and filter tables). */
  restore: string;
  /** drover's chains this plan uses, by table. */
  chains: { nat: string[]; filter: string[] };
}

/**
 * The rules for these Services (pure). `stale`: drover's per-port chains found in the kernel that this
 * plan does not use; they are flushed and deleted in the same restore (nothing refers to them once the
 * top chains are rewritten).
 */
export function planRules(services: DesiredService[], stale: { nat: string[] } = { nat: [] }): RulePlan {
  const nat: string[] = [];
  const filter: string[] = [];
  const natChains: string[] = [CHAINS.services, CHAINS.nodePorts, CHAINS.postrouting];
  for (const s of [...services].sort((a, b) => compareStrings(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`))) {
    for (const p of s.ports) {
      const proto = p.protocol.toLowerCase();
      const what = `${s.namespace}/${s.name}${p.name ? `:${p.name}` : ''}`;
      const key = `${s.namespace}/${s.name}/${p.protocol}/${p.port}`;
      if (p.backends.length === 0) {
        filter.push(`-A ${CHAINS.filter} -d ${s.clusterIP}/32 -p ${proto} -m ${proto} --dport ${p.port} ${comment(`${what} has no ready endpoints`)} -j REJECT`);
      } else {
        const svcChain = chainName('DROVER-SVC-', key);
        natChains.push(svcChain);
        nat.push(`-A ${CHAINS.services} -d ${s.clusterIP}/32 -p ${proto} -m ${proto} --dport ${p.port} ${comment(what)} -j ${svcChain}`);
        nat.push(`-A ${svcChain} -j MARK --set-xmark ${MASQ_MARK}`);
        nat.push(...spread(svcChain, proto, p.backends));
      }
      if (p.nodePort !== undefined) {
        const local = p.backends.filter((b) => b.local);
        if (local.length === 0) continue;
        const npChain = chainName('DROVER-NP-', key);
        natChains.push(npChain);
        nat.push(`-A ${CHAINS.nodePorts} -p ${proto} -m ${proto} --dport ${p.nodePort} ${comment(`${what} nodePort`)} -j ${npChain}`);
        nat.push(`-A ${npChain} -j MARK --set-xmark ${MASQ_MARK}`);
        nat.push(...spread(npChain, proto, local));
      }
    }
  }
  // Last in DROVER-SERVICES: a packet for one of this node's own addresses may be for a nodePort.
  nat.push(`-A ${CHAINS.services} -m addrtype --dst-type LOCAL -j ${CHAINS.nodePorts}`);
  nat.push(`-A ${CHAINS.postrouting} -m mark --mark ${MASQ_MARK} -j MASQUERADE`);
  // Only a connection's first packet carries the mark; conntrack knows the whole connection was translated.
  filter.push(`-A ${CHAINS.filter} -m conntrack --ctstate DNAT -j ACCEPT`);
  const gone = stale.nat.filter((c) => !natChains.includes(c));
  const restore = [
    '*nat',
    ...natChains.map((c) => `:${c} - [0:0]`),
    ...gone.map((c) => `:${c} - [0:0]`),
    ...nat,
    ...gone.map((c) => `-X ${c}`),
    'COMMIT',
    '*filter',
    `:${CHAINS.filter} - [0:0]`,
    ...filter,
    'COMMIT',
    '',
  ].join('\n');
  return { restore, chains: { nat: natChains, filter: [CHAINS.filter] } };
}

/** drover's chains in an `iptables-save`/`iptables -S` listing (lines `-N CHAIN` or `:CHAIN ...`). */
export function droverChains(listing: string): string[] {
  const out = new Set<string>();
  for (const line of listing.split('\n')) {
    const m = /^(?:-N |:)(DROVER-[A-Z0-9x-]+)/i.exec(line.trim());
    if (m) out.add(m[1]!);
  }
  return [...out];
}

/** The restore input that empties and deletes every drover chain found (after the hooks are removed). */
export function planCleanup(found: { nat: string[]; filter: string[] }): string {
  const table = (name: string, chains: string[]) => (chains.length ? [`*${name}`, ...chains.map((c) => `:${c} - [0:0]`), ...chains.map((c) => `-X ${c}`), 'COMMIT'] : []);
  return [...table('nat', found.nat), ...table('filter', found.filter), ''].join('\n');
}
