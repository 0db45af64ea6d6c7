/**
 * Fuzz: over 10,000 generated bad inputs against a real server (HTTPS API, embedded broker over TLS, LevelDB),
 * from a fixed seed. HTTP: paths with attack segments and escapes, methods, headers, bodies truncated, wrongly
 * typed, huge, deeply nested, with bad escapes, unknown kinds, missing fields, duplicate keys, wrong
 * Content-Types. MQTT, as a joined agent: malformed payloads on its own report topics, topics it may not use,
 * filters it may not subscribe to. The server must answer every HTTP input with a 4xx (no 5xx), stay healthy
 * throughout, and its store must hold exactly what it held plus the valid writes.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:https';
import { after, before, describe, test } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { KINDS } from '../../src/api/kinds.js';
import { DELIVERY, encode, topics } from '../../src/contract/index.js';
import { agentHello } from '../fuzz/agent-reports.js';
import { Gen, httpInput, mqttPayload, prng, type HttpInput } from '../fuzz/generate.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

const SEED = 0x5eed_0009;
const HTTP_INPUTS = 9_000;
const MQTT_INPUTS = 3_000;
const CONCURRENCY = 8;
const AGENT = 'fuzz-agent';

interface Sent {
  status: number;
  text: string;
}

describe('fuzz: hostile HTTP and MQTT input', () => {
  let cluster: TestServer;
  let agent: MqttClient;
  let https: Agent;

  const send = (i: HttpInput, via: Agent | false = https): Promise<Sent> => {
    const url = new URL(cluster.apiUrl);
    return new Promise((resolve, reject) => {
      let req;
      try {
        req = request({ host: url.hostname, port: url.port, method: i.method, path: i.path, headers: { ...i.headers, ...(i.body ? { 'content-length': String(i.body.length) } : {}) }, agent: via, ca: cluster.ca });
      } catch (err) {
        return reject(err);
      }
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        // A watch or a followed log streams: the status is what counts; the stream is cut after a moment.
        const cut = setTimeout(() => res.destroy(), 500);
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size < 64 * 1024) chunks.push(c);
        });
        const done = () => {
          clearTimeout(cut);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
      });
      req.on('error', reject);
      req.end(i.body);
    });
  };

  /** Every stored object but Events and Nodes (which the server writes on its own), by kind/namespace/name. */
  const dump = async (): Promise<Map<string, string>> => {
    const out = new Map<string, string>();
    for (const k of KINDS) {
      if (k.kind === 'Event' || k.kind === 'Node') continue;
      const base = k.groupVersion === 'v1' ? '/api/v1' : `/apis/${k.groupVersion}`;
      const r = await cluster.api('GET', `${base}/${k.plural}`);
      assert.equal(r.status, 200, `list ${k.plural}: ${r.text}`);
      for (const o of r.body.items) out.set(`${k.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, JSON.stringify(o));
    }
    return out;
  };

  const healthy = async () => {
    // On its own connection: the fuzz's connections must not be what keeps it from being asked.
    const r = await send({ method: 'GET', path: '/healthz', headers: {} }, false);
    assert.equal(r.status, 200, 'healthz');
  };

  const validHello = (labels: Record<string, string> = {}) => agentHello(AGENT, 'boot-fuzz', labels);

  before(async () => {
    cluster = await startTestServer();
    https = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    for (const ns of ['fuzzns', 'other']) assert.equal((await cluster.api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } })).status, 201);
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/fuzzns/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'keep' }, data: { a: '1' } })).status, 201);
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/fuzzns/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'keep' }, data: { k: 'c2VjcmV0' } })).status, 201);
    assert.equal((await cluster.api('POST', '/api/v1/namespaces/other/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'keep' }, data: { b: '2' } })).status, 201);
    const opts = await cluster.joinNode(AGENT);
    agent = await mqtt.connectAsync(opts.url, opts);
    await agent.publishAsync(topics.hello(AGENT), encode(validHello()), DELIVERY.hello);
    await waitFor('fuzz agent node', async () => (await cluster.api('GET', `/api/v1/nodes/${AGENT}`)).status === 200);
  });
  after(async () => {
    await agent?.endAsync(true).catch(() => undefined);
    https?.destroy();
    await cluster?.stop();
  });

  test(`${HTTP_INPUTS + MQTT_INPUTS}+ generated bad inputs: no 5xx, healthy throughout, store changed only by valid writes`, async () => {
    const started = Date.now();
    const before = await dump();
    const g = new Gen(prng(SEED));

    // --- HTTP ---
    const inputs = Array.from({ length: HTTP_INPUTS }, (_, i) => httpInput(g, i, cluster.token));
    const counts: Record<string, number> = {};
    const codes: Record<number, number> = {};
    const serverErrors: string[] = [];
    const validWrites = new Set<string>();
    const otherWrites = new Set<string>();
    let next = 0;
    let sinceHealth = 0;
    const worker = async () => {
      while (next < inputs.length) {
        const idx = next++;
        const input = inputs[idx]!;
        const r = await send(input);
        codes[r.status] = (codes[r.status] ?? 0) + 1;
        const cls = `${Math.floor(r.status / 100)}xx`;
        counts[cls] = (counts[cls] ?? 0) + 1;
        if (r.status >= 500) serverErrors.push(`#${idx} ${input.method} ${input.path.slice(0, 120)} → ${r.status} ${r.text.slice(0, 200)}`);
        if (input.valid) {
          assert.equal(r.status, 201, `valid write #${idx} ${input.path}: ${r.text.slice(0, 300)}`);
          validWrites.add(`${input.valid.kind}/${input.valid.namespace}/${input.valid.name}`);
        } else if (r.status >= 200 && r.status < 300 && input.method !== 'GET' && input.method !== 'HEAD') {
          // Well-formed by chance (a generated manifest the mutations left valid): a valid write too.
          try {
            const o = JSON.parse(r.text);
            if (o?.metadata?.name) otherWrites.add(`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`);
          } catch {
            otherWrites.add(`${input.method} ${input.path}`);
          }
        }
        if (++sinceHealth >= 250) {
          sinceHealth = 0;
          await healthy();
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    await healthy();
    const httpMs = Date.now() - started;

    // --- MQTT, as the joined agent ---
    const bases: Array<{ topic: string; base: Record<string, unknown>; qos: 0 | 1; retain: boolean }> = [
      { topic: topics.hello(AGENT), base: validHello() as unknown as Record<string, unknown>, ...DELIVERY.hello },
      { topic: topics.status(AGENT), base: { node: AGENT, bootId: 'boot-fuzz', seq: 1, observedGeneration: 0, ts: new Date().toISOString(), pods: [{ uid: 'u', namespace: 'fuzzns', name: 'keep', phase: 'Failed', containers: [] }], runtimeHealthy: true, heartbeatSeconds: 10 }, ...DELIVERY.status },
      { topic: topics.events(AGENT), base: { node: AGENT, journal: 'j', events: [{ type: 'Warning', reason: 'Spoof', message: 'm', ts: new Date().toISOString(), involved: { kind: 'ConfigMap', namespace: 'fuzzns', name: 'keep' }, seq: 1 }], dropped: 0 }, ...DELIVERY.events },
      { topic: topics.presence(AGENT), base: { state: 'offline', bootId: 'boot-other', ts: new Date().toISOString() }, ...DELIVERY.presence },
      { topic: topics.response(AGENT, 'no-such-request'), base: { ok: true, data: { exitCode: 0, output: 'x', timedOut: false } }, qos: 1, retain: false },
    ];
    let mqttSent = 0;
    for (let i = 0; i < MQTT_INPUTS; i++) {
      const b = g.pick(bases);
      // A fresh sequence number, so a status gets past the replay check to the parts behind it.
      if (b.topic === topics.status(AGENT)) b.base.seq = i + 2;
      const payload = mqttPayload(g, b.base);
      // QoS 1 now and then, so the broker has acknowledged (and the server received) what came before.
      if (i % 50 === 0) await agent.publishAsync(b.topic, payload, { qos: 1, retain: false });
      else agent.publish(b.topic, payload, { qos: 0, retain: b.retain && g.chance(0.1) });
      mqttSent++;
      if (i % 500 === 0) await healthy();

    }
    // Topics and filters an agent may not use: the broker refuses them (and drops the publisher).
    const forbidden = [topics.hello('victim'), topics.status('other-node'), topics.desired(AGENT), topics.request(AGENT, 'x'), 'drover/v1/nodes/+/status', 'drover/v1/#', '$SYS/x', 'a'.repeat(65_000), 'drover/v1/nodes/fuzz-agent/status/extra', 'drover/v1/nodes/fuzz-agent/\u0000'];
    for (const topic of forbidden) {
      const opts = await cluster.joinNode(`fuzz-pub-${mqttSent}`);
      const c = await mqtt.connectAsync(opts.url, opts);
      // Refused filters get SUBACK 128; a refused publish closes the connection, so it comes last. Neither
      // answer is awaited for long: the broker may drop the client instead of answering.
      c.on('error', () => undefined);
      c.subscribe([topic || 'x', topics.desired('victim'), 'drover/v1/nodes/+/desired', '#'], { qos: 1 }, () => undefined);
      await new Promise((r) => setTimeout(r, 200));
      try {
        c.publish(topic, encode(validHello()), { qos: 1 }, () => undefined);
      } catch (err) {
        // mqtt.js refuses to send some topics at all (an empty one): the broker never sees them.
        assert.match(String(err), /chunk|topic/i);
      }
      await new Promise((r) => setTimeout(r, 200));
      c.end(true);
      mqttSent++;
    }
    // The agent's reports are handled in order: once this label shows, everything before it was handled.
    await agent.publishAsync(topics.hello(AGENT), encode(validHello({ 'fuzz-done': 'yes' })), DELIVERY.hello);
    await waitFor('fuzz agent hello after the fuzz', async () => (await cluster.api('GET', `/api/v1/nodes/${AGENT}`)).body?.metadata?.labels?.['fuzz-done'] === 'yes', 30_000, 50);
    await healthy();
    assert.equal((await send({ method: 'GET', path: '/readyz', headers: {} })).status, 200, 'the server\'s own MQTT link is still up');

    // --- what the server holds now ---
    const afterDump = await dump();
    const changed: string[] = [];
    for (const [k, v] of before) if (afterDump.get(k) !== v && !otherWrites.has(k)) changed.push(`${k}: ${afterDump.has(k) ? 'modified' : 'deleted'}`);
    const unexplained: string[] = [];
    for (const [k, v] of afterDump) {
      if (before.has(k) || validWrites.has(k) || otherWrites.has(k)) continue;
      // Made by a controller for a valid write (a ReplicaSet of a Deployment, its pods).
      const owners = (JSON.parse(v).metadata.ownerReferences ?? []) as Array<{ kind: string; name: string }>;
      if (owners.length > 0) continue;
      unexplained.push(k);
    }
    const nodes = (await cluster.api('GET', '/api/v1/nodes')).body.items.map((n: any) => n.metadata.name);
    const total = HTTP_INPUTS + mqttSent;
    console.log(
      `fuzz seed ${SEED.toString(16)}: ${total} inputs (${HTTP_INPUTS} HTTP in ${httpMs} ms: ${JSON.stringify(counts)}, by code ${JSON.stringify(codes)}; ${mqttSent} MQTT) in ${Date.now() - started} ms; ` +
        `${validWrites.size} valid writes, ${otherWrites.size} accidental valid writes`,
    );
    assert.ok(total >= 10_000, `at least 10,000 inputs (${total})`);
    assert.deepEqual(serverErrors, [], 'no 5xx');
    assert.deepEqual(changed, [], 'objects stored before are untouched');
    assert.deepEqual(unexplained, [], 'nothing new but the valid writes');
    for (const k of validWrites) assert.ok(afterDump.has(k), `${k} stored`);
    assert.deepEqual(nodes.filter((n: string) => n !== AGENT && !n.startsWith('fuzz-pub-')), [], 'no Node made by the MQTT fuzz');
  });
});
