/**
 * The registry reads the Node at every status report from the object cache (memory) instead of LevelDB. The
 * cache must never make it decide on an older Node than the store holds: a new boot's hello, written just
 * before its first status, must count for that status; a status from the boot it replaced must be ignored;
 * and a node deleted then joining again must be known at once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encode, type payloads } from '../../src/contract/index.js';
import type { Pod } from '../../src/api/pod.js';
import { silentLogger } from '../../src/util/logger.js';
import { ObjectCache } from '../../server/cache/object-cache.js';
import type { NodeRegistry } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello, podReport } from '../fuzz/agent-reports.js';
import { testRegistry } from '../helpers/registry.js';

let dir: string;
let store: LevelStore;
let cache: ObjectCache;
let registry: NodeRegistry;
let cachedReads = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-registry-cached-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
  cache = await ObjectCache.start(store, ['Pod', 'Node'], silentLogger);
  registry = testRegistry(store, {
    cachedNode: (name) => {
      cachedReads++;
      return cache.get('Node', '', name);
    },
  });
});
after(async () => {
  await registry.close();
  cache.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const status = (bootId: string, seq: number, pods: payloads.PodReport[]): payloads.Status => ({ node: 'edge-1', bootId, seq, observedGeneration: 0, ts: new Date().toISOString(), pods, runtimeHealthy: true, heartbeatSeconds: 600, keepaliveSeconds: 15 });

async function boundPod(name: string): Promise<Pod> {
  return (await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: 'edge-1', containers: [{ name: 'main', image: 'busybox' }] } } as Pod)) as Pod;
}
const phase = async (name: string) => (await store.get('Pod', 'default', name))?.status?.phase;

test("a new boot's first status, straight after its hello, is applied; the old boot's is ignored", async () => {
  const web = await boundPod('web');
  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode(agentHello('edge-1', 'boot-1')));
  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status('boot-1', 1, [podReport(web.metadata.uid!, 'web', 'Running')])));
  assert.equal(await phase('web'), 'Running');
  assert.ok(cachedReads > 0, 'the Node was read from the cache');

  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode(agentHello('edge-1', 'boot-2')));
  // The boot the hello replaced: ignored, though its sequence number is higher.
  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status('boot-1', 9, [podReport(web.metadata.uid!, 'web', 'Failed')])));
  assert.equal(await phase('web'), 'Running');
  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status('boot-2', 1, [podReport(web.metadata.uid!, 'web', 'Failed')])));
  assert.equal(await phase('web'), 'Failed');
});

test('a node deleted and joining again: its first status after the new hello is applied', async () => {
  await store.delete('Node', '', 'edge-1');
  assert.equal(cache.get('Node', '', 'edge-1'), undefined);
  await assert.rejects(registry.handle({ kind: 'status', node: 'edge-1' }, encode(status('boot-2', 2, []))), /status before its hello/);
  const api = await boundPod('api');
  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode(agentHello('edge-1', 'boot-3')));
  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status('boot-3', 1, [podReport(api.metadata.uid!, 'api', 'Running')])));
  assert.equal(await phase('api'), 'Running');
});
