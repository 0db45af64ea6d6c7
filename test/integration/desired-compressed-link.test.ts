/**
 * The desired state on the wire: DEFLATE-compressed for an agent on the cellular profile (its hello
 * accepts it), plain JSON for one on the default profile (compressing Secrets beside what others write
 * into the same message lets sizes hint at them, so only metered links ask). Both agents run their pods.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Aedes } from 'aedes';
import { DEFLATE_MARKER } from '../../src/contract/payloads.js';
import { topics } from '../../src/contract/index.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

const desired: { topic: string; payload: Buffer }[] = [];
const createBroker = Aedes.createBroker.bind(Aedes);
Aedes.createBroker = async (opts) => {
  const broker = await createBroker(opts);
  broker.on('publish', (packet) => {
    if (packet.topic.includes('/desired')) desired.push({ topic: packet.topic, payload: Buffer.from(packet.payload) });
  });
  return broker;
};

describe('desired state encoding per link profile', () => {
  let t: TestServer;
  const cellular = new FakeRuntime();
  const lan = new FakeRuntime();

  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'edge-cell', runtime: cellular, compressDesired: true });
    await t.addAgent({ node: 'edge-lan', runtime: lan });
    for (const [node, pod] of [['edge-cell', 'on-cell'], ['edge-lan', 'on-lan']] as const) {
      const r = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: pod }, spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox', env: [{ name: 'FILLER', value: 'x'.repeat(2000) }] }] } });
      assert.equal(r.status, 201, r.text);
    }
    for (const pod of ['on-cell', 'on-lan']) {
      await waitFor(`${pod} Running`, async () => (await t.api('GET', `/api/v1/namespaces/default/pods/${pod}`)).body?.status?.phase === 'Running');
    }
  });
  after(async () => {
    await t?.stop();
  });

  test('the cellular agent gets its pod spec compressed and runs it; the default agent gets plain JSON', () => {
    const last = (node: string) => desired.filter((m) => m.topic === topics.desired(node)).at(-1)?.payload;
    const cell = last('edge-cell');
    const plain = last('edge-lan');
    assert.ok(cell && plain, `desired states seen: ${desired.map((m) => m.topic).join(', ')}`);
    assert.equal(cell[0], DEFLATE_MARKER, 'the cellular agent accepts DEFLATE');
    assert.ok(cell.length < 1000, `the 2,000-byte env value compressed: ${cell.length} bytes`);
    assert.equal(String.fromCharCode(plain[0]!), '{', 'the default agent asked for nothing: plain JSON');
    assert.ok(plain.includes('x'.repeat(2000)));
  });
});
