/**
 * What an idle agent's link costs per day, counted on the wire, against the MQTT ping floor (a client that
 * only keeps its connection alive). A real server (embedded aedes broker, TLS) in this process, real agents
 * (the join, MQTT over TLS with the node certificate, a fake container runtime: the link is what is
 * measured) dialing the broker through a relay on loopback that counts the TCP payload both ways (TLS
 * records included), and `ss` for the TCP segments of the agent's socket (data and pure ACKs), each
 * costing 52 bytes of headers on the wire (IPv4 20 + TCP with timestamps 32).
 *
 *   floor     a bare MQTT client with a node's certificate, keepalive --floor-keepalive (5 s): bytes per
 *             PINGREQ/PINGRESP exchange, so the floor per day at any keepalive (15 s: the default
 *             profile; 300 s: the issue's anchor, 46 KB/day)
 *   idle      an agent with the default link profile (keepalive 15 s, heartbeat 600 s) and --pods pods,
 *             idle for --window seconds: its pings and anything else it sends
 *   heartbeat the same agent set-up with --heartbeat-probe (10 s) heartbeats: the bytes one heartbeat
 *             adds (total less its pings), to add the 144 heartbeats a day the idle window is too short for
 *   desired   the desired state of a node with --pods pods, plain JSON and DEFLATE (hello accepts)
 *
 * Run: npx tsx bench/link-bytes.ts [--window 120] [--pods 10] [--idle-heartbeat S] [--out link-bytes]
 *   → bench/results/link-bytes.json and .md. A --window of 1200 or more also sees real heartbeats.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { AGENT_DEFAULTS, LINK_PROFILES } from '../agent/config.js';
import { startAgent } from '../agent/run.js';
import { silentLogger } from '../src/util/logger.js';
import { startTestServer } from '../test/helpers/cluster.js';
import { FakeRuntime } from '../test/helpers/fake-runtime.js';
import { machine, numArg, parseArgs, round, sleep, writeResult } from './lib/common.js';

const args = parseArgs(process.argv.slice(2));
const WINDOW_S = numArg(args, 'window', 120);
const PODS = numArg(args, 'pods', 10);
const FLOOR_KEEPALIVE_S = numArg(args, 'floor-keepalive', 5);
const FLOOR_WINDOW_S = numArg(args, 'floor-window', 60);
const PROBE_HEARTBEAT_S = numArg(args, 'heartbeat-probe', 10);
const PROBE_WINDOW_S = numArg(args, 'probe-window', 60);
const OUT = args.get('out') ?? 'link-bytes';
/** The idle agent's heartbeat (default: the default profile's); `--idle-heartbeat 30` is the agent before issue 13. */
const IDLE_HEARTBEAT_S = numArg(args, 'idle-heartbeat', LINK_PROFILES.default.heartbeatSeconds);
const HEADER_BYTES = 52;
const DAY = 86_400;

