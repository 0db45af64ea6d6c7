/**
 * Fault-injection fixtures: agents as separate processes, each in its own network namespace with its
 * own podman store, joined to a server that listens where the namespaces can reach it (in this
 * process, or a `drover server` child process that a test can kill). Everything started here is
 * registered with a Cleanup, run from `after` hooks, so a failing test leaks no namespace, process,
 * iptables rule or podman store.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { LABELS } from '../../agent/engine/naming.js';
import type { RuntimeContainer } from '../../agent/runtime/types.js';
import { startServer, type RunningServer } from '../../server/run.js';
import { createLogger, silentLogger } from '../../src/util/logger.js';
import { apiClient, freePort, trustCa, waitFor, type ApiCall } from './cluster.js';
import { createDeviceLink, type DeviceLink } from './netns.js';
import { buildTestImage, podmanSandbox, type PodmanSandbox } from './podman.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export const IMG1 = 'localhost/drover-test:1';
export const IMG2 = 'localhost/drover-test:2';
/** A container that runs until stopped and stops at once on SIGTERM. */
export const SERVE = "trap 'exit 0' TERM; while true; do sleep 1; done";

/** Cleanups run in reverse order of registration, each best effort. */
export class Cleanup {
  private readonly fns: Array<{ what: string; fn: () => Promise<unknown> | unknown }> = [];

  add(what: string, fn: () => Promise<unknown> | unknown): void {
    this.fns.push({ what, fn });
  }

  async run(): Promise<void> {
    while (this.fns.length) {
      const { what, fn } = this.fns.pop()!;
      try {
        await fn();
      } catch (err) {
        console.warn(`cleanup ${what} failed: ${String(err)}`);
      }
    }
  }
}

/** Children still alive when the test process exits (a crash, a hung hook) are killed, not leaked. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface Proc {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
  kill9(): Promise<void>;
}

function track(child: ChildProcess): Proc {
  live.add(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      done = true;
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  const p: Proc = {
    child,
    output: () => out,
    exited,
    alive: () => !done,
    async stop(graceMs = 5_000) {
      if (done) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
    async kill9() {
      if (done) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
  return p;
}

export type Api = ApiCall;

const testLogger = () => (process.env.DROVER_TEST_LOG ? createLogger({ name: 'test', level: process.env.DROVER_TEST_LOG }) : silentLogger);

export interface FaultServer {
  api: Api;
  mqttPort: number;
  /** The API (HTTPS) port, where devices join. */
  apiPort: number;
  joinToken: string;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * A server in this process whose API and broker listen on every address, so agents in the device
 * namespaces reach it at their link's host address (TLS, checked against the name "localhost").
 */
export async function startInProcessServer(cleanup: Cleanup): Promise<FaultServer & { server: RunningServer }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-fault-server-'));
  cleanup.add('server data dir', () => rm(dataDir, { recursive: true, force: true }));
  const mqttPort = await freePort();
  const apiPort = await freePort();
  const server = await startServer(
    { dataDir, apiHost: '0.0.0.0', apiPort, mqtt: { mode: 'embedded', host: '0.0.0.0', port: mqttPort }, resyncMs: 1000, nodeMonitorMs: 1000 },
    testLogger(),
  );
  await trustCa(server.caCert);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.close();
  };
  cleanup.add('server', close);
  const api = apiClient(() => server.apiUrl, () => server.adminToken);
  await allowHostNetwork(api);
  return { server, api, mqttPort, apiPort, joinToken: server.joinToken, dataDir, close };
}

/**
 * The fault tests' pods use the device's host network (no podman networks needed), which pod
 * security allows only in a namespace labelled drover.io/privileged=true: `default` gets the label.
 */
export async function allowHostNetwork(api: Api, namespace = 'default'): Promise<void> {
  const ns = (await api('GET', `/api/v1/namespaces/${namespace}`)).body;
  if (ns?.metadata?.labels?.['drover.io/privileged'] === 'true') return;
  ns.metadata.labels = { ...ns.metadata.labels, 'drover.io/privileged': 'true' };
  const r = await api('PUT', `/api/v1/namespaces/${namespace}`, ns);
  if (r.status !== 200) throw new Error(`labelling namespace ${namespace} drover.io/privileged=true: ${r.status} ${r.text}`);
}

