/** IPv4 addresses as numbers and CIDR blocks: what the Service allocator and the agent's pod addressing share. */

import { isIPv4 } from '../api/service.js';

export interface Cidr {
  /** The network address, as a 32-bit unsigned number. */
  network: number;
  prefix: number;
  /** How many addresses the block holds (network and broadcast included). */
  size: number;
}

export function ipToNumber(ip: string): number {
  if (!isIPv4(ip)) throw new Error(`"${ip}" is not an IPv4 address`);
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

export function numberToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** "10.43.0.0/16" → its block; throws naming what is wrong (host bits set, prefix out of range). */
export function parseCidr(s: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s.trim());
  if (!m || !isIPv4(m[1]!)) throw new Error(`"${s}" is not an IPv4 CIDR block such as 10.43.0.0/16`);
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) throw new Error(`"${s}": the prefix must be between /8 and /30`);
  const size = 2 ** (32 - prefix);
  const addr = ipToNumber(m[1]!);
  const network = addr - (addr % size);
  if (network !== addr) throw new Error(`"${s}" has host bits set; the block is ${numberToIp(network)}/${prefix}`);
  return { network, prefix, size };
}

export function cidrContains(c: Cidr, ip: string): boolean {
  if (!isIPv4(ip)) return false;
  const n = ipToNumber(ip);
  return n >= c.network && n < c.network + c.size;
}

export function formatCidr(c: Cidr): string {
  return `${numberToIp(c.network)}/${c.prefix}`;
}
