/**
 * Approval and revocation, as an attacker and an operator meet them: with --require-approval a rogue
 * device that holds the join token joins but the broker does not let it in until an admin approves
 * it (a view token cannot); a revoked node is cut off at once, its Node deleted, and it can neither
 * connect nor join again under that name until approved again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { joinCluster } from '../../agent/join.js';
import { silentLogger } from '../../src/util/logger.js';
import { topics } from '../../src/contract/index.js';
import { apiClient } from '../helpers/http.js';
import { drover, fails, ok, rows } from '../helpers/cli.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { connectRefusal, startTestServer, waitFor, type NodeMqttOptions, type TestServer } from '../helpers/cluster.js';

const refusedCode = (o: NodeMqttOptions) => connectRefusal(o.url, o);

const ready = (n: any) => n?.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';

describe('identity: approval and revocation', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ requireApproval: true });
  });
  after(async () => {
    await t?.stop();
  });

  test('a new node waits for approval: the broker refuses it (CONNACK 5) and a view token cannot approve it', async () => {
    const rogue = await t.joinNode('edge-rogue');
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-rogue')).body.state, 'pending');
    assert.equal(await refusedCode(rogue), '5');
    assert.equal((await t.api('GET', '/api/v1/nodes/edge-rogue')).status, 404, 'no Node for a pending device');

    const view = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view' });
    assert.equal(view.status, 201, view.text);
    const asViewer = apiClient(t.apiUrl, view.body.token);
    const refused = await asViewer('POST', '/drover/v1/nodes/edge-rogue/approve', {});
    assert.equal(refused.status, 403, refused.text);
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-rogue')).body.state, 'pending');
    assert.equal(await refusedCode(rogue), '5');
  });

  test('a real agent waiting for approval connects once approved, with no restart', async () => {
    await t.addAgent({ node: 'edge-p', runtime: new FakeRuntime(), reconnectMaxSeconds: 1 });
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-p')).body.state, 'pending');
    assert.equal((await t.api('GET', '/api/v1/nodes/edge-p')).status, 404);
    const approved = await t.api('POST', '/drover/v1/nodes/edge-p/approve', {});
    assert.equal(approved.status, 200, approved.text);
    assert.equal(approved.body.state, 'approved');
    await waitFor('edge-p Ready after approval', async () => ready((await t.api('GET', '/api/v1/nodes/edge-p')).body));
  });

  test('a revoked node is disconnected at once, its Node deleted, and it cannot connect or join again until approved', async () => {
    const r = await t.joinNode('edge-r');
    assert.equal((await t.api('POST', '/drover/v1/nodes/edge-r/approve', {})).status, 200);
    const c = await mqtt.connectAsync(r.url, r);
    await c.subscribeAsync(topics.desired('edge-r'), { qos: 0 });
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    try {
      const revoked = await t.api('POST', '/drover/v1/nodes/edge-r/revoke', {});
      assert.equal(revoked.status, 200, revoked.text);
      assert.equal(revoked.body.state, 'revoked');
      // The session is gone by the time the call returns (the close event follows within the same turn of I/O).
      await closed;
    } finally {
      c.end(true);
    }
    assert.equal((await t.api('GET', '/api/v1/nodes/edge-r')).status, 404);
    assert.equal(await refusedCode(r), '5', 'its certificate is refused');
    await assert.rejects(joinCluster({ apiUrl: t.apiUrl, token: t.joinToken, node: 'edge-r', logger: silentLogger }), /\(403\): node edge-r was revoked; `drover node approve edge-r` lets it join again/);

    // Approved again: the name may join (a new certificate, in at once); the old certificate stays refused.
    assert.equal((await t.api('POST', '/drover/v1/nodes/edge-r/approve', {})).status, 200);
    const again = await t.joinNode('edge-r');
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-r')).body.state, 'approved');
    assert.equal(await refusedCode(r), '4', 'the revoked certificate is not the current one');
    const c2 = await mqtt.connectAsync(again.url, again);
    assert.equal(c2.connected, true);
    await c2.endAsync(true);
  });

  test('drover node list / approve / revoke through the CLI; a view token may list but not approve', async () => {
    await t.joinNode('edge-cli');
    const env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
    const listed = rows(ok(await drover(env, ['node', 'list'])).stdout);
    assert.deepEqual(listed[0]!.slice(0, 2), ['NAME', 'STATE']);
    assert.deepEqual(listed.find((r) => r[0] === 'edge-cli')?.slice(0, 2), ['edge-cli', 'pending']);
    const view = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view' });
    const viewer = { ...env, DROVER_TOKEN: view.body.token };
    ok(await drover(viewer, ['node', 'list']));
    fails(await drover(viewer, ['node', 'approve', 'edge-cli']), /forbidden/i);
    assert.equal(ok(await drover(env, ['node', 'approve', 'edge-cli'])).stdout, 'node edge-cli approved\n');
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-cli')).body.state, 'approved');
    assert.equal(ok(await drover(env, ['node', 'revoke', 'edge-cli'])).stdout, 'node edge-cli revoked\n');
    assert.equal((await t.api('GET', '/drover/v1/nodes/edge-cli')).body.state, 'revoked');
    fails(await drover(env, ['node', 'approve', 'Edge+']), /invalid node name "Edge\+"/);
  });

  test('a real agent revoked while connected stops being a node', async () => {
    const list = await t.api('GET', '/drover/v1/nodes/');
    assert.ok(list.body.items.some((n: any) => n.node === 'edge-p' && n.state === 'approved'));
    assert.equal((await t.api('POST', '/drover/v1/nodes/edge-p/revoke', {})).status, 200);
    assert.equal((await t.api('GET', '/api/v1/nodes/edge-p')).status, 404);
    // Its agent keeps retrying (revoked: CONNACK 5); the Node must not come back from it.
    const back = await waitFor('edge-p to reappear', async () => (await t.api('GET', '/api/v1/nodes/edge-p')).status === 200, 3_000).then(
      () => true,
      () => false,
    );
    assert.equal(back, false);
  });
});
