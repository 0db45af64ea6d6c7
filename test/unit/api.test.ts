import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseManifests } from '../../src/api/manifest.js';
import { parseCpu, parseMemory } from '../../src/api/quantity.js';
import { parseObject } from '../../src/api/validate.js';
import { ValidationError } from '../../src/util/errors.js';

function causes(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
    return err.causes.map((c) => (c.field ? `${c.field}: ${c.message}` : c.message));
  }
  assert.fail('expected a validation error');
}

const k8sPod = `
apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.14.2
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: File
    ports:
    - containerPort: 80
    resources:
      requests: { cpu: 250m, memory: 64Mi }
      limits: { cpu: "1", memory: 128Mi }
`;

test('a Kubernetes Pod manifest applies with defaults and lists ignored fields as warnings', () => {
  const [raw] = parseManifests(k8sPod);
  const { object, kind, warnings } = parseObject(raw);
  assert.equal(kind.kind, 'Pod');
  const spec = object.spec as any;
  assert.equal(spec.restartPolicy, 'Always');
  assert.equal(spec.terminationGracePeriodSeconds, 10);
  assert.equal(spec.containers[0].ports[0].protocol, 'TCP');
  assert.equal(spec.containers[0].imagePullPolicy, 'IfNotPresent');
  assert.deepEqual(warnings, ['spec.containers[0].terminationMessagePolicy: not supported by drover, ignored']);
});

test('a missing image names the field path', () => {
  const raw = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'a' }] } };
  assert.deepEqual(causes(() => parseObject(raw)), ['spec.containers[0].image: required']);
});

test('unknown fields are errors naming their path, not silently dropped', () => {
  const raw = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'a', image: 'i', imagee: 'typo' }] } };
  assert.deepEqual(causes(() => parseObject(raw)), ['spec.containers[0].imagee: unknown field (did you mean "image"?)']);
});

test('bad names, quantities, enums and duplicates are each reported', () => {
  const raw = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'Bad_Name' },
    spec: {
      restartPolicy: 'Sometimes',
      containers: [
        { name: 'a', image: 'i', resources: { requests: { memory: 'lots' } } },
      ],
    },
  };
  const c = causes(() => parseObject(raw));
  assert.ok(c.some((x) => x.startsWith('metadata.name: must consist of lower case')), c.join('\n'));
  assert.ok(c.some((x) => x.startsWith('spec.restartPolicy:')), c.join('\n'));
  assert.ok(c.some((x) => x.startsWith('spec.containers[0].resources.requests.memory: must be a quantity')), c.join('\n'));
});

test('duplicate container names are reported on the second one', () => {
  const raw = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'a', image: 'i' }, { name: 'a', image: 'j' }] } };
  assert.deepEqual(causes(() => parseObject(raw)), ['spec.containers[1].name: duplicate container name "a"']);
});

test('two volumes of one name (they would share a directory on the device) and a mountPath used twice are refused, naming the field', () => {
  const raw = {
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' },
    spec: {
      volumes: [{ name: 'work', emptyDir: {} }, { name: 'work', configMap: { name: 'cm' } }],
      containers: [{ name: 'a', image: 'i', volumeMounts: [{ name: 'work', mountPath: '/w' }, { name: 'work', mountPath: '/w' }] }],
    },
  };
  assert.deepEqual(causes(() => parseObject(raw)), ['spec.volumes[1].name: duplicate volume name "work"', 'spec.containers[0].volumeMounts[1].mountPath: duplicate mountPath "/w"']);
  const template = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: raw.spec } } };
  assert.ok(causes(() => parseObject(template)).includes('spec.template.spec.volumes[1].name: duplicate volume name "work"'));
});

test('unknown kind and unserved apiVersion are clear errors', () => {
  assert.match(causes(() => parseObject({ apiVersion: 'v1', kind: 'Gadget', metadata: { name: 'x' } }))[0]!, /^kind: unknown kind "Gadget"/);
  assert.match(causes(() => parseObject({ apiVersion: 'apps/v1', kind: 'Pod', metadata: { name: 'x' } }))[0]!, /^apiVersion: "apps\/v1" is not served for kind Pod/);
  assert.deepEqual(causes(() => parseObject({ metadata: {} })), ['kind: required', 'apiVersion: required']);
  assert.deepEqual(causes(() => parseObject('a string')), ['an object is required']);
});

test('status in a manifest is ignored (the system owns it)', () => {
  const { object } = parseObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' }, status: { phase: 'Terminating' } });
  assert.equal(object.status, undefined);
});

test('multi-document, flow-style and JSON manifests all parse', () => {
  const docs = parseManifests(`${k8sPod}\n---\n{apiVersion: v1, kind: Namespace, metadata: {name: edge}}\n---\n{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"j"}}\n---\n`);
  assert.deepEqual(docs.map((d: any) => d.metadata.name), ['nginx', 'edge', 'j']);
  const list = parseManifests('apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n');
  assert.equal((list[0] as any).metadata.name, 'a');
});

test('duplicate keys and syntax errors carry the line number', () => {
  const dup = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n';
  assert.match(causes(() => parseManifests(dup, 'pod.yaml'))[0]!, /^pod\.yaml: line 5: duplicate key/);
  const bad = 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a\n';
  assert.match(causes(() => parseManifests(bad, 'x.yaml'))[0]!, /^x\.yaml: line \d+: YAML syntax error/);
});

test('quantities: CPU in millicores, memory in bytes', () => {
  assert.equal(parseCpu('250m'), 250);
  assert.equal(parseCpu('1.5'), 1500);
  assert.equal(parseCpu(2), 2000);
  assert.equal(parseMemory('64Mi'), 64 * 2 ** 20);
  assert.equal(parseMemory('1G'), 1e9);
  assert.equal(parseMemory('1024'), 1024);
  assert.throws(() => parseCpu('1Gi'), /invalid CPU quantity/);
  assert.throws(() => parseMemory('12 apples'), /invalid memory quantity/);
});

test('replicas, completions and parallelism are capped with an error that names the field', () => {
  const deploy = (replicas: number) => ({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'big' },
    spec: { replicas, selector: { matchLabels: { app: 'big' } }, template: { metadata: { labels: { app: 'big' } }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } },
  });
  assert.throws(() => parseObject(deploy(1e9)), (err: unknown) => err instanceof ValidationError && err.causes.some((c) => c.field === 'spec.replicas' && /at most 10000/.test(c.message)));
  assert.doesNotThrow(() => parseObject(deploy(10_000)));
  const job = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, spec: { completions: 50_000, parallelism: 20_000, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: 'busybox' }] } } } };
  assert.throws(() => parseObject(job), (err: unknown) => err instanceof ValidationError && ['spec.completions', 'spec.parallelism'].every((f) => err.causes.some((c) => c.field === f)));
});
