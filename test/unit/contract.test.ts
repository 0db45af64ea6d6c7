import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DELIVERY, decode, encode, parseTopic, payloads, topics } from '../../src/contract/index.js';
import { ValidationError } from '../../src/util/errors.js';

test('topic builders and the parser agree for every node topic', () => {
  for (const kind of ['presence', 'hello', 'desired', 'status', 'events'] as const) {
    assert.deepEqual(parseTopic(topics[kind]('edge-1')), { kind, node: 'edge-1' });
  }
  assert.deepEqual(parseTopic(topics.request('edge-1', 'abc')), { kind: 'request', node: 'edge-1', id: 'abc' });
  assert.deepEqual(parseTopic(topics.response('edge-1', 'abc')), { kind: 'response', node: 'edge-1', id: 'abc' });
  assert.equal(parseTopic('other/v1/nodes/x/hello'), undefined);
  assert.equal(parseTopic(topics.hello('a') + '/extra'), undefined);
});

test('desired state and presence are retained, status is not', () => {
  assert.equal(DELIVERY.desired.retain, true);
  assert.equal(DELIVERY.presence.retain, true);
  assert.equal(DELIVERY.status.retain, false);
  // Everything at least once, but exec: a command must not run late from a broker queue.
  for (const [kind, d] of Object.entries(DELIVERY)) assert.equal(d.qos, kind === 'execRequest' ? 0 : 1, kind);
});

test('decode rejects bad JSON, bad shapes and oversized payloads with the cause', () => {
  assert.throws(() => decode(payloads.presence, Buffer.from('{nope'), 'presence'), (e: unknown) => e instanceof ValidationError && /not JSON/.test(e.message));
  assert.throws(() => decode(payloads.presence, encode({ state: 'sleepy', bootId: 'b', ts: 't' }), 'presence'), (e: unknown) => e instanceof ValidationError && /state/.test(e.message));
  assert.throws(() => decode(payloads.presence, Buffer.alloc(payloads.MAX_PAYLOAD_BYTES + 1), 'presence'), /exceeds/);
  assert.deepEqual(decode(payloads.presence, encode({ state: 'online', bootId: 'b', ts: 't' }), 'presence'), { state: 'online', bootId: 'b', ts: 't' });
});

test('a node cannot make the server keep megabytes: long lists and texts in reports are cut, not refused', () => {
  const hello = {
    agentVersion: '1', contractVersion: 1, node: 'n1', bootId: 'b', arch: 'arm64', os: 'linux', osImage: 'x', kernelVersion: '6',
    hostname: 'h'.repeat(10_000), cpu: { cores: 4, model: 'A72' }, memoryBytes: 1, addresses: ['10.0.0.1'], runtime: { name: 'podman', version: '4' },
    labels: {}, images: Array.from({ length: 40_000 }, (_, i) => `registry.example/app:${i}`),
  };
  const h = decode(payloads.hello, encode(hello), 'hello');
  assert.equal(h.images.length, payloads.REPORT_LIMITS.images);
  assert.equal(h.images[0], 'registry.example/app:0');
  assert.equal(h.hostname.length, payloads.REPORT_LIMITS.shortText);
  const ev = decode(payloads.events, encode({ node: 'n1', events: [{ type: 'Warning', reason: 'R'.repeat(1000), message: 'm'.repeat(100_000), ts: 't', involved: { kind: 'Node', name: 'n1' } }] }), 'events');
  assert.equal(ev.events[0]!.message.length, payloads.REPORT_LIMITS.message);
  assert.equal(ev.events[0]!.reason.length, payloads.REPORT_LIMITS.shortText);
});
