import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import { agentClientId, isTopicSafe, serverClientId } from '../src/contract/topics.js';
import { errorMessage, isAlreadyExists, isNotFound } from '../src/util/errors.js';
import { startIdleGc } from '../src/util/idle-gc.js';
import { createLogger, type Logger } from '../src/util/logger.js';
import { ensurePrivateDir } from '../src/util/private-fs.js';
import { droverVersion } from '../src/version.js';
import { ApiServer } from './api/server.js';
import { CommandDoor } from './commands/door.js';
import { DownloadCatalog, selfBinary } from './downloads/catalog.js';
import { installScript } from './downloads/install-script.js';
import { downloadRoutes } from './downloads/routes.js';
import { FleetPublisher } from './fleet/publisher.js';
import { fleetRoutes } from './fleet/routes.js';
import { withServiceAllocation } from './services/allocate.js';
import { NodeProxy } from './api/node-proxy.js';
import { imageRoutes } from './images/routes.js';
import { imageAccess } from './desired/image-access.js';
import { ImageStore } from './images/store.js';
import { DEFAULT_IMAGE_TRANSFERS, TransferLimit } from './images/transfers.js';
import { TokenStore } from './auth/tokens.js';
import { AuditLog, DEFAULT_AUDIT_MAX_FILES, DEFAULT_AUDIT_MAX_SIZE } from './audit/log.js';
import { parseAllowedHostPaths } from './admission/pod-security.js';
import { DEFAULTS, NODE_LIFECYCLE, type ServerConfig } from './config.js';
import type { Store } from './store/types.js';
import { DesiredPublisher } from './desired/publisher.js';
import { EventRecorder } from './events/recorder.js';
import { loadOrCreateJoinToken } from './identity/bootstrap-token.js';
import { formatJoinToken } from './identity/join-token.js';
import { NodeCredentials } from './identity/node-credentials.js';
import { identityRoutes } from './identity/routes.js';
import { NodeIdentity } from './identity/service.js';
import { startEmbeddedBroker, type ConnectAttempt, type ConnectDecision, type EmbeddedBroker } from './mqtt/broker.js';
import { mqttConnectionGuard } from './mqtt/limits.js';
import { ServerLink } from './mqtt/link.js';
import { loadOrCreateServerId } from './mqtt/server-id.js';
import { MetricsCache } from './metrics/cache.js';
import { countedDesiredSink } from './metrics/desired-sink.js';
import { metricsRoute } from './metrics/route.js';
import { snapshotRoute } from './store/snapshot-route.js';
import { ServerMetrics } from './metrics/server-metrics.js';
import { timedStore } from './metrics/timed-store.js';
import { withLiveNodes } from './nodes/live-view.js';
import { NodeLiveness } from './nodes/liveness.js';
import { NodeRegistry } from './nodes/registry.js';
import { loadOrCreateTicketKey, TICKET_LIFETIME_SECONDS } from './pki/session-tickets.js';
import { loadOrCreatePki, NODE_ORG, SERVER_CLIENT_CN, SERVER_CLIENT_ORG, serverSans } from './pki/pki.js';
import { Scheduler } from './scheduler/scheduler.js';
import { Keyring } from './secrets/keyring.js';
import { storePath } from './secrets/rotate.js';
import { datastoreEndpoints, openStore } from './store/open.js';
import type { EtcdStore } from './store/etcd.js';
import type { LeaderElection } from './leader/election.js';
import type { ClusterIdentity } from './cluster/bootstrap.js';
import { LeaderWork } from './leader/leader-work.js';
import { ObjectCache, withCachedLists } from './cache/object-cache.js';
import { QuotaTurns, withAdmission } from './admission/store.js';
import { allControllers } from './controllers/index.js';
import { nodeLifecycleController } from './controllers/node-lifecycle.js';
import { ControllerRunner } from './controllers/runner.js';

