/**
 * Server-side printing for `kubectl get`: a meta.k8s.io Table whose columns are drover's own (the ones
 * `drover get` prints, from src/cli/output.ts), so both tools show the same table. kubectl asks for it
 * with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the cells as they come,
 * upper-casing the column names; `-o wide` adds the columns of priority 1.
 */
import type { KindInfo } from '../../src/api/kinds.js';
import type { ApiObject } from '../../src/api/meta.js';
import { tableParts } from '../../src/cli/output.js';
import { BadRequestError } from '../../src/util/errors.js';

export type IncludeObject = 'None' | 'Metadata' | 'Object';

/** The Table version a client asked for in Accept (v1 preferred), or undefined when it wants the objects. */
export function tableVersion(accept: string | undefined): 'v1' | 'v1beta1' | undefined {
  if (!accept) return undefined;
  let best: 'v1' | 'v1beta1' | undefined;
  for (const media of accept.split(',')) {
    const params = new Map(
      media
        .split(';')
        .slice(1)
        .map((p) => p.trim().split('=') as [string, string | undefined])
        .map(([k, v]) => [k.toLowerCase(), (v ?? '').trim()]),
    );
    if (params.get('as') !== 'Table' || params.get('g') !== 'meta.k8s.io') continue;
    const v = params.get('v');
    if (v === 'v1') return 'v1';
    if (v === 'v1beta1') best ??= 'v1beta1';
  }
  return best;
}

/** `?includeObject=`: Metadata unless asked otherwise (Kubernetes' default); 400 naming the parameter. */
export function parseIncludeObject(raw: string | null): IncludeObject {
  if (raw === null || raw === '') return 'Metadata';
  if (raw === 'None' || raw === 'Metadata' || raw === 'Object') return raw;
  throw new BadRequestError(`includeObject: must be None, Metadata or Object, got "${raw.slice(0, 64)}"`);
}

/** 'UP-TO-DATE' → 'Up-to-date', 'NODE SELECTOR' → 'Node Selector': Kubernetes' spelling; kubectl upper-cases it back. */
function columnName(header: string): string {
  return header
    .split(' ')
    .map((w) => w.charAt(0) + w.slice(1).toLowerCase())
    .join(' ');
}

export interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export interface TableOptions {
  version?: 'v1' | 'v1beta1';
  includeObject?: IncludeObject;
  /** The list's metadata (resourceVersion, continue, remainingItemCount). */
  listMeta?: Record<string, unknown>;
  now?: number;
}

/** The column definitions of a kind: the default columns at priority 0, the `-o wide` ones at 1. */
export function columnDefinitions(kind: KindInfo): ColumnDefinition[] {
  const base = tableParts(kind, [], {}).headers.length;
  return tableParts(kind, [], { wide: true }).headers.map((h, i) => ({
    name: columnName(h),
    type: 'string',
    format: i === 0 && h === 'NAME' ? 'name' : '',
    description: '',
    priority: i < base ? 0 : 1,
  }));
}

function rowObject(o: ApiObject, include: IncludeObject, version: string): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${version}`, metadata: o.metadata };
}

/** A Table of `objects` (already filtered, paged and redacted for the caller). */
export function toTable(kind: KindInfo, objects: ApiObject[], opts: TableOptions = {}): Record<string, unknown> {
  const version = opts.version ?? 'v1';
  const include = opts.includeObject ?? 'Metadata';
  const now = opts.now ?? Date.now();
  return {
    kind: 'Table',
    apiVersion: `meta.k8s.io/${version}`,
    metadata: opts.listMeta ?? {},
    columnDefinitions: columnDefinitions(kind),
    rows: objects.map((o) => {
      // One object at a time: tableParts sorts some kinds (events by time), and each row keeps its object.
      const cells = tableParts(kind, [o], { wide: true, now }).rows[0]!;
      const object = rowObject(o, include, version);
      return { cells, ...(object !== undefined ? { object } : {}) };
    }),
  };
}
