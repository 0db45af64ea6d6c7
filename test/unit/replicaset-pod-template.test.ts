/**
 * A ReplicaSet's pods are validated and defaulted as a POSTed pod would be; one validation per stored version
 * of the ReplicaSet serves all the replicas made from it. What a user would notice if that went wrong: a
 * replica that differs from a validated one (a default missing, a field of an older template), or replicas
 * that share parts, so that a change to one shows in another.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pod } from '../../src/api/pod.js';
import { parseObject } from '../../src/api/validate.js';
import type { ReplicaSet } from '../../src/api/workloads.js';
import { podFromTemplate, podNameFor } from '../../server/controllers/replicaset.js';

function replicaSet(resourceVersion: string, image: string): ReplicaSet {
  return parseObject({
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name: 'web-6d4cf56db6', namespace: 'default', uid: 'rs-uid-1', resourceVersion },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' }, annotations: { note: 'x' } }, spec: { containers: [{ name: 'web', image, ports: [{ containerPort: 80 }] }] } },
    },
  }).object as ReplicaSet;
}

/** The pod as validating it afresh gives it. */
function validated(rs: ReplicaSet, name: string): Pod {
  const t = rs.spec.template;
  const pod = parseObject({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'default',
      labels: { ...t.metadata!.labels },
      annotations: { ...t.metadata!.annotations },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid, controller: true, blockOwnerDeletion: true }],
    },
    spec: t.spec,
  }).object as Pod;
  pod.status = { phase: 'Pending' };
  return pod;
}

describe('pods made from a ReplicaSet', () => {
  it('are, replica after replica, what validating each afresh gives, defaults included', () => {
    const rs = replicaSet('7', 'nginx:1.27');
    for (let i = 0; i < 5; i++) {
      const name = podNameFor(rs.metadata.name);
      const pod = podFromTemplate(rs, name);
      assert.deepEqual(pod, validated(rs, name));
      assert.equal(pod.metadata.name, name);
      assert.equal(pod.spec.containers[0]!.ports![0]!.protocol, 'TCP', 'the default protocol is filled in');
    }
  });

  it('share nothing: changing one replica changes no other', () => {
    const rs = replicaSet('8', 'nginx:1.27');
    const a = podFromTemplate(rs, podNameFor(rs.metadata.name));
    const b = podFromTemplate(rs, podNameFor(rs.metadata.name));
    a.spec.containers[0]!.image = 'changed';
    a.metadata.labels!.app = 'changed';
    b.spec.nodeName = 'n-1';
    const c = podFromTemplate(rs, podNameFor(rs.metadata.name));
    assert.equal(c.spec.containers[0]!.image, 'nginx:1.27');
    assert.equal(c.metadata.labels!.app, 'web');
    assert.equal(c.spec.nodeName, undefined);
    assert.equal(b.spec.containers[0]!.image, 'nginx:1.27');
  });

  it('refuse a name of another shape even after a valid one was made', () => {
    const rs = replicaSet('11', 'nginx:1.27');
    podFromTemplate(rs, 'web-6d4cf56db6-abcde');
    assert.throws(() => podFromTemplate(rs, 'web-6d4cf56db6-ABCDE'), /metadata\.name/);
  });

  it('follow the ReplicaSet once it is stored again with another template', () => {
    podFromTemplate(replicaSet('9', 'nginx:1.27'), podNameFor('web-6d4cf56db6'));
    const rs = replicaSet('10', 'nginx:1.28');
    const name = podNameFor(rs.metadata.name);
    const pod = podFromTemplate(rs, name);
    assert.equal(pod.spec.containers[0]!.image, 'nginx:1.28');
    assert.deepEqual(pod, validated(rs, name));
  });
});
