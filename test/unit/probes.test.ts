import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { describe, it } from 'node:test';
import { decide, firstRunDelay, initialStates, observe, ready, started, timing, type ContainerProbeStates } from '../../agent/probes/logic.js';
import { ProbeManager, probeSubjects, type ProbeEvent, type ProbeSubject } from '../../agent/probes/manager.js';
import { EXEC_OVERHEAD_MS, resolvePort, runProbe, type ProbeEndpoint } from '../../agent/probes/run.js';
import { matchContainers } from '../../agent/engine/match.js';
import { toRunSpec } from '../../agent/engine/plan.js';
import type { ContainerRuntime, ExecResult, RuntimeContainer } from '../../agent/runtime/types.js';
import type { Probe } from '../../src/api/pod.js';
import type { DesiredPod } from '../../src/contract/payloads.js';
import { silentLogger } from '../../src/util/logger.js';

const probe = (o: Partial<Probe> = {}): Probe => ({ exec: { command: ['true'] }, initialDelaySeconds: 0, periodSeconds: 1, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3, ...o });

describe('probe thresholds (pure)', () => {
  it('readiness: not ready until successThreshold successes in a row, not ready again after failureThreshold failures', () => {
    const t = { successThreshold: 2, failureThreshold: 3 };
    let s = initialStates({ readiness: true }).readiness!;
    assert.equal(s.result, 'failure');
    const seq: Array<[boolean, string]> = [
      [true, 'failure'],
      [false, 'failure'],
      [true, 'failure'],
      [true, 'success'],
      [false, 'success'],
      [false, 'success'],
      [true, 'success'],
      [false, 'success'],
      [false, 'success'],
      [false, 'failure'],
    ];
    for (const [ok, want] of seq) {
      s = observe(s, ok, t);
      assert.equal(s.result, want, JSON.stringify(s));
    }
  });

  it('liveness: healthy until failureThreshold failures in a row, then kill', () => {
    let st: ContainerProbeStates = initialStates({ liveness: true });
    const t = { successThreshold: 1, failureThreshold: 3 };
    const kills: boolean[] = [];
    for (const ok of [false, false, true, false, false, false]) {
      const d = decide(st, 'liveness', ok, t);
      st = d.states;
      kills.push(d.kill);
      assert.equal(d.announce, !ok, 'every failed liveness probe is announced');
    }
    assert.deepEqual(kills, [false, false, false, false, false, true]);
    assert.equal(ready(initialStates({ liveness: true })), true, 'liveness alone does not gate readiness');
  });

  it('startup gates readiness and liveness; failing it kills', () => {
    const t = { successThreshold: 1, failureThreshold: 2 };
    let st = initialStates({ startup: true, readiness: true, liveness: true });
    assert.equal(started(st), false);
    assert.equal(ready(st), false);
    let d = decide(st, 'startup', false, t);
    assert.deepEqual([d.kill, d.startedNow], [false, false]);
    d = decide(d.states, 'startup', true, t);
    assert.deepEqual([d.kill, d.startedNow, d.readyChanged], [false, true, false]);
    st = d.states;
    d = decide(st, 'readiness', true, t);
    assert.deepEqual([d.readyChanged, ready(d.states)], [true, true]);

    const noReadiness = decide(initialStates({ startup: true }), 'startup', true, t);
    assert.deepEqual([noReadiness.readyChanged, ready(noReadiness.states)], [true, true], 'without a readiness probe, started = ready');
    const dead = decide(decide(initialStates({ startup: true }), 'startup', false, t).states, 'startup', false, t);
    assert.equal(dead.kill, true);
  });

  it('announces only the first of a run of failed readiness probes', () => {
    const t = { successThreshold: 1, failureThreshold: 1 };
    let st = initialStates({ readiness: true });
    const announced: boolean[] = [];
    for (const ok of [false, false, true, false, false]) {
      const d = decide(st, 'readiness', ok, t);
      st = d.states;
      announced.push(d.announce);
    }
    assert.deepEqual(announced, [true, false, false, true, false]);
  });

  it('timing defaults and first-run delay from the container start', () => {
    assert.deepEqual(timing({ exec: { command: ['x'] } }), { initialDelaySeconds: 0, periodSeconds: 10, timeoutSeconds: 1, successThreshold: 1, failureThreshold: 3 });
    assert.equal(firstRunDelay(1_000, 3_000, 5), 3_000);
    assert.equal(firstRunDelay(1_000, 9_000, 5), 0);
    assert.equal(firstRunDelay(undefined, 9_000, 2), 2_000);
  });
});