export interface ServerProcess extends FaultServer {
  proc: Proc;
  apiPort: number;
  /** Starts the server process (again) on the same data dir and ports; resolves once /healthz answers. */
  start(): Promise<void>;
}

/** `drover server` as a child process (kill -9 and graceful restarts), broker on every address. */
export async function serverProcess(cleanup: Cleanup): Promise<ServerProcess> {
  const dataDir = await mkdtemp(join(tmpdir(), 'drover-fault-server-'));
  cleanup.add('server data dir', () => rm(dataDir, { recursive: true, force: true }));
  const apiPort = await freePort();
  const mqttPort = await freePort();
  let adminToken = '';
  const s: ServerProcess = {
    proc: undefined as unknown as Proc,
    apiPort,
    mqttPort,
    joinToken: '',
    dataDir,
    api: apiClient(() => `https://127.0.0.1:${apiPort}`, () => adminToken),
    async start() {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'src/main.ts', 'server', '--data-dir', dataDir, '--api-host', '0.0.0.0', '--api-port', String(apiPort), '--mqtt-host', '0.0.0.0', '--mqtt-port', String(mqttPort), '--disable-agent', '--log-level', 'warn'],
        { cwd: REPO, env: { ...process.env, DROVER_CONFIG: join(dataDir, 'client-config') }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const proc = track(child);
      s.proc = proc;
      await waitFor(
        'drover server /healthz',
        async () => {
          if (!proc.alive()) throw new Error(`server exited before it was healthy:\n${proc.output()}`);
          // The CA exists from the first moments of the first start on.
          await trustCa(await readFile(join(dataDir, 'tls', 'ca.crt'), 'utf8'));
          const r = await fetch(`https://127.0.0.1:${apiPort}/healthz`);
          return r.status === 200;
        },
        30_000,
        50,
      ).catch((err) => {
        throw new Error(`${(err as Error).message}\nserver output:\n${proc.output()}`);
      });
      adminToken = (await readFile(join(dataDir, 'admin-token'), 'utf8')).trim();
      s.joinToken = (await readFile(join(dataDir, 'join-token'), 'utf8')).trim();
      await allowHostNetwork(s.api);
    },
    close: () => s.proc?.stop() ?? Promise.resolve(),
  };
  cleanup.add('server process', () => s.proc?.stop());
  return s;
}

export interface Device {
  name: string;
  link: DeviceLink;
  sb: PodmanSandbox;
  stateDir: string;
  agent: Proc | undefined;
  /**
   * Starts the agent process inside the namespace; it joins through the link (the token in a 0600
   * file, never on argv) and dials the broker at `url` (default: the server through the link; an
   * mqtt:// url, a TCP proxy, is dialled as mqtts://: TLS passes through it).
   */
  startAgent(opts?: { url?: string; logLevel?: string; args?: string[] }): Proc;
  /** drover's containers in this device's podman store. */
  containers(): Promise<RuntimeContainer[]>;
  /** Runs podman on this device's store, inside its namespace. */
  podman(args: string[]): Promise<string>;
}

/**
 * A device: network namespace + veth link, private podman store with the test images, state dir.
 * The agent is started separately (startAgent) so tests can kill and restart it.
 */
