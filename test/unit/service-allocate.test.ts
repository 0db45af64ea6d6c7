import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Service } from '../../src/api/service.js';
import { parseObject } from '../../src/api/validate.js';
import { parseCidr } from '../../src/net/ipv4.js';
import { ValidationError } from '../../src/util/errors.js';
import { parsePortRange, withServiceAllocation } from '../../server/services/allocate.js';
import { LevelStore } from '../../server/store/level.js';
import type { Store } from '../../server/store/types.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function open(dir?: string, opts: Parameters<typeof withServiceAllocation>[1] = {}): Promise<{ store: Store; level: LevelStore; dir: string }> {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'svc-alloc-')));
  if (!dir) dirs.push(d);
  const level = await LevelStore.open({ path: join(d, 'db') });
  return { store: withServiceAllocation(level, opts), level, dir: d };
}

function svc(name: string, spec: Record<string, unknown>): Service {
  return parseObject({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec }).object as Service;
}

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected a 422, got ${String(err)}`);
    assert.equal(err.code, 422);
    return err.message;
  }
  assert.fail('expected the write to be refused');
}

test('cluster IPs come from the service CIDR, unique, and a requested one is honoured or refused if taken', async () => {
  const { store, level } = await open(undefined, { serviceCidr: '10.43.0.0/29' });
  const a = await store.create(svc('a', { ports: [{ port: 80 }] }));
  assert.match(a.spec.clusterIP!, /^10\.43\.0\.[1-6]$/);
  assert.deepEqual(a.spec.clusterIPs, [a.spec.clusterIP]);
  const free = ['1', '2', '3', '4', '5', '6'].map((o) => `10.43.0.${o}`).find((ip) => ip !== a.spec.clusterIP)!;
  const b = await store.create(svc('b', { clusterIP: free, ports: [{ port: 80 }] }));
  assert.equal(b.spec.clusterIP, free);
  assert.match(await refusal(store.create(svc('c', { clusterIP: free, ports: [{ port: 80 }] }))), new RegExp(`spec\\.clusterIP: ${free.replaceAll('.', '\\.')} is already allocated \\(to Service default/b\\)`));
  assert.match(await refusal(store.create(svc('c', { clusterIP: '10.0.0.1', ports: [{ port: 80 }] }))), /spec\.clusterIP: 10\.0\.0\.1 is not in the service CIDR 10\.43\.0\.0\/29/);
  assert.equal(await level.get('Service', 'default', 'c'), undefined, 'a refused Service is not stored');
  // Six usable addresses in a /29: four more, then the block is full.
  for (const n of ['d', 'e', 'f', 'g']) await store.create(svc(n, { ports: [{ port: 80 }] }));
  const ips = (await store.list('Service')).items.map((s) => s.spec.clusterIP);
  assert.equal(new Set(ips).size, 6);
  assert.match(await refusal(store.create(svc('h', { ports: [{ port: 80 }] }))), /no free address left in the service CIDR 10\.43\.0\.0\/29/);
  // A delete releases its address.
  await store.delete('Service', 'default', 'b');
  assert.equal((await store.create(svc('h', { ports: [{ port: 80 }] }))).spec.clusterIP, free);
  // Headless Services take no address.
  assert.equal((await store.create(svc('db', { clusterIP: 'None', selector: { app: 'db' } }))).spec.clusterIP, 'None');
  await level.close();
});

test('concurrent creates never share an address', async () => {
  const { store, level } = await open(undefined, { serviceCidr: '10.43.0.0/28', random: () => 0 });
  const made = await Promise.all(Array.from({ length: 10 }, (_, i) => store.create(svc(`s${i}`, { ports: [{ port: 80 }] }))));
  assert.equal(new Set(made.map((s) => s.spec.clusterIP)).size, 10);
  await level.close();
});

test('nodePorts: allocated in range, requested ones honoured or refused, kept on update, released on delete or type change', async () => {
  const { store, level } = await open(undefined, { nodePortRange: { min: 30000, max: 30002 } });
  const a = await store.create(svc('a', { type: 'NodePort', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30001 }] }));
  const [http, dns] = a.spec.ports!;
  assert.equal(dns!.nodePort, 30001);
  assert.ok(http!.nodePort === 30000 || http!.nodePort === 30002);
  assert.match(await refusal(store.create(svc('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 30001 }] }))), /spec\.ports\[0\]\.nodePort: 30001 is already allocated \(to Service default\/a\)/);
  assert.match(await refusal(store.create(svc('b', { type: 'NodePort', ports: [{ port: 80, nodePort: 31000 }] }))), /spec\.ports\[0\]\.nodePort: 31000 is outside the NodePort range 30000-30002/);
  // Re-applying the manifest without nodePorts or clusterIP keeps both (kubectl apply of the same file).
  const again = await store.update(svc('a', { type: 'NodePort', ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] }));
  assert.equal(again.spec.clusterIP, a.spec.clusterIP);
  assert.deepEqual(again.spec.ports!.map((p) => p.nodePort), [http!.nodePort, 30001]);
  assert.match(await refusal(store.update(svc('a', { clusterIP: '10.43.9.9', type: 'NodePort', ports: [{ name: 'http', port: 80 }] }))), /spec\.clusterIP: field is immutable/);
  // The range has one port left; a second NodePort Service with two ports does not fit.
  assert.match(await refusal(store.create(svc('c', { type: 'NodePort', ports: [{ name: 'x', port: 1 }, { name: 'y', port: 2 }] }))), /spec\.ports\[1\]\.nodePort: no free port left in the NodePort range 30000-30002/);
  // Turned into a ClusterIP Service (through patch, as kubectl edit does), it gives its node ports back.
  await store.patch('Service', 'default', 'a', (cur) => ({ ...cur, spec: { ...cur.spec, type: 'ClusterIP' } }));
  assert.deepEqual((await store.get('Service', 'default', 'a'))!.spec.ports!.map((p) => p.nodePort), [undefined, undefined]);
  const c = await store.create(svc('c', { type: 'NodePort', ports: [{ name: 'x', port: 1 }, { name: 'y', port: 2 }, { name: 'z', port: 3 }] }));
  assert.deepEqual(c.spec.ports!.map((p) => p.nodePort).sort(), [30000, 30001, 30002]);
  await level.close();
});

test('a restart keeps every allocation: the next Service gets a different address', async () => {
  const first = await open(undefined, { serviceCidr: '10.43.0.0/30', random: () => 0 });
  const a = await first.store.create(svc('a', { ports: [{ port: 80 }] }));
  await first.level.close();
  const second = await open(first.dir, { serviceCidr: '10.43.0.0/30', random: () => 0 });
  const b = await second.store.create(svc('b', { ports: [{ port: 80 }] }));
  assert.notEqual(b.spec.clusterIP, a.spec.clusterIP);
  assert.equal((await second.store.get('Service', 'default', 'a'))!.spec.clusterIP, a.spec.clusterIP);
  await second.level.close();
});

test('flags: CIDR and port range are checked with a message naming the problem', () => {
  assert.deepEqual(parseCidr('10.43.0.0/16'), { network: 0x0a2b0000, prefix: 16, size: 65536 });
  assert.throws(() => parseCidr('10.43.0.1/16'), /host bits set; the block is 10\.43\.0\.0\/16/);
  assert.throws(() => parseCidr('10.43.0.0'), /not an IPv4 CIDR block/);
  assert.deepEqual(parsePortRange('30000-32767'), { min: 30000, max: 32767 });
  assert.throws(() => parsePortRange('32767-30000'), /not a port range/);
});
