import mqtt, { Store, type MqttClient } from 'mqtt';
import { inflateRawSync } from 'node:zlib';
import { DELIVERY, decode, encode, parseTopic, payloads, topics } from '../src/contract/index.js';
import { DEFLATE_MARKER, MAX_PAYLOAD_BYTES } from '../src/contract/payloads.js';
import { agentClientId } from '../src/contract/topics.js';
import { createSecureContext } from 'node:tls';
import { keepTlsSession, type TlsSessionKeeper } from '../src/util/tls-session.js';
import { backoffDelay } from '../src/util/backoff.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';

export interface AgentLinkOptions {
  url: string;
  node: string;
  /**
   * How the node proves who it is: its client certificate over TLS (mqtts://), or its per-node
   * password on a plain (--insecure) listener. Never the join token.
   */
  auth: AgentLinkAuth;
  /** False while the server waits for `drover node approve`: refusals are then expected and said so. */
  approved: boolean;
  bootId: string;
  keepaliveSeconds: number;
  logger: Logger;
  /** Longest reconnect delay: they grow exponentially to it, with jitter, so a fleet does not reconnect in step. */
  reconnectMaxMs: number;
  /** Longest wait for the broker's CONNACK. */
  connectTimeoutMs: number;
}

export type AgentLinkAuth = { tls: { key: string; cert: string; ca: string; servername?: string } } | { password?: string };

export interface AgentLinkHandlers {
  /** Called after every (re)connect, once subscriptions are in place. */
  onConnect(): void;
  onDesired(d: payloads.Desired): void;
  onRequest(id: string, req: payloads.AgentRequest): Promise<payloads.Response>;
}

/**
 * The agent's side of the MQTT contract. The link is optional by design: the agent runs its
 * workloads without it, and this class only reports whether it is up.
 */
/** Longest an event batch waits for the broker's acknowledgement before it is sent anew. */
const EVENTS_SETTLE_MS = 5 * 60_000;

/** The first reconnect delay. */
const RECONNECT_BASE_MS = 500;

/** Shortest wait for the acknowledgement of a hello; longer with a long keepalive (two of them). */
const SETTLE_MIN_MS = 10_000;

/** Longest a graceful stop waits to tell the broker the node goes offline. */
const OFFLINE_NOTICE_MS = 1_000;

export class AgentLink {
  private client: MqttClient | undefined;
  /** The TLS session offered at the next connect (resumption). */
  private tlsSession: TlsSessionKeeper | undefined;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /**
   * mqtt.js's message stores, kept across reconnects: its public reconnect() would otherwise start
   * empty ones, and a QoS 1 publish in flight when the link dropped would neither be sent again nor
   * ever settle.
   */
  private readonly stores = { incomingStore: new Store(), outgoingStore: new Store() };
  /** When the link was lost (undefined while connected or before the first connect). */
  private lostAt: number | undefined;
  private everConnected = false;
  private local: string | undefined;

  constructor(private readonly opts: AgentLinkOptions, private readonly handlers: AgentLinkHandlers) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /**
   * The local address of the socket of the last connection: the address this node reaches the
   * server from, so the one the server and the other nodes can reach it at. Undefined before the
   * first connect, over transports without one (WebSocket), and over loopback (the server runs on
   * this host: 127.0.0.1 says nothing to the other nodes).
   */
  get localAddress(): string | undefined {
    return this.local;
  }

  private presence(state: 'online' | 'offline'): Buffer {
    return encode({ state, bootId: this.opts.bootId, ts: new Date().toISOString() } satisfies payloads.Presence);
  }

