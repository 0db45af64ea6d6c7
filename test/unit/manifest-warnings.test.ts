/** Every field drover accepts but does not act on is one warning naming its path; fields it acts on are not. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseObject } from '../../src/api/validate.js';
import { ignoredFields } from '../../src/api/warnings.js';

const podSpec = (extra: Record<string, unknown> = {}, container: Record<string, unknown> = {}) => ({
  containers: [{ name: 'app', image: 'busybox', ...container }],
  ...extra,
});

test('mountPropagation Bidirectional and HostToContainer are named; None (what drover does) is not', () => {
  const spec = podSpec({ volumes: [{ name: 'v', hostPath: { path: '/mnt' } }] }, {
    volumeMounts: [
      { name: 'v', mountPath: '/a', mountPropagation: 'Bidirectional' },
      { name: 'v', mountPath: '/b', mountPropagation: 'HostToContainer' },
      { name: 'v', mountPath: '/c', mountPropagation: 'None' },
    ],
  });
  const { warnings } = parseObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec });
  assert.deepEqual(warnings, [
    'spec.containers[0].volumeMounts[0].mountPropagation: Bidirectional is ignored by drover (mounts are private)',
    'spec.containers[0].volumeMounts[1].mountPropagation: HostToContainer is ignored by drover (mounts are private)',
  ]);
});

test('in a Deployment the path is the template\'s; emptyDir medium/sizeLimit, pod activeDeadlineSeconds, subdomain', () => {
  const spec = podSpec({ activeDeadlineSeconds: 30, subdomain: 'svc', volumes: [{ name: 'scratch', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } }] });
  const { warnings } = parseObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec } } });
  assert.deepEqual(warnings.sort(), [
    "spec.template.spec.activeDeadlineSeconds: ignored by drover (pods are not stopped after a deadline; a Job's own spec.activeDeadlineSeconds is applied)",
    'spec.template.spec.subdomain: ignored by drover (pods get no DNS records of their own)',
    "spec.template.spec.volumes[0].emptyDir.medium: Memory is ignored by drover (emptyDir lives on the node's disk)",
    'spec.template.spec.volumes[0].emptyDir.sizeLimit: ignored by drover (emptyDir size is not limited)',
  ]);
});

test('stripped fields keep their own warning, next to the ignored ones, each once', () => {
  const { warnings } = parseObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: podSpec({ securityContext: { runAsUser: 1000 } }, { readinessProbe: { exec: { command: ['true'] }, terminationGracePeriodSeconds: 5 } }) });
  assert.deepEqual(warnings, ['spec.securityContext: not supported by drover, ignored', 'spec.containers[0].readinessProbe.terminationGracePeriodSeconds: ignored by drover (a failing readiness probe does not kill the container)']);
});

test('fields drover acts on give no warning (affinity, tolerations, probes, hostPath type, ports, resources, a Job\'s deadline)', () => {
  const spec = podSpec(
    {
      restartPolicy: 'Never',
      nodeSelector: { a: 'b' },
      tolerations: [{ key: 'k', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 30 }],
      affinity: { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, preference: { matchExpressions: [{ key: 'a', operator: 'Exists' }] } }] }, podAntiAffinity: { requiredDuringSchedulingIgnoredDuringExecution: [{ topologyKey: 'kubernetes.io/hostname' }] } },
      volumes: [{ name: 'h', hostPath: { path: '/dev/null', type: 'CharDevice' } }, { name: 'e', emptyDir: {} }],
    },
    {
      ports: [{ containerPort: 80, hostPort: 8080, protocol: 'UDP' }],
      resources: { limits: { cpu: '1', memory: '1Gi' } },
      livenessProbe: { httpGet: { port: 80, httpHeaders: [{ name: 'a', value: 'b' }] }, terminationGracePeriodSeconds: 3 },
      volumeMounts: [{ name: 'e', mountPath: '/e', readOnly: true }],
    },
  );
  const job = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, spec: { activeDeadlineSeconds: 60, template: { spec } } };
  assert.deepEqual(parseObject(job).warnings, []);
});

test('hostname: applied to bridge pods (no warning), ignored with hostNetwork (the node\'s name)', () => {
  assert.deepEqual(ignoredFields({ kind: 'Pod', spec: podSpec({ hostname: 'web-0' }) }), []);
  assert.deepEqual(ignoredFields({ kind: 'Pod', spec: podSpec({ hostname: 'web-0', hostNetwork: true }) }), ["spec.hostname: ignored by drover (a hostNetwork pod has the node's host name)"]);
});

test('DaemonSet revisionHistoryLimit, Service fields drover\'s forwarding does not use; nothing for non-objects', () => {
  assert.deepEqual(ignoredFields({ kind: 'DaemonSet', spec: { revisionHistoryLimit: 3 } }), ['spec.revisionHistoryLimit: ignored by drover (a DaemonSet keeps only its last completed template for rollback)']);
  // The default (what the CLI sends after validating locally) is not the user's choice: no warning.
  assert.deepEqual(ignoredFields({ kind: 'DaemonSet', spec: { revisionHistoryLimit: 10 } }), []);
  assert.deepEqual(ignoredFields({ kind: 'Service', spec: { sessionAffinity: 'ClientIP', externalTrafficPolicy: 'Local', ports: [{ port: 80, appProtocol: 'http' }] } }), [
    'spec.sessionAffinity: ClientIP is ignored by drover (each connection picks an endpoint)',
    "spec.externalTrafficPolicy: Local is ignored by drover (NodePort traffic may go to any node's endpoints)",
    'spec.ports[0].appProtocol: ignored by drover',
  ]);
  assert.deepEqual(ignoredFields({ kind: 'Service', spec: { sessionAffinity: 'None', externalTrafficPolicy: 'Cluster' } }), []);
  assert.deepEqual(ignoredFields('x'), []);
  assert.deepEqual(ignoredFields({ kind: 'Pod', spec: 'junk' }), []);
});
