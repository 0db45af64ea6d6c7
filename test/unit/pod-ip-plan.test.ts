/**
 * Bridge pod addresses picked by the agent before the containers start (status.podIP in env): the
 * picking, recovery from labels after an agent restart, giving up an address the runtime refused,
 * the run requests that carry it and the reports that show it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchContainers } from '../../agent/engine/match.js';
import { plan, toRunSpec } from '../../agent/engine/plan.js';
import { withPodIPs } from '../../agent/network/pod-addresses.js';
import { addressRange, addressTakenIn, pickAddress, POD_IP_LABEL, PodIPPlan } from '../../agent/network/pod-ip-plan.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import type { DesiredPod, PodReport } from '../../src/contract/payloads.js';

const NODE = 'edge-1';

function pod(name: string, o: { hostNetwork?: boolean; containers?: string[]; env?: unknown[] } = {}): DesiredPod {
  return {
    uid: `uid-${name}`,
    namespace: 'default',
    name,
    spec: {
      restartPolicy: 'Always',
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      containers: (o.containers ?? ['main']).map((c, i) => ({ name: c, image: 'localhost/app:1', ...(i === 0 && o.env ? { env: o.env } : {}) })),
    } as DesiredPod['spec'],
  };
}

function container(p: DesiredPod, name: string, state: RuntimeContainer['state'], ip?: string): RuntimeContainer {
  const labels = { ...toRunSpec(p, name, NODE).labels };
  if (ip) labels[POD_IP_LABEL] = ip;
  return { id: `id-${p.name}-${name}`, name: `c-${p.name}-${name}`, image: 'localhost/app:1', labels, state };
}

test('addressRange: network, broadcast and gateway are never given; IPv6 and tiny subnets are not used', () => {
  const r = addressRange({ subnet: '10.88.0.0/16', gateway: '10.88.0.1' });
  assert.deepEqual(r, { first: (10 * 256 + 88) * 65536 + 1, last: (10 * 256 + 88) * 65536 + 65534, gateway: (10 * 256 + 88) * 65536 + 1 });
  // A /29 has six hosts; the gateway takes one: five pods fit, the sixth finds none.
  const small = addressRange({ subnet: '192.168.5.8/29', gateway: '192.168.5.9' });
  const taken = new Set<string>();
  for (let i = 0; i < 5; i++) taken.add(pickAddress(small, `pod-${i}`, taken)!);
  assert.deepEqual([...taken].sort(), ['192.168.5.10', '192.168.5.11', '192.168.5.12', '192.168.5.13', '192.168.5.14']);
  assert.equal(pickAddress(small, 'pod-6', taken), undefined);
  assert.throws(() => addressRange({ subnet: 'fd00::/64' }), /not an IPv4 CIDR block/);
  assert.throws(() => addressRange({ subnet: '10.0.0.0/31' }), /between \/8 and \/30/);
  assert.throws(() => addressRange({ subnet: '10.0.0.300/24' }), /not an IPv4 CIDR block/);
});

test('pickAddress: the same uid gets the same address; a taken one is skipped for the next', () => {
  const r = addressRange({ subnet: '10.4.0.0/24', gateway: '10.4.0.1' });
  const a = pickAddress(r, 'uid-a', new Set())!;
  assert.equal(pickAddress(r, 'uid-a', new Set()), a);
  const b = pickAddress(r, 'uid-a', new Set([a]))!;
  assert.notEqual(b, a);
  assert.match(b, /^10\.4\.0\.(\d+)$/);
});

test('addressTakenIn reads podman\'s and CNI\'s refusals, and nothing else', () => {
  assert.equal(addressTakenIn('podman start failed: unable to start container "4c4a": IPAM error: requested ip address 10.88.200.7 is already allocated to container ID 7f0a'), '10.88.200.7');
  assert.equal(addressTakenIn('nerdctl start failed: failed to create shim task: ... failed to allocate for range 0: requested IP address 10.4.0.42 is not available in range set 10.4.0.1-10.4.0.254": unknown'), '10.4.0.42');
  assert.equal(addressTakenIn('podman create failed: requested static ip 10.99.0.5 not in any subnet on network podman'), undefined);
  assert.equal(addressTakenIn('podman start failed: OCI runtime error: executable file not found'), undefined);
});

test('PodIPPlan: bridge pods get distinct addresses before any container exists; host-network pods none', () => {
  const plan = new PodIPPlan();
  assert.equal(plan.enabled, false);
  plan.setSubnet({ subnet: '10.88.0.0/16', gateway: '10.88.0.1' });
  assert.equal(plan.enabled, true);
  const pods = [pod('a'), pod('b'), pod('h', { hostNetwork: true })];
  plan.update(pods, []);
  const a = plan.ip('uid-a');
  const b = plan.ip('uid-b');
  assert.match(a ?? '', /^10\.88\.\d+\.\d+$/);
  assert.ok(b && b !== a);
  assert.equal(plan.ip('uid-h'), undefined);
  // Stable over passes, and gone with the pod.
  plan.update(pods, []);
  assert.equal(plan.ip('uid-a'), a);
  plan.update([pods[1]!], []);
  assert.equal(plan.ip('uid-a'), undefined);
  assert.equal(plan.ip('uid-b'), b);
});

test('PodIPPlan after an agent restart: the address in the first container\'s label wins, even over the uid hash', () => {
  const p = pod('web', { containers: ['main', 'side'] });
  const plan = new PodIPPlan();
  plan.setSubnet({ subnet: '10.88.0.0/16', gateway: '10.88.0.1' });
  plan.update([p], [container(p, 'main', 'exited', '10.88.7.7'), container(p, 'side', 'running')]);
  assert.equal(plan.ip(p.uid), '10.88.7.7');
  // Another pod hashing anywhere never gets an address a label holds.
  const other = pod('other');
  const fresh = new PodIPPlan();
  fresh.setSubnet({ subnet: '10.88.7.4/30' });
  fresh.update([p, other], [container(p, 'main', 'running', '10.88.7.6')]);
  assert.equal(fresh.ip(p.uid), '10.88.7.6');
  assert.equal(fresh.ip(other.uid), '10.88.7.5');
});

test('PodIPPlan: a pod whose first container runs without the label (started before) gets no planned address', () => {
  const p = pod('old');
  const plan = new PodIPPlan();
  plan.setSubnet({ subnet: '10.88.0.0/16' });
  plan.update([p], [container(p, 'main', 'running')]);
  assert.equal(plan.ip(p.uid), undefined);
});

test('PodIPPlan: an address refused as taken is given up for another; a running holder keeps its own', () => {
  const p = pod('web');
  const plan = new PodIPPlan();
  plan.setSubnet({ subnet: '10.88.0.0/16' });
  plan.update([p], []);
  const first = plan.ip(p.uid)!;
  plan.markTaken(first);
  plan.update([p], []);
  const second = plan.ip(p.uid)!;
  assert.notEqual(second, first);
  // The refused address still labels the stopped container: the new plan stands until it is replaced.
  plan.update([p], [container(p, 'main', 'exited', first)]);
  assert.equal(plan.ip(p.uid), second);
  // A container running with it holds it whatever was refused.
  plan.update([p], [container(p, 'main', 'running', first)]);
  assert.equal(plan.ip(p.uid), first);
});

test('PodIPPlan: addresses seen on other containers are not picked', () => {
  const p = pod('web');
  const plan = new PodIPPlan();
  plan.setSubnet({ subnet: '10.0.0.0/30' });
  plan.update([p], [], ['10.0.0.1']);
  assert.equal(plan.ip(p.uid), '10.0.0.2');
});

test('run requests: the first container gets --ip and the label, the others neither; status.podIP in env is the planned address', () => {
  const p = pod('web', { containers: ['main', 'side'], env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }] });
  const run = { podIP: (uid: string) => (uid === p.uid ? '10.88.3.4' : undefined) };
  const main = toRunSpec(p, 'main', NODE, run);
  assert.equal(main.ip, '10.88.3.4');
  assert.equal(main.labels[POD_IP_LABEL], '10.88.3.4');
  assert.equal(main.env.POD_IP, '10.88.3.4');
  const side = toRunSpec(p, 'side', NODE, run);
  assert.equal(side.ip, undefined);
  assert.equal(side.labels[POD_IP_LABEL], undefined);
  // The spec hash ignores the address: a new address alone re-creates nothing.
  assert.equal(main.labels['drover.io/spec-hash'], toRunSpec(p, 'main', NODE, { podIP: () => '10.88.9.9' }).labels['drover.io/spec-hash']);
  const host = pod('h', { hostNetwork: true });
  assert.equal(toRunSpec(host, 'main', NODE, run).ip, undefined);
});

test('plan: a stopped first container holding a given-up address is re-created; a running one is left alone', () => {
  const p = pod('web');
  const ctx = (ip: string) => ({ node: NODE, now: 0, images: new Set(['localhost/app:1']), restartBackoff: () => 0, run: { podIP: () => ip } });
  const stopped = container(p, 'main', 'exited', '10.88.1.1');
  assert.deepEqual(plan([stopped], [p], ctx('10.88.2.2')).steps.map((s) => s.action), ['remove']);
  assert.deepEqual(plan([stopped], [p], ctx('10.88.1.1')).steps.map((s) => s.action), ['restart']);
  assert.deepEqual(plan([container(p, 'main', 'running', '10.88.1.1')], [p], ctx('10.88.2.2')).steps, []);
});

test('reports: the planned address while its container runs; otherwise the inspected one', () => {
  const p = pod('web', { containers: ['main', 'side'] });
  const report = { uid: p.uid, namespace: 'default', name: 'web', phase: 'Running', containers: [] } as unknown as PodReport;
  const inspected: Record<string, string> = { 'id-web-side': '10.88.0.9' };
  const podIP = (cs: RuntimeContainer[]) => withPodIPs([report], matchContainers(cs, [p], NODE), (id) => inspected[id])[0]!.podIP;
  assert.equal(podIP([container(p, 'main', 'running', '10.88.5.5'), container(p, 'side', 'running')]), '10.88.5.5');
  assert.equal(podIP([container(p, 'main', 'exited', '10.88.5.5'), container(p, 'side', 'running')]), '10.88.0.9');
});
