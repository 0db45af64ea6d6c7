/**
 * Freezes a value and everything it holds, so a copy handed to several readers (a store event to its
 * watches, a cached object to every lister) fails loudly if one of them writes to it. An object already
 * frozen is taken as frozen through: the one who froze it froze it whole.
 */
export function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}
