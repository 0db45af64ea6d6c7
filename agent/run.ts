import { join } from 'node:path';
import { createLogger, type Logger } from '../src/util/logger.js';
import { AGENT_DEFAULTS, type AgentConfig } from './config.js';
import { AgentLink, type AgentLinkAuth } from './connection.js';
import { dropRenewalKey, loadCredentials, pendingKey, saveCredentials, type AgentCredentials } from './credentials.js';
import { JoinRefusedError, joinCluster, renewCertificate, renewalDue, withRetries } from './join.js';
import { nodeAllocatable, readBootId, readHardware } from './hardware.js';
import { EventJournal, JOURNAL_FILE } from './journal.js';
import { RestartTracker } from './engine/restart-tracker.js';
import { ProbeManager } from './probes/manager.js';
import { IptablesForwarder, iptablesUsable } from './network/iptables.js';
import { UserspaceForwarder } from './network/userspace.js';
import { managedSelector } from './engine/naming.js';
import { Reconciler } from './reconciler.js';
import { Reporter } from './reporter.js';
import { RequestHandler } from './requests.js';
import { detectRuntime } from './runtime/detect.js';
import { startAgentMetrics } from './metrics.js';
import { timedRuntime } from './runtime/timed.js';
import type { ContainerRuntime } from './runtime/types.js';
import { TargetState } from './target.js';
import { systemMeter, UsageSampler } from './usage.js';
import { VolumeManager } from './volume-manager.js';
import { ImageFetcher, TokenBucket } from './images/fetch.js';
import { ImageManager } from './images/manager.js';

/**
 * How often the agent looks at its certificate's remaining life: a local date comparison, the server is
 * asked only when renewal is due. Often enough that a device which started before its clock was set
 * (no RTC, long power-off: the certificate looked fine by the old date, then the broker refuses it as
 * expired) renews within minutes of time sync, not a day later.
 */
const RENEWAL_CHECK_MS = 10 * 60_000;

function linkAuth(c: AgentCredentials, url: string, servername?: string): AgentLinkAuth {
  return url.startsWith('mqtts:') || url.startsWith('wss:') ? { tls: { key: c.key, cert: c.cert, ca: c.ca, servername } } : { password: c.mqttPassword };
}

/**
 * The node's credential: the stored one, or a new one from joining with the token (retried while
 * the server is unreachable; a refusal or a wrong CA is final). Renewed first when a third of its
 * life or less is left; a failed renewal keeps the current one while it is still valid.
 */
async function nodeCredentials(cfg: AgentConfig, logger: Logger, now: () => number, stopped: () => boolean): Promise<AgentCredentials> {
  const maxDelayMs = (cfg.reconnectMaxSeconds ?? AGENT_DEFAULTS.reconnectMaxSeconds) * 1000;
  let creds = await loadCredentials(cfg.stateDir);
  if (creds && creds.node !== cfg.node) {
    throw new JoinRefusedError(`${cfg.stateDir} holds the credential of node ${creds.node}, not ${cfg.node}: use another --state-dir or --node-name ${creds.node}`, 400);
  }
  if (!creds) {
    if (!cfg.token) throw new JoinRefusedError(`node ${cfg.node} has not joined yet and no join token was given (--token-file FILE or DROVER_TOKEN)`, 400);
    const token = cfg.token;
    const deviceKey = await pendingKey(cfg.stateDir, 'node');
    creds = await withRetries('join', () => joinCluster({ apiUrl: cfg.serverUrl, token, node: cfg.node, servername: cfg.tlsServerName, logger, deviceKey }), { logger, maxDelayMs, stopped });
    await saveCredentials(cfg.stateDir, creds);
  }
  return renewIfDue(creds, cfg, logger, now);
}

