import mqtt, { type MqttClient } from 'mqtt';
import { DELIVERY, decode, encode, parseTopic, payloads, topics } from '../src/contract/index.js';
import { backoffDelay } from '../src/util/backoff.js';
import { errorMessage } from '../src/util/errors.js';
import type { Logger } from '../src/util/logger.js';

export interface AgentLinkOptions {
  url: string;
  node: string;
  token: string;
  bootId: string;
  keepaliveSeconds?: number;
  logger: Logger;
  /** Reconnect delays: exponential from base to max with jitter, so a fleet does not reconnect in step. */
  reconnect?: { baseMs: number; maxMs: number };
}

export interface AgentLinkHandlers {
  /** Called after every (re)connect, once subscriptions are in place. */
  onConnect(): void;
  onDesired(d: payloads.Desired): void;
  onRequest(id: string, req: payloads.Request): Promise<payloads.Response>;
}

/**
 * The agent's side of the MQTT contract. The link is optional by design: the agent runs its
 * workloads without it, and this class only reports whether it is up.
 */
export class AgentLink {
  private client: MqttClient | undefined;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: AgentLinkOptions, private readonly handlers: AgentLinkHandlers) {}

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  private presence(state: 'online' | 'offline'): Buffer {
    return encode({ state, bootId: this.opts.bootId, ts: new Date().toISOString() } satisfies payloads.Presence);
  }

  start(): void {
    const { node, logger } = this.opts;
    const client = mqtt.connect(this.opts.url, {
      clientId: `drover-agent-${node}`,
      username: node,
      password: this.opts.token,
      protocolVersion: 4,
      // Persistent session: requests and desired updates sent while the link flaps wait at the broker.
      clean: false,
      keepalive: this.opts.keepaliveSeconds ?? 15,
      connectTimeout: 10_000,
      // Reconnects are ours (backoff with jitter), not mqtt.js's fixed period.
      reconnectPeriod: 0,
      will: { topic: topics.presence(node), payload: this.presence('offline'), ...DELIVERY.presence },
    });
    this.client = client;
    client.on('connect', () => {
      this.attempt = 0;
      logger.info({ url: this.opts.url }, 'connected to server');
      client.subscribe(topics.agentInbox(node), { qos: 1 }, (err) => {
        if (err) logger.warn({ err: err.message }, 'subscribe failed');
      });
      client.publish(topics.presence(node), this.presence('online'), DELIVERY.presence);
      this.handlers.onConnect();
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('error', (err) => logger.warn({ err: err.message }, 'mqtt error'));
    client.on('close', () => this.scheduleReconnect());
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const r = this.opts.reconnect ?? { baseMs: 500, maxMs: 30_000 };
    const delay = backoffDelay(this.attempt++, { ...r, jitter: 0.5 });
    this.opts.logger.debug({ delay, attempt: this.attempt }, 'link down; reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.closed && this.client && !this.client.connected) this.client.reconnect();
    }, delay);
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(topic);
    if (!t || t.node !== this.opts.node) return;
    const { logger } = this.opts;
    if (t.kind === 'desired') {
      if (payload.length === 0) return;
      try {
        this.handlers.onDesired(decode(payloads.desired, payload, 'desired state'));
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
    await this.client?.publishAsync(topics.hello(this.opts.node), encode(h), DELIVERY.hello);
  }

  /** Returns false when offline: the caller keeps the report and sends the latest on reconnect. */
  publishStatus(s: payloads.Status): boolean {
    if (!this.connected) return false;
    this.client!.publish(topics.status(this.opts.node), encode(s), DELIVERY.status);
    return true;
  }

  async publishEvents(e: payloads.Events): Promise<boolean> {
    if (!this.connected) return false;
    try {
      await this.client!.publishAsync(topics.events(this.opts.node), encode(e), DELIVERY.events);
      return true;
    } catch {
      return false;
    }
  }

  /** Graceful stop: publish offline ourselves (a clean disconnect does not fire the last will). */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const c = this.client;
    if (!c) return;
    if (c.connected) {
      await Promise.race([
        c.publishAsync(topics.presence(this.opts.node), this.presence('offline'), DELIVERY.presence).catch(() => {}),
        new Promise((r) => setTimeout(r, 1000)),
      ]);
    }
    await c.endAsync(true);
  }
}
