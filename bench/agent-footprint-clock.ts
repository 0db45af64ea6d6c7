/**
 * What the agent does when certificate dates and its clock disagree: the behaviour firmware-notes/clocks.md
 * describes, observed with a real server (embedded broker, TLS) and a real agent in this process (a
 * stand-in container runtime: no containers are involved). Not a timing benchmark: it records which log
 * lines the agent wrote and whether it connected. (Named agent-footprint-clock for the files the
 * firmware-notes helper owns.)
 *
 * A device clock behind the server certificate's start is made the other way round: a stand-in endpoint
 * presents a server certificate (same CA, same key and names as the real one) that starts two days from
 * now, which is what a device whose clock is two days behind sees. (The real server cannot be given such
 * a certificate: its own link to its embedded broker checks it too, and it refuses to start.) The
 * stand-in answers GET /cacerts with the cluster CA, as the server does; nothing gets past the TLS check.
 *   A  a device that has not joined yet meets it: the join is refused, startAgent throws.
 *   B  a device that joined before meets it: the MQTT link is refused by the device, retried.
 *   C  the node certificate expires while the agent runs (a 2-minute certificate, --node-cert-days as a
 *      fraction), then the server restarts so the agent reconnects: refused by the broker; an agent
 *      started again renews at start (expired certificates renew) and connects.
 *
 * Run: npx tsx bench/agent-footprint-clock.ts → bench/results/agent-footprint-clock.json and .md
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '../agent/config.js';
import { startAgent, type RunningAgent } from '../agent/run.js';
import { startServer, type RunningServer } from '../server/run.js';
import type { ServerConfig } from '../server/config.js';
import { serverSans } from '../server/pki/pki.js';
import { issueCertificate } from '../server/pki/x509.js';
import { createLogger, silentLogger } from '../src/util/logger.js';
import { FakeRuntime } from '../test/helpers/fake-runtime.js';
import { freePort, sleep, writeResult } from './lib/common.js';

interface LogLine {
  level: number;
  msg: string;
  code?: unknown;
  err?: unknown;
}

/** An agent in this process whose log lines are kept. */
async function agentWithLog(cfg: AgentConfig): Promise<{ agent?: RunningAgent; error?: string; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const logger = createLogger({ name: 'drover-agent', level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) } });
  try {
    return { agent: await startAgent(cfg, { logger, runtime: new FakeRuntime() }), lines };
  } catch (err) {
    return { error: (err as Error).message, lines };
  }
}

const connected = (lines: LogLine[]) => lines.some((l) => /^(re)?connected to server$/.test(l.msg));

/** Log lines at warn and up, counted by message (and OpenSSL code where there is one). */
function summary(lines: LogLine[]): Array<{ level: string; msg: string; code?: unknown; err?: unknown; count: number }> {
  const by = new Map<string, { level: string; msg: string; code?: unknown; err?: unknown; count: number }>();
  for (const l of lines) {
    if (l.level < 40) continue;
    const key = `${l.level} ${l.msg} ${String(l.code ?? '')}`;
    const e = by.get(key) ?? { level: l.level >= 50 ? 'error' : 'warn', msg: l.msg, code: l.code, err: typeof l.err === 'string' ? l.err.slice(0, 200) : undefined, count: 0 };
    e.count++;
    by.set(key, e);
  }
  return [...by.values()];
}

