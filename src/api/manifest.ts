import { parseAllDocuments } from 'yaml';
import { ValidationError } from '../util/errors.js';

/**
 * Split a YAML/JSON stream (block style, flow style, multi-document, or a `kind: List`) into plain
 * objects. Syntax errors and duplicate keys are errors that carry the line number: a duplicate key
 * is never "last one wins".
 */
export function parseManifests(text: string, source = 'manifest'): unknown[] {
  const docs = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true });
  const out: unknown[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const err = doc.errors[0];
    if (err) {
      const line = err.linePos?.[0]?.line;
      const what = err.code === 'DUPLICATE_KEY' ? 'duplicate key' : 'YAML syntax error';
      throw new ValidationError(
        [{ field: '', message: `${source}${line ? `: line ${line}` : ''}: ${what}: ${err.message.split('\n')[0]}` }],
        'cannot parse',
      );
    }
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (typeof value === 'object' && !Array.isArray(value) && (value as { kind?: unknown }).kind === 'List') {
      const items = (value as { items?: unknown }).items;
      if (Array.isArray(items)) out.push(...items);
      continue;
    }
    out.push(value);
  }
  return out;
}
