/**
 * Runtime call timing against real podman (a private store, no image needed): the calls the agent makes
 * are observed under runtime="podman" with their outcome, a podman failure as an error, on the agent's
 * metrics endpoint.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { scrape } from '../../bench/lib/metrics.js';
import { startAgentMetrics, type AgentMetrics } from '../../agent/metrics.js';
import { timedRuntime } from '../../agent/runtime/timed.js';
import { silentLogger } from '../../src/util/logger.js';
import { podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const RUNTIME = 'drover_agent_runtime_call_duration_seconds';
let sandbox: PodmanSandbox;
let metrics: AgentMetrics;

before(async () => {
  sandbox = await podmanSandbox();
  metrics = await startAgentMetrics({ address: { host: '127.0.0.1', port: 0 }, logger: silentLogger });
});
after(async () => {
  await metrics?.close();
  await sandbox?.cleanup();
});

test('podman calls timed by verb and outcome: version, list and inspect ok, a start of a missing container an error', async () => {
  const rt = timedRuntime(sandbox.runtime, metrics);
  assert.match(await rt.version(), /\d+\.\d+/);
  assert.deepEqual(await rt.list({ 'drover.test': 'metrics' }), []);
  assert.equal(await rt.inspect('drover-metrics-missing'), undefined);
  await assert.rejects(rt.start('drover-metrics-missing'));

  const m = await scrape(metrics.url);
  for (const verb of ['version', 'list', 'inspect']) assert.equal(m.value(`${RUNTIME}_count`, { runtime: 'podman', verb, outcome: 'ok' }), 1, verb);
  assert.equal(m.value(`${RUNTIME}_count`, { runtime: 'podman', verb: 'start', outcome: 'error' }), 1);
  // A podman process takes real time: the sum is that of four process runs, not zero.
  assert.ok(m.value(`${RUNTIME}_sum`, { runtime: 'podman' }) > 0);
});
