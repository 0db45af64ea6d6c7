/**
 * Where a Secret must not travel: into the logs of the server or agents (every record at trace
 * level, captured), or into MQTT traffic another node can receive. Two nodes; the pod that uses the
 * Secret is bound to edge-a only; every message the embedded broker routes is recorded (aedes'
 * 'publish' event) and those edge-b may receive (its inbox filters, retained included) are searched.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Aedes } from 'aedes';
import type { RunSpec } from '../../agent/runtime/types.js';
import { topics } from '../../src/contract/index.js';
import { createLogger } from '../../src/util/logger.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { desiredJson } from '../../agent/connection.js';

const VALUE = `leak-canary-${randomBytes(8).toString('hex')}`;
const B64 = Buffer.from(VALUE).toString('base64');
const VALUE2 = `leak-canary-2-${randomBytes(8).toString('hex')}`;
const NEEDLES = [VALUE, B64, VALUE2, Buffer.from(VALUE2).toString('base64')];

/** FakeRuntime that keeps the environment each container was started with. */
class RecordingRuntime extends FakeRuntime {
  readonly envs: Record<string, string>[] = [];
  override async run(spec: RunSpec): Promise<string> {
    this.envs.push(spec.env);
    return super.run(spec);
  }
}

/** MQTT topic filter matching ('+' one level, '#' the rest). */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

const traffic: { topic: string; payload: Buffer }[] = [];
// Every broker the process creates from here on reports what it routes (the server's embedded one).
const createBroker = Aedes.createBroker.bind(Aedes);
Aedes.createBroker = async (opts) => {
  const broker = await createBroker(opts);
  // Desired states go out DEFLATE-compressed to agents that accept it: searched as the agent reads them.
  broker.on('publish', (packet) => traffic.push({ topic: packet.topic, payload: desiredJson(Buffer.from(packet.payload)) }));
  return broker;
};

const pod = (name: string, node: string, withSecret: boolean) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name },
  spec: {
    nodeName: node,
    containers: [
      {
        name: 'main',
        image: 'localhost/app:1',
        ...(withSecret ? { env: [{ name: 'PW', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } }] } : {}),
      },
    ],
  },
});

describe('a Secret never leaks into logs or into another node\'s MQTT traffic', { timeout: 120_000 }, () => {
  const logLines: string[] = [];
  const logStream = new Writable({
    write(chunk, _enc, cb) {
      logLines.push(String(chunk));
      cb();
    },
  });
  const a = new RecordingRuntime();
  const b = new RecordingRuntime();
  let cluster: TestServer;

  before(async () => {
    cluster = await startTestServer({ logger: createLogger({ name: 'test', level: 'trace', destination: logStream }) });
    await cluster.addAgent({ node: 'edge-a', runtime: a });
    await cluster.addAgent({ node: 'edge-b', runtime: b });
    for (const n of ['edge-a', 'edge-b']) {
      await waitFor(`node ${n} registered`, async () => (await cluster.api('GET', `/api/v1/nodes/${n}`)).status === 200);
    }
    const s = await cluster.api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: VALUE } });
    assert.equal(s.status, 201, s.text);
    // Refused writes go through the error paths (and their logs): the value must not ride along.
    const bad = await cluster.api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'bad' }, data: { password: `${VALUE}!` } });
    assert.equal(bad.status, 422, bad.text);
    const dup = await cluster.api('POST', '/api/v1/namespaces/default/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db' }, stringData: { password: VALUE } });
    assert.equal(dup.status, 409, dup.text);
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/default/pods', pod('uses-secret', 'edge-a', true))).status, 201);
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/default/pods', pod('plain', 'edge-b', false))).status, 201);
    await waitFor('edge-a runs the pod with the Secret in its env', async () => a.envs.some((e) => e.PW === VALUE));
    await waitFor('edge-b runs its own pod', async () => b.envs.length > 0);
    // A changed value travels again, to edge-a only.
    const cur = await cluster.api('GET', '/api/v1/namespaces/default/secrets/db');
    const upd = await cluster.api('PUT', '/api/v1/namespaces/default/secrets/db', { ...cur.body, data: { password: Buffer.from(VALUE2).toString('base64') } });
    assert.equal(upd.status, 200, upd.text);
    await waitFor('the new value reaches edge-a', async () => traffic.some((m) => m.payload.includes(Buffer.from(VALUE2).toString('base64'))));
  });
  after(async () => {
    await cluster?.stop();
  });

  test('no record of the server or either agent holds the value (plain or base64), at trace level', () => {
    assert.ok(logLines.length > 20, `captured ${logLines.length} log records`);
    const leaks = logLines.filter((l) => NEEDLES.some((n) => l.includes(n)));
    assert.deepEqual(leaks, []);
  });

  test("nothing edge-b can receive carries the value; edge-a's own traffic does (the capture sees it)", () => {
    const inboxB = topics.agentInbox('edge-b');
    const toB = traffic.filter((m) => inboxB.some((f) => matches(f, m.topic)));
    const toA = traffic.filter((m) => topics.agentInbox('edge-a').some((f) => matches(f, m.topic)));
    assert.ok(toB.length > 0, `edge-b received ${toB.length} messages`);
    assert.ok(toB.some((m) => m.payload.includes('plain')), "edge-b's own desired state is among them");
    const leaks = toB.filter((m) => NEEDLES.some((n) => m.payload.includes(n))).map((m) => m.topic);
    assert.deepEqual(leaks, []);
    assert.ok(toA.some((m) => m.payload.includes(B64)), "control: edge-a's desired state carries the Secret");
    assert.equal(b.envs.some((e) => Object.values(e).some((v) => NEEDLES.includes(v))), false);
  });
});
