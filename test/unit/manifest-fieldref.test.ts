/**
 * The downward API: fieldRef and resourceFieldRef env. Every path the API accepts resolves on the
 * agent; any other is refused at admission (422 naming the field), not left to fail at run time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, resolveEnv, type RunContext } from '../../agent/engine/env.js';
import { nodeAllocatable } from '../../agent/hardware.js';
import type { Container } from '../../src/api/pod.js';
import { parseObject } from '../../src/api/validate.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { ValidationError } from '../../src/util/errors.js';

function podWith(env: unknown[], extra: Partial<Container> = {}, spec: Record<string, unknown> = {}) {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'web', labels: { app: 'web' }, annotations: { 'example.com/zone': 'z1' } }, spec: { containers: [{ name: 'main', image: 'busybox', env, ...extra }, { name: 'side', image: 'busybox', resources: { limits: { memory: '64Mi' } } }], ...spec } };
}

function desired(raw: ReturnType<typeof podWith>): DesiredPod & { labels?: Record<string, string>; annotations?: Record<string, string> } {
  const p = parseObject(raw).object as any;
  return { uid: 'uid-1', namespace: 'edge', name: p.metadata.name, spec: p.spec, labels: p.metadata.labels, annotations: p.metadata.annotations };
}

const ctx: RunContext = { hostIP: '192.168.1.20', podIP: (uid) => (uid === 'uid-1' ? '10.88.0.7' : undefined), allocatable: { cpuMilli: 4000, memoryBytes: 8 * 2 ** 30 } };
const ref = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });

test('every fieldRef path drover accepts resolves, bridge pod IP included', () => {
  const env = [
    { name: 'NAME', ...ref('metadata.name') },
    { name: 'NS', ...ref('metadata.namespace') },
    { name: 'UID', ...ref('metadata.uid') },
    { name: 'APP', ...ref("metadata.labels['app']") },
    { name: 'ZONE', ...ref('metadata.annotations["example.com/zone"]') },
    { name: 'MISSING', ...ref("metadata.labels['nope']") },
    { name: 'NODE', ...ref('spec.nodeName') },
    { name: 'SA', ...ref('spec.serviceAccountName') },
    { name: 'HOST_IP', ...ref('status.hostIP') },
    { name: 'POD_IP', ...ref('status.podIP') },
  ];
  const pod = desired(podWith(env));
  assert.deepEqual(resolveEnv(pod, pod.spec.containers[0]!, 'edge-1', ctx), {
    NAME: 'web', NS: 'edge', UID: 'uid-1', APP: 'web', ZONE: 'z1', MISSING: '', NODE: 'edge-1', SA: 'default', HOST_IP: '192.168.1.20', POD_IP: '10.88.0.7',
  });
});

test('status.podIP: the host\'s address with hostNetwork; a bridge pod without an address yet is a (retried) ConfigError', () => {
  const hostNet = desired(podWith([{ name: 'IP', ...ref('status.podIP') }], {}, { hostNetwork: true }));
  assert.deepEqual(resolveEnv(hostNet, hostNet.spec.containers[0]!, 'n', ctx), { IP: '192.168.1.20' });
  const bridge = { ...desired(podWith([{ name: 'IP', ...ref('status.podIP') }])), uid: 'other' };
  assert.throws(() => resolveEnv(bridge, bridge.spec.containers[0]!, 'n', ctx), (e: unknown) => e instanceof ConfigError && /no IP address yet/.test(e.message));
  assert.throws(() => resolveEnv(bridge, bridge.spec.containers[0]!, 'n', { hostIP: '1.2.3.4' }), (e: unknown) => e instanceof ConfigError && /only supported with hostNetwork on this agent/.test(e.message));
});

test('status.podIP is accepted at admission with or without hostNetwork (the agent picks bridge addresses before start)', () => {
  const bridge = parseObject(podWith([{ name: 'IP', ...ref('status.podIP') }])).object as any;
  assert.equal(bridge.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath, 'status.podIP');
  parseObject(podWith([{ name: 'IP', ...ref('status.podIP') }], {}, { hostNetwork: true }));
  // In a Deployment's template too.
  parseObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: podWith([{ name: 'IP', ...ref('status.podIP') }]).spec } } });
});

test('resourceFieldRef: limits and requests, divisors rounded up, another container by name, allocatable without a limit', () => {
  const rf = (resource: string, o: Record<string, unknown> = {}) => ({ valueFrom: { resourceFieldRef: { resource, ...o } } });
  const pod = desired(
    podWith(
      [
        { name: 'CPU', ...rf('limits.cpu') },
        { name: 'CPU_M', ...rf('limits.cpu', { divisor: '1m' }) },
        { name: 'MEM', ...rf('limits.memory') },
        { name: 'MEM_MI', ...rf('limits.memory', { divisor: '1Mi' }) },
        { name: 'REQ_CPU', ...rf('requests.cpu', { divisor: '1m' }) },
        { name: 'REQ_MEM', ...rf('requests.memory') },
        { name: 'SIDE_MEM', ...rf('limits.memory', { containerName: 'side', divisor: '1Mi' }) },
        { name: 'SIDE_CPU', ...rf('limits.cpu', { containerName: 'side' }) },
      ],
      { resources: { limits: { cpu: '1500m', memory: '128Mi' }, requests: { cpu: '250m' } } },
    ),
  );
  assert.deepEqual(resolveEnv(pod, pod.spec.containers[0]!, 'n', ctx), {
    CPU: '2', CPU_M: '1500', MEM: String(128 * 2 ** 20), MEM_MI: '128', REQ_CPU: '250', REQ_MEM: String(128 * 2 ** 20), SIDE_MEM: '64', SIDE_CPU: '4',
  });
  const noAlloc = desired(podWith([{ name: 'C', ...rf('limits.cpu') }]));
  assert.throws(() => resolveEnv(noAlloc, noAlloc.spec.containers[0]!, 'n', { hostIP: '1.2.3.4' }), (e: unknown) => e instanceof ConfigError && /no cpu limit/.test(e.message));
});

function refusal(raw: unknown): string[] {
  try {
    parseObject(raw);
  } catch (e) {
    assert.ok(e instanceof ValidationError);
    assert.equal(e.code, 422);
    return e.causes.map((c) => `${c.field}: ${c.message}`);
  }
  assert.fail('accepted');
}

test('an unsupported fieldPath is refused at admission, naming the field and the supported paths', () => {
  const [msg] = refusal(podWith([{ name: 'X', ...ref('status.podIPs') }]));
  assert.match(msg!, /^spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath: Unsupported value: "status\.podIPs": supported values: "metadata\.name", .*"status\.podIP"/);
  assert.match(refusal(podWith([{ name: 'X', ...ref('metadata.labels') }]))[0]!, /fieldRef\.fieldPath: Unsupported value: "metadata\.labels"/);
  assert.match(refusal(podWith([{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'metadata.name', apiVersion: 'v2' } } }]))[0]!, /fieldRef\.apiVersion: Unsupported value: "v2"/);
  // In a Deployment's template too, with the template's path.
  const dep = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: podWith([{ name: 'X', ...ref('spec.bogus') }]).spec } } };
  assert.match(refusal(dep)[0]!, /^spec\.template\.spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath: Unsupported value: "spec\.bogus"/);
});

test('resourceFieldRef: unknown resources, a container not in the pod, two sources at once are refused', () => {
  assert.match(refusal(podWith([{ name: 'X', valueFrom: { resourceFieldRef: { resource: 'limits.ephemeral-storage' } } }]))[0]!, /resourceFieldRef\.resource: Unsupported value: "limits\.ephemeral-storage": supported values: "limits\.cpu", "limits\.memory", "requests\.cpu", "requests\.memory"/);
  assert.deepEqual(refusal(podWith([{ name: 'X', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', containerName: 'ghost' } } }])), ['spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName: container "ghost" is not in this pod']);
  assert.match(refusal(podWith([{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'metadata.name' }, resourceFieldRef: { resource: 'limits.cpu' } } }]))[0]!, /valueFrom: exactly one of/);
  assert.match(refusal(podWith([{ name: 'X', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '0' } } }]))[0]!, /divisor: must be greater than zero/);
});

test('limits.* of a container without that limit: the node\'s allocatable as the agent reports it (all cores, all memory)', () => {
  const rf = (resource: string, divisor?: string) => ({ valueFrom: { resourceFieldRef: { resource, ...(divisor ? { divisor } : {}) } } });
  const pod = desired(podWith([{ name: 'MEM', ...rf('limits.memory') }, { name: 'CPU', ...rf('limits.cpu') }, { name: 'CPU_M', ...rf('limits.cpu', '1m') }]));
  const allocatable = nodeAllocatable({ cpu: { cores: 2, model: 'x' }, memoryBytes: 25_276_026_880 });
  assert.deepEqual(resolveEnv(pod, pod.spec.containers[0]!, 'n', { allocatable }), { MEM: '25276026880', CPU: '2', CPU_M: '2000' });
});