export async function createDevice(cleanup: Cleanup, name: string, server: () => { mqttPort: number; apiPort: number; joinToken: string }, images: string[] = [IMG1]): Promise<Device> {
  const sb = await podmanSandbox();
  cleanup.add(`podman sandbox of ${name}`, () => sb.cleanup());
  const link = await createDeviceLink();
  cleanup.add(`link of ${name}`, () => link.destroy());
  const stateDir = await mkdtemp(join(tmpdir(), `drover-fault-${name}-`));
  cleanup.add(`state dir of ${name}`, () => rm(stateDir, { recursive: true, force: true }));
  const tokenFile = `${stateDir}.join-token`;
  cleanup.add(`join token file of ${name}`, () => rm(tokenFile, { force: true }));
  for (const img of images) await buildTestImage(sb, img);
  const podman = async (args: string[]) => {
    const r = await execa('nsenter', [`--net=/run/netns/${link.ns}`, 'podman', '--root', sb.root, '--runroot', sb.runroot, ...args], { env: sb.env, stdin: 'ignore' });
    return r.stdout;
  };
  // Before the sandbox cleanup (registered earlier, so run later): containers go from inside the
  // namespace they were made in, while it still exists.
  cleanup.add(`containers of ${name}`, () => podman(['rm', '--all', '--force', '--time', '0']).catch(() => {}));
  const dev: Device = {
    name,
    link,
    sb,
    stateDir,
    agent: undefined,
    startAgent(opts = {}) {
      const { mqttPort, apiPort, joinToken } = server();
      const url = (opts.url ?? `mqtts://${link.hostIp}:${mqttPort}`).replace(/^mqtt:/, 'mqtts:');
      writeFileSync(tokenFile, `${joinToken}\n`, { mode: 0o600 });
      const child = link.spawn(
        process.execPath,
        [
          '--import', 'tsx', 'src/main.ts', 'agent',
          '--server', `https://${link.hostIp}:${apiPort}`,
          '--token-file', tokenFile,
          '--mqtt-url', url,
          // The link's host address is in no certificate: the server's is checked for a name it holds.
          '--tls-server-name', 'localhost',
          '--node-name', name,
          '--state-dir', stateDir,
          '--podman-root', sb.root,
          '--podman-runroot', sb.runroot,
          '--heartbeat', '5',
          '--keepalive', '5',
          '--resync', '2',
          '--log-level', opts.logLevel ?? 'info',
          ...(opts.args ?? []),
        ],
        { cwd: REPO, env: { ...process.env, CONTAINERS_CONF: sb.confPath }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const proc = track(child);
      dev.agent = proc;
      return proc;
    },
    containers: () => sb.runtime.list({ [LABELS.managed]: 'true', [LABELS.node]: name }),
    podman,
  };
  // Agent processes go first (registered last): nothing should recreate containers during cleanup.
  cleanup.add(`agent of ${name}`, () => dev.agent?.stop(3_000));
  return dev;
}

/**
 * How long a freshly started agent process may take to register Ready: tsx compiles the sources at
 * start, which on a loaded 2-core machine with several agents starting at once takes a minute or
 * more. Only a broken start waits this long.
 */
export const AGENT_START_MS = 180_000;

/** The node's Ready condition status: 'True', 'False', 'Unknown', or undefined before it registered. */
export async function readyStatus(api: Api, node: string): Promise<string | undefined> {
  const r = await api('GET', `/api/v1/nodes/${node}`);
  if (r.status !== 200) return undefined;
  return r.body.status?.conditions?.find((c: { type: string }) => c.type === 'Ready')?.status;
}

/** Polls until the node's Ready status is `want`; returns the ms it took. */
export async function waitReady(api: Api, node: string, want: 'True' | 'False' | 'Unknown' | 'not True', timeoutMs = 60_000, everyMs = 100): Promise<number> {
  const t0 = Date.now();
  await waitFor(
    `node ${node} Ready=${want}`,
    async () => {
      const s = await readyStatus(api, node);
      return want === 'not True' ? s !== undefined && s !== 'True' : s === want;
    },
    timeoutMs,
    everyMs,
  );
  return Date.now() - t0;
}

/**
 * Polls until the server heard from `node` at or after `sinceMs` (its Node's lastHeard, written when
 * the agent says hello, comes online or reports): the agent reached this server, whatever it logged.
 * A HeartbeatLate flag means the lastHeard written is the server's own start-up grace, not the agent.
 */
export async function waitHeardSince(api: Api, node: string, sinceMs: number, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    `node ${node} heard from since ${new Date(sinceMs).toISOString()}`,
    async () => {
      const n = (await api('GET', `/api/v1/nodes/${node}`)).body;
      const late = n?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'HeartbeatLate' && c.status === 'True');
      return !late && Date.parse(n?.status?.lastHeard ?? '') >= sinceMs;
    },
    timeoutMs,
    100,
  );
}

export interface ApiPod {
  metadata: { name: string; uid: string; labels?: Record<string, string>; resourceVersion?: string };
  spec: { nodeName?: string; containers: Array<{ image: string }> };
  status?: { phase?: string; conditions?: Array<{ type: string; status: string }> };
}

export const podReady = (p: ApiPod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/** A bare pod pinned to `node`, on the host network of the device (no podman networks needed). */
export function podManifest(name: string, node: string, opts: { image?: string; command?: string } = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: name } },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': node },
      hostNetwork: true,
      terminationGracePeriodSeconds: 2,
      containers: [{ name: 'main', image: opts.image ?? IMG1, command: ['sh', '-c', opts.command ?? SERVE], resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
    },
  };
}

export const DEPLOY = '/apis/apps/v1/namespaces/default/deployments';

