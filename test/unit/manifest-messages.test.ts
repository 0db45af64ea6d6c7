/**
 * What a user reads when a manifest is wrong: the field path and, in plain words, what was expected
 * (validator messages), and where a YAML syntax error is (line, column, the line itself with a caret).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseManifests } from '../../src/api/manifest.js';
import { parseObject, parseWith } from '../../src/api/validate.js';
import { secret } from '../../src/api/config.js';
import { ValidationError } from '../../src/util/errors.js';

function causes(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ValidationError, String(e));
    return e.causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  }
  assert.fail('expected a ValidationError');
}

const pod = (container: Record<string, unknown>, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web' },
  spec: { containers: [{ name: 'web', image: 'nginx', ...container }], ...spec },
});

test('a quoted port is named with what was expected and what came (not "required")', () => {
  assert.deepEqual(causes(() => parseObject(pod({ ports: [{ containerPort: '80' }] }))), [
    'spec.containers[0].ports[0].containerPort: expected a number, got the string "80"',
  ]);
});

test('a missing field is still "required"; a wrong type of list or object says so', () => {
  assert.deepEqual(causes(() => parseObject(pod({ image: undefined }))), ['spec.containers[0].image: required']);
  assert.deepEqual(causes(() => parseObject(pod({ command: 'sleep 1' }))), ['spec.containers[0].command: expected a list, got the string "sleep 1"']);
  assert.deepEqual(causes(() => parseObject(pod({}, { nodeSelector: ['a'] }))), ['spec.nodeSelector: expected an object (a map of fields), got a list']);
  assert.deepEqual(causes(() => parseObject(pod({ ports: [{ containerPort: 80.5 }] }))), ['spec.containers[0].ports[0].containerPort: expected an integer, got the number 80.5']);
  assert.deepEqual(causes(() => parseObject(pod({}, { hostNetwork: 'yes' }))), ['spec.hostNetwork: expected true or false, got the string "yes"']);
});

test('kind and apiVersion: missing is "required", another type says what came', () => {
  assert.deepEqual(causes(() => parseObject({ kind: 5, metadata: {} })), ['kind: expected a string, got the number 5', 'apiVersion: required']);
});

test('an unknown enum value lists the allowed ones, in Kubernetes\' wording', () => {
  assert.deepEqual(causes(() => parseObject(pod({}, { restartPolicy: 'Sometimes' }))), [
    'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
  ]);
  assert.deepEqual(causes(() => parseObject(pod({ ports: [{ containerPort: 80, protocol: 'SCTP' }] }))), [
    'spec.containers[0].ports[0].protocol: Unsupported value: "SCTP": supported values: "TCP", "UDP"',
  ]);
});

test('unknown fields are named by their full path; a union says each type it takes', () => {
  assert.deepEqual(causes(() => parseObject(pod({ imagee: 'x' }))), ['spec.containers[0].imagee: unknown field (did you mean "image"?)']);
  assert.deepEqual(causes(() => parseObject(pod({ zzzzzz: 'x' }))), ['spec.containers[0].zzzzzz: unknown field']);
  assert.deepEqual(causes(() => parseObject(pod({ resources: { limits: { cpu: true } } }))), ['spec.containers[0].resources.limits.cpu: expected a string or a number, got the boolean true']);
});

test('a misspelt field gets a suggestion from the fields valid at that place (case, one or two letters), even deep in a template', () => {
  const dep = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd', label: {} }, spec: { replica: 2, selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { nodeselector: {}, containers: [{ name: 'c', image: 'i', resources: { limit: {} }, env: [{ name: 'A', valeu: '1' }] }] } } } };
  assert.deepEqual(causes(() => parseObject(dep)).sort(), [
    'metadata.label: unknown field (did you mean "labels"?)',
    'spec.replica: unknown field (did you mean "replicas"?)',
    'spec.template.spec.containers[0].env[0].valeu: unknown field (did you mean "value"?)',
    'spec.template.spec.containers[0].resources.limit: unknown field (did you mean "limits"?)',
    'spec.template.spec.nodeselector: unknown field (did you mean "nodeSelector"?)',
  ]);
});

test('bounds in words: at least / at most, an empty list', () => {
  assert.deepEqual(causes(() => parseObject(pod({ ports: [{ containerPort: 70000 }] }))), ['spec.containers[0].ports[0].containerPort: must be at most 65535']);
  assert.deepEqual(causes(() => parseObject({ ...pod({}), spec: { containers: [] } })), ['spec.containers: at least one container is required']);
});

test('a Secret\'s values never come back in an error, nor do wire payloads\'', () => {
  const bad = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, stringData: { password: 12345 } };
  const got = causes(() => parseObject(bad)).join('\n');
  assert.doesNotMatch(got, /12345/);
  assert.match(got, /stringData\.password: expected a string, got a number/);
  assert.doesNotMatch(causes(() => parseWith(secret, { ...bad, stringData: { password: 987654 } }, 'x')).join(''), /987654/);
  assert.doesNotMatch(causes(() => parseWith(secret, { ...bad, stringData: { password: 's3cr3t-value' }, data: 7 }, 'x')).join(''), /s3cr3t/);
});

test('a YAML syntax error gives line, column and the offending line with a caret under the column', () => {
  const text = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: [web\nspec: {}\n';
  const msg = causes(() => parseManifests(text, 'web.yaml'))[0]!;
  const [head, line, caret] = msg.split('\n');
  assert.match(head!, /^web\.yaml: line \d+: YAML syntax error at column \d+: \S.*[^:]$/);
  const [, l, c] = /line (\d+): YAML syntax error at column (\d+)/.exec(head!)!;
  assert.equal(line, `  ${text.split('\n')[Number(l) - 1]}`);
  assert.equal(caret, `  ${' '.repeat(Number(c) - 1)}^`);
});

test('a nested mapping on one line: yaml\'s own "at line, column:" tail is not repeated, the message does not end in ":"', () => {
  const msg = causes(() => parseManifests('kind: Pod\nmetadata:\n  name: x\n   labels: {a: b}\n', 'p.yaml'))[0]!;
  const head = msg.split('\n')[0]!;
  assert.equal(head, 'p.yaml: line 3: YAML syntax error at column 9: Nested mappings are not allowed in compact mappings');
  assert.equal(msg.split('\n')[2], `  ${' '.repeat(8)}^`);
});

test('a duplicate key names line and column and shows the line', () => {
  const msg = causes(() => parseManifests('kind: Pod\nmetadata:\n  name: a\n  name: b\n', 'd.yaml'))[0]!;
  assert.equal(msg, 'd.yaml: line 4: duplicate key at column 3: Map keys must be unique ("name")\n    name: b\n    ^');
});

test('a very long offending line is cut around the column, caret still under it', () => {
  const long = `a: "${'x'.repeat(300)}"  bad: [`;
  const msg = causes(() => parseManifests(`${long}\n`, 'l.yaml'))[0]!;
  const [, shown, caret] = msg.split('\n');
  assert.ok(shown!.length < 120, shown);
  assert.equal(caret!.indexOf('^'), caret!.length - 1);
});
