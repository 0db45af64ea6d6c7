import { randomUUID } from 'node:crypto';
import { MAX_PAYLOAD_BYTES } from '../../src/contract/payloads.js';
import type { Socket } from 'node:net';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { DELIVERY, decode, encode, parseCommandTopic, parseServerGoneTopic, parseTopic, payloads, sharedFilter, topics, type ParsedTopic } from '../../src/contract/index.js';
import { withTimeout } from '../../src/util/backoff.js';
import { DroverError, TimeoutError, errorMessage } from '../../src/util/errors.js';
import type { Logger } from '../../src/util/logger.js';


/** Commands kept for the door while it is being wired (a persistent session's queue arrives at connect). */
const EARLY_COMMANDS_MAX = 256;
export interface LinkOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  /** Client certificate and the CA that signed the broker's certificate (an mqtts:// url). */
  tls?: { key: string; cert: string; ca: string };
  /**
   * External broker: hear operators' commands (drover/v1/cmd/+) and speak MQTT 5, whose response topic and
   * correlation data a command may carry. The embedded broker hands commands over itself, with who sent them.
   */
  commands?: boolean;
  /**
   * Several servers on this (external, MQTT 5) broker: agent reports through shared subscriptions
   * (`$share/drover/...`, one server of the group handles each), presence, hello and status also plainly
   * (every server keeps its memory of the fleet: ReportCopy), and a session that ends with the connection
   * (see connect). Commands stay a plain subscription: the caller lets the leader alone answer them, so one
   * operator's commands still run in order (a shared subscription would spread them over the servers, to run
   * at once). Needs `commands` (MQTT 5).
   */
  shared?: boolean;
  /** With `shared`: this server's id, in its goodbye (last will) to the others (topics.serverGone). */
  serverId?: string;
  logger: Logger;
}

/**
 * Which part of a report this server does with a copy. `only`: all of it (the one server of a broker).
 * With several servers (LinkOptions.shared): `every` is the copy every server gets (memory only: last heard,
 * goodbyes, encodings; never a store write), `once` the copy the broker gave this server alone of the group
 * (the store writes, events).
 */
export type ReportCopy = 'only' | 'every' | 'once';

/** MQTT 5 subscription identifiers: they tell the plain copy of a report from the shared one (both may reach one server). */
const SUBSCRIPTION = { every: 1, once: 2 } as const;

/** An operator's command as the server link heard it on an external broker (who sent it is not known). */
export interface LinkCommand {
  verb: string;
  payload: Buffer;
  /** Delivered from the broker's retained store: a stored command, not one just sent. */
  retain: boolean;
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface PublishOptions {
  qos: 0 | 1;
  retain: boolean;
  /** MQTT 5 only (an external broker): echoed to a requester that sent one. */
  correlationData?: Buffer;
}

/**
 * The server's own MQTT session. Its broker is local (embedded) or on the server's network (external),
 * so these are not per-site tunables: a keepalive that finds a dead broker within a minute, a quick
 * reconnect (one client, no thundering herd), and a bounded wait for the broker's answer to each
 * connection attempt.
 */
const SESSION = { keepaliveSeconds: 30, reconnectMs: 1_000, connectTimeoutMs: 10_000 } as const;

export type ReportHandler = (topic: ParsedTopic, payload: Buffer, copy: ReportCopy) => void | Promise<void>;

/**
 * The server's MQTT client: hears every agent's reports, publishes desired snapshots, and sends
 * request/response exchanges (logs). Works the same against the embedded aedes broker and an
 * external one (Mosquitto, EMQX).
 */
export class ServerLink {
  private readonly pending = new Map<string, { node: string; resolve: (r: payloads.Response) => void; reject: (e: Error) => void }>();
  private handler: ReportHandler = () => {};
  private commandHandler: ((c: LinkCommand) => void) | undefined;
  /** Commands received before onCommand (at most EARLY_COMMANDS_MAX): a request is never silently dropped. */
  private readonly early: LinkCommand[] = [];
  private warnedNoSubscriptionId = false;
  private serverGoneHandler: ((serverId: string) => void) | undefined;
  private serverId: string | undefined;

  private constructor(private readonly client: MqttClient, private readonly logger: Logger, private readonly commands: boolean, private readonly shared: boolean) {
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    client.on('connect', () => {
      // Nagle would hold each small message (a command's reply) for the peer's delayed ACK: ~40 ms a hop.
      (client.stream as Partial<Socket> | undefined)?.setNoDelay?.(true);
      this.subscribe();
    });
    client.on('reconnect', () => logger.debug('mqtt link reconnecting'));
    client.on('error', (err) => logger.warn({ err: err.message }, 'mqtt link error'));
    // MQTT 5 (external broker): the broker says why it ended the session. 0x8E: another client connected
    // with the server's client id, which an external broker such as Mosquitto does not stop.
    client.on('disconnect', (packet) => {
      const code = packet.reasonCode ?? 0;
      if (code === 0x8e) logger.error({ reasonCode: code, clientId: client.options.clientId }, 'mqtt link: another client took over the server\'s session on the broker (its client id); reconnecting');
      else logger.warn({ reasonCode: code }, 'mqtt link: the broker ended the session');
    });
  }

