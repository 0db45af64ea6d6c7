/**
 * The registry tells its onHello listener (the desired-state publisher, which reads `accepts` to know
 * whether a node reads compressed desired states) about a hello only once the Node is written, and not
 * about a hello that was refused (one on another node's topic).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encode, type payloads } from '../../src/contract/index.js';
import type { NodeRegistry } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello } from '../fuzz/agent-reports.js';
import { testRegistry } from '../helpers/registry.js';

let dir: string;
let store: LevelStore;
const heard: Array<{ node: string; accepts?: string[]; stored: Promise<boolean> }> = [];
let registry: NodeRegistry;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-registry-hello-'));
  store = await LevelStore.open({ path: join(dir, 'db') });
  registry = testRegistry(store, {
    // Whether the Node was already written when the listener heard of it.
    onHello: (node, h) => heard.push({ node, accepts: h.accepts, stored: store.get('Node', '', node).then((n) => n !== undefined) }),
  });
});
after(async () => {
  await registry.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('a hello reaches the listener with its accepts, after its Node is written; again on the next hello', async () => {
  const h: payloads.Hello = { ...agentHello('edge-1', 'boot-1'), accepts: ['deflate'] };
  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode(h));
  await registry.handle({ kind: 'hello', node: 'edge-1' }, encode({ ...h, accepts: undefined }));
  assert.deepEqual(await Promise.all(heard.map(async (x) => [x.node, x.accepts, await x.stored])), [['edge-1', ['deflate'], true], ['edge-1', undefined, true]]);
});

test('a hello naming another node than its topic is refused and not passed on', async () => {
  heard.length = 0;
  await assert.rejects(registry.handle({ kind: 'hello', node: 'edge-2' }, encode(agentHello('edge-3', 'boot-3'))));
  assert.deepEqual(heard, []);
  assert.equal(await store.get('Node', '', 'edge-3'), undefined);
});