async function renewIfDue(creds: AgentCredentials, cfg: AgentConfig, logger: Logger, now: () => number): Promise<AgentCredentials> {
  if (!renewalDue(creds.cert, now())) return creds;
  try {
    // The server as configured now (--server), not necessarily where the node first joined.
    const deviceKey = await pendingKey(cfg.stateDir, 'renew');
    const renewed = await renewCertificate({ ...creds, apiUrl: cfg.serverUrl }, { servername: cfg.tlsServerName, logger, deviceKey });
    await saveCredentials(cfg.stateDir, renewed);
    await dropRenewalKey(cfg.stateDir);
    return renewed;
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'certificate renewal failed; trying again later');
    return creds;
  }
}

export interface RunningAgent {
  reconciler: Reconciler;
  /** Where --metrics-addr serves the agent's metrics (the real port when 0 was asked for). */
  metricsUrl?: string;
  close(): Promise<void>;
}

/**
 * Builds the agent's parts (runtime, link, cache, journal; reconciler, reporter, request handler),
 * wires them and starts them: reconciling from the cache first, so workloads run with no link.
 */
export async function startAgent(cfg: AgentConfig, opts: { logger?: Logger; runtime?: ContainerRuntime; now?: () => number } = {}): Promise<RunningAgent> {
  const logger = (opts.logger ?? createLogger({ name: 'drover-agent', level: cfg.logLevel })).child({ node: cfg.node });
  const detected =
    opts.runtime ??
    (await detectRuntime({
      kind: cfg.runtime.kind ?? 'auto',
      podman: { root: cfg.runtime.podmanRoot, runroot: cfg.runtime.podmanRunroot, env: cfg.runtime.env, logger },
      nerdctl: { namespace: cfg.runtime.nerdctlNamespace, address: cfg.runtime.containerdAddress, env: cfg.runtime.env, logger },
      logger,
    }));
  // Only with --metrics-addr: every runtime call timed (inside the reconciler's bound, so waiting for a slot is not counted).
  const metrics = cfg.metricsAddress ? await startAgentMetrics({ address: cfg.metricsAddress, logger }) : undefined;
  const runtime = metrics ? timedRuntime(detected, metrics) : detected;
  const now = opts.now ?? Date.now;
  let closed = false;
  let creds = await nodeCredentials(cfg, logger, now, () => closed);
  const mqttUrl = cfg.mqttUrl ?? creds.mqttUrl;
  const bootId = await readBootId();
  const hardware = await readHardware();
  const target = new TargetState(cfg.stateDir, logger);
  const journal = new EventJournal({ path: join(cfg.stateDir, JOURNAL_FILE), logger });
  const requests = new RequestHandler(runtime);
  // The link calls into the reporter and the reconciler, built below: it starts after them.
  const link = new AgentLink(
    {
      url: mqttUrl,
      node: cfg.node,
      auth: linkAuth(creds, mqttUrl, cfg.tlsServerName),
      approved: creds.approved,
      bootId,
      keepaliveSeconds: cfg.keepaliveSeconds,
      reconnectMaxMs: (cfg.reconnectMaxSeconds ?? AGENT_DEFAULTS.reconnectMaxSeconds) * 1000,
      connectTimeoutMs: (cfg.connectTimeoutSeconds ?? AGENT_DEFAULTS.connectTimeoutSeconds) * 1000,
      logger,
    },
    {
      onConnect: () => {
        reporter.onConnect();
        // Transfers wait for the link (mayFetch): they start with it, not at the manager's next look.
        images.poke();
      },
      onDesired: (d) => reconciler.onDesired(d),
      // Resource use is measured only when the server asks (`kubectl top`), not on every heartbeat.
      onRequest: async (_id, req) => (req.op === 'usage' ? { ok: true, data: await usage.measure(() => runtime.list(managedSelector(cfg.node))) } : requests.handle(req)),
    },
  );
  // The address the server and the other nodes reach this one at: where its link to the server leaves
  // from, not the first interface listed (podman's bridge, 10.88.0.1, may come first).
  const nodeIP = () => cfg.nodeIP ?? link.localAddress ?? hardware.addresses[0];
  const usage = new UsageSampler(runtime, systemMeter(hardware.cpu.cores), logger);
  const reporter = new Reporter({ cfg, link, runtime, hardware, bootId, logger, journal, now, nodeIP, runtimeVersion: () => reconciler.runtimeVersion, images: { digests: () => images.digests(), transfers: () => images.transfers(), diskPressure: () => images.diskPressure() } });
  const probes = new ProbeManager({
    runtime,
    logger,
    clock: now,
    onReadiness: () => reconciler.onProbeReadiness(),
    onFailure: (e) => reconciler.onProbeFailure(e),
    onKill: (e) => void reconciler.onProbeKill(e),
  });
  // Services are forwarded with iptables where the node has it, else by a proxy in the agent (TCP only).
  const useIptables = await iptablesUsable();
  if (!useIptables) logger.warn('iptables is not usable here: Service TCP ports are forwarded by the agent itself (UDP ports are not)');
  const forwarder = useIptables ? new IptablesForwarder({ logger }) : new UserspaceForwarder({ logger });
  // The server's images (issue 15): fetched over HTTPS from --server with the node's own certificate,
  // one transfer at a time, within the node's bandwidth budget (one bucket for every transfer).
  // The node's label (drover.io/image-bandwidth, in its desired state) sets it over the flag and profile.
  const bucket = new TokenBucket(cfg.imageBandwidthBytesPerSecond);
  let fetcher: { creds: AgentCredentials; f: ImageFetcher } | undefined;
  const currentFetcher = (): ImageFetcher => {
    // A renewed certificate: a new fetcher (its kept-alive connection still presents the old one).
    if (fetcher?.creds !== creds) {
      fetcher?.f.close();
      fetcher = { creds, f: new ImageFetcher({ baseUrl: cfg.serverUrl, tls: { ca: creds.ca, cert: creds.cert, key: creds.key, servername: cfg.tlsServerName }, stateDir: cfg.stateDir, bucket, logger }) };
    }
    return fetcher.f;
  };
  const images = new ImageManager({
    stateDir: cfg.stateDir,
    runtime,
    fetcher: currentFetcher,
    logger,
    now,
    // Connected: the server is up and has let this node in; otherwise a transfer would only fail and back off.
    mayFetch: () => link.connected,
    inUse: async () => (await runtime.list(managedSelector(cfg.node))).map((c) => c.image),
    emit: (e) => reporter.emit(e),
    node: cfg.node,
  });
  await images.start();
  const reconciler = new Reconciler({
    cfg,
    services: forwarder,
    runtime,
    target,
    restarts: new RestartTracker({ clock: now }),
    volumes: new VolumeManager(cfg.stateDir, logger),
    probes,
    logger,
    now,
    hostIP: nodeIP,
    allocatable: nodeAllocatable(hardware),
    emit: (e) => reporter.emit(e),
    report: (s) => reporter.update(s),
    metrics,
    images,
    imageBandwidth: (bps) => {
      const want = bps ?? cfg.imageBandwidthBytesPerSecond;
      if (want === bucket.bytesPerSecond) return;
      bucket.setRate(want);
      logger.info({ bytesPerSecond: want ?? null, from: bps !== undefined ? 'node label' : 'agent settings' }, 'image bandwidth budget');
    },
  });
  images.onChange(() => reporter.imagesChanged());
  metrics?.watchSlots(reconciler.runtimeSlots);

  // Events of an earlier run that never reached the server are sent first, oldest first.
  await reporter.start();
  // Reconciles from the cache first (works with no link), then connects.
  await reconciler.start();
  link.start();
  reporter.startHeartbeat();
  const renewal = setInterval(() => {
    void renewIfDue(creds, cfg, logger, now).then((c) => {
      if (c === creds) return;
      creds = c;
      link.updateAuth(linkAuth(c, mqttUrl, cfg.tlsServerName), c.approved);
    });
  }, RENEWAL_CHECK_MS);
  renewal.unref();
  return {
    reconciler,
    metricsUrl: metrics?.url,
    async close() {
      closed = true;
      clearInterval(renewal);
      reporter.stop();
      await reconciler.stop();
      await images.stop();
      fetcher?.f.close();
      await link.stop();
      await reporter.close();
      await metrics?.close();
    },
  };
}
