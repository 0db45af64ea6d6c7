/** A controller whose selector does not match its template's labels is refused, with Kubernetes' wording. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseObject } from '../../src/api/validate.js';
import { ValidationError } from '../../src/util/errors.js';

const template = (labels: Record<string, string>, restartPolicy = 'Always') => ({ metadata: { labels }, spec: { restartPolicy, containers: [{ name: 'c', image: 'i' }] } });
const obj = (kind: string, apiVersion: string, spec: Record<string, unknown>) => ({ apiVersion, kind, metadata: { name: 'web' }, spec });

function refusal(raw: unknown): ValidationError {
  try {
    parseObject(raw);
  } catch (e) {
    assert.ok(e instanceof ValidationError);
    return e;
  }
  assert.fail('accepted');
}

for (const [kind, apiVersion] of [['Deployment', 'apps/v1'], ['ReplicaSet', 'apps/v1'], ['DaemonSet', 'apps/v1'], ['Job', 'batch/v1']] as const) {
  const rp = kind === 'Job' ? 'Never' : 'Always';
  test(`${kind}: a selector its template does not match is a 422 on spec.template.metadata.labels`, () => {
    const e = refusal(obj(kind, apiVersion, { selector: { matchLabels: { app: 'web' } }, template: template({ app: 'api', tier: 'x' }, rp) }));
    assert.equal(e.code, 422);
    assert.deepEqual(e.causes, [{ field: 'spec.template.metadata.labels', message: 'Invalid value: map[string]string{"app":"api", "tier":"x"}: `selector` does not match template `labels`' }]);
    assert.equal(e.message, `invalid ${kind}: spec.template.metadata.labels: Invalid value: map[string]string{"app":"api", "tier":"x"}: \`selector\` does not match template \`labels\``);
  });
  test(`${kind}: matchExpressions count too; a matching selector is accepted`, () => {
    const e = refusal(obj(kind, apiVersion, { selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['a', 'b'] }] }, template: template({ app: 'c' }, rp) }));
    assert.equal(e.causes[0]!.field, 'spec.template.metadata.labels');
    parseObject(obj(kind, apiVersion, { selector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['a', 'b'] }] }, template: template({ app: 'b', extra: 'y' }, rp) }));
  });
}

test('a template without labels under a selector is refused (map[string]string{})', () => {
  const e = refusal(obj('Deployment', 'apps/v1', { selector: { matchLabels: { app: 'web' } }, template: { spec: { containers: [{ name: 'c', image: 'i' }] } } }));
  assert.match(e.causes[0]!.message, /^Invalid value: map\[string\]string\{\}: `selector` does not match/);
});

test('a Job without a selector is fine (the controller labels its own pods)', () => {
  parseObject(obj('Job', 'batch/v1', { template: template({}, 'Never') }));
});
