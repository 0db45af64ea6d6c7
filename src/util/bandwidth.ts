import { ValidationError } from './errors.js';

const BANDWIDTH_UNITS: Record<string, number> = { '': 1, b: 1, kb: 1000, kib: 1024, mb: 1000 ** 2, mib: 1024 ** 2, gb: 1000 ** 3, gib: 1024 ** 3 };

/**
 * A bandwidth as people write it: bytes per second as a number with a unit, `256KiB/s`, `1.5MB/s`, `64KiB`
 * (KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024; B or none: bytes; `/s` optional, so a label value
 * such as `256KiB` reads too). The ValidationError names `field` (a flag, a label).
 */
export function parseBandwidth(value: string, field = '--image-bandwidth'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?(?:\s*\/\s*s(?:ec)?)?\s*$/i.exec(value);
  const factor = m ? BANDWIDTH_UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  const bytes = m && factor ? Math.round(Number(m[1]) * factor) : NaN;
  if (!Number.isFinite(bytes) || bytes <= 0) {
    throw new ValidationError([{ field, message: `"${value}" is not a bandwidth: a positive number with a unit per second, e.g. 256KiB/s, 2MB/s or 64KiB/s (KB, MB: powers of 1000; KiB, MiB: of 1024)` }], 'invalid bandwidth');
  }
  return bytes;
}