async function main(): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'drover-clock-'));
  const servers: RunningServer[] = [];
  const agents: RunningAgent[] = [];
  const standIns: Array<{ close(cb?: () => void): unknown; closeAllConnections?: () => void }> = [];
  const serve = async (cfg: ServerConfig) => {
    const s = await startServer(cfg, silentLogger);
    servers.push(s);
    return s;
  };
  const stopServer = async (s: RunningServer) => {
    await s.close();
    servers.splice(servers.indexOf(s), 1);
  };
  const stopAgent = async (a: RunningAgent | undefined) => {
    if (!a) return;
    await a.close();
    agents.splice(agents.indexOf(a), 1);
  };
  const agentCfg = (server: RunningServer, node: string, stateDir: string): AgentConfig => ({
    node,
    serverUrl: server.apiUrl,
    token: server.joinToken,
    stateDir,
    labels: {},
    runtime: {},
    heartbeatSeconds: 30,
    resyncSeconds: 10,
    keepaliveSeconds: 15,
    // Retries every 5 s at most instead of 15, so a 20 s window shows several.
    reconnectMaxSeconds: 5,
    logLevel: 'debug',
  });
  const run = async (cfg: AgentConfig) => {
    const r = await agentWithLog(cfg);
    if (r.agent) agents.push(r.agent);
    return r;
  };
  const result: Record<string, unknown> = {};
  try {
    // ── A and B: a server certificate that starts two days from now
    const dataDir = join(tmp, 'server');
    const base: ServerConfig = { dataDir, apiHost: '127.0.0.1', apiPort: await freePort(), mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() } };
    let server = await serve(base);
    const joined = await run(agentCfg(server, 'clock-b', join(tmp, 'agent-b')));
    for (let i = 0; i < 100 && !connected(joined.lines); i++) await sleep(100);
    if (!connected(joined.lines)) throw new Error(`clock-b did not connect: ${joined.error ?? JSON.stringify(summary(joined.lines))}`);
    await stopAgent(joined.agent);

    const tls = join(dataDir, 'tls');
    const [caCert, caKey, serverKey] = await Promise.all(['ca.crt', 'ca.key', 'server.key'].map((f) => readFile(join(tls, f), 'utf8')));
    const sans = serverSans([]);
    const future = issueCertificate({
      subject: { cn: 'drover-server', o: 'drover' },
      publicKeyPem: createPublicKey(serverKey).export({ type: 'spki', format: 'pem' }).toString(),
      issuer: { certPem: caCert!, keyPem: caKey! },
      usage: 'server',
      days: 365,
      now: Date.now() + 2 * 86400_000,
      dnsNames: sans.dns,
      ips: sans.ips,
    });
    const endpoint = { key: serverKey!, cert: future.pem };
    const api = createHttpsServer(endpoint, (req, res) => res.writeHead(req.url === '/cacerts' ? 200 : 404).end(req.url === '/cacerts' ? caCert : ''));
    const broker: TlsServer = createTlsServer(endpoint, (sock) => sock.on('error', () => sock.destroy()));
    const listen = (srv: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }) =>
      new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port)));
    const apiPort = await listen(api);
    const brokerPort = await listen(broker);
    standIns.push(api, broker);

    const b = await run({ ...agentCfg(server, 'clock-b', join(tmp, 'agent-b')), mqttUrl: `mqtts://127.0.0.1:${brokerPort}` });
    await sleep(20_000);
    result.B_joinedDeviceClockBehindServerCert = {
      serverCertNotBefore: future.notBefore.toISOString(),
      agentStarted: b.agent !== undefined,
      startError: b.error,
      connectedWithin20s: connected(b.lines),
      logs: summary(b.lines),
    };
    await stopAgent(b.agent);

    const a = await run({ ...agentCfg(server, 'clock-a', join(tmp, 'agent-a')), serverUrl: `https://127.0.0.1:${apiPort}` });
    result.A_newDeviceClockBehindServerCert = { agentStarted: a.agent !== undefined, startError: a.error, logs: summary(a.lines) };
    await stopAgent(a.agent);
    await stopServer(server);

    // ── C: the node certificate expires while the agent runs
    const shortDir = join(tmp, 'server-c');
    const CERT_SECONDS = 120;
    const c: ServerConfig = { dataDir: shortDir, apiHost: '127.0.0.1', apiPort: await freePort(), mqtt: { mode: 'embedded', host: '127.0.0.1', port: await freePort() }, nodeCertDays: CERT_SECONDS / 86400 };
    server = await serve(c);
    const first = await run(agentCfg(server, 'clock-c', join(tmp, 'agent-c')));
    for (let i = 0; i < 100 && !connected(first.lines); i++) await sleep(100);
    const certPem = await readFile(join(tmp, 'agent-c', 'credentials', 'node.crt'), 'utf8');
    const notAfter = Date.parse(new X509Certificate(certPem).validTo);
    await sleep(Math.max(0, notAfter - Date.now()) + 5_000);
    const linesBeforeRestart = first.lines.length;
    await stopServer(server);
    server = await serve(c);
    await sleep(30_000);
    const afterRestart = first.lines.slice(linesBeforeRestart);
    const stillRunning = {
      certificateNotAfter: new Date(notAfter).toISOString(),
      connectedAgainWithin30s: connected(afterRestart),
      renewedWithin30s: afterRestart.some((l) => l.msg === 'node certificate renewed'),
      logs: summary(afterRestart),
    };
    await stopAgent(first.agent);
    const again = await run(agentCfg(server, 'clock-c', join(tmp, 'agent-c')));
    for (let i = 0; i < 150 && !connected(again.lines); i++) await sleep(100);
    result.C_nodeCertificateExpiredWhileRunning = {
      nodeCertSeconds: CERT_SECONDS,
      runningAgentAfterServerRestart: stillRunning,
      agentStartedAgain: { renewedAtStart: again.lines.some((l) => l.msg === 'node certificate renewed'), connectedWithin15s: connected(again.lines), startError: again.error, logs: summary(again.lines) },
    };
    await stopAgent(again.agent);
    await stopServer(server);
  } finally {
    for (const a of [...agents]) await a.close().catch((err: unknown) => console.warn(`agent close: ${String(err)}`));
    for (const s of [...servers]) await s.close().catch((err: unknown) => console.warn(`server close: ${String(err)}`));
    for (const s of standIns) {
      s.closeAllConnections?.();
      s.close();
    }
    await rm(tmp, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result, null, 2));
  console.log(`wrote ${writeResult('agent-footprint-clock', result)}`);
  await writeFile(new URL('results/agent-footprint-clock.md', import.meta.url), markdown(result));
}

