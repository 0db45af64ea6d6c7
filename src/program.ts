/**
 * The `drover` program: `drover server`, `drover agent`, and the fleet CLI verbs, built on the io it
 * is handed (src/main.ts hands it the process; tests run CLI verbs in process with their own). The
 * only file that wires server/, agent/ and src/cli together.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { AGENT_DEFAULTS, AGENT_VERSION, RUNTIME_KINDS, defaultNodeName, defaultStateDir, imageBandwidth, linkSettings, parseBandwidth, type RuntimeKind } from '../agent/config.js';
import type { RunningAgent } from '../agent/run.js';
import { parseMetricsAddress } from '../agent/metrics.js';
import { DEFAULTS, defaultDataDir, type ServerConfig } from '../server/config.js';
import { DEFAULT_MQTT_LIMITS } from '../server/mqtt/limits.js';
import { EVENT_TTL_MS, EVENTS_PER_OBJECT } from '../server/controllers/event-expiry.js';
import { MAX_REPLICAS } from './api/workloads.js';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR } from './api/service.js';
import { parseCidr } from './net/ipv4.js';
import { parsePortRange } from '../server/services/allocate.js';
import { errorMessage } from './util/errors.js';
import { createLogger } from './util/logger.js';

function collectLabel(value: string, prev: Record<string, string>): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new Error(`--label expects key=value, got "${value}"`);
  return { ...prev, [value.slice(0, i)]: value.slice(i + 1) };
}

/** A whole number of at least 1 (a count or a period in seconds). */
function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a whole number of at least 1, got "${v}"`);
  return n;
}

function collect(value: string, prev: string[]): string[] {
  return [...prev, value];
}

/**
 * The join token of `drover agent`: from --token-file or DROVER_TOKEN, never from argv (every user
 * sees argv in `ps`). Removed from the environment once read, so no child process inherits it.
 */
async function agentJoinToken(o: { token?: string; tokenFile?: string }): Promise<string | undefined> {
  if (o.token !== undefined) {
    throw new Error('--token is not accepted: a token on the command line is visible to every user in `ps`; put it in a file (--token-file FILE, mode 0600) or in DROVER_TOKEN');
  }
  const fromEnv = process.env.DROVER_TOKEN;
  delete process.env.DROVER_TOKEN;
  if (o.tokenFile) {
    const text = await readFile(o.tokenFile, 'utf8').catch((err: unknown) => {
      // A joined node needs no token: a token file removed after the join (as the README advises) is
      // fine; agent/run.ts refuses with its own message when the node has not joined yet.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read --token-file ${o.tokenFile}: ${errorMessage(err)}`, { cause: err });
    });
    if (text === undefined) return fromEnv || undefined;
    if (!text.trim()) throw new Error(`--token-file ${o.tokenFile} is empty`);
    return text.trim();
  }
  return fromEnv || undefined;
}

function maxReplicas(v: string): number {
  const n = count(v);
  if (n > MAX_REPLICAS) throw new Error(`--max-replicas is at most ${MAX_REPLICAS}, got ${n}`);
  return n;
}

function serviceCidr(v: string): string {
  try {
    parseCidr(v);
    return v;
  } catch (err) {
    throw new Error(`--service-cidr: ${errorMessage(err)}`, { cause: err });
  }
}

function nodePortRange(v: string): string {
  try {
    parsePortRange(v);
    return v;
  } catch (err) {
    throw new Error(`--service-node-port-range: ${errorMessage(err)}`, { cause: err });
  }
}

function runtimeKind(v: string): RuntimeKind {
  if (!(RUNTIME_KINDS as readonly string[]).includes(v)) throw new Error(`--runtime: "${v}" is not a runtime; use ${RUNTIME_KINDS.join(', ')}`);
  return v as RuntimeKind;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`invalid port "${v}"`);
  return n;
}

/** Writes ~/.drover/config (0600) for the local user, unless one for another server is already there. */
function sameAddress(a: string, b: string): boolean {
  if (!URL.canParse(a) || !URL.canParse(b)) return false;
  const [x, y] = [new URL(a), new URL(b)];
  return x.hostname === y.hostname && x.port === y.port;
}

