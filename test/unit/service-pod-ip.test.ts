import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PodAddresses, withPodIPs } from '../../agent/network/pod-addresses.js';
import type { Matching } from '../../agent/engine/match.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { podStatusFromReport } from '../../server/nodes/pod-status.js';

const rc = (id: string, state: RuntimeContainer['state'] = 'running'): RuntimeContainer => ({ id, name: id, image: 'x', labels: {}, state });

function matching(hostNetwork = false, containers: Array<RuntimeContainer | undefined> = [rc('c1'), rc('c2')]): Pick<Matching, 'pods'> {
  return {
    pods: [{
      pod: { uid: 'u1', namespace: 'default', name: 'web', spec: { hostNetwork, containers: containers.map((_, i) => ({ name: `c${i}`, image: 'x' })) } as never },
      containers: containers.map((kept, i) => ({ key: `u1/c${i}`, spec: { name: `c${i}`, image: 'x' } as never, kept, duplicates: [], hash: 'h' })),
    }],
  };
}

const report = { uid: 'u1', namespace: 'default', name: 'web', phase: 'Running' as const, containers: [] };

test('the pod IP is its first running container with an address; host-network and address-less pods get none from the agent', () => {
  const ips: Record<string, string> = { c1: '10.88.0.7', c2: '10.88.0.8' };
  assert.equal(withPodIPs([report], matching(), (id) => ips[id])[0]!.podIP, '10.88.0.7');
  assert.equal(withPodIPs([report], matching(false, [rc('c1', 'exited'), rc('c2')]), (id) => ips[id])[0]!.podIP, '10.88.0.8', 'an exited container has no address');
  assert.equal(withPodIPs([report], matching(false, [undefined, rc('c2')]), (id) => ips[id])[0]!.podIP, '10.88.0.8');
  assert.equal(withPodIPs([report], matching(true), (id) => ips[id])[0]!.podIP, undefined);
  assert.equal(withPodIPs([report], matching(), () => undefined)[0]!.podIP, undefined);
});

test('addresses are read once per container and forgotten when it is gone; a failed inspect is retried next time', async () => {
  const calls: string[] = [];
  let fail = true;
  const a = new PodAddresses(
    {
      inspect: async (id) => {
        calls.push(id);
        if (id === 'c2' && fail) throw new Error('podman busy');
        return { ...rc(id), ip: id === 'c1' ? '10.88.0.7' : '10.88.0.8' };
      },
    },
    silentLogger,
  );
  await a.refresh([rc('c1'), rc('c2'), rc('c3', 'exited')]);
  assert.equal(a.ip('c1'), '10.88.0.7');
  assert.equal(a.ip('c2'), undefined);
  fail = false;
  await a.refresh([rc('c1'), rc('c2')]);
  assert.equal(a.ip('c2'), '10.88.0.8');
  assert.deepEqual(calls.sort(), ['c1', 'c2', 'c2']);
  await a.refresh([rc('c2')]);
  assert.equal(a.ip('c1'), undefined);
});

test('server: status.podIP is the reported address for bridge pods and the node address for host-network pods', () => {
  const bridge = podStatusFromReport(undefined, { ...report, podIP: '10.88.0.7' }, '192.168.1.20', 't');
  assert.deepEqual([bridge.hostIP, (bridge as { podIP?: string }).podIP], ['192.168.1.20', '10.88.0.7']);
  const host = podStatusFromReport(undefined, { ...report, podIP: '10.88.0.7' }, '192.168.1.20', 't', true);
  assert.equal((host as { podIP?: string }).podIP, '192.168.1.20');
  assert.equal((podStatusFromReport(undefined, report, '192.168.1.20', 't') as { podIP?: string }).podIP, undefined, 'no address reported: none shown (not the host IP)');
  assert.equal(payloads.podReport.safeParse({ ...report, podIP: '10.88.0.7; rm -rf /' }).success, false, 'a report with a non-address is refused at the boundary');
});