export interface RunningServer {
  apiUrl: string;
  /** Where local clients reach the broker. */
  mqttUrl: string;
  /** The broker URL handed to joining agents. */
  advertisedMqttUrl: string;
  adminToken: string;
  /** The default join token, K10 form (also in DATA_DIR/join-token). */
  joinToken: string;
  /** The cluster CA (PEM) and its file, for clients of the HTTPS API. */
  caCert: string;
  caFile: string;
  dataDir: string;
  insecure: boolean;
  identity: NodeIdentity;
  logger: Logger;
  close(): Promise<void>;
}

const SERVER_CLIENT = SERVER_CLIENT_CN;

async function ensureDefaultNamespace(store: Store): Promise<void> {
  if (await store.get('Namespace', '', 'default')) return;
  try {
    await store.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' }, status: { phase: 'Active' } });
  } catch (err) {
    // Another server on the same etcd made it between the read and the create (two servers starting together).
    if (!isAlreadyExists(err)) throw err;
  }
}

const refuse = (refusal: 'bad-credentials' | 'not-authorized', why: string): ConnectDecision => ({ refuse: refusal, why });

/**
 * Who an MQTT connection is. Over TLS only the verified client certificate counts (CN, O, serial),
 * never the username; on a plain (--insecure) listener, the node's own password from its join.
 */
function brokerAuthenticator(o: { credentials: NodeCredentials; serverSecret: string }): (a: ConnectAttempt) => ConnectDecision {
  return (a) => {
    if (a.peer) {
      const { cn, o: org, serial } = a.peer;
      if (org === SERVER_CLIENT_ORG && cn === SERVER_CLIENT_CN) return a.clientId === SERVER_CLIENT ? { principal: { role: 'server' } } : refuse('bad-credentials', 'server certificate with another client id');
      if (org !== NODE_ORG) return refuse('bad-credentials', 'certificate is not a node certificate');
      // Checked before any comparison: the name goes into the ACL's topic filters.
      if (!isTopicSafe(cn)) return refuse('bad-credentials', 'certificate CN is not a node name');
      if (a.clientId !== agentClientId(cn)) return refuse('bad-credentials', 'client id does not match the certificate');
      return decide(cn, o.credentials.check(cn, serial));
    }
    if (a.clientId === SERVER_CLIENT) return sameSecret(a.password ?? '', o.serverSecret) ? { principal: { role: 'server' } } : refuse('bad-credentials', 'wrong server secret');
    const node = a.username;
    if (!node || !isTopicSafe(node)) return refuse('bad-credentials', 'username is not a node name');
    if (a.clientId !== agentClientId(node)) return refuse('bad-credentials', 'client id does not match the username');
    return decide(node, o.credentials.checkSecret(node, a.password ?? ''));
  };
}

/** Constant time: compared as sha256 digests, so neither content nor length leaks through timing. */
function sameSecret(given: string, want: string): boolean {
  const h = (v: string) => createHash('sha256').update(v, 'utf8').digest();
  return timingSafeEqual(h(given), h(want));
}

function decide(node: string, check: ReturnType<NodeCredentials['check']>): ConnectDecision {
  switch (check) {
    case 'ok':
      return { principal: { role: 'agent', node } };
    case 'pending':
      return refuse('not-authorized', `node ${node} waits for approval`);
    case 'revoked':
      return refuse('not-authorized', `node ${node} is revoked`);
    default:
      return refuse('bad-credentials', `not node ${node}'s current credential (${check})`);
  }
}

/**
 * Wires the control plane: PKI and tokens → identity; store → API, broker/link → node registry,
 * scheduler, desired publisher. The only place in server/ that builds dependencies.
 */
