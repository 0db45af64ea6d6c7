/**
 * Compressed desired state: used only for agents whose hello accepts it, read back by the agent, refused
 * when it would unpack past the payload bound, and sent again as plain JSON to a node whose agent no
 * longer reads it. The publisher's per-node pod index: a change republishes only the nodes it concerns.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { test } from 'node:test';
import { desiredJson } from '../../agent/connection.js';
import { decode, payloads } from '../../src/contract/index.js';
import { DEFLATE_MARKER, MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';
import { DesiredPublisher, encodeDesired } from '../../server/desired/publisher.js';
import { LevelStore } from '../../server/store/level.js';

const pod = (i: number, node = 'edge-1') => ({
  uid: `uid-${i}`,
  namespace: 'default',
  name: `web-${i}`,
  labels: { app: 'web' },
  spec: { restartPolicy: 'Always' as const, terminationGracePeriodSeconds: 30, containers: [{ name: 'main', image: 'registry.example/web:1.4.2', command: ['sh', '-c', 'exec web --port 8080'], env: [{ name: 'MODE', value: 'edge' }], resources: { requests: { cpu: '10m', memory: '8Mi' } } }] },
  nodeName: node,
});
const desired = (n: number): payloads.Desired => ({ node: 'edge-1', generation: 7, pods: Array.from({ length: n }, (_, i) => { const { nodeName: _n, ...p } = pod(i); return p; }), configMaps: [], secrets: [], ts: '2026-01-01T00:00:00.000Z' });

test('a node that accepts DEFLATE gets it, smaller, and its agent reads back the same desired state', () => {
  const d = desired(10);
  const plain = encodeDesired(d, undefined);
  const packed = encodeDesired(d, ['deflate']);
  assert.equal(plain.encoding, 'json');
  assert.equal(packed.encoding, 'deflate');
  assert.equal(packed.payload[0], DEFLATE_MARKER);
  assert.ok(packed.payload.length * 3 < plain.payload.length, `10 pods: ${plain.payload.length} B plain, ${packed.payload.length} B deflated`);
  console.log(`desired state of 10 pods: ${plain.payload.length} B JSON, ${packed.payload.length} B deflated`);
  assert.deepEqual(decode(payloads.desired, desiredJson(packed.payload), 'desired'), decode(payloads.desired, plain.payload, 'desired'));
  assert.equal(desiredJson(plain.payload), plain.payload, 'plain JSON passes as it is');
  assert.equal(encodeDesired(desired(0), ['deflate']).encoding, 'json', 'a tiny snapshot stays plain');
  assert.equal(encodeDesired(d, ['zstd']).encoding, 'json', 'an encoding the server does not know is no reason to compress');
});

test('a small payload that would unpack past the payload bound is refused, not inflated', () => {
  const bomb = Buffer.concat([Buffer.from([DEFLATE_MARKER]), deflateRawSync(Buffer.alloc(MAX_PAYLOAD_BYTES + 1024, 0x20))]);
  assert.ok(bomb.length < 8 * 1024, `${bomb.length} B on the wire`);
  assert.throws(() => desiredJson(bomb), RangeError);
  assert.throws(() => desiredJson(Buffer.from([DEFLATE_MARKER, 1, 2, 3])), 'garbage after the marker');
});

test('the publisher: DEFLATE only after the hello accepted it; plain again at once for an agent that no longer reads it; a pod change republishes its node only', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'drover-desired-compressed-'));
  const store = await LevelStore.open({ path: join(dir, 'db') });
  const sent: Array<{ node: string; pods: number; deflated: boolean }> = [];
  const publisher = new DesiredPublisher({
    store,
    sink: { publishDesired: async (d, encoded) => void sent.push({ node: d.node, pods: d.pods.length, deflated: encoded?.[0] === DEFLATE_MARKER }), clearRetained: async () => {} },
    logger: silentLogger,
    debounceMs: 5,
  });
  const settle = async () => {
    await new Promise((r) => setTimeout(r, 30));
    await publisher.flush();
  };
  try {
    for (const n of ['edge-1', 'edge-2']) await store.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: n }, spec: {} } as never);
    for (let i = 0; i < 10; i++) {
      const { nodeName, ...p } = pod(i, i < 5 ? 'edge-1' : 'edge-2');
      await store.create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: p.name, namespace: 'default', labels: p.labels }, spec: { ...p.spec, nodeName } } as never);
    }
    publisher.encodingsHeard('edge-1', ['deflate']);
    await publisher.start();
    await settle();
    const last = (n: string) => sent.filter((s) => s.node === n).at(-1);
    assert.equal(last('edge-1')?.pods, 5);
    assert.equal(last('edge-1')?.deflated, true, 'edge-1 accepts DEFLATE');
    assert.equal(last('edge-2')?.deflated, false, 'edge-2 said nothing: plain JSON');

    sent.length = 0;
    await store.delete('Pod', 'default', 'web-7');
    await settle();
    assert.deepEqual(sent.map((s) => `${s.node}:${s.pods}`), ['edge-2:4'], 'only the node the pod was on');

    sent.length = 0;
    publisher.encodingsHeard('edge-1', undefined);
    await settle();
    assert.deepEqual(sent, [{ node: 'edge-1', pods: 5, deflated: false }], 'an agent without DEFLATE gets plain JSON again at once');
    publisher.encodingsHeard('edge-2', ['deflate']);
    await settle();
    assert.equal(sent.length, 1, 'newly accepting DEFLATE is no reason to send the same state again');
  } finally {
    await publisher.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