/** A relay to the broker that counts TCP payload bytes each way. */
async function countingRelay(targetPort: number) {
  let up = 0;
  let down = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (b) => ((up += b.length), upstream.write(b)));
    upstream.on('data', (b) => ((down += b.length), client.write(b)));
    const close = () => (client.destroy(), upstream.destroy());
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    bytes: () => ({ up, down }),
    /** segs_out + segs_in of the client sockets connected to the relay (the agent's side of the link). */
    segments(): number {
      const out = execFileSync('ss', ['-tinH', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
      let n = 0;
      for (const m of out.matchAll(/segs_out:(\d+) segs_in:(\d+)/g)) n += Number(m[1]) + Number(m[2]);
      return n;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

type Relay = Awaited<ReturnType<typeof countingRelay>>;

/** Bytes on the wire over a window: payload both ways plus headers of every segment. */
async function measure(relay: Relay, seconds: number): Promise<{ seconds: number; payloadUp: number; payloadDown: number; segments: number; wireBytes: number }> {
  const b0 = relay.bytes();
  const s0 = relay.segments();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const b1 = relay.bytes();
  const s1 = relay.segments();
  const sec = (performance.now() - t0) / 1000;
  const payloadUp = b1.up - b0.up;
  const payloadDown = b1.down - b0.down;
  const segments = s1 - s0;
  return { seconds: round(sec, 1), payloadUp, payloadDown, segments, wireBytes: payloadUp + payloadDown + segments * HEADER_BYTES };
}

async function main(): Promise<void> {
  console.log(`link bytes: window ${WINDOW_S} s, ${PODS} pods; machine ${JSON.stringify(machine())}`);
  const t = await startTestServer({ logger: silentLogger });
  const brokerPort = Number(new URL(t.mqttUrl).port);
  const dirs: string[] = [];
  try {
    // The floor: a client that does nothing but keep its connection alive.
    const floorRelay = await countingRelay(brokerPort);
    const creds = await t.joinNode('floor');
    const client = mqtt.connect(`mqtts://127.0.0.1:${floorRelay.port}`, { ...creds, servername: 'localhost', keepalive: FLOOR_KEEPALIVE_S, reschedulePings: false, clean: true });
    let pingresps = 0;
    client.on('packetreceive', (p) => {
      if (p.cmd === 'pingresp') pingresps++;
    });
    await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
    await sleep(2000);
    const p0 = pingresps;
    const floorWindow = await measure(floorRelay, FLOOR_WINDOW_S);
    const exchanges = pingresps - p0;
    await client.endAsync();
    await floorRelay.close();
    const perExchange = exchanges > 0 ? floorWindow.wireBytes / exchanges : NaN;
    const floorPerDay = (keepalive: number) => Math.round((DAY / keepalive) * perExchange);
    console.log(`floor: ${exchanges} ping exchanges, ${round(perExchange, 1)} B each on the wire (${floorWindow.segments} segments)`);

    const runtime = () => new FakeRuntime();
    const agentVia = async (node: string, relay: Relay, heartbeatSeconds: number) => {
      const stateDir = await mkdtemp(join(tmpdir(), `drover-link-bytes-${node}-`));
      dirs.push(stateDir);
      const a = await startAgent(
        {
          node,
          serverUrl: t.apiUrl,
          token: t.joinToken,
          mqttUrl: `mqtts://127.0.0.1:${relay.port}`,
          tlsServerName: 'localhost',
          stateDir,
          labels: {},
          runtime: {},
          heartbeatSeconds,
          resyncSeconds: AGENT_DEFAULTS.resyncSeconds,
          keepaliveSeconds: LINK_PROFILES.default.keepaliveSeconds,
        },
        { logger: silentLogger, runtime: runtime() },
      );
      for (let i = 0; i < PODS; i++) {
        await t.api('POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: `${node}-${i}` }, spec: { nodeName: node, containers: [{ name: 'main', image: 'busybox' }] } });
      }
      const deadline = Date.now() + 60_000;
      for (;;) {
        const l = (await t.api('GET', '/api/v1/namespaces/default/pods')).body as { items: Array<{ metadata: { name: string }; status?: { phase?: string } }> };
        if (l.items.filter((p) => p.metadata.name.startsWith(`${node}-`) && p.status?.phase === 'Running').length === PODS) break;
        if (Date.now() > deadline) throw new Error(`${node}: ${PODS} pods not Running within 60 s`);
        await sleep(250);
      }
      await sleep(5000);
      return a;
    };

    // The default profile, idle.
    const idleRelay = await countingRelay(brokerPort);
    const idle = await agentVia('idle', idleRelay, IDLE_HEARTBEAT_S);
    const idleWindow = await measure(idleRelay, WINDOW_S);
    await idle.close();
    await idleRelay.close();
    const idlePerDay = Math.round((idleWindow.wireBytes / idleWindow.seconds) * DAY);
    console.log(`idle agent: ${idleWindow.wireBytes} B on the wire in ${idleWindow.seconds} s`);

    // What one heartbeat adds: an agent heartbeating every few seconds, less its pings (every keepalive).
    const probeRelay = await countingRelay(brokerPort);
    const probe = await agentVia('probe', probeRelay, PROBE_HEARTBEAT_S);
    const probeWindow = await measure(probeRelay, PROBE_WINDOW_S);
    await probe.close();
    await probeRelay.close();
    const probePings = probeWindow.seconds / LINK_PROFILES.default.keepaliveSeconds;
    const beats = probeWindow.seconds / PROBE_HEARTBEAT_S;
    const perHeartbeat = Math.max(0, (probeWindow.wireBytes - probePings * perExchange) / beats);
    console.log(`heartbeat: ${round(perHeartbeat, 1)} B each on the wire`);

    const hbDefault = IDLE_HEARTBEAT_S;
    const heartbeatsInWindow = Math.floor(idleWindow.seconds / hbDefault);
    // The window holds whole heartbeats only when it is long: otherwise the day's heartbeats are added.
    const defaultPerDay = heartbeatsInWindow > 0 ? idlePerDay : Math.round(idlePerDay + (DAY / hbDefault) * perHeartbeat);
    const cellular = LINK_PROFILES.cellular;
    const cellularPerDay = Math.round(floorPerDay(cellular.keepaliveSeconds) + (DAY / cellular.heartbeatSeconds) * perHeartbeat);

    const pods = Array.from({ length: PODS }, (_, i) => ({ uid: `u${i}`, namespace: 'default', name: `web-${i}`, spec: { restartPolicy: 'Always' as const, terminationGracePeriodSeconds: 30, containers: [{ name: 'main', image: 'registry.example/web:1.4.2', command: ['web', '--port', '8080'], env: [{ name: 'MODE', value: 'edge' }] }] } }));
    const d = { node: 'edge-1', generation: 1, pods, configMaps: [], secrets: [], ts: new Date().toISOString() };
    // Absent from trees before compressed desired state (a before run of this bench).
    const encodeDesired = (await import('../server/desired/publisher.js').catch(() => ({}))) as { encodeDesired?: (d: unknown, e: string[] | undefined) => { payload: Buffer } };
    const desired = encodeDesired.encodeDesired ? { plainBytes: encodeDesired.encodeDesired(d, undefined).payload.length, deflateBytes: encodeDesired.encodeDesired(d, ['deflate']).payload.length } : { plainBytes: Buffer.from(JSON.stringify(d)).length, deflateBytes: undefined };

    const result = {
      command: `npx tsx bench/link-bytes.ts ${process.argv.slice(2).join(' ')}`.trim(),
      headerBytesPerSegment: HEADER_BYTES,
      floor: { keepaliveSeconds: FLOOR_KEEPALIVE_S, window: floorWindow, exchanges, wireBytesPerExchange: round(perExchange, 1), perDayAtKeepalive15: floorPerDay(15), perDayAtKeepalive300: floorPerDay(300) },
      idle: { profile: 'default', keepaliveSeconds: LINK_PROFILES.default.keepaliveSeconds, heartbeatSeconds: hbDefault, pods: PODS, window: idleWindow, windowPerDay: idlePerDay, heartbeatsInWindow },
      heartbeat: { probeHeartbeatSeconds: PROBE_HEARTBEAT_S, window: probeWindow, wireBytesPerHeartbeat: round(perHeartbeat, 1) },
      perAgentPerDay: {
        default: defaultPerDay,
        defaultVsFloor15: round(defaultPerDay / floorPerDay(15), 3),
        cellularEstimateFromMeasuredParts: cellularPerDay,
        cellularVsFloor300: round(cellularPerDay / floorPerDay(300), 3),
      },
      desiredState: { pods: PODS, ...desired },
    };
    console.log(`wrote ${writeResult(OUT, result)}`);
    const kb = (b: number) => `${round(b / 1000, 1)} KB`;
    const m = machine() as { loadAverage: number[] };
    writeFileSync(
      new URL(`results/${OUT}.md`, import.meta.url),
      [
        '# idle link bytes per agent per day, on the wire',
        '',
        `${new Date().toISOString()}, node ${process.version}, load ${m.loadAverage.join(' / ')}; \`${result.command}\`. Real server (embedded aedes, TLS) and agents (fake runtime) in one process; TCP payload counted by a relay, segments by ss, ${HEADER_BYTES} B of IPv4+TCP headers each. Raw: ${OUT}.json.`,
        '',
        '| what | per day on the wire | vs the ping floor |',
        '|---|---|---|',
        `| MQTT ping floor, keepalive 15 s (the default profile's) | ${kb(floorPerDay(15))} (${round(perExchange, 1)} B per ping exchange, measured) | 1 |`,
        `| MQTT ping floor, keepalive 300 s (the issue's anchor: 46 KB) | ${kb(floorPerDay(300))} | 1 |`,
        `| ${hbDefault === LINK_PROFILES.default.heartbeatSeconds ? 'default agent' : 'agent'}, ${PODS} pods, keepalive 15 s, heartbeat ${hbDefault} s | ${kb(defaultPerDay)} (${idleWindow.seconds} s window${heartbeatsInWindow > 0 ? '' : ` + ${DAY / hbDefault} heartbeats of ${round(perHeartbeat, 1)} B`}) | ${result.perAgentPerDay.defaultVsFloor15}× the 15 s floor (goal ≤ 1.1×) |`,
        `| cellular agent (keepalive ${cellular.keepaliveSeconds} s, heartbeat ${cellular.heartbeatSeconds} s), from the measured parts | ${kb(cellularPerDay)} | ${result.perAgentPerDay.cellularVsFloor300}× the 300 s floor |`,
        `| desired state of a node with ${PODS} pods | ${desired.plainBytes} B JSON → ${desired.deflateBytes ?? '(no DEFLATE in this tree)'} B DEFLATE (hello accepts) | |`,
        '',
      ].join('\n'),
    );
  } finally {
    await t.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