describe('running probes', () => {
  const endpoint = (o: Partial<ProbeEndpoint> = {}): ProbeEndpoint => ({
    runtime: { exec: async (): Promise<ExecResult> => ({ exitCode: 0, output: '', timedOut: false }) } as unknown as ContainerRuntime,
    containerId: 'c1',
    ports: [{ name: 'http', containerPort: 8080 }],
    hostNetwork: false,
    ip: async () => '127.0.0.1',
    ...o,
  });

  it('exec: exit 0 passes; non-zero and timeouts fail with a message', async () => {
    const results: ExecResult[] = [
      { exitCode: 0, output: 'ok', timedOut: false },
      { exitCode: 1, output: 'not yet\n', timedOut: false },
      { exitCode: -1, output: '', timedOut: true },
    ];
    const calls: Array<[string, string[], number]> = [];
    const runtime = { exec: async (id: string, cmd: string[], ms: number) => (calls.push([id, cmd, ms]), results.shift()!) } as unknown as ContainerRuntime;
    const p = probe({ exec: { command: ['test', '-f', '/tmp/ready'] }, timeoutSeconds: 2 });
    assert.deepEqual(await runProbe(p, endpoint({ runtime })), { ok: true, message: 'ok' });
    assert.deepEqual(await runProbe(p, endpoint({ runtime })), { ok: false, message: 'command ["test","-f","/tmp/ready"] exited with 1: not yet' });
    assert.match((await runProbe(p, endpoint({ runtime }))).message, /timed out after 2s/);
    assert.deepEqual(calls[0], ['c1', ['test', '-f', '/tmp/ready'], 2_000 + EXEC_OVERHEAD_MS], 'podman exec gets an allowance on top');
  });

  it('httpGet: 2xx/3xx pass, others and refused connections fail; named ports resolve', async (t) => {
    let status = 200;
    const seen: string[] = [];
    const server: Server = createServer((req, res) => {
      seen.push(`${req.url} ${req.headers['x-probe']}`);
      res.writeHead(status).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const p = probe({ exec: undefined, httpGet: { path: '/healthz', port: 'web', scheme: 'HTTP', httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } });
    const e = endpoint({ ports: [{ name: 'web', containerPort: port }] });
    assert.equal((await runProbe(p, e)).ok, true);
    status = 302;
    assert.equal((await runProbe(p, e)).ok, true);
    status = 503;
    assert.deepEqual(await runProbe(p, e), { ok: false, message: 'HTTP probe failed with statuscode: 503' });
    assert.deepEqual(seen, ['/healthz yes', '/healthz yes', '/healthz yes']);
    const refused = await runProbe(probe({ exec: undefined, httpGet: { path: '/', port: 1, scheme: 'HTTP' } }), e);
    assert.equal(refused.ok, false);
    assert.match(refused.message, /ECONNREFUSED/);
    assert.throws(() => resolvePort('nope', []), /not a named port/);
  });

  it('tcpSocket: connect passes; no reachable address falls back to a published host port', async (t) => {
    const server = createTcpServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const p = probe({ exec: undefined, tcpSocket: { port } });
    assert.equal((await runProbe(p, endpoint())).ok, true);
    assert.equal((await runProbe(p, endpoint({ ip: async () => undefined, hostNetwork: true }))).ok, true);
    const viaHostPort = probe({ exec: undefined, tcpSocket: { port: 80 } });
    assert.equal((await runProbe(viaHostPort, endpoint({ ip: async () => undefined, ports: [{ containerPort: 80, hostPort: port }] }))).ok, true);
    const none = await runProbe(viaHostPort, endpoint({ ip: async () => undefined, ports: [] }));
    assert.match(none.message, /no IP address the agent can reach/);
  });
});

describe('ProbeManager', () => {
  const pod: DesiredPod = {
    uid: 'uid-p',
    namespace: 'default',
    name: 'p',
    spec: {
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 3,
      containers: [
        { name: 'probed', image: 'img', readinessProbe: probe({ exec: { command: ['ready?'] } }), livenessProbe: probe({ exec: { command: ['alive?'] }, failureThreshold: 2 }) },
        { name: 'plain', image: 'img' },
      ],
    },
  };
  const running = (name: string, id: string): RuntimeContainer => {
    const s = toRunSpec(pod, name, 'n');
    return { id, name: s.name, image: 'img', labels: s.labels, state: 'running', startedAt: new Date().toISOString() };
  };

  it('picks running containers with probes', () => {
    const subjects = probeSubjects(matchContainers([running('probed', 'a'), running('plain', 'b')], [pod], 'n'));
    assert.deepEqual(subjects.map((s) => [s.key, s.containerId, s.graceSeconds]), [['uid-p/probed', 'a', 3]]);
    assert.deepEqual(probeSubjects(matchContainers([{ ...running('probed', 'a'), state: 'exited' }], [pod], 'n')), []);
  });

  it('reports readiness once the probe passes and asks for a kill after failed liveness probes', async (t) => {
    let readyNow = false;
    const calls: string[] = [];
    const runtime = {
      exec: async (_id: string, cmd: string[]) => {
        calls.push(cmd[0]!);
        const ok = cmd[0] === 'ready?' ? readyNow : false;
        return { exitCode: ok ? 0 : 1, output: ok ? '' : 'no', timedOut: false };
      },
    } as unknown as ContainerRuntime;
    const changes: boolean[] = [];
    const failures: ProbeEvent[] = [];
    const kills: ProbeEvent[] = [];
    let m: ProbeManager;
    const killed = new Promise<void>((resolve) => {
      m = new ProbeManager({
        runtime,
        logger: silentLogger,
        onReadiness: () => changes.push(m.ready('uid-p/probed', 'a')!),
        onFailure: (e) => failures.push(e),
        onKill: (e) => {
          kills.push(e);
          resolve();
        },
      });
    });
    t.after(() => m.stop());
    const subjects: ProbeSubject[] = probeSubjects(matchContainers([running('probed', 'a')], [pod], 'n'));
    m!.sync(subjects);
    assert.equal(m!.ready('uid-p/probed', 'a'), false, 'not ready before the first readiness probe');
    assert.equal(m!.ready('uid-p/plain', 'b'), undefined, 'no probes: undecided');
    readyNow = true;
    await killed;
    assert.deepEqual(changes, [true]);
    assert.equal(kills.length, 1);
    assert.equal(kills[0]!.kind, 'liveness');
    assert.equal(failures.filter((f) => f.kind === 'liveness').length, 2);
    assert.equal(m!.ready('uid-p/probed', 'a'), false, 'a killed container is not ready');
    m!.sync([]);
    assert.equal(m!.ready('uid-p/probed', 'a'), undefined);
    const n = calls.length;
    await new Promise((r) => setTimeout(r, 1_200));
    assert.equal(calls.length, n, 'no probes after the worker stopped');
  });
});
