/*
 * Where an object lives in a store, the same for every backend: `/registry/{kind}/{namespace}/{name}`
 * (cluster-scoped kinds use namespace ''). LevelStore uses it as its LevelDB key; EtcdStore puts its
 * prefix in front. It is also the additional authenticated data of an encrypted Secret, so a sealed
 * value means the same in either store.
 */
import { KINDS } from '../../src/api/kinds.js';

export const REGISTRY = '/registry/';

export function objectKey(kind: string, namespace: string, name: string): string {
  return `${REGISTRY}${kind}/${namespace}/${name}`;
}

/** The (kind, namespace, name) of an object key. */
export function parseObjectKey(key: string): { kind: string; namespace: string; name: string } | undefined {
  const m = /^\/registry\/([^/]+)\/([^/]*)\/(.+)$/.exec(key);
  return m ? { kind: m[1]!, namespace: m[2]!, name: m[3]! } : undefined;
}

/** The key prefix of a list: every object of `kind`, or of `kind` in `namespace`. */
export function listPrefix(kind: string, namespace?: string): string {
  return namespace === undefined ? `${REGISTRY}${kind}/` : `${REGISTRY}${kind}/${namespace}/`;
}

/** The exclusive upper bound of every key starting with `prefix` (all prefixes here end in '/'). */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** `pods "default/web"` / `nodes "edge-1"`, matching how the API names objects in errors. */
export function what(kind: string, namespace: string, name: string): string {
  const plural = KINDS.find((k) => k.kind === kind)?.plural ?? kind.toLowerCase();
  return `${plural} "${namespace ? `${namespace}/` : ''}${name}"`;
}