  static async connect(opts: LinkOptions): Promise<ServerLink> {
    if (opts.shared && (!opts.commands || !opts.serverId)) throw new DroverError('shared subscriptions need MQTT 5 (an external broker) and a server id', { code: 500, reason: 'InternalError' });
    // One server: a persistent session, so agent reports published while it restarts wait for it at the broker
    // (MQTT 5 ends a session at disconnect unless it is given an expiry). Several servers: the session ends with
    // the connection. A broker keeps handing a disconnected member of a shared subscription its share, queued in
    // its session (Mosquitto 2.0.11, measured: a member killed with a persistent session kept receiving every
    // other message); with no session left, the servers still connected get them all.
    const persistent = !opts.shared;
    const client = mqtt.connect(opts.url, {
      clientId: opts.clientId,
      username: opts.username,
      password: opts.password,
      ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert, ca: opts.tls.ca, rejectUnauthorized: true } : {}),
      protocolVersion: opts.commands ? 5 : 4,
      clean: !persistent,
      // maximumPacketSize: the broker never forwards the server a larger packet (an operator's 64 MiB
      // "command" through Mosquitto would otherwise be read whole into this process).
      ...(opts.commands ? { properties: { sessionExpiryInterval: persistent ? 0xffffffff : 0, maximumPacketSize: MAX_PAYLOAD_BYTES + 64 * 1024 } } : {}),
      // Several servers: the broker tells the others when this one's connection dies (kill -9, a lost link).
      ...(opts.shared && opts.serverId ? { will: { topic: topics.serverGone(opts.serverId), payload: Buffer.from(opts.serverId), qos: 1 as const, retain: false } } : {}),
      keepalive: SESSION.keepaliveSeconds,
      reconnectPeriod: SESSION.reconnectMs,
      connectTimeout: SESSION.connectTimeoutMs,
    });
    const link = new ServerLink(client, opts.logger, opts.commands ?? false, opts.shared ?? false);
    link.serverId = opts.serverId;
    await new Promise<void>((resolve, reject) => {
      const onErr = (err: Error) => {
        client.end(true);
        reject(new DroverError(`cannot connect to MQTT broker ${opts.url}: ${err.message}`, { code: 503, reason: 'BrokerUnavailable', cause: err }));
      };
      client.once('connect', () => {
        client.off('error', onErr);
        resolve();
      });
      client.once('error', onErr);
    });
    return link;
  }

  onReport(handler: ReportHandler): void {
    this.handler = handler;
  }

  connected(): boolean {
    return this.client.connected;
  }

  /** Several servers: another server's connection ended (its will, or its goodbye at a clean stop). */
  onServerGone(handler: (serverId: string) => void): void {
    this.serverGoneHandler = handler;
  }

  /** External broker: where operators' commands go (see LinkOptions.commands). */
  onCommand(handler: (c: LinkCommand) => void): void {
    this.commandHandler = handler;
    // Commands the broker handed over (the session's queue) before the door was wired: each gets its answer.
    for (const c of this.early.splice(0)) handler(c);
  }

  /** Any message on any topic (command replies, the fleet summary): the caller picks QoS and retain. */
  async publish(topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void> {
    const properties = opts.correlationData && this.commands ? { properties: { correlationData: opts.correlationData } } : {};
    await this.client.publishAsync(topic, payload, { qos: opts.qos, retain: opts.retain, ...properties });
  }

  private subscribe(): void {
    const failed = (what: string) => (err: Error | null) => {
      if (err) this.logger.error({ err: err.message }, `mqtt subscribe to ${what} failed`);
    };
    if (!this.shared) {
      this.client.subscribe([...topics.allAgentReports(), topics.allResponses()], { qos: 1 }, failed('agent reports'));
    } else {
      // Reports handled once (store writes, events): one server of the group gets each.
      this.client.subscribe(topics.allAgentReports().map(sharedFilter), { qos: 1, properties: { subscriptionIdentifier: SUBSCRIPTION.once } }, failed('agent reports (shared)'));
      // What every server keeps in memory (topics.agentReportsEveryServer).
      this.client.subscribe(topics.agentReportsEveryServer(), { qos: 1, properties: { subscriptionIdentifier: SUBSCRIPTION.every } }, failed('agent reports (every server)'));
      // An answer goes to the server that asked (the others do not wait for its id): a plain subscription,
      // as a shared one would hand it to any server.
      this.client.subscribe(topics.allResponses(), { qos: 1 }, failed('node responses'));
      this.client.subscribe(topics.allServersGone(), { qos: 1 }, failed('server goodbyes'));
    }
    // Retain as published (MQTT 5): a command sent with the retain flag is seen as one, and refused.
    // Several servers: every one hears each command, the leader answers it (LinkOptions.shared).
    if (this.commands) {
      this.client.subscribe(topics.allCommands(), { qos: 1, rap: true }, failed('commands'));
    }
  }

  /** Which copy of a report this is (ReportCopy), by the subscription identifiers the broker attached. */
  private copyOf(packet: IPublishPacket): ReportCopy {
    if (!this.shared) return 'only';
    const raw = packet.properties?.subscriptionIdentifier;
    const ids = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    const every = ids.includes(SUBSCRIPTION.every);
    const once = ids.includes(SUBSCRIPTION.once);
    // One copy for both subscriptions (a broker may merge overlapping ones): this server does all of it.
    if (every && once) return 'only';
    if (every) return 'every';
    if (once) return 'once';
    // No identifier: every copy is handled whole, so no node goes unheard; reports are then written by every
    // server that gets a copy (more writes, the same result).
    if (!this.warnedNoSubscriptionId) {
      this.warnedNoSubscriptionId = true;
      this.logger.error('mqtt link: the broker attaches no subscription identifiers: several servers cannot tell the copy every server gets from the one to handle, so each server handles every report it gets (use an MQTT 5 broker with subscription identifiers: Mosquitto 2, EMQX)');
    }
    return 'only';
  }

  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const cmd = this.commands ? parseCommandTopic(topic) : undefined;
    if (cmd) {
      const props = packet.properties;
      const c: LinkCommand = {
        verb: cmd.verb,
        payload,
        retain: packet.retain,
        ...(props?.responseTopic ? { responseTopic: props.responseTopic } : {}),
        ...(props?.correlationData ? { correlationData: props.correlationData } : {}),
      };
      if (this.commandHandler) this.commandHandler(c);
      else if (this.early.length < EARLY_COMMANDS_MAX) this.early.push(c);
      else this.logger.warn({ verb: cmd.verb.slice(0, 64) }, 'mqtt command before the command door was ready, and too many waiting: dropped');
      return;
    }
    const gone = this.shared ? parseServerGoneTopic(topic) : undefined;
    if (gone !== undefined) {
      if (gone !== this.serverId) this.serverGoneHandler?.(gone);
      return;
    }
    const t = parseTopic(topic);
    if (!t) return;
    if (t.kind === 'response') {
      const p = this.pending.get(t.id);
      // Only the node asked may answer (ids are random, but the check costs nothing).
      if (!p || p.node !== t.node) {
        // The request timed out (or the server restarted) before the node answered; or, with several servers,
        // another server asked.
        this.logger.debug({ node: t.node, id: t.id }, 'late answer to a request no longer waited for');
        return;
      }
      this.pending.delete(t.id);
      try {
        p.resolve(decode(payloads.response, payload, 'response'));
      } catch (err) {
        p.reject(err as Error);
      }
      return;
    }
    if (t.kind === 'request' || t.kind === 'desired') return;
    Promise.resolve(this.handler(t, payload, this.copyOf(packet))).catch((err) =>
      this.logger.warn({ topic, err: errorMessage(err) }, 'agent report rejected'),
    );
  }

  /** `encoded`: the payload as the publisher chose to send it (DEFLATE for agents that accept it); plain JSON without it. */
  async publishDesired(d: payloads.Desired, encoded?: Buffer): Promise<void> {
    await this.client.publishAsync(topics.desired(d.node), encoded ?? encode(d), DELIVERY.desired);
  }

  /** Clears a node's retained messages (desired state with its Secrets, hello, presence): its Node was deleted. */
  async clearRetained(node: string): Promise<void> {
    for (const t of [topics.desired(node), topics.hello(node), topics.presence(node)]) {
      await this.client.publishAsync(t, Buffer.alloc(0), { qos: 1, retain: true });
    }
  }

  async request(node: string, req: payloads.Request, timeoutMs: number): Promise<payloads.Response> {
    const id = randomUUID();
    const answer = new Promise<payloads.Response>((resolve, reject) => this.pending.set(id, { node, resolve, reject }));
    try {
      await this.client.publishAsync(topics.request(node, id), encode(req), req.op === 'exec' ? DELIVERY.execRequest : DELIVERY.request);
      return await withTimeout(answer, timeoutMs, () => {
        throw new TimeoutError(`node ${node} did not answer within ${Math.round(timeoutMs / 1000)}s (is its agent online?)`);
      });
    } finally {
      this.pending.delete(id);
    }
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) p.reject(new DroverError('the server is shutting down', { code: 503, reason: 'ShuttingDown' }));
    this.pending.clear();
    // A clean stop sends no will: the goodbye is said, so reports the broker handed this server and that it
    // did not handle are looked at again by the leader.
    if (this.shared && this.serverId && this.client.connected) {
      await withTimeout(this.client.publishAsync(topics.serverGone(this.serverId), Buffer.from(this.serverId), { qos: 1, retain: false }), SESSION.connectTimeoutMs, () => undefined).catch((err) =>
        this.logger.warn({ err: errorMessage(err) }, 'mqtt link: goodbye to the other servers not sent'),
      );
    }
    await this.client.endAsync();
  }
}
