import { ValidationError } from '../util/errors.js';

/**
 * Kubernetes resource quantities: CPU in cores or millicores ("0.5", "500m"), memory in bytes with
 * binary or decimal suffixes ("128Mi", "1G"). Parsed to integers: millicores and bytes.
 */
const MEMORY_SUFFIX: Record<string, number> = {
  '': 1,
  k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

const QUANTITY = /^([0-9]+(?:\.[0-9]+)?)(m|k|K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

export function isQuantity(v: string | number): boolean {
  return typeof v === 'number' ? v >= 0 : QUANTITY.test(v.trim());
}

/** CPU quantity → millicores. */
export function parseCpu(v: string | number): number {
  if (typeof v === 'number') return Math.round(v * 1000);
  const m = QUANTITY.exec(v.trim());
  if (!m) throw new ValidationError([{ field: '', message: `"${v}"` }], 'invalid CPU quantity');
  const n = Number(m[1]);
  if (m[2] === 'm') return Math.round(n);
  if (m[2] === undefined) return Math.round(n * 1000);
  throw new ValidationError([{ field: '', message: `"${v}": use cores ("0.5") or millicores ("500m")` }], 'invalid CPU quantity');
}

/** Memory quantity → bytes. */
export function parseMemory(v: string | number): number {
  if (typeof v === 'number') return Math.round(v);
  const m = QUANTITY.exec(v.trim());
  if (!m) throw new ValidationError([{ field: '', message: `"${v}"` }], 'invalid memory quantity');
  const n = Number(m[1]);
  if (m[2] === 'm') return Math.round(n / 1000);
  return Math.round(n * MEMORY_SUFFIX[m[2] ?? '']!);
}

export function formatMemory(bytes: number): string {
  const units: Array<[string, number]> = [['Gi', 2 ** 30], ['Mi', 2 ** 20], ['Ki', 2 ** 10]];
  for (const [u, f] of units) if (bytes >= f) return `${Math.round((bytes / f) * 10) / 10}${u}`;
  return String(bytes);
}

export function formatCpu(milli: number): string {
  return milli % 1000 === 0 ? String(milli / 1000) : `${milli}m`;
}
