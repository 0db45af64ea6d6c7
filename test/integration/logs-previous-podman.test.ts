/**
 * `logs -p / --since / --since-time / --timestamps / --limit-bytes` end to end on real podman, through
 * drover's CLI and the real kubectl (/usr/bin/kubectl): a container that prints, fails, is restarted
 * in place by the agent and prints again. `-p` shows the first run only, `--since`/`--since-time`
 * filter by the lines' times, `--timestamps` prefixes RFC 3339 times; a container with no previous run
 * gets kubectl's own error. `kubectl logs -f` streams a container's lines as it prints them and ends
 * when the pod does, each line exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { drover, ok } from '../helpers/cli.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';
import { droverKubeconfig, KUBECTL } from '../helpers/kubectl.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from '../helpers/podman.js';

const IMAGE = 'localhost/drover-test:1';
const NODE = 'edge-logs';
/** A line of `--timestamps` output: an RFC 3339 time in UTC, a space, the line. */
const STAMPED = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (.*)$/;

describe('logs -p, --since, --since-time, --timestamps against real podman (drover CLI and kubectl)', { timeout: 240_000 }, () => {
  let sb: PodmanSandbox;
  let cluster: TestServer;
  let dir: string;
  let droverEnv: Record<string, string>;
  let kubeEnv: Record<string, string>;
  const cli = async (args: string[]) => ok(await drover(droverEnv, args), `drover ${args.join(' ')}`).stdout;
  const kubectl = async (args: string[]) => {
    const r = await execa(KUBECTL, args, { env: kubeEnv, extendEnv: false, reject: false, stripFinalNewline: false, timeout: 60_000, stdin: 'ignore' });
    return { code: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };

  before(async () => {
    sb = await podmanSandbox();
    await buildTestImage(sb);
    cluster = await startTestServer();
    dir = await mkdtemp(join(tmpdir(), 'drover-logs-'));
    await cluster.addAgent({ node: NODE, runtime: sb.runtime, stateDir: join(dir, 'agent'), resyncSeconds: 1, heartbeatSeconds: 1 });
    droverEnv = { DROVER_SERVER: cluster.apiUrl, DROVER_TOKEN: cluster.token, DROVER_CA_FILE: cluster.caFile };
    await droverKubeconfig(droverEnv, join(dir, 'kubeconfig'));
    kubeEnv = { KUBECONFIG: join(dir, 'kubeconfig'), HOME: dir, PATH: process.env.PATH ?? '/usr/bin:/bin' };
    // kubectl wait answers NotFound at once for a node that has not said hello yet (a loaded machine).
    await waitFor(`node ${NODE} registered`, async () => ((await cluster.api('GET', `/api/v1/nodes/${NODE}`)).status === 200 ? true : undefined), 60_000);
    const ready = await kubectl(['wait', '--for=condition=Ready', `node/${NODE}`, '--timeout=60s']);
    assert.equal(ready.code, 0, ready.stderr);
  });
  after(async () => {
    await cluster?.stop();
    await sb?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a container restarted in place: -p is its first run, --since/--since-time filter, --timestamps prefix RFC 3339; the same through kubectl', async () => {
    // The container's writable layer survives an in-place restart: the marker tells the runs apart.
    const script = 'if [ -e /ran ]; then echo second-run; trap "exit 0" TERM; while true; do sleep 1; done; else touch /ran; echo first-run; echo crash-detail; exit 1; fi';
    const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'talker' },
      spec: { restartPolicy: 'Always', terminationGracePeriodSeconds: 1, containers: [{ name: 'main', image: IMAGE, command: ['sh', '-c', script] }] },
    });
    assert.equal(created.status, 201, created.text);
    let last = '';
    await waitFor('talker restarted and running its second run', async () => {
      const p = (await cluster.api('GET', '/api/v1/namespaces/default/pods/talker')).body;
      const s = p?.status?.containerStatuses?.[0];
      last = JSON.stringify(p?.status);
      if (!(s?.restartCount >= 1 && s.state === 'running')) return undefined;
      const log = await cluster.api('GET', '/api/v1/namespaces/default/pods/talker/log');
      return log.text.includes('second-run') ? true : undefined;
    }, 120_000).catch((err: unknown) => {
      throw new Error(`${String(err)}; pod status: ${last}`);
    });

    // The whole log holds both runs (podman keeps one log per container); -p only the first.
    assert.equal(await cli(['logs', 'talker']), 'first-run\ncrash-detail\nsecond-run\n');
    assert.equal(await cli(['logs', 'talker', '-p']), 'first-run\ncrash-detail\n');
    const stamped = (await cli(['logs', 'talker', '--timestamps'])).trimEnd().split('\n');
    assert.equal(stamped.length, 3, stamped.join('\n'));
    const lines = stamped.map((l) => {
      const m = STAMPED.exec(l);
      assert.ok(m, `an RFC 3339 time before the line: ${l}`);
      assert.ok(!Number.isNaN(Date.parse(m[1]!)));
      return { at: Date.parse(m[1]!), text: m[2] };
    });
    assert.deepEqual(lines.map((l) => l.text), ['first-run', 'crash-detail', 'second-run']);
    const previousStamped = (await cli(['logs', 'talker', '-p', '--timestamps'])).trimEnd().split('\n');
    assert.deepEqual(previousStamped, stamped.slice(0, 2));

    // The restart waited out a back-off (10 s): a time between the runs splits them.
    const between = new Date(Math.floor(lines[1]!.at / 1000) * 1000 + 2000).toISOString().replace('.000Z', 'Z');
    assert.ok(Date.parse(between) < lines[2]!.at, `${between} falls between the runs`);
    assert.equal(await cli(['logs', 'talker', '--since-time', between]), 'second-run\n');
    // A window reaching back just past the second run's line (computed at each use: it ages).
    const recent = () => `${Math.ceil((Date.now() - lines[2]!.at) / 1000) + 3}s`;
    assert.equal(await cli(['logs', 'talker', '--since', recent()]), 'second-run\n');
    assert.equal(await cli(['logs', 'talker', '--since', '1h']), 'first-run\ncrash-detail\nsecond-run\n');
    console.log(`[logs] runs ${((lines[2]!.at - lines[1]!.at) / 1000).toFixed(1)} s apart; -p gave ${JSON.stringify(previousStamped)}`);

    // The real kubectl: the same query parameters, the same answers.
    const k = async (args: string[]) => {
      const r = await kubectl(['logs', 'talker', ...args]);
      assert.equal(r.code, 0, `kubectl logs talker ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    assert.equal(await k(['-p']), 'first-run\ncrash-detail\n');
    assert.equal(await k(['--previous=true', '--timestamps']), `${stamped.slice(0, 2).join('\n')}\n`);
    assert.equal(await k([`--since-time=${between}`]), 'second-run\n');
    assert.equal(await k([`--since=${recent()}`]), 'second-run\n');
    assert.equal(await k(['--limit-bytes=5']), 'first');
    assert.equal(await k(['--tail=1', '-p']), 'crash-detail\n');
  });

  test('kubectl logs -f streams the lines as they come, each once, and ends when the pod does', async () => {
    // Long enough to outlast kubectl's own start (discovery: seconds on a loaded machine).
    const script = 'i=1; while [ $i -le 30 ]; do echo tick-$i; i=$((i+1)); sleep 0.5; done';
    const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'ticker' },
      spec: { restartPolicy: 'Never', containers: [{ name: 'c', image: IMAGE, command: ['sh', '-c', script] }] },
    });
    assert.equal(created.status, 201, created.text);
    await waitFor('ticker printed its first line', async () => ((await cluster.api('GET', '/api/v1/namespaces/default/pods/ticker/log')).text.startsWith('tick-1') ? true : undefined), 90_000);
    const started = Date.now();
    const seen: Array<{ line: string; at: number }> = [];
    const child = execa(KUBECTL, ['logs', '-f', 'ticker'], { env: kubeEnv, extendEnv: false, reject: false, timeout: 60_000, stdin: 'ignore' });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        seen.push({ line: buf.slice(0, i), at: Date.now() - started });
        buf = buf.slice(i + 1);
      }
    });
    const r = await child;
    // kubectl ended by itself (the pod Succeeded), not by the 60 s timeout.
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.deepEqual(seen.map((s) => s.line), Array.from({ length: 30 }, (_, i) => `tick-${i + 1}`));
    // Streamed, not printed at the end: the last line came well after the first.
    assert.ok(seen.at(-1)!.at - seen[0]!.at >= 1000, `lines arrived over time: ${JSON.stringify(seen)}`);
    console.log(`[logs -f] ${JSON.stringify(seen.map((s) => s.at))} ms after kubectl started`);
  });

  test('no previous run: kubectl\'s own error, from drover and from kubectl; a bad sinceTime is a 400 naming it', async () => {
    const created = await cluster.api('POST', '/api/v1/namespaces/default/pods', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'steady' },
      spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: IMAGE, command: ['sh', '-c', 'echo hello; trap "exit 0" TERM; while true; do sleep 1; done'] }] },
    });
    assert.equal(created.status, 201, created.text);
    await waitFor('steady logs', async () => ((await cluster.api('GET', '/api/v1/namespaces/default/pods/steady/log')).text === 'hello\n' ? true : undefined), 90_000);
    const ours = await drover(droverEnv, ['logs', 'steady', '-p']);
    assert.equal(ours.code, 1);
    assert.match(ours.stderr, /previous terminated container "c" in pod "steady" not found/);
    const theirs = await kubectl(['logs', 'steady', '-p']);
    assert.equal(theirs.code, 1);
    assert.equal(theirs.stderr, 'Error from server (BadRequest): previous terminated container "c" in pod "steady" not found\n');
    const bad = await cluster.api('GET', '/api/v1/namespaces/default/pods/steady/log?sinceTime=yesterday');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /sinceTime must be an RFC 3339 time/);
    const both = await cluster.api('GET', '/api/v1/namespaces/default/pods/steady/log?sinceTime=2026-01-01T00:00:00Z&sinceSeconds=5');
    assert.equal(both.status, 400);
    assert.match(both.text, /at most one of `sinceTime` or `sinceSeconds`/);
  });
});
