/**
 * GET /metrics on a real server (LevelDB, embedded aedes over TLS, HTTPS API) with a real agent on the
 * MQTT link (fake runtime): a pod created through the API shows up as the figures a Prometheus user
 * reads (API histogram by verb/resource/code, store writes and group commits, MQTT messages and bytes
 * per direction, connected agents, desired-state publishes, scheduler binds, process figures); strangers
 * and join tokens get 401 and no figures; a view token reads them; labels never carry what a client sent.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Metrics, parseExposition } from '../../bench/lib/metrics.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';

const API = 'drover_apiserver_request_duration_seconds';

async function get(t: TestServer, token?: string): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(`${t.apiUrl}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

async function scrape(t: TestServer, token = t.token): Promise<Metrics> {
  const r = await get(t, token);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  return new Metrics(parseExposition(r.text));
}

describe('server /metrics', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
    await t.addAgent({ node: 'm1', runtime: new FakeRuntime() });
    await waitFor('node m1 Ready', async () => (await t.api('GET', '/api/v1/nodes/m1')).body?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'));
  });
  after(async () => {
    await t?.stop();
  });

  test('a pod created through the API is counted: POST 201, store writes, group commits, MQTT in/out, one agent, a desired publish, a bind', async () => {
    const m0 = await scrape(t);
    const created = await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'counted' }, spec: { containers: [{ name: 'main', image: 'busybox' }] } });
    assert.equal(created.status, 201, created.text);
    await waitFor('pod Running', async () => (await t.api('GET', '/api/v1/namespaces/default/pods/counted')).body?.status?.phase === 'Running');
    // The status report that made it Running came in over MQTT; the scrape after it must see it.
    const m1 = await scrape(t);
    const grew = (name: string, match: Record<string, string> = {}) => m1.value(name, match) - m0.value(name, match);

    assert.ok(grew(`${API}_count`, { verb: 'create', resource: 'pods', code: '201' }) >= 1, 'the POST counted with code 201');
    assert.ok(grew(`${API}_count`, { verb: 'get', resource: 'pods', code: '200' }) >= 1, 'the polling GETs counted');
    const post = m1.histogram(API, { verb: 'create', resource: 'pods', code: '201' });
    assert.equal(post.buckets.at(-1)?.le, Infinity);
    assert.equal(post.buckets.at(-1)?.count, post.count, 'the +Inf bucket holds every observation');
    assert.ok(post.sum > 0);

    // The create, the bind (patch) and the agent's status (patch or update) are store writes.
    assert.ok(grew('drover_store_write_duration_seconds_count', { operation: 'create', result: 'ok' }) >= 1, 'store create observed');
    assert.ok(grew('drover_store_write_duration_seconds_count', { result: 'ok' }) >= 3, 'create, bind and status writes observed');
    assert.ok(grew('drover_store_commit_batch_writes_count') >= 1, 'group commits observed');
    assert.ok(grew('drover_store_commit_batch_writes_sum') >= grew('drover_store_commit_batch_writes_count'), 'each commit holds at least one write');
    assert.ok(grew('drover_store_commit_duration_seconds_count') >= 1);

    for (const direction of ['in', 'out']) {
      assert.ok(grew('drover_mqtt_messages_total', { direction }) >= 1, `MQTT messages ${direction}`);
      assert.ok(grew('drover_mqtt_publish_bytes_total', { direction }) > 0, `MQTT publish bytes ${direction}`);
      assert.ok(grew('drover_mqtt_wire_bytes_total', { direction }) > 0, `MQTT wire bytes ${direction}`);
    }
    // The desired state went out to the agent; its status came in from it.
    assert.ok(grew('drover_mqtt_messages_total', { direction: 'out', client: 'agent' }) >= 1);
    assert.ok(grew('drover_mqtt_messages_total', { direction: 'in', client: 'agent' }) >= 1);
    // Framing, TLS and acknowledgements make the wire heavier than the publishes it carries.
    assert.ok(m1.value('drover_mqtt_wire_bytes_total', { direction: 'in' }) > m1.value('drover_mqtt_publish_bytes_total', { direction: 'in' }));
    assert.equal(m1.value('drover_mqtt_connected_agents'), 1);
    assert.equal(m1.value('drover_mqtt_connected_clients', { client: 'server' }), 1);
    assert.ok(grew('drover_desired_state_publishes_total', { result: 'ok' }) >= 1, 'desired state published');
    assert.ok(grew('drover_scheduler_schedule_attempts_total', { result: 'scheduled' }) >= 1, 'the bind counted');

    assert.ok(m1.value('process_resident_memory_bytes') > 10 * 2 ** 20, 'process RSS reported');
    assert.ok(m1.series('process_cpu_seconds_total').length === 1);
    assert.ok(m1.series('nodejs_eventloop_lag_p99_seconds').length === 1);
  });

  test('the start of the server is timed phase by phase, in the order it ran, and the phases add up to no more than its uptime', async () => {
    const m = await scrape(t);
    const phases = m.series('drover_server_start_phase_seconds');
    assert.deepEqual(
      phases.map((p) => p.labels.phase).sort(),
      ['api', 'broker', 'cache', 'controllers', 'desired-publisher', 'fleet-publisher', 'identity', 'link', 'scheduler', 'store'].sort(),
    );
    const sum = phases.reduce((n, p) => n + p.value, 0);
    assert.ok(phases.every((p) => p.value >= 0) && sum > 0, JSON.stringify(phases));
    assert.ok(sum <= process.uptime(), `phases sum to ${sum} s, more than the process has been up (${process.uptime()} s)`);
  });

  test('without a token, with a wrong one or a join token: 401 and no figures; a view token reads them', async () => {
    for (const token of [undefined, 'not-a-token', t.joinToken.split('::')[1]!]) {
      const r = await get(t, token);
      assert.equal(r.status, 401, `token ${token === undefined ? 'none' : 'given'}: ${r.text.slice(0, 200)}`);
      assert.doesNotMatch(r.text, /drover_|process_/);
    }
    const made = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view', description: 'prometheus' });
    assert.equal(made.status, 201, made.text);
    const r = await get(t, made.body.token);
    assert.equal(r.status, 200);
    assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/);
    assert.ok(parseExposition(r.text).some((s) => s.name === `${API}_count`));
  });

  test('labels carry no object names or raw paths: a burst of distinct names adds no series', async () => {
    const marker = `zz${Date.now().toString(36)}`;
    const before = (await scrape(t)).series(`${API}_count`).length;
    for (let i = 0; i < 5; i++) {
      await t.api('GET', `/api/v1/namespaces/default/pods/${marker}-${i}`);
      await t.api('GET', `/api/v1/namespaces/${marker}${i}/configmaps/x/${marker}`);
      await t.api('GET', `/${marker}/${i}`);
      await t.api('GET', `/drover/v1/nodes/${marker}-${i}`);
    }
    const m = await scrape(t);
    const leaked = m.samples.filter((s) => Object.values(s.labels).some((v) => v.includes(marker)));
    assert.deepEqual(leaked, []);
    // A second round of the same shapes with new names: at most the few new (verb, resource, code) series of the first.
    const mid = m.series(`${API}_count`).length;
    for (let i = 5; i < 10; i++) {
      await t.api('GET', `/api/v1/namespaces/default/pods/${marker}-${i}`);
      await t.api('GET', `/api/v1/namespaces/${marker}${i}/configmaps/x/${marker}`);
      await t.api('GET', `/${marker}/${i}`);
      await t.api('GET', `/drover/v1/nodes/${marker}-${i}`);
    }
    assert.equal((await scrape(t)).series(`${API}_count`).length, mid, 'no new series for new names');
    assert.ok(mid - before <= 8, `a few series for the new shapes, got ${mid - before}`);
  });

  test('each server has its own registry: a second server in the same process starts from zero', async () => {
    const other = await startTestServer();
    try {
      const m = await scrape(other);
      assert.equal(m.value(`${API}_count`, { verb: 'create', resource: 'pods' }), 0);
      assert.equal(m.value('drover_mqtt_connected_agents'), 0);
      assert.ok((await scrape(t)).value(`${API}_count`, { verb: 'create', resource: 'pods' }) >= 1);
    } finally {
      await other.stop();
    }
  });
});