async function writeClientConfig(apiUrl: string, token: string, ca: string): Promise<string | undefined> {
  const path = process.env.DROVER_CONFIG ?? join(homedir(), '.drover', 'config');
  try {
    const cur = JSON.parse(await readFile(path, 'utf8')) as { server?: string };
    // Another server's config is the user's: left alone. The same address with http:// is this
    // server before TLS (an upgrade): rewritten, or the CLI would speak plain HTTP to the TLS port.
    if (cur.server && !sameAddress(cur.server, apiUrl)) return undefined;
  } catch (err) {
    // Missing: write a fresh one. Anything else (not JSON, not readable) is the user's file: leave it.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${path} exists but cannot be used (${errorMessage(err)}); not overwritten`, { cause: err });
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, JSON.stringify({ server: apiUrl, token, certificateAuthority: ca }, null, 2) + '\n', { mode: 0o600 });
  await chmod(path, 0o600);
  return path;
}

/**
 * DATA_DIR/kubeconfig.yaml (0600) for the real kubectl, rewritten at every start (as k3s writes
 * k3s.yaml): the admin token, the cluster CA, the API's address. Over plain HTTP kubectl sends no token,
 * so an --insecure server writes none.
 */
async function writeKubeconfig(dataDir: string, apiUrl: string, token: string, ca: string): Promise<string | undefined> {
  if (!apiUrl.startsWith('https://')) return undefined;
  const path = join(dataDir, 'kubeconfig.yaml');
  const [{ kubeconfig, writePrivate }, { toYaml }] = await Promise.all([import('./cli/kubeconfig.js'), import('./cli/output.js')]);
  await writePrivate(path, toYaml(kubeconfig({ server: apiUrl, token, ca, name: 'drover' })));
  return path;
}

/** The first non-loopback IPv4 address: a reasonable guess of how other devices reach this one. */
function primaryAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stopping) process.exit(1);
      stopping = true;
      stop().then(() => process.exit(0), () => process.exit(1));
    });
  }
}

function agentOptions(cmd: Command): Command {
  return cmd
    .option('--node-name <name>', 'name of this node', defaultNodeName())
    .option('--state-dir <dir>', 'agent state directory (desired-state cache)', defaultStateDir())
    .option('--label <key=value>', 'node label (repeatable)', collectLabel, {})
    .option('--node-ip <address>', "address this node is known by (INTERNAL-IP, pods' hostIP); default: the local address of its connection to the server")
    .option('--runtime <name>', 'container runtime: auto (podman, else nerdctl), podman or nerdctl', runtimeKind, 'auto')
    .option('--podman-root <dir>', 'podman --root (storage) for drover containers')
    .option('--podman-runroot <dir>', 'podman --runroot for drover containers')
    .option('--nerdctl-namespace <ns>', "containerd namespace of drover's containers (nerdctl)", 'drover')
    .option('--containerd-address <path>', "containerd socket for nerdctl (default: nerdctl's own)")
    .option('--link-profile <name>', 'default, or cellular for metered links: keepalive 1,200 s, heartbeat 1 h, events batched by the minute, desired state compressed, reconnects at most 30 s apart (--keepalive/--heartbeat/--reconnect-max still win)', 'default')
    .option('--heartbeat <seconds>', `status heartbeat period (default ${AGENT_DEFAULTS.heartbeatSeconds}; status is also sent whenever it changes)`, (v) => Number(v))
    .option('--resync <seconds>', 'reconcile period when nothing changes', (v) => Number(v), AGENT_DEFAULTS.resyncSeconds)
    .option('--keepalive <seconds>', `MQTT keepalive, which also tells the server the node is alive (default ${AGENT_DEFAULTS.keepaliveSeconds})`, (v) => Number(v))
    .option('--runtime-failures <n>', 'failed container runtime calls in a row before the node reports NotReady', (v) => Number(v), AGENT_DEFAULTS.runtimeFailures)
    .option('--reconnect-max <seconds>', `longest pause between attempts to reach the server (default ${AGENT_DEFAULTS.reconnectMaxSeconds}; 30 with --link-profile cellular)`, (v) => Number(v))
    .option('--image-bandwidth <rate>', "budget for fetching the server's images, e.g. 256KiB/s or 2MB/s (default: none; 64KiB/s with --link-profile cellular)", (v: string) => parseBandwidth(v))
    .option('--connect-timeout <seconds>', 'longest wait for the server to accept a connection', (v) => Number(v), AGENT_DEFAULTS.connectTimeoutSeconds)
    .option('--metrics-addr <[host:]port>', 'serve Prometheus metrics (reconcile and container runtime call durations, process memory and CPU) at http://ADDR/metrics; a bare port listens on 127.0.0.1 (default: not served)')
    .option('--metrics-allow-remote', "allow --metrics-addr on an address that is not loopback: the agent's metrics have no authentication, anyone who reaches the port reads them");
}