export async function startServer(cfg: ServerConfig, logger: Logger = createLogger({ name: 'drover-server', level: cfg.logLevel })): Promise<RunningServer> {
  const startedAt = Date.now();
  const bootAt = performance.now();
  // A bad --server-id stops the start before anything is opened, naming the flag (ValidationError).
  if (cfg.serverId !== undefined) serverClientId(cfg.serverId);
  // 0700, tightened (with a warning) if an older version made it looser.
  await ensurePrivateDir(cfg.dataDir, logger);
  const insecure = cfg.insecure ?? false;
  const advertiseHost = cfg.advertiseAddress ?? (cfg.mqtt.mode === 'embedded' && cfg.mqtt.host !== '0.0.0.0' && cfg.mqtt.host !== '::' ? cfg.mqtt.host : '127.0.0.1');
  // LevelDB in the data dir, or etcd with --datastore-endpoint: etcd not answering stops the start here
  // with StoreUnavailableError naming the endpoints (exit 1).
  // With etcd: the cluster's identity (CA, server client identity, Secrets keyring, admin token) comes from
  // the bootstrap data there, sealed with the server token, before the keyring and the PKI are opened.
  // Loaded only with an etcd datastore.
  const cluster: ClusterIdentity | undefined =
    datastoreEndpoints(cfg.datastoreEndpoint).length > 0
      ? await (await import('./cluster/bootstrap.js')).joinCluster({ dataDir: cfg.dataDir, datastore: cfg, serverToken: cfg.serverToken, logger })
      : undefined;
  let level: Awaited<ReturnType<typeof openStore>>;
  try {
    level = await openStore({
      levelPath: storePath(cfg.dataDir),
      logger,
      secrets: await Keyring.loadOrCreate(cfg.dataDir, logger),
      datastoreEndpoint: cfg.datastoreEndpoint,
      datastoreCafile: cfg.datastoreCafile,
      datastoreCertfile: cfg.datastoreCertfile,
      datastoreKeyfile: cfg.datastoreKeyfile,
    });
  } catch (err) {
    await cluster?.close();
    throw err;
  }
  // One registry per server: tests run several servers in one process.
  const instruments = new ServerMetrics();
  // Each phase of the start is timed (/metrics drover_server_start_phase_seconds): a restart with a big fleet
  // reconnecting at once is when a slow phase shows.
  instruments.startPhase('store', bootAt);
  // A write that failed may still have reached LevelDB (an fsync error after the batch was applied) with no watch
  // event for it: from then on admission reads namespaces from the store, not the object cache (see readNamespace).
  let failedWrite = false;
  level.onCommit((writes, seconds, ok) => {
    instruments.commit(writes, seconds, ok);
    if (!ok) failedWrite = true;
  });
  // Every writer goes through admission (namespace checks, quotas, Secret normalisation, pod
  // security): controllers get the same policy as the API, so a template the API allowed is not refused.
  const podSecurity = { allowedHostPaths: parseAllowedHostPaths(cfg.allowedHostPaths ?? []) };
  // Services get their cluster IP and node ports on the way in, so every writer sees the same allocation.
  // One stack for every writer (the API's and, fenced, the leader's): a wrapper added here reaches both.
  // The stacks' quota checks take turns with each other (admission/store.ts QuotaTurns).
  const quotaTurns = new QuotaTurns();
  // Namespaces are read from the object cache once it runs, on LevelDB only: there it holds every write before the
  // write is acknowledged; on etcd another server's write may not have reached this one's cache yet. After a failed
  // write, and once the cache is closed, from the store again.
  let namespaceCache: ObjectCache | undefined;
  const readNamespace = cluster
    ? undefined
    : (name: string) => (failedWrite ? undefined : namespaceCache?.get('Namespace', '', name)) ?? level.get('Namespace', '', name);
  const writerStack = (backend: Store): Store =>
    withServiceAllocation(withAdmission(timedStore(backend, instruments), { podSecurity, quotaTurns, readNamespace }), { serviceCidr: cfg.serviceCidr, nodePortRange: cfg.nodePortRange });
  const store = writerStack(level);
  // The shared documents close after everything that uses them (closers run in reverse).
  const closers: Array<() => Promise<void> | void> = [() => level.close(), ...(cluster ? [() => cluster.close()] : [])];
  const close = async () => {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'error during shutdown');
      }
    }
  };
  try {
    // After the store: its lock tells a second server on this data dir to stop before it touches
    // the certificates or tokens.
    const boundHosts = [cfg.apiHost, cfg.mqtt.mode === 'embedded' ? cfg.mqtt.host : ''].filter((h) => h && h !== '0.0.0.0' && h !== '::');
    const pki = await loadOrCreatePki({ dir: join(cfg.dataDir, 'tls'), sans: serverSans([advertiseHost, ...boundHosts, ...(cfg.tlsSans ?? [])]), logger });
    const tokens = await TokenStore.open({ dataDir: cfg.dataDir, logger, doc: cluster?.docs.tokens });
    const joinToken = await loadOrCreateJoinToken({ dataDir: cfg.dataDir, tokens, caHash: pki.caHash, logger, shared: cluster?.docs.joinToken });
    const credentials = await NodeCredentials.open({ dataDir: cfg.dataDir, logger, now: cfg.now, doc: cluster?.docs.nodes });
    instruments.startPhase('identity');
    await ensureDefaultNamespace(store);
    // Opened before the API and closed after it (closers run in reverse), so the last calls are recorded.
    const audit = await AuditLog.open({ dataDir: cfg.dataDir, logger, maxSize: cfg.auditLogMaxSize ?? DEFAULT_AUDIT_MAX_SIZE, maxFiles: cfg.auditLogMaxFiles ?? DEFAULT_AUDIT_MAX_FILES });
    closers.push(() => audit.close());
    const events = new EventRecorder(store, logger);
    // Closed before the store (closers run in reverse): Events still being written land first.
    closers.push(() => events.drain());
    // The scheduler, the controllers and the publishers list Pods and Nodes at every pass: from memory (an
    // informer's cache), not from LevelDB (bench/placement.ts). Admission reads Namespaces there (readNamespace).
    // The API reads the store itself.
    const cache = await ObjectCache.start(store, ['Pod', 'Node', 'Namespace'], logger);
    closers.push(() => {
      namespaceCache = undefined;
      cache.close();
    });
    namespaceCache = cache;
    // The heap a burst grew (a fleet joining, a rollout) given back once the server is quiet (src/util/idle-gc.ts).
    const idleGc = startIdleGc(logger);
    closers.push(() => idleGc.stop());
    const cachedStore = withCachedLists(store, cache);
    // Images served to devices (issue 15): archives on this server's disk; opened early so the desired-state publisher can use it.
    const images = await ImageStore.open({ dir: join(cfg.dataDir, 'images'), logger });
    closers.push(() => images.close());
    const imageTransfers = new TransferLimit({ max: cfg.imageTransfers ?? DEFAULT_IMAGE_TRANSFERS, registry: instruments.registry });
    instruments.startPhase('cache');
    if (insecure) logger.warn('--insecure: MQTT and the API are plain TCP; tokens, node passwords and Secrets cross the network in clear');

    let broker: EmbeddedBroker | undefined;
    let linkUrl: string;
    let advertisedMqttUrl: string;
    let linkAuth: { username?: string; password?: string; tls?: { key: string; cert: string; ca: string } };
    if (cfg.mqtt.mode === 'embedded') {
      // Never written anywhere: the server's own client on a plain listener proves itself with it.
      const serverSecret = randomBytes(24).toString('base64url');
      const { host, port } = cfg.mqtt;
      const tlsDir = join(cfg.dataDir, 'tls');
      const tickets = insecure ? undefined : await loadOrCreateTicketKey({ dir: tlsDir, caHash: pki.caHash, logger });
      broker = await startEmbeddedBroker({
        ...(insecure ? { plain: { host, port } } : { tls: { host, port, key: pki.server.key, cert: pki.server.cert, ca: pki.caCert, ticketKeys: tickets!.key, sessionTimeoutSeconds: TICKET_LIFETIME_SECONDS } }),
        guard: mqttConnectionGuard({ limits: cfg.mqttLimits, logger }),
        logger,
        authenticate: brokerAuthenticator({ credentials, serverSecret }),
        // Operators (scripts, dashboards) log in with their own API token as MQTT password.
        operators: { checkToken: (token) => tokens.checkApi(token) },
      });
      closers.push(() => broker!.close());
      const b = broker;
      if (!insecure) {
        // The ticket key is renewed once a week; a server running that long takes the new one without a restart.
        const renew = setInterval(() => {
          loadOrCreateTicketKey({ dir: tlsDir, caHash: pki.caHash, logger })
            .then((t) => t.rotated && b.setTicketKeys(t.key))
            .catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'could not renew the TLS session ticket key; keeping the current one'));
        }, 24 * 3600_000);
        renew.unref();
        closers.push(() => clearInterval(renew));
      }
      instruments.watchBroker(() => b.traffic());
      linkUrl = broker.url;
      advertisedMqttUrl = `${insecure ? 'mqtt' : 'mqtts'}://${advertiseHost.includes(':') ? `[${advertiseHost}]` : advertiseHost}:${broker.tlsPort ?? broker.plainPort}`;
      linkAuth = insecure ? { username: SERVER_CLIENT, password: serverSecret } : { tls: { ...pki.serverClient, ca: pki.caCert } };
    } else {
      linkUrl = cfg.mqtt.url;
      advertisedMqttUrl = cfg.mqtt.url;
      const secure = linkUrl.startsWith('mqtts:');
      linkAuth = { username: cfg.mqtt.username, password: cfg.mqtt.password, ...(secure ? { tls: { ...pki.serverClient, ca: pki.caCert } } : {}) };
    }

    instruments.startPhase('broker');
    // Several servers on one etcd may share one external broker: each under a client id of its own (one
    // client id would make them take each other's session), reading agent reports through shared
    // subscriptions (each handled by one server) and the reports every server keeps in memory plainly,
    // commands plainly (the leader answers them): ServerLink `shared`. The embedded broker is this server's
    // alone: `drover-server`, as ever.
    const external = cfg.mqtt.mode === 'external';
    const onEtcd = datastoreEndpoints(cfg.datastoreEndpoint).length > 0;
    const severalServers = external && onEtcd;
    if (onEtcd && !external) {
      logger.warn('etcd datastore with the embedded broker: if other servers share this etcd, the leader hears only the agents connected to its own broker, and nodes connected to another server\'s turn NotReady; give every server one external broker (--broker-url)');
    }
    const serverId = external ? (cfg.serverId ?? (severalServers ? await loadOrCreateServerId(cfg.dataDir, logger) : undefined)) : undefined;
    const linkClientId = serverClientId(serverId);
    if (cfg.serverId !== undefined && !external) logger.info({ serverId: cfg.serverId }, '--server-id names a server on an external broker: the embedded broker is this server\'s alone, its link stays drover-server');
    // External broker: the server hears operators' commands itself (the embedded broker hands them over with who sent them).
    const link = await ServerLink.connect({ url: linkUrl, clientId: linkClientId, ...linkAuth, logger, commands: external, shared: severalServers, serverId });
    closers.push(() => link.close());
    instruments.startPhase('link');

    const identity = new NodeIdentity({
      pki,
      credentials,
      tokens,
      logger,
      mqttUrl: advertisedMqttUrl,
      requireApproval: cfg.requireApproval ?? false,
      // A plain broker (--insecure, or an external mqtt:// one) cannot see certificates.
      plainPasswords: insecure || (cfg.mqtt.mode === 'external' && !cfg.mqtt.url.startsWith('mqtts:')),
      certDays: cfg.nodeCertDays,
      now: cfg.now,
      onRevoked: async (node) => {
        // At once: the session goes, then what the broker keeps for it (desired state with Secrets), then its Node.
        broker?.disconnect(agentClientId(node));
        await link.clearRetained(node);
        try {
          await store.delete('Node', '', node);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      },
    });
    // A node revoked through another server: this server's broker cuts its session at once too (its
    // certificate is refused here from the moment the change arrives).
    credentials.onChange(({ node, after }) => {
      if (after?.state === 'revoked') broker?.disconnect(agentClientId(node));
    });

    // Agents measure only when asked: a read of the metrics API asks the nodes it concerns (figures older than 15 s).
    const metrics = new MetricsCache({ ask: { requester: link, store, logger } });
    const flapWindowMs = cfg.flapWindowMs ?? DEFAULTS.flapWindowMs;
    const liveness = new NodeLiveness({ flapThreshold: cfg.flapThreshold ?? DEFAULTS.flapThreshold, flapWindowMs });
    // Node reads for people (API, fleet views) carry the last heard time from memory: it is not stored per heartbeat.
    const liveStore = withLiveNodes(store, liveness);
    // The keepalive carries liveness between heartbeats: a ping from an agent is a sign of life.
    // Built below, after the registry: a hello heard before then is fine (the first pass publishes plain JSON).
    let publisher: DesiredPublisher | undefined;
    // The encodings each node reads, as its last hello said, kept on every server: a server that becomes
    // leader hands them to its new publisher at once (the hellos were heard while another server led).
    const encodings = new Map<string, readonly string[] | undefined>();
    // LevelDB only: its watch events reach the cache before a write is acknowledged (see cachedNode).
    const cachedNode = onEtcd ? undefined : (name: string) => cache.get('Node', '', name);
    const registry = new NodeRegistry({
      store,
      cachedNode,
      events,
      logger,
      metrics,
      liveness,
      maxPodsPerNode: cfg.maxPodsPerNode ?? DEFAULTS.maxPodsPerNode,
      // The embedded broker hears the agents' pings: liveness is timed by the keepalive, not the 10-minute heartbeat.
      pingsCarryLiveness: broker !== undefined,
      // Labels its join token gave the node: set by the server, applied over the agent's own.
      assignedLabels: (node) => credentials.get(node)?.labels,
      // Which desired-state encodings each agent reads (DEFLATE for the ones whose hello accepts it).
      onHello: (node, h) => {
        encodings.set(node, h.accepts);
        publisher?.encodingsHeard(node, h.accepts);
      },
    });
    // Pings move the last heard time; one after a goodbye brings the node back (registry.pinged).
    broker?.onAgentPing((node) => {
      registry.pinged(node).catch((err) => logger.error({ node, err: errorMessage(err) }, 'cannot handle a ping'));
    });
    link.onReport((t, payload, copy) => {
      // A revoked node's last messages in flight must not bring its Node back.
      if (credentials.get(t.node)?.state === 'revoked') return;
      return registry.handle(t, payload, copy);
    });
    closers.push(() => registry.close());
    // Several servers: statuses the broker had handed a server that is gone died with its session; the leader
    // applies again what every server heard (registry.reapplyHeard). A new leader does so at its term's start.
    // The leader also answers the operators' MQTT commands (below).
    let leading = false;
    const reapply = (why: string) =>
      registry.reapplyHeard().then((n) => {
        if (n > 0) logger.info({ statuses: n, why }, 'recent node statuses applied again (a server is gone)');
      });
    link.onServerGone((gone) => {
      logger.info({ server: gone }, 'another server left the broker');
      if (leading) void reapply(`server ${gone} gone`);
    });

    const version = droverVersion();
    // Scheduler, controllers, node lifecycle and the publishers run on one server at a time: with etcd,
    // the leader chosen by an etcd lease (controller-runtime's leader election); on LevelDB, this server.
    // The API, the registry and the caches run on every server. Each term builds its components afresh.
    // The election uses the store's own etcd client: the lease is renewed over the connections the writes use.
    // Loaded only with an etcd datastore (as the store itself: server/store/open.ts).
    const leader = datastoreEndpoints(cfg.datastoreEndpoint).length > 0 ? await import('./leader/election.js') : undefined;
    const election: LeaderElection | undefined =
      leader
        ? new leader.LeaderElection({
            client: (level as EtcdStore).etcd,
            name: '/drover/leader',
            identity: leader.defaultIdentity(),
            leaseDurationSeconds: cfg.leaderElectLeaseDuration,
            renewDeadlineSeconds: cfg.leaderElectRenewDeadline,
            retryPeriodSeconds: cfg.leaderElectRetryPeriod,
            logger,
            onStartedLeading: (signal): Promise<void> => leaderWork.started(signal),
            onStoppedLeading: (reason): Promise<void> => leaderWork.stopped(reason),
          })
        : undefined;
    // Writes of the leader's components are fenced: made only while this server's term holds the leader key
    // (etcd compares it in each write's own transaction; NotLeaderError otherwise). The API writes unfenced.
    const leaderStore: Store = election
      ? withCachedLists(writerStack(level.fenced(() => election.fence())), cache)
      : cachedStore;
    const leaderWork: LeaderWork = new LeaderWork({
      logger,
      tasks: [
        {
          // First to start, last to stop: the term's other work runs while this server answers as leader.
          name: 'leader flag',
          start: async () => {
            leading = true;
            return { stop: () => void (leading = false) };
          },
        },
        {
          name: 'desired-state publisher',
          start: async () => {
            const began = performance.now();
            const p = new DesiredPublisher({ store: leaderStore, sink: countedDesiredSink(link, instruments), logger, images, cachedNode });
            for (const [node, accepts] of encodings) p.encodingsHeard(node, accepts);
            await p.start();
            publisher = p;
            // Each phase timed from its own start: a follower's first term begins long after the server's start.
            instruments.startPhase('desired-publisher', began);
            return {
              stop: async () => {
                if (publisher === p) publisher = undefined;
                await p.stop();
              },
            };
          },
        },
        {
          name: 'fleet publisher',
          start: async () => {
            const began = performance.now();
            const fleet = new FleetPublisher({ store: withLiveNodes(leaderStore, liveness), sink: link, logger, version, ...(broker ? {} : { staleAfterMs: Infinity }) });
            await fleet.start();
            instruments.startPhase('fleet-publisher', began);
            return fleet;
          },
        },
        {
          name: 'scheduler',
          start: async () => {
            const began = performance.now();
            const scheduler = new Scheduler({ store: leaderStore, events, logger, resyncMs: cfg.resyncMs, metrics: instruments });
            await scheduler.start();
            instruments.startPhase('scheduler', began);
            return scheduler;
          },
        },
        {
          name: 'controllers',
          start: async () => {
            const began = performance.now();
            const lifecycle = nodeLifecycleController({
              store: leaderStore,
              events,
              logger,
              liveness,
              metrics,
              policy: { missedHeartbeats: cfg.missedHeartbeats ?? DEFAULTS.missedHeartbeats, lateFactor: NODE_LIFECYCLE.lateFactor, flapWindowMs },
              assumedHeartbeatMs: NODE_LIFECYCLE.assumedHeartbeatMs,
              maxRequeueMs: cfg.nodeMonitorMs ?? DEFAULTS.nodeMonitorMs,
              now: Date.now,
            });
            const controllers = new ControllerRunner({
              store: leaderStore,
              logger,
              controllers: [
                // images: rollouts keep an old pod until its node has loaded its replacement's served image (issue 15).
                ...allControllers({ store: leaderStore, events, logger, now: Date.now, jobBackoffBaseMs: cfg.jobBackoffBaseMs, eventTtlMs: cfg.eventTtlMs, eventsPerObject: cfg.eventsPerObject, maxReplicas: cfg.maxReplicas, images }),
                lifecycle,
              ],
              resyncMs: cfg.controllerResyncMs,
            });
            await controllers.start();
            instruments.startPhase('controllers', began);
            return controllers;
          },
        },
        {
          // Last: the statuses a gone leader may have taken with it (nothing to do with one server: no copies kept).
          name: 'statuses of a gone server',
          start: async () => {
            await reapply('became leader');
            return { stop: () => undefined };
          },
        },
      ],
    });
    if (election) {
      election.start();
      // Closed before the store (closers run in reverse): the work stops, then the lease is revoked so another server leads at once.
      closers.push(() => election.close());
    } else {
      await leaderWork.started(new AbortController().signal);
      closers.push(() => leaderWork.stopped('server stopping'));
    }

    // install.sh and the binaries it downloads (public: a device trusts them by its token's CA hash and SHA256SUMS).
    const downloads = new DownloadCatalog({ dir: cfg.downloadsDir ?? join(cfg.dataDir, 'downloads'), self: await selfBinary() });
    const proxy = new NodeProxy({ store, link, requestTimeoutMs: cfg.nodeRequestTimeoutMs ?? DEFAULTS.nodeRequestTimeoutMs });
    const api = new ApiServer({
      store: liveStore,
      logger,
      tokens,
      audit,
      podSecurity,
      readNamespace,
      maxReplicas: cfg.maxReplicas,
      formatJoin: (t) => formatJoinToken(pki.caHash, t),
      ...(insecure ? {} : { tls: { key: pki.server.key, cert: pki.server.cert, ca: pki.caCert } }),
      extraRoutes: [metricsRoute(instruments), snapshotRoute({ store: level, audit, logger }), ...identityRoutes(identity), ...downloadRoutes({ catalog: downloads, installScript, logger }), ...fleetRoutes({ store: liveStore, version, startedAt, ...(broker ? { brokerClients: () => broker!.connectedClients() } : { staleAfterMs: Infinity }) }),
        // A node fetches only the images its desired state lists, worked out from the cached pods (any server answers).
        ...imageRoutes({ store: images, transfers: imageTransfers, nodeStore: cachedStore, identity, mayFetch: imageAccess(() => cache.list('Pod').items, images), logger, maxUploadBytes: cfg.imageMaxUploadBytes }),
      ],
      logs: (q) => proxy.logs(q),
      exec: (q) => proxy.exec(q),
      metrics,
      ready: () => link.connected(),
      requestMetrics: instruments,
    });
    // MQTT commands run through the API's own handler: the same authorization, admission and audit as HTTP.
    const door = new CommandDoor({ api, tokens, publish: (topic, payload, opts) => link.publish(topic, payload, opts), logger });
    broker?.onCommand((c) => door.handle(c));
    // Several servers: every server hears each command, the leader alone answers, so the commands of one
    // operator run one at a time and in order, as on one server. One sent while no server leads (a failover,
    // up to the lease duration) gets no answer: the operator sends it again.
    link.onCommand((c) => {
      if (!severalServers || leading) door.handle(c);
      else logger.debug({ verb: c.verb.slice(0, 64) }, 'mqtt command left to the leader');
    });
    const { url: apiUrl } = await api.listen(cfg.apiHost, cfg.apiPort);
    instruments.startPhase('api');
    closers.push(() => api.close());
    closers.push(() => door.close());
    const nodes = (await store.list('Node')).items;
    logger.info({ apiUrl, mqtt: linkUrl, mqttClientId: linkClientId, sharedSubscriptions: severalServers, nodes: nodes.length, tls: !insecure, requireApproval: cfg.requireApproval ?? false, startMs: Math.round(performance.now() - bootAt) }, 'drover server started');
    return {
      apiUrl,
      mqttUrl: linkUrl,
      advertisedMqttUrl,
      adminToken: tokens.adminToken,
      joinToken,
      caCert: pki.caCert,
      caFile: join(pki.dir, 'ca.crt'),
      dataDir: cfg.dataDir,
      insecure,
      identity,
      logger,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
