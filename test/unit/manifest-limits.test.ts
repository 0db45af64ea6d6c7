/**
 * What parsing a manifest may cost (review10 F3): duplicate keys found in one pass (a 20,000-key mapping
 * whose duplicate is its last key is named, with its line), alias bombs refused as the caller's error,
 * and the text bounds the MQTT `apply` checks before any parse (documents, flow nesting).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertManifestBounds, parseManifests } from '../../src/api/manifest.js';
import { ValidationError } from '../../src/util/errors.js';

function refusal(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, `a ValidationError, got ${String(err)}`);
    return err;
  }
  assert.fail('not refused');
}

const configMap = (keys: string[]) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n${keys.map((k) => `  ${k}: v`).join('\n')}\n`;

test('a 20,000-key mapping: parsed whole; with its first key repeated last, the duplicate is named with its line', () => {
  const keys = Array.from({ length: 20_000 }, (_, i) => `k${i}`);
  const [cm] = parseManifests(configMap(keys)) as Array<{ data: Record<string, string> }>;
  assert.equal(Object.keys(cm!.data).length, 20_000);
  const err = refusal(() => parseManifests(configMap([...keys, 'k0']), 'big.yaml'));
  assert.match(err.causes[0]!.message, /^big\.yaml: line 20006: duplicate key at column 3: Map keys must be unique \("k0"\)\n    k0: v\n    \^$/);
});

test('duplicates in nested and flow mappings are found, in any document, quoted or not', () => {
  assert.match(refusal(() => parseManifests('a: 1\n---\nb:\n  c: {d: 1, e: 2, d: 3}\n')).causes[0]!.message, /^manifest: line 4: duplicate key.*"d"/);
  assert.match(refusal(() => parseManifests('x: 1\n"x": 2\n')).causes[0]!.message, /line 2: duplicate key/);
  assert.deepEqual(parseManifests('a: {b: 1}\nc: {b: 2}\n'), [{ a: { b: 1 }, c: { b: 2 } }], 'the same key in two mappings is no duplicate');
});

test('an alias bomb ("billion laughs") is the caller\'s error naming the manifest, not a crash', () => {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i < 9; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
  const err = refusal(() => parseManifests(lines.join('\n'), 'manifest'));
  assert.match(err.causes[0]!.message, /^manifest: YAML error: .*alias/i);
});

test('text bounds: at most N documents and flow nesting, counted before any parse, the refusal naming the field', () => {
  const bounds = { maxDocuments: 3, maxFlowDepth: 4 };
  assertManifestBounds('---\na: 1\n---\nb: 1\n---\nc: 1\n', bounds);
  const many = refusal(() => assertManifestBounds('a: 1\n---\nb: 1\n---\nc: 1\n---\nd: 1\n', bounds));
  assert.deepEqual(many.causes, [{ field: 'manifest', message: 'more than 3 documents (4); apply it in parts' }]);
  assertManifestBounds('a: [[{b: [1]}]]\n', bounds);
  const deep = refusal(() => assertManifestBounds('a: [[[[[1]]]]]\n', bounds));
  assert.equal(deep.causes[0]!.field, 'manifest');
  assert.match(deep.causes[0]!.message, /nested more than 4 levels/);
  // A "---" inside a line is text, not a separator.
  assertManifestBounds('a: "---"\nb: x---y\nc: 1\nd: 2\n', bounds);
});