type AgentFlags = {
  nodeName: string;
  stateDir: string;
  label: Record<string, string>;
  nodeIp?: string;
  runtime: RuntimeKind;
  podmanRoot?: string;
  podmanRunroot?: string;
  nerdctlNamespace: string;
  containerdAddress?: string;
  linkProfile: string;
  heartbeat?: number;
  resync: number;
  keepalive?: number;
  runtimeFailures: number;
  reconnectMax?: number;
  connectTimeout: number;
  imageBandwidth?: number;
  metricsAddr?: string;
  metricsAllowRemote?: boolean;
  logLevel?: string;
};

function agentConfig(o: AgentFlags, serverUrl: string, token: string | undefined, extra: { mqttUrl?: string; tlsServerName?: string } = {}) {
  return {
    node: o.nodeName,
    serverUrl,
    token,
    ...extra,
    stateDir: o.stateDir,
    labels: o.label,
    nodeIP: o.nodeIp,
    runtime: { kind: o.runtime, podmanRoot: o.podmanRoot, podmanRunroot: o.podmanRunroot, nerdctlNamespace: o.nerdctlNamespace, containerdAddress: o.containerdAddress },
    ...linkSettings(o.linkProfile, { heartbeatSeconds: o.heartbeat, keepaliveSeconds: o.keepalive, reconnectMaxSeconds: o.reconnectMax }),
    imageBandwidthBytesPerSecond: imageBandwidth(o.linkProfile, o.imageBandwidth),
    resyncSeconds: o.resync,
    runtimeFailures: o.runtimeFailures,
    connectTimeoutSeconds: o.connectTimeout,
    metricsAddress: o.metricsAddr === undefined ? undefined : parseMetricsAddress(o.metricsAddr, { allowRemote: o.metricsAllowRemote }),
    logLevel: o.logLevel,
  };
}

/** Where the program reads and writes: the process's own streams and environment unless told otherwise. */
export interface ProgramIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env?: NodeJS.ProcessEnv;
  stdin?: () => Promise<string>;
  signal?: AbortSignal;
}

const processIo: ProgramIo = { stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s) };

/**
 * The fleet CLI's verbs, loaded for a CLI command only: `drover agent` and `drover server` keep their
 * modules (and yaml's) out of their memory (a device's agent has ~50 MB to live in).
 */
export async function loadCliVerbs() {
  const [exec, broker, cli, datastore, secrets] = await Promise.all([import('./cli/exec.js'), import('./cli/broker.js'), import('./cli/program.js'), import('./cli/datastore.js'), import('./cli/secrets.js')]);
  return {
    CommandExit: exec.CommandExit,
    registerBrokerCommands: broker.registerBrokerCommands,
    registerCliCommands: cli.registerCliCommands,
    registerDatastoreCommands: datastore.registerDatastoreCommands,
    registerSecretsCommands: secrets.registerSecretsCommands,
  };
}
export type CliVerbs = Awaited<ReturnType<typeof loadCliVerbs>>;

/** The long-running commands: they take no CLI verb, so the verbs are not loaded for them. */
const DAEMONS: ReadonlySet<string> = new Set(['server', 'agent']);

