import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertPodSecurity, hostPathAllowed, parseAllowedHostPaths, PRIVILEGED_LABEL, privilegedFields, type PodSecurityRequest } from '../../server/admission/pod-security.js';
import { ForbiddenError, ValidationError } from '../../src/util/errors.js';

const none = { allowedHostPaths: [] };

function pod(spec: Record<string, unknown>): unknown {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'main', image: 'busybox' }], ...spec } };
}

function deployment(podSpec: Record<string, unknown>): unknown {
  return { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { selector: {}, template: { spec: { containers: [{ name: 'main', image: 'busybox' }], ...podSpec } } } };
}

function refusal(r: Partial<PodSecurityRequest> & { body: unknown }): string {
  try {
    assertPodSecurity({ kind: 'Pod', plural: 'pods', name: 'p', namespace: 'default', namespaceLabels: undefined, role: 'admin', policy: none, ...r });
  } catch (err) {
    assert.ok(err instanceof ForbiddenError);
    assert.equal(err.code, 403);
    return err.message;
  }
  assert.fail('allowed');
}

describe('pod security', () => {
  it('names every field that asks for host access', () => {
    const body = pod({
      hostNetwork: true,
      hostPID: true,
      hostIPC: true,
      volumes: [{ name: 'root', hostPath: { path: '/' } }, { name: 'tmp', emptyDir: {} }],
      containers: [
        { name: 'a', image: 'i', devices: [{ hostPath: '/dev/ttyUSB0' }], securityContext: { privileged: true, capabilities: { add: ['NET_ADMIN'] } } },
        { name: 'b', image: 'i', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } },
      ],
      initContainers: [{ name: 'init', image: 'i', securityContext: { privileged: true } }],
    });
    assert.deepEqual(privilegedFields('Pod', body, none).map((f) => f.field), [
      'spec.hostNetwork',
      'spec.hostPID',
      'spec.hostIPC',
      'spec.volumes[0].hostPath',
      'spec.initContainers[0].securityContext.privileged',
      'spec.containers[0].devices',
      'spec.containers[0].securityContext.privileged',
      'spec.containers[0].securityContext.capabilities.add',
    ]);
  });

  it('a subPath into a volume a container can write (emptyDir, hostPath) is host access: a link there is followed on the host', () => {
    const body = pod({
      volumes: [{ name: 'work', emptyDir: {} }, { name: 'cfg', configMap: { name: 'c' } }, { name: 'data', hostPath: { path: '/srv/data' } }],
      containers: [
        { name: 'linker', image: 'i', volumeMounts: [{ name: 'work', mountPath: '/work' }] },
        { name: 'reader', image: 'i', volumeMounts: [{ name: 'work', mountPath: '/host', subPath: 'evil', readOnly: true }, { name: 'cfg', mountPath: '/etc/app.conf', subPath: 'app.conf' }, { name: 'data', mountPath: '/d', subPath: 'x' }] },
      ],
    });
    const policy = { allowedHostPaths: ['/srv/data'] };
    assert.deepEqual(privilegedFields('Pod', body, policy).map((f) => f.field), ['spec.containers[1].volumeMounts[0].subPath', 'spec.containers[1].volumeMounts[2].subPath']);
    assert.match(privilegedFields('Pod', body, policy)[0]!.message, /volume "work", which a container can turn into a link/);
  });

  it('finds them in pod templates of Deployments, ReplicaSets, DaemonSets and Jobs', () => {
    for (const kind of ['Deployment', 'ReplicaSet', 'DaemonSet', 'Job']) {
      assert.deepEqual(privilegedFields(kind, deployment({ hostNetwork: true }), none).map((f) => f.field), ['spec.template.spec.hostNetwork'], kind);
    }
    assert.deepEqual(privilegedFields('ConfigMap', { data: { hostNetwork: 'true' } }, none), []);
    assert.deepEqual(privilegedFields('Pod', pod({ hostNetwork: false, volumes: [{ name: 'e', emptyDir: {} }] }), none), []);
  });

  it('refuses host access in a namespace without the label, for admin too, naming the field', () => {
    const msg = refusal({ kind: 'Deployment', plural: 'deployments', name: 'd', body: deployment({ hostNetwork: true }) });
    assert.match(msg, /^deployments "d" is forbidden: spec\.template\.spec\.hostNetwork: needs a namespace labelled drover\.io\/privileged=true/);
    assert.match(msg, /namespace default is not labelled drover\.io\/privileged=true/);
    assert.match(refusal({ body: pod({ hostNetwork: true }), namespaceLabels: { [PRIVILEGED_LABEL]: 'yes' } }), /spec\.hostNetwork/);
  });

  it('a labelled namespace allows it for admin only', () => {
    assert.doesNotThrow(() => assertPodSecurity({ kind: 'Pod', plural: 'pods', name: 'p', namespace: 'edge', body: pod({ hostNetwork: true, volumes: [{ name: 'r', hostPath: { path: '/' } }] }), namespaceLabels: { [PRIVILEGED_LABEL]: 'true' }, role: 'admin', policy: none }));
    const msg = refusal({ body: pod({ hostNetwork: true }), namespace: 'edge', namespaceLabels: { [PRIVILEGED_LABEL]: 'true' }, role: 'view' });
    assert.match(msg, /needs the admin role \(it shares the host's network namespace\); the caller has the view role$/);
  });

  it('the hostPath allow-list is matched on whole path components after resolving ..', () => {
    const allowed = parseAllowedHostPaths(['/srv/data/', '/var/lib/app']);
    assert.deepEqual(allowed, ['/srv/data', '/var/lib/app']);
    assert.ok(hostPathAllowed('/srv/data', allowed));
    assert.ok(hostPathAllowed('/srv/data/cam1/', allowed));
    assert.ok(!hostPathAllowed('/srv/database', allowed));
    assert.ok(!hostPathAllowed('/srv/data/../../etc', allowed));
    assert.ok(!hostPathAllowed('/', allowed));
    assert.ok(!hostPathAllowed('srv/data', allowed));
    const policy = { allowedHostPaths: allowed };
    assert.deepEqual(privilegedFields('Pod', pod({ volumes: [{ name: 'd', hostPath: { path: '/srv/data/x' } }] }), policy), []);
    assert.deepEqual(privilegedFields('Pod', pod({ volumes: [{ name: 'd', hostPath: { path: '/srv/data/../../' } }] }), policy).map((f) => f.field), ['spec.volumes[0].hostPath']);
  });

  it('an allow-list that would allow everything or is not absolute is refused naming the flag', () => {
    for (const bad of [['/'], ['relative/dir'], ['/srv/../etc'], ['//']]) {
      assert.throws(() => parseAllowedHostPaths(bad), (err: unknown) => err instanceof ValidationError && err.causes[0]!.field === 'allowed-host-paths[0]', JSON.stringify(bad));
    }
  });
});
