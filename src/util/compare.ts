/**
 * String orders for sorting names, keys and timestamps. Not `localeCompare`: its first call loads ICU's collation
 * data, ~2.7 MiB of the node binary's pages kept resident in every server and agent process, and each call costs
 * ~10× a plain comparison (a scheduler pass sorts thousands of pending pods by creation time). Code-unit order is
 * also the order the Kubernetes API lists in (keys compared bytewise).
 */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Code-unit order, except that runs of digits compare as numbers: ttyUSB2 before ttyUSB10. */
export function compareNatural(a: string, b: string): number {
  const ra = a.match(/\d+|\D+/g) ?? [];
  const rb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    const x = ra[i]!;
    const y = rb[i]!;
    if (x === y) continue;
    const nx = /^\d/.test(x);
    const ny = /^\d/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return compareStrings(x, y);
  }
  return ra.length - rb.length;
}
