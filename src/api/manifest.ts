import { isScalar, parseAllDocuments, visit, type Document } from 'yaml';
import { ValidationError } from '../util/errors.js';

/** Most alias expansions one document may make: a "billion laughs" document is refused, not expanded. */
export const MAX_ALIAS_COUNT = 100;

/** What a manifest from a remote caller (an MQTT `apply`) may cost to parse; checked on the text, before any parsing. */
export interface ManifestBounds {
  /** Documents in the stream (`---` separators + 1). */
  maxDocuments: number;
  /** Nesting of flow collections (`[` and `{`). Block nesting is bounded by the text's size (each level indents more). */
  maxFlowDepth: number;
}

/** A parse error as the CLI prints it: the message names the source (a file, or `manifest`). */
const refusal = (source: string, message: string) => new ValidationError([{ field: '', message: `${source}: ${message}` }], 'cannot parse');
/** Too costly to parse: the field is the source, so an MQTT reply names `manifest`. */
const tooCostly = (source: string, message: string) => new ValidationError([{ field: source, message }], 'manifest refused before parsing');

/**
 * Refuses, in one linear pass over the text, a manifest whose parse would cost more than `bounds`
 * allow: yaml parses on the event loop, and a server parsing a caller's text must not stall for it.
 * Over-counts brackets inside quoted strings, so it errs on the refusing side only for odd text.
 */
export function assertManifestBounds(text: string, bounds: ManifestBounds, source = 'manifest'): void {
  let documents = 1;
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth = Math.max(0, depth - 1);
    else if (c === 0x2d && (i === 0 || text.charCodeAt(i - 1) === 0x0a) && text.startsWith('---', i)) documents++;
  }
  if (text.startsWith('---')) documents--; // a leading separator opens the first document
  if (documents > bounds.maxDocuments) throw tooCostly(source, `more than ${bounds.maxDocuments} documents (${documents}); apply it in parts`);
  if (deepest > bounds.maxFlowDepth) throw tooCostly(source, `nested more than ${bounds.maxFlowDepth} levels deep`);
}

/** Where `offset` is in `text`, as a 1-based line number. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/** Longest stretch of the offending line shown under an error; the caret stays in view. */
const SNIPPET_WIDTH = 100;

/**
 * The offending line of `text` and a caret under `col` (both 1-based), indented by two spaces, as
 * compilers show it. Tabs before the column are kept in the caret line so the caret lines up.
 */
export function caretSnippet(text: string, line: number, col: number): string {
  const src = (text.split('\n')[line - 1] ?? '').replace(/\r$/, '');
  let from = 0;
  if (src.length > SNIPPET_WIDTH) from = Math.max(0, Math.min(col - 1 - SNIPPET_WIDTH / 2, src.length - SNIPPET_WIDTH));
  const shown = src.slice(from, from + SNIPPET_WIDTH);
  const at = Math.max(0, Math.min(col - 1 - from, shown.length));
  const pad = shown.slice(0, at).replace(/[^\t]/g, ' ');
  return `\n  ${from > 0 ? '...' : ''}${shown}${from + SNIPPET_WIDTH < src.length ? '...' : ''}\n  ${from > 0 ? '   ' : ''}${pad}^`;
}

/** Where `offset` is in `text`, as a 1-based column. */
function columnAt(text: string, offset: number): number {
  return offset - (text.lastIndexOf('\n', offset - 1) + 1) + 1;
}

/**
 * The first duplicate key of any mapping in `doc`, with its offset. One Set per mapping, so linear in
 * the keys (yaml's own uniqueKeys check compares each key with all before it: quadratic, and a 60,000-key
 * map stalled the server for a minute). Same rule as yaml's: scalar keys equal by value; other keys
 * (collections, aliases) are never duplicates of each other.
 */
function duplicateKey(doc: Document.Parsed): { key: string; offset: number } | undefined {
  let found: { key: string; offset: number } | undefined;
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        if (seen.has(pair.key.value)) {
          found = { key: String(pair.key.value), offset: pair.key.range?.[0] ?? 0 };
          return visit.BREAK;
        }
        seen.add(pair.key.value);
      }
      return undefined;
    },
  });
  return found;
}

/**
 * Split a YAML/JSON stream (block style, flow style, multi-document, or a `kind: List`) into plain
 * objects. Syntax errors and duplicate keys are errors that carry the line number: a duplicate key
 * is never "last one wins". Alias expansion is bounded (MAX_ALIAS_COUNT).
 */
export function parseManifests(text: string, source = 'manifest'): unknown[] {
  const docs = parseAllDocuments(text, { uniqueKeys: false, prettyErrors: true });
  const out: unknown[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    const err = doc.errors[0];
    if (err) {
      const pos = err.linePos?.[0];
      // yaml's first line ends in " at line L, column C:" (its snippet followed): said once, in front, with our snippet.
      const what = (err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '').replace(/:$/, '');
      throw refusal(source, pos ? `line ${pos.line}: YAML syntax error at column ${pos.col}: ${what}${caretSnippet(text, pos.line, pos.col)}` : `YAML syntax error: ${what}`);
    }
    const dup = doc.contents ? duplicateKey(doc) : undefined;
    if (dup) {
      const line = lineAt(text, dup.offset);
      const col = columnAt(text, dup.offset);
      throw refusal(source, `line ${line}: duplicate key at column ${col}: Map keys must be unique ("${dup.key.slice(0, 64)}")${caretSnippet(text, line, col)}`);
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) as unknown;
    } catch (e) {
      // yaml throws a plain ReferenceError for an alias bomb: the caller's input, so a 422 naming it.
      throw refusal(source, `YAML error: ${(e as Error).message.split('\n')[0]}`);
    }
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
