/**
 * The agent's metrics: --metrics-addr parsing (loopback unless allowed), the HTTP endpoint (only
 * GET /metrics), runtime calls timed by verb and outcome through the wrapper, reconcile durations, and
 * prom-client left unloaded until metrics are asked for.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { Metrics, parseExposition } from '../../bench/lib/metrics.js';
import { parseMetricsAddress, startAgentMetrics, type AgentMetrics } from '../../agent/metrics.js';
import { Slots, boundedRuntime } from '../../agent/runtime/bounded.js';
import { timedRuntime } from '../../agent/runtime/timed.js';
import type { RunSpec } from '../../agent/runtime/types.js';
import { silentLogger } from '../../src/util/logger.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

const RUNTIME = 'drover_agent_runtime_call_duration_seconds';

describe('--metrics-addr', () => {
  test('a bare port is loopback; loopback hosts are taken as given', () => {
    assert.deepEqual(parseMetricsAddress('9100'), { host: '127.0.0.1', port: 9100 });
    assert.deepEqual(parseMetricsAddress('127.0.0.1:9101'), { host: '127.0.0.1', port: 9101 });
    assert.deepEqual(parseMetricsAddress('127.0.0.2:9101'), { host: '127.0.0.2', port: 9101 });
    assert.deepEqual(parseMetricsAddress('localhost:9102'), { host: 'localhost', port: 9102 });
    assert.deepEqual(parseMetricsAddress('[::1]:9103'), { host: '::1', port: 9103 });
  });

  test('any other address, every interface included, is refused naming the flag and why, unless allowed', () => {
    for (const v of [':9100', '0.0.0.0:9100', '192.168.1.5:9100', '[::]:9100', 'edge.example:9100', '127.0.0.1.nip.io:9100']) {
      assert.throws(() => parseMetricsAddress(v), (err: Error) => /--metrics-addr: .* is not a loopback address: .*no authentication.*--metrics-allow-remote/.test(err.message), v);
    }
    assert.deepEqual(parseMetricsAddress(':9100', { allowRemote: true }), { host: '0.0.0.0', port: 9100 });
    assert.deepEqual(parseMetricsAddress('192.168.1.5:9100', { allowRemote: true }), { host: '192.168.1.5', port: 9100 });
  });

  test('what is not an address is refused naming the flag', () => {
    for (const v of ['', 'abc', '9100:', '127.0.0.1', '127.0.0.1:http', '70000', '1.2.3.4:99999', '[::1:9100']) {
      assert.throws(() => parseMetricsAddress(v, { allowRemote: true }), /--metrics-addr/, JSON.stringify(v));
    }
  });
});

describe('agent metrics endpoint', () => {
  let m: AgentMetrics;
  after(async () => {
    await m?.close();
  });
  const spec = (name: string): RunSpec => ({ name, image: 'busybox', env: {}, ports: [], labels: { app: 'm' } });

  test('runtime calls by verb and outcome, reconciles, the call bound and the process, on GET /metrics only', async () => {
    m = await startAgentMetrics({ address: { host: '127.0.0.1', port: 0 }, logger: silentLogger });
    assert.match(m.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const fake = new FakeRuntime();
    const slots = new Slots(2);
    // As the agent wires it: timed inside the bound.
    const rt = boundedRuntime(timedRuntime(fake, m), slots);
    m.watchSlots(slots);
    const id = await rt.run(spec('a'));
    await rt.list({ app: 'm' });
    await rt.stop(id, 1);
    await rt.remove(id);
    await assert.rejects(rt.run({ ...spec('b') }).then(() => rt.run(spec('b'))), /already in use/);
    assert.equal(rt.watchExits, undefined, 'an optional method the runtime lacks stays absent');
    assert.equal(typeof rt.stats, 'function');
    m.reconcile(0.004);
    m.reconcile(0.2);

    const res = await fetch(m.url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const got = new Metrics(parseExposition(await res.text()));
    assert.equal(got.value(`${RUNTIME}_count`, { runtime: 'fake', verb: 'run', outcome: 'ok' }), 2);
    assert.equal(got.value(`${RUNTIME}_count`, { runtime: 'fake', verb: 'run', outcome: 'error' }), 1);
    for (const verb of ['list', 'stop', 'remove']) assert.equal(got.value(`${RUNTIME}_count`, { verb, outcome: 'ok' }), 1, verb);
    const r = got.histogram('drover_agent_reconcile_duration_seconds');
    assert.equal(r.count, 2);
    assert.ok(Math.abs(r.sum - 0.204) < 1e-9);
    assert.equal(r.buckets.find((b) => b.le === 0.005)?.count, 1, 'the 4 ms reconcile in the 5 ms bucket');
    assert.equal(got.value('drover_agent_reconciles_total'), 2);
    assert.equal(got.value('drover_agent_runtime_slots', { figure: 'size' }), 2);
    assert.equal(got.value('drover_agent_runtime_slots', { figure: 'peak' }), 1);
    assert.ok(got.value('process_resident_memory_bytes') > 0);

    assert.equal((await fetch(m.url.replace('/metrics', '/'))).status, 404);
    assert.equal((await fetch(m.url.replace('/metrics', '/metrics/x'))).status, 404);
    assert.equal((await fetch(m.url, { method: 'POST', body: 'x' })).status, 405);
  });

  test('a port in use is an error naming the flag', async () => {
    const port = Number(new URL(m.url).port);
    await assert.rejects(startAgentMetrics({ address: { host: '127.0.0.1', port }, logger: silentLogger }), /--metrics-addr: cannot serve metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
  });
});

test('prom-client is not loaded by the agent until metrics are asked for', async () => {
  // A fresh process: this one has loaded it already.
  const script = `
    import { createRequire } from 'node:module';
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/node_modules/prom-client/'));
    await import('./agent/run.ts');
    const { startAgentMetrics } = await import('./agent/metrics.ts');
    const before = loaded();
    const m = await startAgentMetrics({ address: { host: '127.0.0.1', port: 0 }, logger: (await import('./src/util/logger.ts')).silentLogger });
    console.log(JSON.stringify({ before, after: loaded() }));
    await m.close();
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: new URL('../..', import.meta.url).pathname, timeout: 60_000 });
  assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1)!), { before: false, after: true });
});
