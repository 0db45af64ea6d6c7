/**
 * OpenAPI documents generated from the zod schemas of the kind table, in the shapes kubectl reads:
 * - /openapi/v3 (an index of group versions) and /openapi/v3/api/v1, /openapi/v3/apis/GROUP/VERSION:
 *   `kubectl explain` walks components.schemas; `kubectl apply` looks for a PATCH operation of the kind
 *   (x-kubernetes-group-version-kind) with the `fieldValidation` query parameter, and finding it lets the
 *   server validate (drover always validates strictly) instead of the client; client-side apply computes
 *   its strategic merge patch from the schema's x-kubernetes-patch-merge-key / -strategy.
 * - /openapi/v2: the same schemas as one Swagger 2.0 document, for older clients.
 * Merge keys and list types come from server/api/patch-meta.ts, the table the PATCH handlers use, so what
 * kubectl computes and what the server applies agree.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { KindInfo } from '../../src/api/kinds.js';
import { kindMerge, type FieldMerge } from './patch-meta.js';

type Schema = Record<string, unknown>;

/** 'apps/v1' → { group: 'apps', version: 'v1' }; 'v1' → { group: '', version: 'v1' }. */
function gv(groupVersion: string): { group: string; version: string } {
  const i = groupVersion.indexOf('/');
  return i < 0 ? { group: '', version: groupVersion } : { group: groupVersion.slice(0, i), version: groupVersion.slice(i + 1) };
}

/** Kubernetes' definition names: io.k8s.api.core.v1.Pod, io.k8s.api.apps.v1.Deployment, io.k8s.api.discovery.v1.EndpointSlice. */
export function definitionName(k: KindInfo): string {
  const { group, version } = gv(k.groupVersion);
  const pkg = group === '' ? 'core' : group.split('.')[0]!;
  return `io.k8s.api.${pkg}.${version}.${k.kind}`;
}

function gvkOf(k: KindInfo): { group: string; version: string; kind: string } {
  return { ...gv(k.groupVersion), kind: k.kind };
}

/** Marks lists and objects of `schema` with the merge rules of `merge` (patch strategy, list type, map type). */
function annotate(schema: Schema, merge: FieldMerge | undefined): void {
  if (!merge) return;
  if (merge.strategy) schema['x-kubernetes-patch-strategy'] = merge.strategy;
  if (merge.mergeKey) schema['x-kubernetes-patch-merge-key'] = merge.mergeKey;
  if (schema.type === 'array') {
    if (merge.listMapKeys) {
      schema['x-kubernetes-list-type'] = 'map';
      schema['x-kubernetes-list-map-keys'] = merge.listMapKeys;
    } else if (merge.set) schema['x-kubernetes-list-type'] = 'set';
    else if (merge.atomic) schema['x-kubernetes-list-type'] = 'atomic';
  } else if (merge.atomic) schema['x-kubernetes-map-type'] = 'atomic';
  const props = schema.properties as Record<string, Schema> | undefined;
  if (props && merge.fields) for (const [name, f] of Object.entries(merge.fields)) if (props[name]) annotate(props[name], f);
  const items = schema.items as Schema | undefined;
  if (items && merge.items) annotate(items, merge.items);
  // zod writes optional-with-preprocess and unions as anyOf/oneOf: the rules apply to each branch.
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) for (const branch of (schema[key] as Schema[] | undefined) ?? []) annotate(branch, merge);
}

/** One kind's schema, OpenAPI 3.0 flavoured, self-contained (no $ref), with its group-version-kind and merge rules. */
export function kindSchema(k: KindInfo): Schema {
  const schema = z.toJSONSchema(k.schema, { io: 'input', unrepresentable: 'any', target: 'openapi-3.0', reused: 'inline' }) as Schema;
  delete schema.$schema;
  annotate(schema, kindMerge(k.kind));
  schema['x-kubernetes-group-version-kind'] = [gvkOf(k)];
  schema.description ??= `${k.kind} (${k.groupVersion}), as drover accepts it: unknown fields are refused.`;
  return schema;
}

const QUERY = (name: string, description: string, type = 'string'): Schema => ({ name, in: 'query', description, schema: { type }, uniqueItems: true });

/** The query parameters kubectl probes for on a kind's PATCH operation (QueryParamVerifier). */
function patchParameters(v2: boolean): Schema[] {
  const params = [
    QUERY('dryRun', 'not supported by drover: refused'),
    QUERY('fieldManager', 'the manager of the fields set (server-side apply)'),
    QUERY('fieldValidation', 'drover always validates strictly: unknown and duplicate fields are refused'),
    QUERY('force', 'server-side apply: take the fields other managers own', 'boolean'),
  ];
  // Swagger 2.0 puts the type on the parameter itself.
  return v2 ? params.map(({ schema, ...p }) => ({ ...p, type: (schema as Schema).type })) : params;
}

function basePath(k: KindInfo): string {
  return k.groupVersion === 'v1' ? '/api/v1' : `/apis/${k.groupVersion}`;
}

