/**
 * MQTT command round trip: publish `get nodes` on drover/v1/cmd/get, wait for its reply, N times in a
 * row over one connection, against the embedded broker (TLS, the publisher's identity from its token)
 * and against a real Mosquitto (TLS, token in the request, MQTT 5 response topic), next to the same
 * GET over HTTPS. The server is the real one (LevelDB, API, broker), with 50 Nodes stored.
 * Run: node --import tsx bench/mqtt-commands.ts [--runs 50] [--nodelay]   → writes bench/results/mqtt-commands.json
 * (--nodelay: the benchmark's client turns Nagle off, as a script sending many commands on one connection should;
 * without it each command after the first waits for a delayed ACK, ~40 ms, on the client's side.)
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { topics } from '../src/contract/topics.js';
import { startTestServer, type TestServer } from '../test/helpers/cluster.js';
import { startOperatorMosquitto } from '../test/helpers/mosquitto.js';
import { median, numArg, parseArgs, percentile, round, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));
const RUNS = numArg(args, 'runs', 50);
const NODES = 50;
/** A client as a script would use it; `--nodelay` turns Nagle off on its socket, as mosquitto_pub --nodelay does. */
const NO_DELAY = args.has('nodelay');

async function seed(t: TestServer): Promise<void> {
  for (let i = 0; i < NODES; i++) {
    const r = await t.api('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: `edge-${i}`, labels: { site: `s${i % 5}` } }, spec: {} });
    if (r.status !== 201) throw new Error(`seeding node: ${r.status} ${r.text}`);
  }
}

/** N sequential round trips; each the time from publish to its reply's arrival. */
async function roundTrips(c: MqttClient, request: (i: number) => { payload: string; properties?: mqtt.IClientPublishOptions['properties'] }, replyTopic: string): Promise<number[]> {
  await c.subscribeAsync(replyTopic, { qos: 1 });
  const out: number[] = [];
  for (let i = 0; i < RUNS + 5; i++) {
    const { payload, properties } = request(i);
    const t0 = performance.now();
    const reply = new Promise<void>((resolve, reject) => {
      const on = (_t: string, p: Buffer) => {
        const r = JSON.parse(p.toString()) as { transaction: string; ok: boolean; error?: unknown };
        if (r.transaction !== `b${i}`) return;
        c.off('message', on);
        if (!r.ok) reject(new Error(JSON.stringify(r.error)));
        else resolve();
      };
      c.on('message', on);
    });
    await c.publishAsync(topics.command('get'), payload, { qos: 1, ...(properties ? { properties } : {}) });
    await reply;
    // The first five warm up (TLS session, JIT), as a user's first command would not be typical either.
    if (i >= 5) out.push(performance.now() - t0);
  }
  return out;
}

const stats = (ms: number[]) => ({ runs: ms.length, medianMs: round(median(ms), 2), p90Ms: round(percentile(ms, 90), 2), maxMs: round(Math.max(...ms), 2) });

async function embedded(): Promise<Record<string, unknown>> {
  const t = await startTestServer();
  try {
    await seed(t);
    const c = await mqtt.connectAsync(t.mqttUrl, { clientId: 'bench-ops', username: 'bench', password: t.token, ca: t.ca, protocolVersion: 4, reconnectPeriod: 0 });
    if (NO_DELAY) (c.stream as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
    const mqttMs = await roundTrips(c, (i) => ({ payload: JSON.stringify({ transaction: `b${i}`, kind: 'nodes' }) }), topics.commandResponse('get', 'bench-ops'));
    await c.endAsync();
    const httpMs: number[] = [];
    for (let i = 0; i < RUNS + 5; i++) {
      const t0 = performance.now();
      const r = await t.api('GET', '/api/v1/nodes');
      if (r.status !== 200) throw new Error(`GET nodes ${r.status}`);
      if (i >= 5) httpMs.push(performance.now() - t0);
    }
    return { mqtt: stats(mqttMs), https: stats(httpMs) };
  } finally {
    await t.stop();
  }
}

async function external(): Promise<Record<string, unknown>> {
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-bench-mqtt-'));
  const mosq = await startOperatorMosquitto(dataDir, { bench: 'bench-password' });
  const t = await startTestServer({ dataDir, brokerUrl: mosq.url });
  try {
    await seed(t);
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${mosq.operatorPort}`, { clientId: 'bench-5', username: 'bench', password: 'bench-password', ca: t.ca, protocolVersion: 5, reconnectPeriod: 0 });
    if (NO_DELAY) (c.stream as unknown as { setNoDelay(v: boolean): void }).setNoDelay(true);
    const replyTopic = topics.commandResponse('get', 'bench');
    const mqttMs = await roundTrips(c, (i) => ({ payload: JSON.stringify({ transaction: `b${i}`, token: t.token, kind: 'nodes' }), properties: { responseTopic: replyTopic, correlationData: Buffer.from(String(i)) } }), replyTopic);
    await c.endAsync();
    return { mqtt: stats(mqttMs) };
  } finally {
    await t.stop();
    await mosq.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

const result = { what: `get nodes (${NODES} Nodes) round trip, ${RUNS} sequential runs after 5 warm-up`, clientNoDelay: NO_DELAY, embedded: await embedded(), mosquitto: await external() };
console.log(JSON.stringify(result, null, 2));
console.log(`written to ${writeResult('mqtt-commands', result)}`);
