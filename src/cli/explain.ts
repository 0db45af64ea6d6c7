import type { Command } from 'commander';
import { z } from 'zod';
import type { KindInfo } from '../api/kinds.js';
import { CliError, type ApiClient } from './client.js';
import { addConnectionOptions, resolveKind, type CommandContext } from './context.js';

/** An OpenAPI (JSON Schema flavoured) schema node, as the server's /openapi/v3 documents hold them. */
export type Schema = {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  nullable?: boolean;
};

/** Kubernetes' definition name of a kind, as the server's documents key them (server/api/openapi.ts). */
export function definitionName(k: KindInfo): string {
  const [group, version] = k.groupVersion.includes('/') ? k.groupVersion.split('/') : ['', k.groupVersion];
  return `io.k8s.api.${group ? group!.split('.')[0] : 'core'}.${version}.${k.kind}`;
}

/** The branch of a union that carries the shape (zod writes optional and nullable fields as anyOf). */
export function resolveSchema(s: Schema): Schema {
  for (const key of ['anyOf', 'oneOf', 'allOf'] as const) {
    const branches = s[key];
    if (!branches?.length) continue;
    const pick = branches.find((b) => b.properties || b.items || b.additionalProperties) ?? branches.find((b) => b.type && b.type !== 'null') ?? branches[0]!;
    return resolveSchema({ ...pick, description: s.description ?? pick.description });
  }
  return s;
}

/** kubectl's type column: `<string>`, `<integer>`, `<Object>`, `<[]Object>`, `<map[string]string>`. */
export function typeName(raw: Schema): string {
  const s = resolveSchema(raw);
  if (s.type === 'array') return `[]${s.items ? typeName(s.items) : 'Object'}`;
  if (s.type === 'object' || s.properties) {
    if (!s.properties && s.additionalProperties && typeof s.additionalProperties === 'object') return `map[string]${typeName(s.additionalProperties)}`;
    return 'Object';
  }
  return s.type ?? 'Object';
}

function indent(text: string, by: string): string {
  return text
    .split('\n')
    .map((l) => (l ? by + l : l))
    .join('\n');
}

/** `spec.containers` under a kind's schema: each step through objects, array items and maps. */
export function walk(root: Schema, path: string[], kind: KindInfo): { field?: string; schema: Schema } {
  let cur = resolveSchema(root);
  let field: string | undefined;
  for (const step of path) {
    while (cur.type === 'array' && cur.items) cur = resolveSchema(cur.items);
    const next = cur.properties?.[step];
    if (!next) throw new CliError(`field "${step}" does not exist (in ${[kind.singular, ...path].join('.')})`);
    field = step;
    cur = resolveSchema(next);
  }
  return { field, schema: cur };
}

/** What `explain` prints, in kubectl's layout (KIND, VERSION, FIELD, DESCRIPTION, FIELDS). */
export function renderExplain(kind: KindInfo, root: Schema, path: string[], opts: { recursive?: boolean } = {}): string {
  const { field, schema } = walk(root, path, kind);
  const [, version] = kind.groupVersion.includes('/') ? kind.groupVersion.split('/') : ['', kind.groupVersion];
  const group = kind.groupVersion.includes('/') ? kind.groupVersion.split('/')[0] : '';
  let out = `${group ? `GROUP:      ${group}\n` : ''}KIND:       ${kind.kind}\nVERSION:    ${version}\n\n`;
  if (field) out += `FIELD: ${field} <${typeName(schema)}>\n\n`;
  const enums = schema.enum?.filter((e) => e !== null);
  if (enums?.length) out += `ENUM:\n${enums.map((e) => `    ${String(e)}`).join('\n')}\n\n`;
  out += `DESCRIPTION:\n${indent(schema.description ?? '<empty>', '    ')}\n    \n`;
  let body = schema;
  while (body.type === 'array' && body.items) body = resolveSchema(body.items);
  if (body.properties) out += `FIELDS:\n${fields(body, '  ', opts.recursive ?? false)}`;
  return out;
}

function fields(s: Schema, pad: string, recursive: boolean): string {
  const required = new Set(s.required ?? []);
  let out = '';
  for (const name of Object.keys(s.properties ?? {}).sort()) {
    const f = resolveSchema(s.properties![name]!);
    out += `${pad}${name}\t<${typeName(f)}>${required.has(name) ? ' -required-' : ''}\n`;
    if (recursive) {
      let inner = f;
      while (inner.type === 'array' && inner.items) inner = resolveSchema(inner.items);
      if (inner.properties) out += fields(inner, `${pad}  `, true);
      continue;
    }
    const enums = f.enum?.filter((e) => e !== null);
    if (enums?.length) out += `${pad}enum: ${enums.map(String).join(', ')}\n`;
    out += `${indent(f.description ?? '<no description>', `${pad}  `)}\n\n`;
  }
  return out;
}

/** The kind's schema from the server's OpenAPI v3 document of its group version. */
async function serverSchema(client: ApiClient, kind: KindInfo): Promise<Schema | undefined> {
  const path = kind.groupVersion.includes('/') ? `/openapi/v3/apis/${kind.groupVersion}` : '/openapi/v3/api/v1';
  const doc = await client.getOptional<{ components?: { schemas?: Record<string, Schema> } }>(path);
  return doc?.components?.schemas?.[definitionName(kind)];
}

/** The same schema made here from the kind table's zod schema, for a server without OpenAPI documents. */
export function localSchema(kind: KindInfo): Schema {
  return z.toJSONSchema(kind.schema, { io: 'input', unrepresentable: 'any', target: 'openapi-3.0', reused: 'inline' }) as Schema;
}

export function registerExplain(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('explain')
    .description("the fields of a kind, as the server's OpenAPI documents describe them (pods, pods.spec.containers, ...)")
    .argument('<field>', 'KIND or KIND.FIELD.FIELD... (pod.spec.containers.ports)')
    .option('--recursive', 'every field below, as a tree of names and types')
    .option('--api-version <group/version>', 'the group version of the kind (drover serves one per kind)');
  addConnectionOptions(cmd).action(async (arg: string, opts: { recursive?: boolean; apiVersion?: string }, command: Command) => {
    const [kindName, ...path] = arg.split('.').filter(Boolean);
    if (!kindName) throw new CliError('you must specify the type of resource to explain');
    const kind = resolveKind(kindName);
    if (opts.apiVersion && opts.apiVersion !== kind.groupVersion) throw new CliError(`couldn't find resource for "${kind.plural}" in ${opts.apiVersion} (drover serves ${kind.groupVersion})`);
    const schema = (await serverSchema(ctx.client(command), kind)) ?? localSchema(kind);
    ctx.io.stdout(renderExplain(kind, schema, path, { recursive: opts.recursive }));
  });
}
