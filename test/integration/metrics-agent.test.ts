/**
 * The agent's --metrics-addr on a real agent joined to a real server (embedded broker, TLS) with the fake
 * runtime: after a pod is created through the API and runs, its /metrics shows the reconciles and the
 * runtime's run call, labelled with the runtime and outcome; the server's /metrics counts the agent.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { scrape } from '../../bench/lib/metrics.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import { silentLogger } from '../../src/util/logger.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

const RUNTIME = 'drover_agent_runtime_call_duration_seconds';

describe('agent --metrics-addr', () => {
  let t: TestServer;
  let agent: RunningAgent;
  before(async () => {
    t = await startTestServer();
    agent = await startAgent(
      {
        node: 'am1',
        serverUrl: t.apiUrl,
        token: t.joinToken,
        stateDir: await mkdtemp(join(tmpdir(), 'drover-agent-am1-')),
        labels: {},
        runtime: {},
        heartbeatSeconds: 5,
        resyncSeconds: 2,
        keepaliveSeconds: 5,
        metricsAddress: { host: '127.0.0.1', port: 0 },
      },
      { logger: silentLogger, runtime: new FakeRuntime() },
    );
  });
  after(async () => {
    await agent?.close();
    await t?.stop();
  });

  test('a pod run through the agent: reconcile and runtime call histograms on its /metrics, loopback only', async () => {
    assert.match(agent.metricsUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const created = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'measured' }, spec: { nodeName: 'am1', containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(created.status, 201, created.text);
    await waitFor('pod Running', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/measured')).body?.status?.phase === 'Running');

    const m = await scrape(agent.metricsUrl!);
    const reconciles = m.histogram('drover_agent_reconcile_duration_seconds');
    assert.ok(reconciles.count >= 1, 'reconciles observed');
    assert.equal(reconciles.buckets.at(-1)?.count, reconciles.count);
    assert.equal(m.value('drover_agent_reconciles_total'), reconciles.count);
    assert.ok(m.value(`${RUNTIME}_count`, { runtime: 'fake', verb: 'run', outcome: 'ok' }) >= 1, 'the container run timed');
    assert.equal(m.value(`${RUNTIME}_count`, { outcome: 'error' }), 0);
    assert.ok(m.value('drover_agent_runtime_slots', { figure: 'size' }) >= 1);
    assert.ok(m.value('drover_agent_runtime_slots', { figure: 'peak' }) >= 1);
    assert.ok(m.value('process_resident_memory_bytes') > 0);

    // The server side of the same link.
    const s = await scrape(`${t.apiUrl}/metrics`, t.token);
    assert.equal(s.value('drover_mqtt_connected_agents'), 1);
  });
});
