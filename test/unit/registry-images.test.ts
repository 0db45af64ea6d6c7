/**
 * Issue 15: the agent's report of the server images it has loaded and its transfers in progress lands on
 * its Node (for `get images`, `rollout status` and the rollouts that wait for an image), written only when
 * it changes; a status from an agent that says nothing of images leaves what is stored.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encode, type payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { NodeLiveness } from '../../server/nodes/liveness.js';
import { NodeRegistry } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello } from '../fuzz/agent-reports.js';

let dir: string;
let store: LevelStore;
let registry: NodeRegistry;
const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
let seq = 0;
const status = (extra: Partial<payloads.Status>): payloads.Status => ({
  node: 'edge-1',
  bootId: 'boot-1',
  seq: ++seq,
  observedGeneration: 0,
  ts: new Date().toISOString(),
  pods: [],
  runtimeHealthy: true,
  heartbeatSeconds: 30,
  ...extra,
});

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-registry-images-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
  registry = new NodeRegistry({ store, events: new EventRecorder(store, silentLogger), logger: silentLogger, liveness: new NodeLiveness({ flapThreshold: 5, flapWindowMs: 60_000 }), maxPodsPerNode: 110 });
  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode(agentHello('edge-1', 'boot-1')));
});
after(async () => {
  await registry.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('loaded digests and a transfer in progress reach the Node; unchanged reports write nothing; an older agent\'s status keeps them', async () => {
  const transfer = { digest: D2, name: 'localhost/app:2', bytes: 1_048_576, total: 52_428_800, state: 'fetching' as const };
  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status({ imageDigests: [D1], imageTransfers: [transfer] })));
  let n = (await store.get('Node', '', 'edge-1'))!;
  assert.deepEqual(n.status?.imageDigests, [D1]);
  assert.deepEqual(n.status?.imageTransfers, [transfer]);
  const rv = n.metadata.resourceVersion;

  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status({ imageDigests: [D1], imageTransfers: [transfer] })));
  assert.equal((await store.get('Node', '', 'edge-1'))!.metadata.resourceVersion, rv, 'the same report again: no write');

  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status({})));
  assert.deepEqual((await store.get('Node', '', 'edge-1'))!.status?.imageDigests, [D1], 'a status without the fields (an older agent) leaves them');

  await registry.handle({ kind: 'status', node: 'edge-1' }, encode(status({ imageDigests: [D2, D1], imageTransfers: [] })));
  n = (await store.get('Node', '', 'edge-1'))!;
  assert.deepEqual(n.status?.imageDigests, [D1, D2], 'loaded: both, sorted');
  assert.deepEqual(n.status?.imageTransfers, [], 'the transfer is done');
});

test('a malformed digest in a status is refused by the contract, and nothing of it is stored', async () => {
  await assert.rejects(registry.handle({ kind: 'status', node: 'edge-1' }, encode({ ...status({}), imageDigests: ['../../etc/passwd'] })), /imageDigests/);
  assert.deepEqual((await store.get('Node', '', 'edge-1'))!.status?.imageDigests, [D1, D2]);
});
