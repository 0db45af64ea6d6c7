/**
 * `drover fleet status` and `drover get nodes` at fleet scale: 2,000 Nodes (and their pods) written
 * into a server's store before it starts, then the CLI against the real server over HTTPS. The
 * expected counts come from the fleet's design below, not from the code under test, and are checked
 * against what the API lists. `--watch` runs in a real terminal (tmux).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { Node } from '../../src/api/node.js';
import type { Pod } from '../../src/api/pod.js';
import { droverVersion } from '../../src/version.js';
import type { NodeStatePayload } from '../../server/fleet/publisher.js';
import type { FleetStatus } from '../../server/fleet/summary.js';
import { topics } from '../../src/contract/topics.js';
import { storePath } from '../../server/secrets/rotate.js';
import { LevelStore } from '../../server/store/level.js';
import { runProgram } from '../../src/program.js';
import { drover, fails, ok, ROOT } from '../helpers/cli.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { startTestServer, waitFor, type TestServer } from '../helpers/cluster.js';

const run = promisify(execFile);
const NODES = 2_000;
const VERSION = droverVersion();

type Kind = 'ready' | 'unknown' | 'notReady' | 'stale' | 'flapping' | 'failingPod';

/** The fleet's design: node i's kind, arch, site, agent version, runtime. */
function design(i: number) {
  const kinds: Kind[] = ['unknown', 'notReady', 'stale', 'flapping', 'failingPod'];
  const kind: Kind = kinds[i % 40] ?? 'ready';
  const site: Record<string, string> = i % 5 < 4 ? { site: `site-${i % 5}` } : { 'topology.kubernetes.io/zone': 'zone-x' };
  return {
    name: `edge-${String(i).padStart(5, '0')}`,
    kind,
    arch: ['amd64', 'arm64', 'arm'][i % 3]!,
    labels: { ...site, tier: i % 2 ? 'gw' : 'sensor' },
    version: i % 50 === 7 ? '0.0.9' : VERSION,
    runtime: i % 10 === 9 ? 'nerdctl://1.7.0' : 'podman://4.3.1',
  };
}

function nodeObject(i: number, now: number): Node {
  const d = design(i);
  const heardAgo = { unknown: 7_200_000, notReady: 1_800_000, stale: 1_200_000 }[d.kind as string] ?? 0;
  const ready = d.kind === 'unknown' ? 'Unknown' : d.kind === 'notReady' ? 'False' : 'True';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: d.name, labels: { ...d.labels, 'kubernetes.io/arch': d.arch } },
    spec: {},
    status: {
      lastHeard: new Date(now - heardAgo).toISOString(),
      conditions: [{ type: 'Ready', status: ready, reason: ready === 'True' ? 'AgentReady' : 'NodeStatusUnknown' }, ...(d.kind === 'flapping' ? [{ type: 'LinkDegraded', status: 'True' as const, reason: 'Flapping' }] : [])],
      nodeInfo: { architecture: d.arch, operatingSystem: 'linux', osImage: 'Debian 12', kernelVersion: '6.1', containerRuntimeVersion: d.runtime, agentVersion: d.version, contractVersion: 1, bootID: `boot-${i}` },
    },
  };
}

const PHASES = ['Running', 'Pending', 'Succeeded', 'Running'] as const;
const NAMESPACES = ['default', 'edge', 'metrics'];

/** 1,000 pods on ready nodes (three namespaces, four phases) and one Failed pod on each failingPod node. */
function podObjects(): Array<{ pod: Pod; node: number }> {
  const readyNodes = Array.from({ length: NODES }, (_, i) => i).filter((i) => design(i).kind === 'ready');
  const out: Array<{ pod: Pod; node: number }> = [];
  for (let j = 0; j < 1_000; j++) {
    const node = readyNodes[(j * 7) % readyNodes.length]!;
    out.push({ node, pod: pod(`app-${j}`, NAMESPACES[j % 3]!, design(node).name, PHASES[j % 4]!) });
  }
  for (let i = 0; i < NODES; i++) if (design(i).kind === 'failingPod') out.push({ node: i, pod: pod(`crash-${i}`, 'default', design(i).name, 'Failed') });
  return out;
}

function pod(name: string, namespace: string, nodeName: string, phase: string): Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace }, spec: { nodeName, containers: [{ name: 'c', image: 'localhost/app:1' }] }, status: { phase } } as unknown as Pod;
}

