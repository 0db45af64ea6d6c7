/**
 * The default link: heartbeats every 10 minutes with no unchanged pod reports, liveness timed by the
 * MQTT keepalive (pings), usage measured only when the server asks. A dead agent must still be seen as
 * soon as before (NotReady after 90 s of silence at the defaults), a live one never marked late between
 * its rare heartbeats, and an agent or server of the old kind must keep working with the new one.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGENT_DEFAULTS, type AgentConfig } from '../../agent/config.js';
import { EventJournal } from '../../agent/journal.js';
import { Reporter } from '../../agent/reporter.js';
import { UsageSampler } from '../../agent/usage.js';
import { LABELS } from '../../agent/engine/naming.js';
import type { ContainerRuntime, RuntimeContainer } from '../../agent/runtime/types.js';
import { encode, type payloads } from '../../src/contract/index.js';
import { silentLogger } from '../../src/util/logger.js';
import { EventRecorder } from '../../server/events/recorder.js';
import { MetricsCache } from '../../server/metrics/cache.js';
import { decideLifecycle, type LifecyclePolicy } from '../../server/nodes/lifecycle.js';
import { NodeLiveness } from '../../server/nodes/liveness.js';
import { NodeRegistry, livenessPeriodSeconds } from '../../server/nodes/registry.js';
import { LevelStore } from '../../server/store/level.js';
import { agentHello as hello, podReport as report } from '../fuzz/agent-reports.js';
import { DEFAULTS, NODE_LIFECYCLE } from '../../server/config.js';

const POLICY: LifecyclePolicy = { missedHeartbeats: DEFAULTS.missedHeartbeats, lateFactor: NODE_LIFECYCLE.lateFactor, flapWindowMs: 60_000 };

test('the liveness period: two keepalives where the server hears pings, the heartbeat otherwise and for older agents', () => {
  assert.equal(livenessPeriodSeconds({ heartbeatSeconds: 600, keepaliveSeconds: 15 }, true), 30, 'the default agent: as when heartbeats came every 30 s');
  assert.equal(livenessPeriodSeconds({ heartbeatSeconds: 3600, keepaliveSeconds: 300 }, true), 600, 'cellular');
  assert.equal(livenessPeriodSeconds({ heartbeatSeconds: 10, keepaliveSeconds: 15 }, true), 10, 'never longer than the heartbeat');
  assert.equal(livenessPeriodSeconds({ heartbeatSeconds: 30 }, true), 30, 'an agent older than the field');
  assert.equal(livenessPeriodSeconds({ heartbeatSeconds: 600, keepaliveSeconds: 15 }, false), 600, 'an external broker: pings unseen');
});

describe('a dead agent is seen as soon as before; a live one is never late between heartbeats', () => {
  let dir: string;
  let store: LevelStore;
  let nowMs = Date.parse('2026-01-01T12:00:00Z');
  const t0 = nowMs;
  const liveness = new NodeLiveness({ flapThreshold: 5, flapWindowMs: 60_000 });
  let registry: NodeRegistry;
  const status = (node: string, seq: number, extra: Partial<payloads.Status>): payloads.Status => ({
    node,
    bootId: `boot-${node}`,
    seq,
    observedGeneration: 0,
    ts: new Date(nowMs).toISOString(),
    pods: [],
    runtimeHealthy: true,
    heartbeatSeconds: 30,
    ...extra,
  });
  const decide = async (node: string, atMs: number) => decideLifecycle({ node: (await store.get('Node', '', node))!, beat: liveness.beat(node), lastDisconnectMs: undefined, nowMs: atMs, policy: POLICY });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-link-heartbeat-'));
    store = await LevelStore.open({ path: join(dir, 'db') });
    registry = new NodeRegistry({ store, events: new EventRecorder(store, silentLogger), logger: silentLogger, liveness, maxPodsPerNode: 110, pingsCarryLiveness: true, now: () => nowMs });
    for (const n of ['new-agent', 'old-agent', 'pinging']) {
      await registry.handle({ kind: 'hello', node: n }, encode(hello(n, `boot-${n}`)));
    }
    // Today's agent (heartbeat 30 s, no keepalive field) and the new default (heartbeat 600 s, keepalive 15 s).
    await registry.handle({ kind: 'status', node: 'old-agent' }, encode(status('old-agent', 1, { heartbeatSeconds: 30 })));
    await registry.handle({ kind: 'status', node: 'new-agent' }, encode(status('new-agent', 1, { heartbeatSeconds: 600, keepaliveSeconds: 15 })));
    await registry.handle({ kind: 'status', node: 'pinging' }, encode(status('pinging', 1, { heartbeatSeconds: 600, keepaliveSeconds: 15 })));
  });
  after(async () => {
    await registry?.close();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('silent after its status: NotReady at the same second as an agent heartbeating every 30 s', async () => {
    for (const n of ['old-agent', 'new-agent']) {
      const early = await decide(n, t0 + 89_000);
      assert.equal(early.notReady, undefined, `${n}: not yet at 89 s`);
      assert.equal(early.late?.set, true, `${n}: late after 45 s`);
      assert.equal((await decide(n, t0 + 44_000)).late, undefined, `${n}: not late at 44 s`);
      const lost = await decide(n, t0 + 91_000);
      assert.equal(lost.notReady?.status, 'False', `${n}: NotReady after 90 s of silence`);
      assert.equal(lost.notReady?.reason, 'NodeStatusUnknown');
    }
  });

  test('pinging every keepalive with no status for an hour: never late, never NotReady', async () => {
    for (let t = 15_000; t <= 3_600_000; t += 15_000) {
      nowMs = t0 + t;
      liveness.touch('pinging', nowMs);
      const d = await decide('pinging', nowMs + 14_000);
      assert.equal(d.late, undefined, `late at ${t / 1000} s`);
      assert.equal(d.notReady, undefined);
    }
    // The pings stop (a half-open link the broker has not dropped yet): NotReady 90 s after the last.
    const last = nowMs;
    assert.equal((await decide('pinging', last + 89_000)).notReady, undefined);
    assert.equal((await decide('pinging', last + 91_000)).notReady?.status, 'False');
  });
});

function reporterWith(pods: payloads.PodReport[]) {
  const sent: payloads.Status[] = [];
  const link = { connected: true, publishStatus: (s: payloads.Status) => (sent.push(s), true), publishEvents: async () => true, publishHello: async () => undefined };
  const cfg = { node: 'edge-1', heartbeatSeconds: AGENT_DEFAULTS.heartbeatSeconds, keepaliveSeconds: 15, eventBatchSeconds: 0, labels: {} } as unknown as AgentConfig;
  const reporter = new Reporter({
    cfg,
    link: link as never,
    runtime: { name: 'podman', images: async () => [] } as never,
    hardware: { addresses: [] } as never,
    bootId: 'b',
    logger: silentLogger,
    journal: new EventJournal(),
    nodeIP: () => undefined,
    runtimeVersion: () => 'x',
    now: () => 0,
  });
  reporter.update({ observedGeneration: 1, pods, runtimeHealthy: true });
  return { reporter, sent, beat: () => (reporter as unknown as { beat(): void }).beat() };
}

test('a heartbeat is a status without unchanged pod reports, announcing heartbeat and keepalive; a change carries them all', async () => {
  const pods = [report('u1', 'web', 'Running'), report('u2', 'db', 'Running')];
  const { reporter, sent, beat } = reporterWith(pods);
  assert.equal(AGENT_DEFAULTS.heartbeatSeconds >= 600, true, 'the default heartbeat is at least 10 minutes');
  assert.equal(sent.length, 1);
  assert.equal(sent[0]!.pods.length, 2, 'the first status has every pod');
  beat();
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1]!.pods, [], 'nothing changed: no pod reports');
  assert.equal(sent[1]!.heartbeatSeconds, AGENT_DEFAULTS.heartbeatSeconds);
  assert.equal(sent[1]!.keepaliveSeconds, 15);
  assert.equal(sent[1]!.usage, undefined, 'no usage on heartbeats: asked for');
  assert.ok(sent[1]!.seq > sent[0]!.seq);
  reporter.update({ observedGeneration: 1, pods: [report('u1', 'web', 'Failed'), pods[1]!], runtimeHealthy: true });
  assert.equal(sent[2]!.pods.length, 2, 'a change: every pod report, as before');
  reporter.onConnect();
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  assert.equal(sent.at(-1)!.pods.length, 2, 'after a (re)connect every pod report goes out again, changed or not');
  reporter.stop();
});

test('an older server reads the new heartbeat: the status schema still takes it, with or without the new field', async () => {
  const { payloads: p } = await import('../../src/contract/index.js');
  const { sent, beat } = reporterWith([]);
  beat();
  const parsed = p.status.parse(JSON.parse(JSON.stringify(sent[1])));
  assert.equal(parsed.keepaliveSeconds, 15);
  const { keepaliveSeconds: _k, ...old } = sent[1]!;
  assert.equal(p.status.parse(old).keepaliveSeconds, undefined);
});

describe('usage on request', () => {
  const ready = (name: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { conditions: [{ type: 'Ready', status: 'True' }] } });
  const notReady = (name: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { conditions: [{ type: 'Ready', status: 'Unknown' }] } });
  const nodes = [ready('a'), ready('b'), notReady('gone'), ready('old')];
  const pods = [
    { metadata: { name: 'web', namespace: 'shop' }, spec: { nodeName: 'a' }, status: { phase: 'Running' } },
    { metadata: { name: 'db', namespace: 'other' }, spec: { nodeName: 'b' } },
  ];
  const store = {
    list: async (kind: string) => ({ items: kind === 'Node' ? nodes : pods, revision: 1 }),
    get: async (kind: string, ns: string, name: string) => (kind === 'Node' ? nodes.find((n) => n.metadata.name === name) : pods.find((p) => p.metadata.name === name && p.metadata.namespace === ns)),
  };

  function cache(opts: { podsReported?: boolean } = {}) {
    let nowMs = 1_000_000;
    const asked: string[] = [];
    const requester = {
      request: async (node: string, req: payloads.AgentRequest): Promise<payloads.Response> => {
        asked.push(node);
        assert.deepEqual(req, { op: 'usage' });
        // An agent older than the request cannot parse it.
        if (node === 'old') return { ok: false, error: { code: 'BadRequest', message: 'invalid request: op' } };
        const u: payloads.UsageResult = { node: { cpuMilli: 250, memoryBytes: 1 << 30 }, pods: node === 'a' && opts.podsReported !== false ? [{ namespace: 'shop', name: 'web', usage: { cpuMilli: 5, memoryBytes: 1 << 20 } }] : [], windowSeconds: 1, ts: new Date(nowMs).toISOString() };
        return { ok: true, data: u };
      },
    };
    const m = new MetricsCache({ now: () => nowMs, ask: { requester, store: store as never, logger: silentLogger } });
    return { m, asked, tick: (ms: number) => (nowMs += ms) };
  }

  test('reading node metrics asks the Ready nodes, once per 15 s; an old agent keeps what its heartbeats said', async () => {
    const { m, asked, tick } = cache();
    m.record('old', { node: 'old', bootId: 'b', seq: 1, observedGeneration: 0, ts: new Date().toISOString(), pods: [], runtimeHealthy: true, heartbeatSeconds: 30, usage: { cpuMilli: 7, memoryBytes: 1024 } });
    await m.refresh({ nodes: true });
    assert.deepEqual(asked.sort(), ['a', 'b', 'old'], 'not the node that is not Ready');
    const list = m.nodeMetrics() as { items: Array<{ metadata: { name: string }; window: string; usage: { cpu: string } }> };
    assert.deepEqual(list.items.map((i) => i.metadata.name).sort(), ['a', 'b', 'old']);
    assert.equal(list.items.find((i) => i.metadata.name === 'a')!.window, '1s');
    assert.equal(list.items.find((i) => i.metadata.name === 'old')!.usage.cpu, '7m');
    await m.refresh({ nodes: true });
    assert.equal(asked.length, 3, 'asked again within 15 s: served from the cache');
    tick(16_000);
    await m.refresh({ nodes: true, name: 'b' });
    assert.deepEqual(asked.slice(3), ['b'], 'one node read: only that node asked');
  });

  test('reading the pods of a namespace asks only the nodes running pods there', async () => {
    const { m, asked } = cache();
    await m.refresh({ nodes: false, namespace: 'shop' });
    assert.deepEqual(asked, ['a']);
    const list = m.podMetrics('shop') as { items: Array<{ metadata: { name: string } }> };
    assert.deepEqual(list.items.map((i) => i.metadata.name), ['web']);
  });

  test('a node running a pod without figures (just started) is asked again after 2 s, not 15', async () => {
    const { m, asked, tick } = cache({ podsReported: false });
    await m.refresh({ nodes: false, namespace: 'shop' });
    tick(1_000);
    await m.refresh({ nodes: false, namespace: 'shop' });
    assert.deepEqual(asked, ['a'], 'not within 2 s');
    tick(1_500);
    await m.refresh({ nodes: false, namespace: 'shop' });
    assert.deepEqual(asked, ['a', 'a'], 'the pod still has no figures: asked again');
  });

  test('the agent measures over a fresh window when not asked for a while, and over the time since the last ask otherwise', async () => {
    const c: RuntimeContainer = { id: 'aaaaaaaaaaaa1', name: 'x', image: 'i', state: 'running', labels: { [LABELS.namespace]: 'default', [LABELS.pod]: 'web' } };
    let cpu = 0;
    const runtime = { stats: async () => [{ id: c.id, cpuNanos: (cpu += 0.5e9), memoryBytes: 100, sampledAtNanos: Number(process.hrtime.bigint()) }] } as unknown as ContainerRuntime;
    const sampler = new UsageSampler(runtime, { cores: 2, cpuPercent: async () => 10, memoryBytes: async () => 5 }, silentLogger);
    let now = 0;
    const first = await sampler.measure(async () => [c], () => now);
    assert.equal(first.pods.length, 1);
    assert.ok(first.pods[0]!.usage.cpuMilli > 0, 'a rate from the primed pair, not the zero of a single sample');
    assert.deepEqual(first.node, { cpuMilli: 200, memoryBytes: 5 });
    now += 30_000;
    const second = await sampler.measure(async () => [c], () => now);
    assert.equal(second.windowSeconds, 30, 'the window since the last ask');
    // A pod started since the last ask: its container is primed, so it has a rate at once.
    const fresh: RuntimeContainer = { ...c, id: 'bbbbbbbbbbbb2', labels: { ...c.labels, [LABELS.pod]: 'new' } };
    const both = { stats: async () => [c, fresh].map((x) => ({ id: x.id, cpuNanos: (cpu += 0.5e9), memoryBytes: 100, sampledAtNanos: Number(process.hrtime.bigint()) })) } as unknown as ContainerRuntime;
    const sampler2 = new UsageSampler(both, { cores: 2, cpuPercent: async () => 10, memoryBytes: async () => 5 }, silentLogger);
    await sampler2.measure(async () => [c], () => now);
    now += 5_000;
    const third = await sampler2.measure(async () => [c, fresh], () => now);
    assert.ok(third.pods.find((p) => p.name === 'new')!.usage.cpuMilli > 0, 'the new pod has a CPU rate in the first answer that lists it');
  });
});