/** The program with `drover server`, `drover agent` and `drover sim`, and the CLI's verbs when `cli` is given. */
export function buildProgram(io: ProgramIo = processIo, cli?: CliVerbs): Command {
  const program = new Command('drover')
    .description('drover: an edge container orchestrator (server, agent and fleet CLI in one binary)')
    .version(AGENT_VERSION)
    .showHelpAfterError(false)
    // Root options (the CLI's global flags) only before the verb; after it, each verb parses its own.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });

  agentOptions(
    program
      .command('server')
      .description('run the control plane (API, store, scheduler, MQTT broker) and a local agent')
      .option('--data-dir <dir>', 'server data directory', defaultDataDir())
      .option('--api-host <host>', `API (HTTPS) listen address (default ${DEFAULTS.apiHost}; ${DEFAULTS.insecureHost} with --insecure)`)
      .option('--api-port <port>', 'API listen port', port, DEFAULTS.apiPort)
      .option('--mqtt-host <host>', `embedded MQTT broker listen address (default ${DEFAULTS.mqttHost}; ${DEFAULTS.insecureHost} with --insecure)`)
      .option('--mqtt-port <port>', `embedded MQTT broker port (default ${DEFAULTS.mqttPort} for MQTT over TLS, ${DEFAULTS.mqttInsecurePort} with --insecure)`, port)
      .option('--insecure', 'plain HTTP and MQTT instead of TLS (tokens and Secrets cross the network in clear); binds to 127.0.0.1 unless --api-host/--mqtt-host say otherwise')
      .option('--tls-san <name>', 'another DNS name or IP address for the server certificate (repeatable)', collect, [])
      .option('--require-approval', 'new nodes wait for `drover node approve NAME` before they may connect')
      .option('--node-cert-days <days>', 'life of a node certificate; agents renew it when a third is left', count, DEFAULTS.nodeCertDays)
      .option('--broker-url <url>', 'use this external MQTT broker instead of the embedded one')
      .option('--broker-username <user>', 'username for the external broker')
      .option('--broker-password <password>', 'password for the external broker (an mqtts:// broker is given the server\'s client certificate instead)')
      .option('--server-id <id>', 'with --broker-url: this server\'s name among several on one broker (its MQTT client id is drover-server-ID; 1-48 of A-Za-z0-9_.-); default with --datastore-endpoint: one kept in DATA_DIR/server-id')
      .option('--advertise-address <host>', 'address other devices use to reach this server')
      .option('--disable-agent', 'do not run a local agent on this machine')
      .option('--downloads-dir <dir>', 'directory of drover-linux-ARCH binaries served at /download/ for install.sh (default DATA_DIR/downloads; a single-binary server also serves itself)')
      .option('--node-missed-heartbeats <n>', 'heartbeats a node may miss before it turns NotReady', count, DEFAULTS.missedHeartbeats)
      .option('--link-flap-threshold <n>', 'disconnects within the flap window that mark a node LinkDegraded', count, DEFAULTS.flapThreshold)
      .option('--link-flap-window <seconds>', 'flap window; a degraded link is stable again after a whole window without a disconnect', count, DEFAULTS.flapWindowMs / 1000)
      .option('--max-pods-per-node <n>', 'pods the scheduler places on one node at most', count, DEFAULTS.maxPodsPerNode)
      .option('--node-request-timeout <seconds>', 'how long a node has to answer `drover logs` (added to an exec command\'s own timeout)', count, DEFAULTS.nodeRequestTimeoutMs / 1000)
      .option('--audit-log-max-size <size>', 'rotate DATA_DIR/audit.log at this size: B, K, M or G (default 10M)')
      .option('--audit-log-max-files <n>', 'rotated audit logs kept: audit.log.1 … audit.log.N (default 5)', count)
      .option('--datastore-endpoint <urls>', 'etcd client URLs, comma-separated (https://etcd-1:2379,https://etcd-2:2379): keep the cluster state in etcd instead of the embedded LevelDB store')
      .option('--datastore-cafile <file>', "PEM CA the etcd members' certificates are checked against")
      .option('--datastore-certfile <file>', 'PEM client certificate presented to etcd')
      .option('--datastore-keyfile <file>', 'PEM key of that client certificate (keep it 0600)')
      .option('--server-token-file <file>', "with --datastore-endpoint: file (0600) holding the cluster's server token, the same on every server (or env DROVER_SERVER_TOKEN); it seals the CA, keyring and tokens the servers share in etcd")
      .option('--leader-elect-lease-duration <seconds>', 'with --datastore-endpoint: how long the leader holds its etcd lease without renewing; a dead leader is replaced after this (whole seconds)', (v) => Number(v), 15)
      .option('--leader-elect-renew-deadline <seconds>', 'with --datastore-endpoint: a leader that could not renew for this long stops its scheduler and controllers (less than the lease duration)', (v) => Number(v), 10)
      .option('--leader-elect-retry-period <seconds>', 'with --datastore-endpoint: how often the leader renews and the others try to take over', (v) => Number(v), 2)
      .option('--allowed-host-paths <dirs>', 'comma-separated host directories pods may mount with hostPath in any namespace (default none: every hostPath needs a namespace labelled drover.io/privileged=true)')
      .option('--mqtt-connect-rate <n>', 'MQTT connection attempts per second per source address (embedded broker)', count, DEFAULT_MQTT_LIMITS.connectRate.perSecond)
      .option('--mqtt-connect-burst <n>', 'MQTT connection attempts a source may make at once before the rate applies', count, DEFAULT_MQTT_LIMITS.connectRate.burst)
      .option('--event-ttl <seconds>', 'Events not updated for this long are deleted', count, EVENT_TTL_MS / 1000)
      .option('--events-per-object <n>', 'Events kept per object (the newest)', count, EVENTS_PER_OBJECT)
      .option('--max-replicas <n>', `cap on replicas, completions and parallelism (at most ${MAX_REPLICAS})`, maxReplicas, MAX_REPLICAS)
      .option('--service-cidr <cidr>', "addresses of Services' cluster IPs", serviceCidr, DEFAULT_SERVICE_CIDR)
      .option('--service-node-port-range <min-max>', 'ports NodePort Services may get', nodePortRange, `${DEFAULT_NODE_PORT_RANGE.min}-${DEFAULT_NODE_PORT_RANGE.max}`)
      .option('--image-transfers <n>', 'image downloads the server sends at once; more are told to retry later (503 + Retry-After)', count, DEFAULTS.imageTransfers)
      .option('--log-level <level>', 'log level', 'info'),
  ).action(async (o: AgentFlags & { serviceCidr: string; serviceNodePortRange: string; eventTtl: number; eventsPerObject: number; maxReplicas: number; auditLogMaxSize?: string; auditLogMaxFiles?: number; allowedHostPaths?: string; datastoreEndpoint?: string; datastoreCafile?: string; datastoreCertfile?: string; datastoreKeyfile?: string; leaderElectLeaseDuration: number; leaderElectRenewDeadline: number; leaderElectRetryPeriod: number; mqttConnectRate: number; mqttConnectBurst: number; dataDir: string; apiHost?: string; apiPort: number; mqttHost?: string; mqttPort?: number; insecure?: boolean; tlsSan: string[]; requireApproval?: boolean; nodeCertDays: number; brokerUrl?: string; brokerUsername?: string; brokerPassword?: string; serverId?: string; serverTokenFile?: string; advertiseAddress?: string; disableAgent?: boolean; downloadsDir?: string; nodeMissedHeartbeats: number; linkFlapThreshold: number; linkFlapWindow: number; maxPodsPerNode: number; nodeRequestTimeout: number; imageTransfers: number }) => {
    const insecure = o.insecure ?? false;
    // Plain listeners stay on this machine unless asked otherwise.
    const apiHost = o.apiHost ?? (insecure ? DEFAULTS.insecureHost : DEFAULTS.apiHost);
    const mqttHost = o.mqttHost ?? (insecure ? DEFAULTS.insecureHost : DEFAULTS.mqttHost);
    const loopbackOnly = [apiHost, mqttHost].every((h) => h === '127.0.0.1' || h === '::1' || h === 'localhost');
    const advertiseAddress = o.advertiseAddress ?? (loopbackOnly ? '127.0.0.1' : primaryAddress());
    if (o.serverTokenFile && !o.datastoreEndpoint) throw new Error('--server-token-file is for servers sharing an etcd datastore (--datastore-endpoint); the embedded store does not use it');
    const cfg: ServerConfig = {
      dataDir: o.dataDir,
      apiHost,
      apiPort: o.apiPort,
      mqtt: o.brokerUrl
        ? { mode: 'external', url: o.brokerUrl, username: o.brokerUsername, password: o.brokerPassword }
        : { mode: 'embedded', host: mqttHost, port: o.mqttPort ?? (insecure ? DEFAULTS.mqttInsecurePort : DEFAULTS.mqttPort) },
      insecure,
      advertiseAddress,
      tlsSans: o.tlsSan,
      requireApproval: o.requireApproval,
      nodeCertDays: o.nodeCertDays,
      auditLogMaxSize: o.auditLogMaxSize,
      auditLogMaxFiles: o.auditLogMaxFiles,
      allowedHostPaths: o.allowedHostPaths ? o.allowedHostPaths.split(',').map((d) => d.trim()).filter(Boolean) : [],
      datastoreEndpoint: o.datastoreEndpoint,
      datastoreCafile: o.datastoreCafile,
      datastoreCertfile: o.datastoreCertfile,
      datastoreKeyfile: o.datastoreKeyfile,
      // Read (and DROVER_SERVER_TOKEN removed from the environment) even without etcd, so no child inherits it.
      serverToken: await (await import('../server/cluster/server-token.js')).readServerToken({ file: o.datastoreEndpoint ? o.serverTokenFile : undefined }),
      leaderElectLeaseDuration: o.leaderElectLeaseDuration,
      leaderElectRenewDeadline: o.leaderElectRenewDeadline,
      leaderElectRetryPeriod: o.leaderElectRetryPeriod,
      serverId: o.serverId,
      eventTtlMs: o.eventTtl * 1000,
      eventsPerObject: o.eventsPerObject,
      maxReplicas: o.maxReplicas,
      serviceCidr: o.serviceCidr,
      nodePortRange: parsePortRange(o.serviceNodePortRange),
      mqttLimits: { connectRate: { perSecond: o.mqttConnectRate, burst: o.mqttConnectBurst } },
      logLevel: o.logLevel,
      missedHeartbeats: o.nodeMissedHeartbeats,
      flapThreshold: o.linkFlapThreshold,
      flapWindowMs: o.linkFlapWindow * 1000,
      maxPodsPerNode: o.maxPodsPerNode,
      nodeRequestTimeoutMs: o.nodeRequestTimeout * 1000,
      downloadsDir: o.downloadsDir,
      imageTransfers: o.imageTransfers,
    };
    const logger = createLogger({ name: 'drover', level: o.logLevel });
    // Loaded on demand: CLI verbs should not pay for the server's and agent's modules at start.
    const { startServer } = await import('../server/run.js');
    const server = await startServer(cfg, logger);
    let agent: RunningAgent | undefined;
    if (!o.disableAgent) {
      // Only when it runs: a server without its local agent (a fleet's control plane) keeps the agent's
      // modules (runtime, engine, execa) out of its memory.
      const { startAgent } = await import('../agent/run.js');
      // The local agent joins like any other device (join token → its own certificate), approved
      // ahead: the operator who starts the server vouches for this machine.
      if (o.requireApproval) await server.identity.preapprove(o.nodeName);
      agent = await startAgent(agentConfig({ ...o, stateDir: o.stateDir }, server.apiUrl, server.joinToken), { logger });
    }
    const cfgPath = await writeClientConfig(server.apiUrl, server.adminToken, server.caCert).catch((err) => {
      logger.warn({ err: errorMessage(err) }, 'CLI config not written');
      return undefined;
    });
    const kubeconfigPath = await writeKubeconfig(server.dataDir, server.apiUrl, server.adminToken, server.caCert).catch((err) => {
      logger.warn({ err: errorMessage(err) }, 'kubeconfig not written');
      return undefined;
    });
    const host = advertiseAddress ?? '<this-host>';
    const apiPublic = `${insecure ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${new URL(server.apiUrl).port}`;
    // The join token itself is never printed: it is a password for the whole cluster.
    io.stderr(
      [
        '',
        `drover server is running${insecure ? ' (INSECURE: plain HTTP and MQTT)' : ''}`,
        `  API:          ${server.apiUrl}`,
        `  MQTT broker:  ${server.mqttUrl}${o.brokerUrl ? ' (external)' : ' (embedded)'}`,
        `  CA:           ${server.caFile}`,
        `  admin token:  ${join(server.dataDir, 'admin-token')}${cfgPath ? `  (CLI config written to ${cfgPath})` : ''}`,
        ...(kubeconfigPath ? [`  kubectl:      KUBECONFIG=${kubeconfigPath} kubectl get nodes`] : []),
        `  local agent:  ${o.disableAgent ? 'disabled' : `node ${o.nodeName}`}`,
        `  join another device: make it a token (\`drover token create --uses 1 --ttl 24h\`, or ${join(server.dataDir, 'join-token')}); as root there,`,
        ...(insecure
          ? [`    with drover installed: DROVER_TOKEN=<token> drover agent --server ${apiPublic} --node-name <name>`]
          : [
              // install.sh pins the CA by the token's hash before it downloads anything; the script itself
              // is fetched over TLS checked against that same CA, checked here the same way.
              `    SERVER=${apiPublic}; TOKEN='<token>'`,
              `    ca=$(mktemp) && curl -sfk "$SERVER/cacerts" -o "$ca" &&`,
              `      if [ "$(sed '/-----/d' "$ca" | tr -d '\\r' | base64 -d | sha256sum | cut -c1-64)" = "$(printf %s "$TOKEN" | cut -c4-67)" ]; then`,
              `        curl -sf --cacert "$ca" "$SERVER/install.sh" | DROVER_TOKEN="$TOKEN" sh -s - agent --server "$SERVER" --node-name <name>`,
              `      else echo "[ERROR] $SERVER is not the server of this token (CA hash mismatch)" >&2; false; fi`,
              `    (drover already there: drover agent --server ${apiPublic} --token-file TOKEN_FILE --node-name <name>)`,
            ]),
        ...(o.requireApproval ? ['  new nodes wait for: drover node approve <name>'] : []),
        '',
      ].join('\n') + '\n',
    );
    onSignals(async () => {
      await agent?.close();
      await server.close();
    });
  });

  agentOptions(
    program
      .command('agent')
      .description('run a node agent that joins a drover server')
      .requiredOption('--server <url>', 'API URL of the server, e.g. https://10.0.0.2:6443 (join and certificate renewal)')
      .option('--token-file <file>', "file holding the join token (a copy of the server's DATA_DIR/join-token, or `drover token create`); env DROVER_TOKEN; needed for the first join only")
      .option('--token <token>', 'refused: a token on the command line is visible in `ps` (use --token-file or DROVER_TOKEN)')
      .option('--mqtt-url <url>', 'broker URL to dial instead of the one the server advertises at join')
      .option('--tls-server-name <name>', "name to check the server's certificate against instead of the URL's host")
      .option('--name <name>', 'alias of --node-name')
      .option('--log-level <level>', 'log level', 'info'),
  ).action(async (o: AgentFlags & { server: string; token?: string; tokenFile?: string; mqttUrl?: string; tlsServerName?: string; name?: string }) => {
    const token = await agentJoinToken(o);
    const { startAgent } = await import('../agent/run.js');
    const agent = await startAgent(agentConfig({ ...o, nodeName: o.name ?? o.nodeName }, o.server, token, { mqttUrl: o.mqttUrl, tlsServerName: o.tlsServerName }));
    onSignals(() => agent.close());
  });

  program
    .command('sim')
    .description('simulate N agents (fake runtime, the real join and MQTT contract) against a running server, for load and scale tests')
    .requiredOption('--server <url>', 'API URL of the server, e.g. https://10.0.0.2:6443 (http:// for a server started with --insecure)')
    .option('--token-file <file>', "file holding the join token (the server's DATA_DIR/join-token or `drover token create --uses N`); env DROVER_TOKEN")
    .option('--token <token>', 'refused: a token on the command line is visible in `ps` (use --token-file or DROVER_TOKEN)')
    .option('--broker <url>', 'MQTT broker URL to dial instead of the one the server advertises at join')
    .option('--nodes <n>', 'simulated agents', (v) => Number(v), 100)
    .option('--workers <n>', 'worker processes the agents are spread over (0: in this process)', (v) => Number(v), 2)
    .option('--prefix <name>', 'node names are PREFIX-00000, PREFIX-00001, … (the same prefix joins the same names again)', 'sim')
    .option('--link-profile <name>', 'default or cellular (keepalive 1,200 s, heartbeat 1 h, events batched by the minute, reconnects at most 30 s apart)', 'default')
    .option('--heartbeat <seconds>', 'status heartbeat period (default: the link profile\'s)', (v) => Number(v))
    .option('--keepalive <seconds>', 'MQTT keepalive (default: the link profile\'s)', (v) => Number(v))
    .option('--pods-per-node <n>', 'pods each simulated node runs at most; more are reported Pending (OutOfPods); 0: no limit', (v) => Number(v), 0)
    .option('--pod-start-ms <ms>', 'how long the fake runtime takes to start a pod', (v) => Number(v), 0)
    .option('--keys <n>', 'distinct RSA keys shared by the simulated devices (each still gets its own certificate)', (v) => Number(v), 20)
    .option('--join-concurrency <n>', 'joins in flight per worker', (v) => Number(v), 8)
    .option('--connect-rate <n>', 'new MQTT connections per second over the fleet (0: all at once)', (v) => Number(v), 200)
    .option('--report <seconds>', 'log totals every this many seconds (0: never)', (v) => Number(v), 10)
    .option('--log-level <level>', 'log level', 'info')
    .action(async (o: { server: string; token?: string; tokenFile?: string; broker?: string; nodes: number; workers: number; prefix: string; linkProfile: string; heartbeat?: number; keepalive?: number; podsPerNode: number; podStartMs: number; keys: number; joinConcurrency: number; connectRate: number; report: number; logLevel: string }) => {
      const joinToken = await agentJoinToken(o);
      if (!joinToken) throw new Error('drover sim needs the join token: --token-file FILE or DROVER_TOKEN');
      const { runSim } = await import('./sim/run.js');
      const logger = createLogger({ name: 'drover-sim', level: o.logLevel });
      const sim = await runSim(
        { server: o.server, joinToken, brokerUrl: o.broker, nodes: o.nodes, workers: o.workers, prefix: o.prefix, linkProfile: o.linkProfile, heartbeatSeconds: o.heartbeat, keepaliveSeconds: o.keepalive, podsPerNode: o.podsPerNode, podStartMs: o.podStartMs, keys: o.keys, joinConcurrency: o.joinConcurrency, connectPerSecond: o.connectRate, reportSeconds: o.report },
        logger,
      );
      onSignals(() => sim.stop());
    });
  if (!cli) return program;
  cli.registerCliCommands(program, { stdout: io.stdout, stderr: io.stderr, env: io.env ?? process.env, ...(io.stdin ? { stdin: io.stdin } : {}), ...(io.signal ? { signal: io.signal } : {}) });
  cli.registerBrokerCommands(program, io);
  cli.registerSecretsCommands(program, io, {
    defaultDataDir: defaultDataDir(),
    // Loaded on demand, like the server: the CLI verbs do not pay for the store's modules.
    rotateKey: async (dataDir, datastore) => (await import('../server/secrets/rotate.js')).rotateSecretsKey(dataDir, createLogger({ name: 'drover', level: 'warn' }), datastore),
  });
  cli.registerDatastoreCommands(program, io, {
    defaultDataDir: defaultDataDir(),
    // Loaded on demand, like the server: the CLI verbs do not pay for the store's modules (nor etcd's client).
    tools: async () => (await import('../server/store/transfer.js')).datastoreTools(createLogger({ name: 'drover', level: 'warn' })),
  });
  return program;
}

/**
 * Runs `drover ARGS` (argv without node and script). Undefined when it succeeded (a CLI verb is done,
 * or a server/agent keeps running); otherwise the exit code, its error already written as one
 * `error: ...` line.
 */
export async function runProgram(args: string[], io: ProgramIo = processIo): Promise<number | undefined> {
  const cli = DAEMONS.has(args[0] ?? '') ? undefined : await loadCliVerbs();
  const program = buildProgram(io, cli);
  try {
    await program.parseAsync(args, { from: 'user' });
    return undefined;
  } catch (err) {
    // `drover exec`: the remote command's own exit code, already reported on stderr.
    if (cli && err instanceof cli.CommandExit) return err.exitCode;
    // Help and version are "errors" to commander; their exit code is already right.
    if (err instanceof CommanderError) return err.exitCode === 0 ? undefined : err.exitCode;
    io.stderr(`error: ${errorMessage(err).split('\n')[0]}\n`);
    return 1;
  }
}