/** The collection and object paths of one kind with their operations. */
function kindPaths(k: KindInfo, ref: string, v2: boolean): Record<string, Schema> {
  const gvk = gvkOf(k);
  const body = v2 ? { name: 'body', in: 'body', required: true, schema: { $ref: ref } } : undefined;
  const ok = v2 ? { '200': { description: 'OK', schema: { $ref: ref } } } : { '200': { description: 'OK', content: { 'application/json': { schema: { $ref: ref } } } } };
  const requestBody = (types: string[]) => (v2 ? {} : { requestBody: { content: Object.fromEntries(types.map((t) => [t, { schema: t === 'application/json' ? { $ref: ref } : { type: 'object' } }])), required: true } });
  const op = (action: string, id: string, extra: Schema = {}): Schema => ({
    operationId: `${id}${k.kind}`,
    responses: ok,
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': gvk,
    ...extra,
  });
  const ns = k.namespaced ? '/namespaces/{namespace}' : '';
  const nsParam = k.namespaced ? [{ name: 'namespace', in: 'path', required: true, ...(v2 ? { type: 'string' } : { schema: { type: 'string' } }) }] : [];
  const nameParam = [{ name: 'name', in: 'path', required: true, ...(v2 ? { type: 'string' } : { schema: { type: 'string' } }) }];
  const patchTypes = ['application/json-patch+json', 'application/merge-patch+json', 'application/strategic-merge-patch+json', 'application/apply-patch+yaml'];
  return {
    [`${basePath(k)}${ns}/${k.plural}`]: {
      parameters: nsParam,
      get: op('list', 'list'),
      post: op('post', 'create', { ...requestBody(['application/json']), ...(body ? { parameters: [body] } : {}), ...(v2 ? { consumes: ['application/json'] } : {}) }),
    },
    [`${basePath(k)}${ns}/${k.plural}/{name}`]: {
      parameters: [...nameParam, ...nsParam],
      get: op('get', 'read'),
      put: op('put', 'replace', { ...requestBody(['application/json']), ...(body ? { parameters: [body] } : {}) }),
      patch: op('patch', 'patch', { ...requestBody(patchTypes), parameters: [...(v2 ? [{ ...body!, schema: { type: 'object' } }] : []), ...patchParameters(v2)], ...(v2 ? { consumes: patchTypes } : {}) }),
      delete: op('delete', 'delete'),
    },
  };
}

/** An OpenAPI 3.0 document of one group version, or undefined when drover serves none of its kinds. */
export function openApiV3(kinds: KindInfo[], groupVersion: string, version: string): Schema | undefined {
  const mine = kinds.filter((k) => k.groupVersion === groupVersion);
  if (mine.length === 0) return undefined;
  const schemas: Record<string, Schema> = {};
  let paths: Record<string, Schema> = {};
  for (const k of mine) {
    schemas[definitionName(k)] = kindSchema(k);
    paths = { ...paths, ...kindPaths(k, `#/components/schemas/${definitionName(k)}`, false) };
  }
  return { openapi: '3.0.0', info: { title: 'drover', version }, paths, components: { schemas } };
}

/** The OpenAPI v3 index: where each group version's document is, with a hash clients cache it by. */
export function openApiV3Index(kinds: KindInfo[], version: string): Schema {
  const gvs = [...new Set(kinds.map((k) => k.groupVersion))];
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const g of gvs) {
    const path = g === 'v1' ? 'api/v1' : `apis/${g}`;
    const hash = createHash('sha512').update(JSON.stringify(openApiV3(kinds, g, version))).digest('hex').slice(0, 128).toUpperCase();
    paths[path] = { serverRelativeURL: `/openapi/v3/${path}?hash=${hash}` };
  }
  return { paths };
}

/** The Swagger 2.0 document of every kind (/openapi/v2). */
export function openApiV2(kinds: KindInfo[], version: string): Schema {
  const definitions: Record<string, Schema> = {};
  let paths: Record<string, Schema> = {};
  for (const k of kinds) {
    definitions[definitionName(k)] = kindSchema(k);
    paths = { ...paths, ...kindPaths(k, `#/definitions/${definitionName(k)}`, true) };
  }
  return { swagger: '2.0', info: { title: 'drover', version }, paths, definitions };
}

/**
 * The document for an /openapi/... path (segments after the leading 'openapi'), or undefined for a
 * path that names none.
 */
export function openApiDocument(kinds: KindInfo[], segments: string[], version: string): Schema | undefined {
  if (segments[0] !== 'openapi') return undefined;
  if (segments[1] === 'v2' && segments.length === 2) return openApiV2(kinds, version);
  if (segments[1] !== 'v3') return undefined;
  if (segments.length === 2) return openApiV3Index(kinds, version);
  if (segments[2] === 'api' && segments.length === 4) return openApiV3(kinds, segments[3]!, version);
  if (segments[2] === 'apis' && segments.length === 5) return openApiV3(kinds, `${segments[3]}/${segments[4]}`, version);
  return undefined;
}