/** What the design says fleet status must count (written out, independent of server/fleet/summary.ts). */
function expected(filter: (i: number) => boolean = () => true) {
  const byState = { ready: 0, degraded: 0, stale: 0, notReady: 0, unknown: 0 };
  const byArch: Record<string, number> = {};
  let total = 0;
  let skewed = 0;
  for (let i = 0; i < NODES; i++) {
    if (!filter(i)) continue;
    const d = design(i);
    total++;
    const bucket = ({ ready: 'ready', unknown: 'unknown', notReady: 'notReady', stale: 'stale', flapping: 'degraded', failingPod: 'degraded' } as const)[d.kind];
    byState[bucket]++;
    byArch[d.arch] = (byArch[d.arch] ?? 0) + 1;
    if (d.version !== VERSION) skewed++;
  }
  return { total, byState, byArch, skewed };
}

async function seed(dataDir: string): Promise<void> {
  const store = await LevelStore.open({ path: storePath(dataDir) });
  try {
    const now = Date.now();
    for (const ns of NAMESPACES) await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns }, status: { phase: 'Active' } });
    await Promise.all(Array.from({ length: NODES }, (_, i) => store.create(nodeObject(i, now))));
    await Promise.all(podObjects().map(({ pod: p }) => store.create(p)));
  } finally {
    await store.close();
  }
}

