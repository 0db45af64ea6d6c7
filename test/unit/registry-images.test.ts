/**
 * Issue 15: the agent's report of the server images it has loaded and its transfers in progress lands on
 * its Node (for `get images`, `rollout status` and the rollouts that wait for an image), written only when
 * it changes; a status from an agent that says nothing of images leaves what is stored.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { encode } from '../../src/contract/index.js';
import { registryWithNode, type RegistryFixture } from '../helpers/registry.js';

let fx: RegistryFixture;
const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;

before(async () => {
  fx = await registryWithNode('drover-registry-images-');
});
after(async () => {
  await fx.close();
});

test('loaded digests and a transfer in progress reach the Node; unchanged reports write nothing; an older agent\'s status keeps them', async () => {
  const transfer = { digest: D2, name: 'localhost/app:2', bytes: 1_048_576, total: 52_428_800, state: 'fetching' as const };
  await fx.report({ imageDigests: [D1], imageTransfers: [transfer] });
  let n = await fx.node();
  assert.deepEqual(n.status?.imageDigests, [D1]);
  assert.deepEqual(n.status?.imageTransfers, [transfer]);
  const rv = n.metadata.resourceVersion;

  await fx.report({ imageDigests: [D1], imageTransfers: [transfer] });
  assert.equal((await fx.node()).metadata.resourceVersion, rv, 'the same report again: no write');

  await fx.report({});
  assert.deepEqual((await fx.node()).status?.imageDigests, [D1], 'a status without the fields (an older agent) leaves them');

  await fx.report({ imageDigests: [D2, D1], imageTransfers: [] });
  n = await fx.node();
  assert.deepEqual(n.status?.imageDigests, [D1, D2], 'loaded: both, sorted');
  assert.deepEqual(n.status?.imageTransfers, [], 'the transfer is done');
});

test('a malformed digest in a status is refused by the contract, and nothing of it is stored', async () => {
  await assert.rejects(fx.registry.handle({ kind: 'status', node: 'edge-1' }, encode({ ...fx.status({}), imageDigests: ['../../etc/passwd'] })), /imageDigests/);
  assert.deepEqual((await fx.node()).status?.imageDigests, [D1, D2]);
});
