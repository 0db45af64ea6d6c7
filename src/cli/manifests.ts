import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { KindInfo } from '../api/kinds.js';
import { KINDS } from '../api/kinds.js';
import { parseManifests } from '../api/manifest.js';
import type { ApiObject } from '../api/meta.js';
import { parseObject } from '../api/validate.js';
import { ValidationError } from '../util/errors.js';
import { CliError } from './client.js';

/** The text of one manifest file (or stdin), named as the user should see it in errors. */
export interface ManifestSource {
  name: string;
  text: string;
}

/** One object from a manifest with where it came from, so later errors can point back at it. */
export interface LoadedObject {
  source: string;
  /** 1-based position among the objects of its source. */
  index: number;
  object: ApiObject;
  kind: KindInfo;
  warnings: string[];
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

async function listDir(dir: string, recursive: boolean): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (recursive) out.push(...(await listDir(p, true)));
    } else if (MANIFEST_EXTENSIONS.has(extname(e.name).toLowerCase())) {
      out.push(p);
    }
  }
  return out;
}

/** Read `-f` arguments: files, directories of .yaml/.yml/.json (sorted by name), or `-` for stdin. */
export async function readManifestSources(
  paths: string[],
  opts: { recursive?: boolean; stdin: () => Promise<string> },
): Promise<ManifestSource[]> {
  if (!paths.length) throw new CliError('must specify one of -f or --filename');
  const out: ManifestSource[] = [];
  for (const p of paths) {
    if (p === '-') {
      out.push({ name: 'STDIN', text: await opts.stdin() });
      continue;
    }
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`the path "${p}" does not exist`);
      throw new CliError(`cannot read "${p}": ${(err as Error).message}`);
    }
    const files = isDir ? await listDir(p, opts.recursive ?? false) : [p];
    for (const f of files) {
      try {
        out.push({ name: f, text: await readFile(f, 'utf8') });
      } catch (err) {
        throw new CliError(`cannot read "${f}": ${(err as Error).message}`);
      }
    }
  }
  return out;
}

/** Split a source into documents; a YAML error becomes a CliError with the file and line. */
export function parseSource(src: ManifestSource): unknown[] {
  try {
    return parseManifests(src.text, src.name);
  } catch (err) {
    if (err instanceof ValidationError) throw new CliError(`error parsing ${err.causes[0]?.message ?? err.message}`, { cause: err });
    throw err;
  }
}

function describeDoc(raw: unknown, index: number): string {
  const r = raw as { kind?: unknown; metadata?: { name?: unknown } } | null;
  const kind = typeof r?.kind === 'string' ? r.kind : undefined;
  const name = typeof r?.metadata?.name === 'string' ? r.metadata.name : undefined;
  return `document ${index}${kind && name ? ` (${kind} "${name}")` : ''}`;
}

function causesText(err: ValidationError): string {
  return err.causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).join('; ');
}

/**
 * Parse and validate every object of every source before anything is sent, so one bad manifest
 * in a directory fails the whole apply rather than leaving it half done. Errors name the file,
 * the document and the field path.
 */
export function validateSources(sources: ManifestSource[]): LoadedObject[] {
  const out: LoadedObject[] = [];
  for (const src of sources) {
    parseSource(src).forEach((raw, i) => {
      const index = i + 1;
      try {
        const parsed = parseObject(raw);
        out.push({ source: src.name, index, object: parsed.object, kind: parsed.kind, warnings: parsed.warnings });
      } catch (err) {
        if (err instanceof ValidationError) {
          throw new CliError(`error validating "${src.name}": ${describeDoc(raw, index)}: ${causesText(err)}`, { causes: err.causes, cause: err });
        }
        throw err;
      }
    });
  }
  return out;
}

/** Only what `delete -f` needs (kind and name): a manifest that no longer validates can still be deleted. */
export function identifySources(sources: ManifestSource[]): Array<{ kind: KindInfo; name: string; namespace?: string; source: string }> {
  const out: Array<{ kind: KindInfo; name: string; namespace?: string; source: string }> = [];
  for (const src of sources) {
    parseSource(src).forEach((raw, i) => {
      const r = raw as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } } | null;
      const kind = KINDS.find((k) => k.kind === r?.kind);
      const where = `"${src.name}": ${describeDoc(raw, i + 1)}`;
      if (!kind) throw new CliError(`error validating ${where}: kind: unknown kind "${String(r?.kind)}" (supported: ${KINDS.map((k) => k.kind).join(', ')})`);
      const name = r?.metadata?.name;
      if (typeof name !== 'string' || !name) throw new CliError(`error validating ${where}: metadata.name: required`);
      const namespace = typeof r?.metadata?.namespace === 'string' ? r.metadata.namespace : undefined;
      out.push({ kind, name, namespace, source: src.name });
    });
  }
  return out;
}