  start(): void {
    const { node, logger } = this.opts;
    const client = mqtt.connect(this.opts.url, {
      clientId: agentClientId(node),
      ...this.authOptions(),
      protocolVersion: 4,
      // Persistent session: requests sent while the link flaps wait at the broker.
      clean: false,
      keepalive: this.opts.keepaliveSeconds,
      // A ping every keepalive even while other packets flow (a log follow's responses): the server times
      // the node's liveness by them (status.keepaliveSeconds), heartbeats being ten minutes apart.
      reschedulePings: false,
      connectTimeout: this.opts.connectTimeoutMs,
      // Reconnects are ours (backoff with jitter), not mqtt.js's fixed period.
      reconnectPeriod: 0,
      // Subscriptions are made on every connect (below); mqtt.js's own resubscribe would double them.
      resubscribe: false,
      ...this.stores,
      will: { topic: topics.presence(node), payload: this.presence('offline'), ...DELIVERY.presence },
      // Connected below, once the TLS session keeper is in place.
      manualConnect: true,
    });
    this.client = client;
    this.tlsSession = keepTlsSession(client);
    client.on('connect', (connack) => {
      this.attempt = 0;
      // Let in: approved by now (a later refusal means revoked, not pending).
      this.opts.approved = true;
      const offlineMs = this.lostAt !== undefined ? Date.now() - this.lostAt : undefined;
      this.lostAt = undefined;
      this.everConnected = true;
      this.local = socketLocalAddress(client.stream);
      logger.info({ url: this.opts.url, sessionPresent: connack.sessionPresent, ...(offlineMs !== undefined ? { offlineMs } : {}) }, offlineMs !== undefined ? 'reconnected to server' : 'connected to server');
      // The desired state is a retained full snapshot: subscribed at QoS 0, so the broker queues
      // nothing for an offline node and every (re)subscribe delivers just the latest snapshot.
      // A message lost with a broken connection comes back with the resubscribe after the reconnect.
      // Requests are QoS 1: those sent during a short outage wait in the persistent session.
      const [desired, requests] = topics.agentInbox(node);
      client.subscribe({ [desired!]: { qos: 0 }, [requests!]: { qos: 1 } }, (err) => {
        if (err) logger.warn({ err: err.message }, 'subscribe failed');
      });
      client.publish(topics.presence(node), this.presence('online'), DELIVERY.presence);
      this.handlers.onConnect();
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('error', (err) => {
      // CONNACK 5: the broker knows this node but will not let it in (pending approval, revoked).
      const code = (err as { code?: unknown }).code;
      // Refused as who we are: the next attempt shakes hands afresh, with the certificate we hold now.
      if (code === 4 || code === 5) this.tlsSession?.forget();
      if (code === 5) {
        if (!this.opts.approved) logger.warn(`waiting for approval: drover node approve ${node}`);
        else logger.error({ err: err.message }, 'the server refuses this node (revoked?); retrying');
      } else if (code === 4) {
        // The certificate is not (or no longer) this node's current one: retrying alone will not fix it.
        logger.error({ err: err.message }, 'the broker does not accept this node\'s certificate (superseded, or the server lost its records): remove the credentials directory of the state dir and join again; retrying');
      } else if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
        // Devices without a real-time clock boot in the past (or far ahead) until time sync runs.
        logger.error({ err: err.message, code, deviceClock: new Date().toISOString() }, 'TLS: the broker\'s certificate is not valid at this device\'s time: is the clock right (time sync, RTC)? see firmware-notes/clocks.md; retrying');
      } else if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME/.test(code)) {
        logger.error({ err: err.message, code }, 'TLS verification of the broker failed (not the cluster\'s CA, or an address its certificate does not name: --tls-server-name); retrying');
      } else logger.debug({ err: err.message }, 'mqtt error');
    });
    client.on('close', () => {
      if (this.lostAt === undefined && this.everConnected && !this.closed) {
        this.lostAt = Date.now();
        logger.warn({ url: this.opts.url }, 'connection to server lost; workloads keep running, reconnecting');
      }
      this.scheduleReconnect();
    });
    client.connect();
  }

  private authOptions(): Record<string, unknown> {
    const a = this.opts.auth;
    // One TLS context for every (re)connect with these credentials: given key, cert and ca instead, each attempt
    // builds its own, parsing the key, the certificate and the CA again (~3 ms of CPU per attempt, measured in a
    // simulated fleet reconnecting after a server restart: most of its CPU went there, failed attempts included).
    const servername = a && 'tls' in a && a.tls.servername ? { servername: a.tls.servername } : {};
    // mqtt.js hands a wss: connection only key, cert and ca (not a secureContext): those as they are there.
    if ('tls' in a && this.opts.url.startsWith('wss:')) return { key: a.tls.key, cert: a.tls.cert, ca: a.tls.ca, rejectUnauthorized: true, ...servername };
    if ('tls' in a) return { secureContext: createSecureContext({ key: a.tls.key, cert: a.tls.cert, ca: a.tls.ca }), rejectUnauthorized: true, ...servername };
    return { username: this.opts.node, password: a.password };
  }