function markdown(r: Record<string, unknown>): string {
  const b = r.B_joinedDeviceClockBehindServerCert as { connectedWithin20s: boolean; logs: Array<{ level: string; msg: string; code?: unknown; count: number }> };
  const a = r.A_newDeviceClockBehindServerCert as { startError?: string };
  const c = r.C_nodeCertificateExpiredWhileRunning as {
    runningAgentAfterServerRestart: { connectedAgainWithin30s: boolean; renewedWithin30s: boolean; logs: Array<{ level: string; msg: string; code?: unknown; count: number }> };
    agentStartedAgain: { renewedAtStart: boolean; connectedWithin15s: boolean };
  };
  const logs = (l: Array<{ level: string; msg: string; code?: unknown; count: number }>) => l.map((x) => `${x.count} x ${x.level} "${x.msg}"${x.code ? ` (code ${String(x.code)})` : ''}`).join('; ') || 'none at warn or above';
  return [
    '# agent and certificate dates (clock experiment)',
    '',
    `${new Date().toISOString()}; \`npx tsx bench/agent-footprint-clock.ts\`; raw: agent-footprint-clock.json. Real server and agent in one process, stand-in runtime; reconnect back-off capped at 5 s.`,
    '',
    '| case | what happened |',
    '|---|---|',
    `| A: new device, clock behind the server certificate's start (made as a server certificate starting in 2 days) | the agent did not start: \`${a.startError ?? '(it started)'}\` |`,
    `| B: joined device, same | connected within 20 s: ${b.connectedWithin20s}; logs: ${logs(b.logs)} |`,
    `| C: node certificate expired while the agent ran, then the server restarted | reconnected within 30 s: ${c.runningAgentAfterServerRestart.connectedAgainWithin30s}; renewed within 30 s: ${c.runningAgentAfterServerRestart.renewedWithin30s}; logs: ${logs(c.runningAgentAfterServerRestart.logs)} |`,
    `| C, the agent started again | renewed at start: ${c.agentStartedAgain.renewedAtStart}; connected: ${c.agentStartedAgain.connectedWithin15s} |`,
    '',
  ].join('\n');
}

await main();