/** A Deployment pinned to `node`: maxSurge 1, maxUnavailable 1. */
export function deploymentManifest(name: string, node: string, image: string, replicas: number): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          nodeSelector: { 'kubernetes.io/hostname': node },
          hostNetwork: true,
          terminationGracePeriodSeconds: 2,
          containers: [{ name: 'main', image, command: ['sh', '-c', SERVE], resources: { requests: { cpu: '10m', memory: '8Mi' } } }],
        },
      },
    },
  };
}

/** GET, change, PUT a Deployment; a concurrent status write (409) is retried on a fresh read. */
export async function editDeployment(api: Api, name: string, mutate: (d: any) => void): Promise<any> {
  for (let i = 0; i < 20; i++) {
    const d = (await api('GET', `${DEPLOY}/${name}`)).body;
    mutate(d);
    const r = await api('PUT', `${DEPLOY}/${name}`, d);
    if (r.status === 200) return r.body;
    if (r.status !== 409) throw new Error(`PUT deployment ${name}: ${r.status} ${r.text}`);
  }
  throw new Error(`PUT deployment ${name} kept conflicting`);
}

export async function podsOf(api: Api, app: string): Promise<ApiPod[]> {
  const r = await api('GET', `/api/v1/namespaces/default/pods?labelSelector=app%3D${app}`);
  if (r.status !== 200) throw new Error(`list pods: ${r.status} ${r.text}`);
  return r.body.items;
}

/**
 * Rolled out: `replicas` pods, all Ready on `image`, the Deployment status complete, and on the
 * device(s) exactly one running container per pod, from `image`.
 */
export async function rolledOut(api: Api, devs: Device | Device[], app: string, image: string, replicas: number): Promise<{ pods: ApiPod[]; containers: RuntimeContainer[] } | undefined> {
  const d = (await api('GET', `${DEPLOY}/${app}`)).body;
  const pods = await podsOf(api, app);
  const done =
    pods.length === replicas &&
    pods.every((p) => podReady(p) && p.spec.containers[0]!.image === image) &&
    d.status?.observedGeneration === d.metadata.generation &&
    d.status?.updatedReplicas === replicas &&
    d.status?.availableReplicas === replicas &&
    d.status?.replicas === replicas &&
    d.status?.conditions?.find((c: { type: string }) => c.type === 'Progressing')?.reason === 'NewReplicaSetAvailable';
  if (!done) return undefined;
  const containers = (await Promise.all([devs].flat().map((d) => d.containers()))).flat().filter((c) => c.labels[LABELS.pod]?.startsWith(`${app}-`));
  const uids = new Set(pods.map((p) => p.metadata.uid));
  const ok = containers.length === replicas && containers.every((c) => c.state === 'running' && c.image === image && uids.has(c.labels[LABELS.podUid]!));
  return ok ? { pods, containers } : undefined;
}

export interface AgentEventView {
  reason: string;
  message: string;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
  involvedObject: { kind: string; name: string; uid?: string };
  source?: { component?: string; host?: string };
}

export async function eventsFor(api: Api, name: string, namespace = 'default'): Promise<AgentEventView[]> {
  const r = await api('GET', `/api/v1/namespaces/${namespace}/events?fieldSelector=involvedObject.name=${name}`);
  if (r.status !== 200) throw new Error(`list events: ${r.status} ${r.text}`);
  return r.body.items;
}

/**
 * The containers podman created on the device since `sinceMs` (its own event log, filtered on the
 * node's label): every one, also those removed again before anyone could list them.
 */
export async function containersCreated(dev: Device, sinceMs: number): Promise<Array<{ id: string; name: string; pod: string; image: string }>> {
  // --stream=false reads what was logged and exits; podman 4.3's --until waits for that time, and
  // returns nothing for one already past.
  const out = await dev.podman(['events', '--stream=false', '--since', new Date(sinceMs).toISOString(), '--filter', `label=${LABELS.node}=${dev.name}`, '--format', 'json']);
  return out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { ID: string; Name: string; Image: string; Status: string; Type: string; Attributes?: Record<string, string> })
    .filter((e) => e.Type === 'container' && e.Status === 'create')
    .map((e) => ({ id: e.ID, name: e.Name, pod: e.Attributes?.[LABELS.pod] ?? '', image: e.Image }));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Seconds with one decimal, for the measurements printed by the tests. */
export const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