  /** A renewed certificate: used from the next (re)connect on; the session in place stays up. */
  updateAuth(auth: AgentLinkAuth, approved: boolean): void {
    this.opts.auth = auth;
    this.opts.approved = approved;
    if (this.client) Object.assign(this.client.options, this.authOptions());
    this.tlsSession?.forget();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = backoffDelay(this.attempt++, { baseMs: RECONNECT_BASE_MS, maxMs: this.opts.reconnectMaxMs, jitter: 0.5 });
    this.opts.logger.debug({ delay, attempt: this.attempt }, 'link down; reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closed && this.client && !this.client.connected) this.client.reconnect(this.stores);
    }, delay);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.node !== this.opts.node) return;
    const { logger } = this.opts;
    if (t.kind === 'desired') {
      if (payload.length === 0) return;
      try {
        this.handlers.onDesired(decode(payloads.desired, desiredJson(payload), 'desired state'));
      } catch (err) {
        logger.error({ err: errorMessage(err) }, 'rejected desired state; keeping the current one');
      }
    } else if (t.kind === 'request') {
      const id = t.id;
      let pending: Promise<payloads.Response>;
      try {
        pending = this.handlers.onRequest(id, decode(payloads.request, payload, 'request'));
      } catch (err) {
        pending = Promise.resolve({ ok: false, error: { code: 'BadRequest', message: errorMessage(err) } });
      }
      pending
        .catch((err): payloads.Response => ({ ok: false, error: { code: 'AgentError', message: errorMessage(err) } }))
        .then((res) => this.client?.publish(topics.response(this.opts.node, id), encode(res), DELIVERY.response));
    }
  }

  async publishHello(h: payloads.Hello): Promise<void> {
    if (!this.connected) throw new Error('not connected');
    await this.settle(this.client!.publishAsync(topics.hello(this.opts.node), encode(h), DELIVERY.hello), 'hello');
  }

  /** Returns false when offline: the caller keeps the report and sends the latest on reconnect. */
  publishStatus(s: payloads.Status): boolean {
    if (!this.connected) return false;
    this.client!.publish(topics.status(this.opts.node), encode(s), DELIVERY.status);
    return true;
  }

  /** True once the broker acknowledged the events; false when offline or not acknowledged in time (sent again later). */
  async publishEvents(e: payloads.Events): Promise<boolean> {
    if (!this.connected) return false;
    try {
      // Waited for long: mqtt.js sends an unacknowledged batch again itself after a reconnect (its
      // stores are kept), so giving up early and sending the batch anew would deliver it twice.
      await this.settle(this.client!.publishAsync(topics.events(this.opts.node), encode(e), DELIVERY.events), 'events', EVENTS_SETTLE_MS);
      return true;
    } catch (err) {
      this.opts.logger.warn({ err: errorMessage(err), events: e.events.length }, 'event batch not acknowledged; it is sent again later');
      return false;
    }
  }

  /**
   * A QoS 1 publish settles when the broker acknowledges it, which across a reconnect can take long
   * (it is sent again then). Callers must not hang on it: give up waiting after a while.
   */
  private settle<T>(p: Promise<T>, what: string, waitMs?: number): Promise<T> {
    const ms = waitMs ?? Math.max(SETTLE_MIN_MS, 2 * this.opts.keepaliveSeconds * 1000);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} not acknowledged within ${ms} ms`)), ms);
      timer.unref();
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  /** Graceful stop: publish offline ourselves (a clean disconnect does not fire the last will). */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const c = this.client;
    if (!c) return;
    if (c.connected) {
      await Promise.race([
        c.publishAsync(topics.presence(this.opts.node), this.presence('offline'), DELIVERY.presence).catch((err: unknown) =>
          this.opts.logger.debug({ err: errorMessage(err) }, 'offline presence not sent; the broker publishes the last will instead'),
        ),
        new Promise((r) => setTimeout(r, OFFLINE_NOTICE_MS)),
      ]);
    }
    await c.endAsync(true);
  }
}

/**
 * A desired-state payload as JSON: plain, or DEFLATE_MARKER and raw DEFLATE (announced in the hello's
 * `accepts`). Inflated no further than a plain payload may be large, so a small message cannot unpack
 * into gigabytes (zlib throws past maxOutputLength).
 */
export function desiredJson(payload: Buffer): Buffer {
  if (payload[0] !== DEFLATE_MARKER) return payload;
  return inflateRawSync(payload.subarray(1), { maxOutputLength: MAX_PAYLOAD_BYTES });
}

/**
 * A TCP or TLS socket's local address, IPv4-mapped IPv6 ("::ffff:10.0.0.5") given as IPv4;
 * undefined for a loopback one.
 */
function socketLocalAddress(stream: unknown): string | undefined {
  const raw = (stream as { localAddress?: unknown } | undefined)?.localAddress;
  if (typeof raw !== 'string' || raw === '') return undefined;
  const addr = raw.startsWith('::ffff:') && raw.includes('.') ? raw.slice('::ffff:'.length) : raw;
  return addr.startsWith('127.') || addr === '::1' ? undefined : addr;
}