describe('fleet status of 2,000 nodes', () => {
  let t: TestServer;
  let dataDir: string;
  let env: Record<string, string>;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'drover-fleet-'));
    await seed(dataDir);
    // Ready nodes nobody hears get a grace period of a few heartbeats from the node-lifecycle controller
    // (README: Edge behaviour): the checks below run well within it.
    t = await startTestServer({ dataDir });
    env = { DROVER_SERVER: t.apiUrl, DROVER_TOKEN: t.token };
  });

  after(async () => {
    await t?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('-o json counts every node once, by state, arch, site and version, as the design and the store say', async () => {
    const r = ok(await drover(env, ['fleet', 'status', '-o', 'json']));
    const s = JSON.parse(r.stdout) as FleetStatus;
    const want = expected();
    assert.equal(s.nodes.total, NODES);
    assert.deepEqual(s.nodes.byState, want.byState);
    assert.deepEqual(s.nodes.byArch, want.byArch);
    assert.equal(s.nodes.skewedNodes, want.skewed);
    assert.deepEqual(s.nodes.agentVersions.find((v) => v.version === '0.0.9'), { version: '0.0.9', nodes: want.skewed, skew: true });
    assert.deepEqual(Object.keys(s.nodes.bySite).sort(), ['site-0', 'site-1', 'site-2', 'site-3', 'zone-x']);
    assert.equal(s.nodes.bySite['zone-x']!.total, NODES / 5);
    assert.deepEqual(s.nodes.runtimes.map((x) => [x.runtime, x.nodes]), [['podman', NODES * 0.9], ['nerdctl', NODES * 0.1]]);
    // The store's own lists, through the API.
    const nodes = (await t.api('GET', '/api/v1/nodes')).body.items as Node[];
    const pods = (await t.api('GET', '/api/v1/pods')).body.items as Pod[];
    assert.equal(nodes.length, s.nodes.total);
    assert.equal(pods.length, s.pods.total);
    const phases: Record<string, number> = {};
    for (const p of pods) phases[p.status?.phase ?? 'Pending'] = (phases[p.status?.phase ?? 'Pending'] ?? 0) + 1;
    assert.deepEqual(s.pods.byPhase, Object.fromEntries(Object.entries(phases).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))));
    assert.deepEqual(Object.keys(s.pods.byNamespace), NAMESPACES);
    // Pods by the site of their node, from the pods and nodes the API lists.
    const siteOfNode = new Map(nodes.map((n) => [n.metadata.name, n.metadata.labels?.site ?? n.metadata.labels?.['topology.kubernetes.io/zone'] ?? '']));
    const podsPerSite: Record<string, number> = {};
    for (const p of pods) podsPerSite[siteOfNode.get(p.spec.nodeName!)!] = (podsPerSite[siteOfNode.get(p.spec.nodeName!)!] ?? 0) + 1;
    assert.deepEqual(Object.fromEntries(Object.entries(s.pods.bySite).map(([site, m]) => [site, Object.values(m).reduce((a, b) => a + b, 0)])), podsPerSite);
    // Attention list: worst first, the oldest last-heard first within a state; capped, with the full count.
    assert.equal(s.nodes.listTotal, NODES - want.byState.ready);
    assert.equal(s.nodes.list[0]!.bucket, 'unknown');
    assert.ok(s.nodes.list.every((e) => e.bucket !== 'ready'));
    assert.equal(s.nodes.oldestLastHeard.unknown!.ageSeconds >= 7_200, true);
  });

  it('filters: --site, -l and --state narrow the nodes (and their pods); a bad state is one error line', async () => {
    const site1 = JSON.parse(ok(await drover(env, ['fleet', 'status', '--site', 'site-1', '-o', 'json'])).stdout) as FleetStatus;
    assert.deepEqual(site1.nodes.byState, expected((i) => i % 5 === 1).byState);
    const gwStale = JSON.parse(ok(await drover(env, ['fleet', 'status', '-l', 'tier=gw', '--state', 'stale', '-o', 'json'])).stdout) as FleetStatus;
    const want = expected((i) => i % 2 === 1 && design(i).kind === 'stale');
    assert.equal(gwStale.nodes.total, want.total);
    assert.deepEqual(gwStale.nodes.byState, want.byState);
    assert.equal(gwStale.pods.total, 0, 'stale nodes carry no pods in this fleet');
    fails(await drover(env, ['fleet', 'status', '--state', 'sleepy']), /state: "sleepy" is not a node state/);
  });

  it('the table fits one screen for 2,000 nodes and shows stale as stale', async () => {
    const r = ok(await drover(env, ['fleet', 'status']));
    const lines = r.stdout.split('\n');
    assert.ok(lines.length <= 70, `${lines.length} lines`);
    const want = expected();
    assert.match(r.stdout, new RegExp(`FLEET  ${NODES} nodes`));
    assert.match(r.stdout, new RegExp(`Stale\\s+${want.byState.stale}\\s`));
    assert.match(r.stdout, new RegExp(`Ready\\s+${want.byState.ready}\\s`));
    assert.match(r.stdout, /0\.0\.9\s+\d+\s+SKEW/);
  });

  it('get nodes pages with --limit/--continue in name order, and lists all 2,000 in chunks', async () => {
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = ok(await drover(env, ['get', 'nodes', '--limit', '700', '-o', 'name', ...(token ? ['--continue', token] : [])]));
      names.push(...r.stdout.trim().split('\n').map((l) => l.replace(/^node\//, '')));
      token = /--continue (\S+)\)/.exec(r.stderr)?.[1];
      pages++;
    } while (token && pages < 10);
    assert.equal(pages, 3);
    const all = Array.from({ length: NODES }, (_, i) => design(i).name);
    assert.deepEqual(names, all);
    const table = ok(await drover(env, ['get', 'nodes'])).stdout.trim().split('\n');
    assert.equal(table.length, NODES + 1);
    assert.deepEqual(table.slice(1).map((l) => l.split(/\s+/)[0]), all);
    fails(await drover(env, ['get', 'nodes', '--limit', '5', '--continue', 'forged']), /continue/);
  });

  it('a dashboard with a view token gets the retained summary and all 2,000 node states over MQTT at once', async () => {
    const created = await t.api('POST', '/drover/v1/tokens', { type: 'api', role: 'view', description: 'dashboard' });
    assert.equal(created.status, 201, created.text);
    const client = await mqtt.connectAsync(t.mqttUrl, { clientId: 'dashboard-1', username: 'dashboard', password: String(created.body.token), ca: t.ca, protocolVersion: 4, reconnectPeriod: 0 });
    try {
      let summary: FleetStatus | undefined;
      const states = new Map<string, NodeStatePayload>();
      client.on('message', (topic, payload, packet) => {
        assert.equal(packet.retain, true, `${topic} arrives as the retained value`);
        if (topic === topics.fleetSummary()) summary = JSON.parse(payload.toString()) as FleetStatus;
        else states.set(topic, JSON.parse(payload.toString()) as NodeStatePayload);
      });
      await client.subscribeAsync([topics.fleetSummary(), topics.allNodeStates()], { qos: 1 });
      await waitFor('the summary and 2,000 states', async () => summary && states.size === NODES, 30_000);
      assert.deepEqual(summary!.nodes.byState, expected().byState);
      const staleNode = design(2);
      assert.equal(staleNode.kind, 'stale');
      const st = states.get(topics.nodeState(staleNode.name))!;
      assert.deepEqual([st.node, st.state, st.stale], [staleNode.name, 'Ready', true], 'Ready by its condition, flagged stale');
      assert.equal(states.get(topics.nodeState(design(0).name))!.state, 'Unknown');
      assert.equal(states.get(topics.nodeState(design(5).name))!.stale, false);
    } finally {
      await client.endAsync();
    }
  });

  it('--watch that loses the server keeps the last screen marked STALE with its age and why, never as current', async () => {
    const port = Number(new URL(t.apiUrl).port);
    const proxy = await startTcpProxy({ host: '127.0.0.1', port });
    const stop = new AbortController();
    let out = '';
    const running = runProgram(['fleet', 'status', '--watch', '--interval', '300ms'], {
      stdout: (x) => void (out += x),
      stderr: (x) => void (out += x),
      env: { ...process.env, DROVER_SERVER: `https://127.0.0.1:${proxy.port}`, DROVER_TOKEN: t.token },
      signal: stop.signal,
    });
    try {
      await waitFor('a first frame', async () => out.includes(`FLEET  ${NODES} nodes`), 30_000);
      await proxy.close();
      await waitFor('the stale frame', async () => /STALE: last update \S+ ago; cannot reach the drover server/.test(out), 30_000);
      const stale = out.slice(out.lastIndexOf('STALE: '));
      assert.match(stale, new RegExp(`\\nFLEET \\(stale\\)  ${NODES} nodes`), 'the last screen, marked stale');
      assert.doesNotMatch(stale, /\nFLEET  /, 'not shown as current');
    } finally {
      stop.abort();
      await proxy.close().catch(() => undefined);
    }
    assert.equal(await running, undefined, 'Ctrl-C (the abort) ends it with exit 0');
  });

  it('--watch redraws in place in a terminal, follows a change, and gives the terminal back on Ctrl-C', async () => {
    const sock = `drover-fleet-${process.pid}`;
    const tmux = (...args: string[]) => run('tmux', ['-L', sock, '-f', '/dev/null', ...args]);
    const config = join(dataDir, 'cli-config');
    // The token reaches the CLI in a 0600 file, not on a command line.
    await writeFile(config, JSON.stringify({ server: t.apiUrl, token: t.token, certificateAuthority: t.ca }), { mode: 0o600 });
    const command = `cd ${ROOT} && DROVER_CONFIG=${config} DROVER_CA_FILE= ${process.execPath} --import tsx src/main.ts fleet status --watch --interval 1s; echo "drover exited $?"; sleep 60`;
    await tmux('new-session', '-d', '-s', 'fleet', '-x', '160', '-y', '80', command);
    const screen = async () => (await tmux('capture-pane', '-p', '-t', 'fleet')).stdout;
    try {
      await waitFor('the first frame', async () => (await screen()).includes(`FLEET  ${NODES} nodes`), 30_000);
      const want = expected();
      // One node goes away: the count follows, drawn over the old frame, not below it.
      assert.equal((await t.api('DELETE', `/api/v1/nodes/${design(1).name}`)).status, 200);
      const after = await waitFor('the redrawn frame', async () => {
        const s = await screen();
        return s.includes(`FLEET  ${NODES - 1} nodes`) ? s : undefined;
      }, 30_000);
      assert.equal(after.split('FLEET ').length - 1, 1, `one frame on the screen:\n${after}`);
      assert.match(after, new RegExp(`NotReady\\s+${want.byState.notReady - 1}\\s`));
      await tmux('send-keys', '-t', 'fleet', 'C-c');
      // The shell prints the CLI's exit status on the normal screen once it is back.
      const done = await waitFor('the CLI to exit', async () => /drover exited (\d+)/.exec(await screen())?.[1], 15_000).catch(async (err: Error) => {
        throw new Error(`${err.message}; the screen:\n${await screen()}`);
      });
      assert.equal(done, '0', 'Ctrl-C ends it with exit 0');
      // Back on the normal screen: the frames were on the alternate one.
      assert.ok(!(await screen()).includes('FLEET'), 'the terminal is given back as it was');
    } finally {
      await tmux('kill-server').catch(() => undefined);
    }
  });
});
