import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { EndpointSlice } from '../../src/api/service.js';
import { parseObject } from '../../src/api/validate.js';
import { silentLogger } from '../../src/util/logger.js';
import { endpointsController } from '../../server/controllers/endpoints.js';
import { ControllerRunner } from '../../server/controllers/runner.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { withServiceAllocation } from '../../server/services/allocate.js';
import { LevelStore } from '../../server/store/level.js';
import type { Store } from '../../server/store/types.js';
import { waitFor } from '../helpers/cluster.js';

let dir: string;
let level: LevelStore;
let store: Store;
let runner: ControllerRunner;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'svc-ctl-'));
  level = await LevelStore.open({ path: join(dir, 'db') });
  store = withServiceAllocation(level);
  await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
  for (const n of ['a', 'b']) await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
  const deps = { store, events: new EventRecorder(store, silentLogger), logger: silentLogger, now: () => Date.now() };
  // A long resync: what the test sees comes from the watches, not from a periodic sweep.
  runner = new ControllerRunner({ store, logger: silentLogger, controllers: [endpointsController(deps)], resyncMs: 600_000 });
  await runner.start();
});

after(async () => {
  await runner.stop();
  await level.close();
  await rm(dir, { recursive: true, force: true });
});

async function readyIPs(): Promise<string[]> {
  const slices = (await store.list('EndpointSlice', 'default')).items as EndpointSlice[];
  return slices.filter((s) => s.metadata.labels?.['kubernetes.io/service-name'] === 'web').flatMap((s) => s.endpoints.filter((e) => e.conditions.ready).map((e) => e.addresses[0]!)).sort();
}

async function runPod(name: string, node: string, ip: string, ready = true): Promise<void> {
  await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app: 'web' } }, spec: { nodeName: node, containers: [{ name: 'c', image: 'x' }] } });
  await setReady(name, ready, ip);
}

async function setReady(name: string, ready: boolean, ip?: string): Promise<void> {
  await store.patch('Pod', 'default', name, (p) => ({ ...p, status: { phase: 'Running', ...(ip ? { podIP: ip } : { podIP: (p.status as { podIP?: string }).podIP }), conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } }));
}

test('slices follow pods becoming ready and unready, relabelled pods, a node going NotReady, and the Service being deleted', async () => {
  const svc = parseObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } }).object;
  await store.create(svc);
  await runPod('p1', 'a', '10.88.0.2');
  await runPod('p2', 'b', '10.88.1.2', false);
  await waitFor('p1 ready, p2 listed not ready', async () => (await readyIPs()).join() === '10.88.0.2');
  await setReady('p2', true);
  await waitFor('p2 ready', async () => (await readyIPs()).join() === '10.88.0.2,10.88.1.2');
  await store.patch('Node', '', 'b', (n) => ({ ...n, status: { conditions: [{ type: 'Ready', status: 'Unknown' }] } }));
  await waitFor('node b Unknown: p2 out of service', async () => (await readyIPs()).join() === '10.88.0.2');
  await store.patch('Node', '', 'b', (n) => ({ ...n, status: { conditions: [{ type: 'Ready', status: 'True' }] } }));
  await waitFor('node b back', async () => (await readyIPs()).join() === '10.88.0.2,10.88.1.2');
  await store.patch('Pod', 'default', 'p1', (p) => ({ ...p, metadata: { ...p.metadata, labels: { app: 'other' } } }));
  await waitFor('relabelled p1 gone', async () => (await readyIPs()).join() === '10.88.1.2');
  // A managed slice deleted by hand is put back.
  const [slice] = (await store.list('EndpointSlice', 'default')).items;
  await store.delete('EndpointSlice', 'default', slice!.metadata.name);
  await waitFor('slice back', async () => (await readyIPs()).join() === '10.88.1.2');
  await store.delete('Service', 'default', 'web');
  await waitFor('slices gone with the Service', async () => (await store.list('EndpointSlice', 'default')).items.length === 0);
});
