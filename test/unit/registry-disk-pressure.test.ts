/**
 * Issue 15: an agent's disk pressure (its state dir's or image store's filesystem short of space) on its
 * Node, on a real store: the condition DiskPressure=True and the taint node.kubernetes.io/disk-pressure
 * with effect NoSchedule (the scheduler then places no pod there that does not tolerate it), both gone
 * when it clears; a steady disk (only the free bytes in the message moving) writes nothing; a status that
 * says nothing of the disk (an older agent) leaves what is stored; a taint set by hand stays.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Pod } from '../../src/api/pod.js';
import { untoleratedTaints } from '../../server/scheduler/taints.js';
import { registryWithNode, type RegistryFixture } from '../helpers/registry.js';

let fx: RegistryFixture;
const report: RegistryFixture['report'] = (extra) => fx.report(extra);
const node = () => fx.node();
const pod = (tolerate: boolean): Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', namespace: 'default' },
  spec: { containers: [{ name: 'c', image: 'localhost/app:1' }], ...(tolerate ? { tolerations: [{ key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' }] } : {}) },
}) as Pod;

before(async () => {
  fx = await registryWithNode('drover-registry-disk-');
});
after(async () => {
  await fx.close();
});

test('disk pressure reported: DiskPressure=True and the NoSchedule taint a pod must tolerate; unchanged pressure writes nothing; cleared: both go', async () => {
  await report({ diskPressure: { pressure: false, message: 'state dir /var/lib/drover: 20.0 GB free of 32.0 GB' } });
  let n = await node();
  const { lastHeartbeatTime: _h, lastTransitionTime: _t, ...first } = n.status!.conditions!.find((c) => c.type === 'DiskPressure')!;
  assert.deepEqual(first, { type: 'DiskPressure', status: 'False', reason: 'KubeletHasNoDiskPressure', message: 'state dir /var/lib/drover: 20.0 GB free of 32.0 GB' });
  assert.equal(n.spec?.taints, undefined);
  // A taint the operator set stays whatever the disk does.
  await fx.store.patch('Node', '', 'edge-1', (x) => ((x.spec = { ...x.spec, taints: [{ key: 'site', value: 'roof', effect: 'NoSchedule' }] }), x));

  const low = 'state dir /var/lib/drover: 1.2 GB free of 32.0 GB, below 3.2 GB (10 % of the filesystem)';
  await report({ diskPressure: { pressure: true, message: low } });
  n = await node();
  const cond = n.status?.conditions?.find((c) => c.type === 'DiskPressure');
  assert.equal(cond?.status, 'True');
  assert.equal(cond?.reason, 'KubeletHasDiskPressure');
  assert.equal(cond?.message, low);
  assert.deepEqual(n.spec?.taints?.map((t) => `${t.key}:${t.effect}`), ['site:NoSchedule', 'node.kubernetes.io/disk-pressure:NoSchedule']);
  assert.equal(n.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True', 'the node stays Ready: running pods are not touched');
  assert.deepEqual(untoleratedTaints(pod(false), n, ['NoSchedule']).map((t) => t.key), ['site', 'node.kubernetes.io/disk-pressure']);
  assert.deepEqual(untoleratedTaints(pod(true), n, ['NoSchedule']).map((t) => t.key), ['site']);
  const rv = n.metadata.resourceVersion;

  await report({ diskPressure: { pressure: true, message: low.replace('1.2 GB', '1.1 GB') } });
  await report({});
  assert.equal((await node()).metadata.resourceVersion, rv, 'still under pressure, or an agent that says nothing of the disk: no write');

  await report({ diskPressure: { pressure: false, message: 'state dir /var/lib/drover: 9.0 GB free of 32.0 GB' } });
  n = await node();
  assert.equal(n.status?.conditions?.find((c) => c.type === 'DiskPressure')?.status, 'False');
  assert.deepEqual(n.spec?.taints, [{ key: 'site', value: 'roof', effect: 'NoSchedule' }]);
  assert.deepEqual(untoleratedTaints(pod(false), n, ['NoSchedule']).map((t) => t.key), ['site']);
});

test('a disk-pressure message past the report limit is cut, not refused', async () => {
  await report({ diskPressure: { pressure: true, message: 'x'.repeat(100_000) } });
  const n = await node();
  const cond = n.status?.conditions?.find((c) => c.type === 'DiskPressure');
  assert.equal(cond?.status, 'True');
  assert.ok(cond!.message!.length < 100_000);
});
